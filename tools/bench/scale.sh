#!/usr/bin/env bash
# Scale benchmark: the plexus-agent binary in Kubernetes mode against a real
# etcd + kube-apiserver (internal/apiservertest) holding 10,000 pods (110 on
# the agent's node) and 2,000 NADs: time to sync, RSS after sync, and ADDs
# checked to read nothing from the API server. Needs root, the reference
# plugins (tools/cni-plugins.sh) and the cluster binaries
# (tools/cluster/build-binaries.sh). Results and their reading:
# docs/benchmarks.md.
#
#   sudo tools/bench/scale.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_SCALE_PODS=10000     pods in the cluster
#   PLEXUS_BENCH_SCALE_NODE_PODS=110  of them on the agent's node
#   PLEXUS_BENCH_SCALE_NADS=2000      NADs (≥ 40), over 20 namespaces
#   PLEXUS_BENCH_SCALE_ADDS=10        ADDs (then DELs) checked per agent
#   PLEXUS_BENCH_SCALE_BASELINE="old=/path/plexus-agent"  more agent binaries
#                                     measured against the same cluster
#   PLEXUS_BENCH_SCALE_KEEP=1         keep the scratch dir (agent and audit logs)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "scale.sh: needs root (network namespaces and links)" >&2
  exit 1
fi

bin="$(mktemp -d /tmp/pxscale-bin.XXXXXX)"
cleanup() {
  rm -rf "$bin"
  # Safety net if the test was killed before its own cleanup: exact names.
  for l in pxscale0 pxscale1 pxscale2; do
    ip link del "$l" 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep -E '^pxscale-[0-9]+-[0-9]+$' || true); do
    ip netns delete "$n" 2>/dev/null || true
  done
}
trap cleanup EXIT

tools/cni-plugins.sh >/dev/null
echo "building into $bin" >&2
tools/build.sh "$bin"

PLEXUS_BENCH_SCALE=1 PLEXUS_BENCH_BIN_DIR="$bin" PLEXUS_REQUIRE_ROOT_TESTS=1 \
  go test -v -count=1 -timeout 30m -run '^TestScale$' ./tools/bench/scale
