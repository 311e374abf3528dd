#!/usr/bin/env bash
# Builds etcd, the Kubernetes binaries and containerd from the Go module
# proxy into versioned caches outside the clone and prints the Kubernetes
# directory. Already built binaries are skipped. Takes minutes when cold
# (kube-apiserver ~13 min, kubelet +4, containerd ~5 on 2 cores); progress
# goes to stderr, with a line every 30 s while a build runs. The versions
# are versions.env's, which the Go side (internal/cluster) reads too.
#
#   tools/cluster/build-binaries.sh [etcd kube-apiserver kubectl kubelet
#       kube-scheduler kube-controller-manager containerd | all]
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS=-mod=mod
cache="${PLEXUS_CACHE:-$HOME/.cache/plexus}"
# shellcheck source=../../versions.env
. "$(dirname "$0")/../../versions.env"
etcd_version=$ETCD_VERSION
k8s_version=$K8S_VERSION
containerd_version=$CONTAINERD_VERSION
dir="$cache/cluster/k8s-$k8s_version-etcd-$etcd_version"
mkdir -p "$dir"
wanted=("$@")
if [ "${1:-}" = --print-dir ]; then
  echo "$dir"
  exit 0
fi
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver)
if [ "${wanted[*]}" = all ]; then
  wanted=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl containerd)
fi

log() { echo "build-binaries: $*" >&2; }

# ticker prints the elapsed time every 30 s until killed.
ticker() {
  local what=$1 start=$SECONDS
  while sleep 30; do log "still building $what ($((SECONDS - start)) s)"; done
}
with_ticker() {
  local what=$1; shift
  ticker "$what" & local t=$!
  local rc=0
  "$@" || rc=$?
  kill "$t" 2>/dev/null; wait "$t" 2>/dev/null || true
  return $rc
}

build_containerd() {
  local out="$cache/cluster/containerd-$containerd_version"
  mkdir -p "$out"
  local m=github.com/containerd/containerd/v2/cmd
  (cd "$out" && GOFLAGS= GOBIN="$out" go install "$m/containerd@$containerd_version" "$m/ctr@$containerd_version" \
    "$m/containerd-shim-runc-v2@$containerd_version")
}

build_etcd() {
  local mod="$dir/src/etcd"
  mkdir -p "$mod"
  cat > "$mod/go.mod" <<MOD
module plexus.local/etcd-build

go 1.26

require (
	go.etcd.io/etcd/server/v3 $etcd_version
	go.etcd.io/etcd/etcdctl/v3 $etcd_version
)
MOD
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
  (cd "$mod" && go mod tidy >&2 && go build -trimpath -o "$dir/etcd" go.etcd.io/etcd/server/v3)
}

build_k8s() {
  local bins=("$@") mod="$dir/src/kubernetes"
  mkdir -p "$mod"
  # Every staging module must be pinned to the matching v0 release, as the
  # kubernetes go.mod does with replace directives of its own.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module plexus.local/k8s-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $k8s_version"
    echo
    sed -n '/^replace (/,/^)/p' "$gomod" | grep -o 'k8s.io/[a-z0-9-]* => ./staging' | awk '{print $1}' |
      while read -r m; do echo "replace $m => $m v0${k8s_version#v1}"; done
  } > "$mod/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for b in "${bins[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
    echo ")"
  } > "$mod/tools.go"
  (cd "$mod" && go mod tidy >&2)
  local minor=${k8s_version#v*.}
  minor=${minor%%.*}
  local ld="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  for b in "${bins[@]}"; do
    log "building $b $k8s_version"
    (cd "$mod" && with_ticker "$b" go build -trimpath -ldflags "$ld" -o "$dir/$b" "k8s.io/kubernetes/cmd/$b")
  done
}

k8s=()
for b in "${wanted[@]}"; do
  case "$b" in
    containerd)
      if [ ! -x "$cache/cluster/containerd-$containerd_version/containerd-shim-runc-v2" ] ||
         [ ! -x "$cache/cluster/containerd-$containerd_version/ctr" ] ||
         [ ! -x "$cache/cluster/containerd-$containerd_version/containerd" ]; then
        log "building containerd $containerd_version (~5 min cold)"; with_ticker containerd build_containerd
      fi
      continue ;;
  esac
  [ -x "$dir/$b" ] && continue
  case "$b" in
    etcd) log "building etcd $etcd_version"; with_ticker etcd build_etcd ;;
    *) k8s+=("$b") ;;
  esac
done
[ ${#k8s[@]} -eq 0 ] || build_k8s "${k8s[@]}"
echo "$dir"
