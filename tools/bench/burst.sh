#!/usr/bin/env bash
# Burst benchmark: N (default 200) concurrent CNI ADDs, then N concurrent
# DELs, through the real shim against the real plexus-agent binary in
# Kubernetes mode (a real etcd + kube-apiserver from internal/apiservertest),
# with the agent's RSS sampled at idle and during the bursts. Needs root,
# the reference plugins (tools/cni-plugins.sh) and the cluster binaries
# (tools/cluster/build-binaries.sh). Results and their reading:
# docs/benchmarks.md.
#
#   sudo tools/bench/burst.sh
#
# Knobs (environment):
#   PLEXUS_BENCH_BURST_PODS=200             pods in the burst
#   PLEXUS_BENCH_BURST_MAXCONCURRENT=N      agent maxConcurrent (default: the agent's, 64)
#   PLEXUS_BENCH_BURST_AGENT_ENV="GOGC=50"  extra environment for the agent process
#   PLEXUS_BENCH_BURST_KEEP=1               keep the scratch dir (agent log)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "burst.sh: needs root (network namespaces and links)" >&2
  exit 1
fi

bin="$(mktemp -d /tmp/pxburst-bin.XXXXXX)"
cleanup() {
  rm -rf "$bin"
  # Safety net if the test was killed before its own cleanup: exact names
  # only (other tests use similar ones).
  for l in pxburst0 pxburst1 pxburst2; do
    ip link del "$l" 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep -E '^pxburst-[0-9]+-[0-9]+$' || true); do
    ip netns delete "$n" 2>/dev/null || true
  done
}
trap cleanup EXIT

tools/cni-plugins.sh >/dev/null
echo "building into $bin" >&2
# The binaries as shipped: static, stripped (tools/build.sh).
tools/build.sh "$bin"

PLEXUS_BENCH_BURST=1 PLEXUS_BENCH_BIN_DIR="$bin" PLEXUS_REQUIRE_ROOT_TESTS=1 \
  go test -v -count=1 -timeout 30m -run '^TestBurst$' ./tools/bench/burst
