#!/usr/bin/env bash
# Builds the plexus CNI shim (cni/plexus/plexus.c) as a static binary:
#
#   tools/build-shim.sh OUT [VERSION]
#
# The one place the shim's compiler flags live outside Bazel (cni/BUILD.bazel
# has the same ones); tools/build.sh, the benchmarks and the Go tests
# (internal/shimbin) call it. Needs a C compiler and static libc: gcc and
# libc6-dev on Debian (tools/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tools/build-shim.sh OUT [VERSION]}"
version="${2:-dev}"
case "$version" in
  *[!A-Za-z0-9._+-]*) echo "tools/build-shim.sh: bad version string: $version" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$out")"
tmp="$(mktemp "$out.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"${CC:-cc}" -std=c11 -O2 -static -Wall -Wextra -Werror \
  -DPLEXUS_VERSION="\"$version\"" -o "$tmp" cni/plexus/plexus.c
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
