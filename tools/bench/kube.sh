#!/usr/bin/env bash
# Runs one of the Kubernetes-mode benchmarks (tools/bench/burst, scale,
# hotplug, admission; see burst.sh, scale.sh, hotplug.sh, admission.sh for
# what each measures and its knobs): builds the
# binaries as shipped (tools/build.sh: static, stripped) and the reference
# plugins, then runs the benchmark's test with its gate set. Needs root and
# the cluster binaries (tools/cluster/build-binaries.sh).
#
#   sudo tools/bench/kube.sh burst|scale|hotplug|admission
set -euo pipefail

name="${1:?usage: kube.sh burst|scale|hotplug|admission}"
case "$name" in burst | scale | hotplug | admission) ;; *) echo "kube.sh: unknown benchmark $name" >&2; exit 2 ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "$name.sh: needs root (network namespaces and links)" >&2
  exit 1
fi

bin="$(mktemp -d "/tmp/px$name-bin.XXXXXX")"
cleanup() {
  rm -rf "$bin"
  # Safety net if the test was killed before its own cleanup: exact names
  # only (other tests use similar ones).
  for l in "px${name}0" "px${name}1" "px${name}2"; do
    ip link del "$l" 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep -E "^px$name-[0-9]+-[0-9]+\$" || true); do
    ip netns delete "$n" 2>/dev/null || true
  done
}
trap cleanup EXIT

tools/cni-plugins.sh >/dev/null
echo "building into $bin" >&2
tools/build.sh "$bin"

env "PLEXUS_BENCH_${name^^}=1" PLEXUS_BENCH_BIN_DIR="$bin" PLEXUS_REQUIRE_ROOT_TESTS=1 \
  go test -v -count=1 -timeout 30m -run "^Test${name^}\$" "./tools/bench/$name"
