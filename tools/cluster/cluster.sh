#!/usr/bin/env bash
# A real single-node Kubernetes cluster on loopback (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd + runc, kubelet) with
# Plexus deployed from deploy/. Binaries are built once from the Go module
# proxy and cached by version in ~/.cache/plexus; images come from Bazel.
# Root only.
#
#   sudo tools/cluster/cluster.sh up        # build what is missing, start, deploy plexus
#   sudo tools/cluster/cluster.sh kubectl get pods -A
#   sudo tools/cluster/cluster.sh down      # delete pods, stop, clean the host completely
#   sudo tools/cluster/cluster.sh clean     # clean up after a crashed run
#   sudo tools/cluster/cluster.sh build     # only build binaries and images
#
# State lives in $PLEXUS_CLUSTER_STATE (default /var/lib/plexus-cluster).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
state="${PLEXUS_CLUSTER_STATE:-/var/lib/plexus-cluster}"
k8s_dir=$(tools/cluster/build-binaries.sh --print-dir 2>/dev/null || true)
pc() { go run ./tools/cluster/plexus-cluster --state "$state" "$@"; }

build() {
  if [ "${PLEXUS_NO_SETUP:-}" != 1 ]; then
    tools/setup.sh >&2
  fi
  tools/cluster/build-binaries.sh all >/dev/null
  tools/cni-plugins.sh >/dev/null
  tools/images.sh
}

case "${1:-}" in
  build) build >/dev/null ;;
  up)
    mapfile -t images < <(build)
    args=()
    for i in "${images[@]}"; do args+=(--image "$i"); done
    pc up "${args[@]}"
    pc deploy deploy
    echo "cluster up; try: sudo tools/cluster/cluster.sh kubectl get pods -A" >&2
    ;;
  deploy) pc deploy deploy ;;
  down) pc down ;;
  clean) pc clean ;;
  env | status) pc "$1" ;;
  kubectl)
    shift
    exec "$k8s_dir/kubectl" --kubeconfig "$state/kubeconfig" "$@"
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
