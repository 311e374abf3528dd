#!/usr/bin/env bash
# Measures the per-pod ADD/DEL overhead of plexus (runtime → libcni → plexus
# shim → agent → 3 delegates) against a runtime invoking the same three
# delegates itself. Needs root. Results and their reading: docs/benchmarks.md.
#
#   sudo tools/bench/overhead.sh [overhead flags, e.g. -pods 60 -keep]
#   sudo tools/bench/overhead.sh -burst 500   # load: 500 concurrent ADDs, then DELs
#
# Builds the shim, the agent and the benchmark into a temp dir, makes sure
# the reference plugins are built (tools/cni-plugins.sh), then runs
# tools/bench/overhead, which sets up its own networks, starts the agent in
# local mode, measures, and removes everything it created.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="/usr/local/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "overhead.sh: needs root (network namespaces and links)" >&2
  exit 1
fi

bin="$(mktemp -d /tmp/pxbench-bin.XXXXXX)"
cleanup() {
  rm -rf "$bin"
  # Safety net if the benchmark was killed before its own cleanup: exact
  # names only (other tests use similar ones, e.g. pxblue0).
  for l in pxbench-up0 pxbench-br0 pxbench-br1; do
    ip link del "$l" 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep '^pxbench-[0-9]*-[dpb][0-9]*$' || true); do
    ip netns delete "$n" 2>/dev/null || true
  done
}
trap cleanup EXIT

plugins="$(tools/cni-plugins.sh)"
echo "building into $bin" >&2
# The binaries as shipped (tools/build.sh's flags: static, stripped), which
# the burst's memory figures depend on.
tools/build-shim.sh "$bin/plexus"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/plexus-agent" ./agent/cmd/plexus-agent
go build -trimpath -o "$bin/overhead" ./tools/bench/overhead
ls -l "$bin/plexus" | awk '{printf "shim binary: %d bytes\n", $5}' >&2

burst=false
for a in "$@"; do
  case "$a" in -burst | -burst=* | --burst | --burst=*) burst=true ;; esac
done
if ! $burst && command -v hyperfine >/dev/null; then
  # A second opinion on the shim's start-up, from a tool outside Go.
  echo "## hyperfine: shim start-up (CNI_COMMAND=VERSION)"
  echo
  # hyperfine gives the child no stdin by default (older releases have no
  # --input); a failure here must not stop the benchmark proper.
  CNI_COMMAND=VERSION hyperfine -N --warmup 20 --runs 300 --style basic \
    "$bin/plexus" 2>&1 | sed -n '/Time/,/Range/p' || echo "(hyperfine failed)"
  echo
fi

"$bin/overhead" -shim "$bin/plexus" -agent "$bin/plexus-agent" -plugins "$plugins" "$@"
