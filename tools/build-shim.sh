#!/usr/bin/env bash
# Builds the plexus CNI shim (cni/plexus/plexus.c) as a static binary:
#
#   tools/build-shim.sh OUT [VERSION]
#   tools/build-shim.sh --sanitize OUT    AddressSanitizer + UBSan build for tests
#
# The flags are cni/plexus/flags.bzl's, which Bazel loads too; tools/build.sh,
# the benchmarks and the Go tests (internal/shimbin) call this. Needs a C
# compiler and static libc: gcc and libc6-dev on Debian (tools/setup.sh
# installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=
if [ "${1:-}" = --sanitize ]; then
  sanitize=1
  shift
fi
out="${1:?usage: tools/build-shim.sh [--sanitize] OUT [VERSION]}"
version="${2:-dev}"
case "$version" in
  *[!A-Za-z0-9._+-]*) echo "tools/build-shim.sh: bad version string: $version" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$out.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The quoted strings of a one-line list in flags.bzl.
bzl_list() {
  sed -n "s/^$1 = \[\(.*\)\]\$/\1/p" cni/plexus/flags.bzl | grep -o '"[^"]*"' | tr -d '"'
}
mapfile -t copts < <(bzl_list SHIM_COPTS)
mapfile -t linkopts < <(bzl_list SHIM_LINKOPTS)
if [ "${#copts[@]}" = 0 ] || [ "${#linkopts[@]}" = 0 ]; then
  echo "tools/build-shim.sh: no SHIM_COPTS or SHIM_LINKOPTS line in cni/plexus/flags.bzl" >&2
  exit 1
fi
flags=("${copts[@]}" -DPLEXUS_VERSION="\"$version\"")
if [ -n "$sanitize" ]; then
  # Dynamic (the sanitizer runtimes are shared libraries: linkopts left
  # out), -O1 over the -O2 of the flags, any error fatal,
  # and no leak report: the shim exits right after its one call and frees
  # nothing on purpose. The tests exec it with an empty environment, so
  # the options are compiled in.
  echo 'const char *__asan_default_options(void) { return "detect_leaks=0"; }' >"$tmp/asan.c"
  "${CC:-cc}" "${flags[@]}" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
    -o "$tmp/plexus" cni/plexus/plexus.c "$tmp/asan.c"
else
  "${CC:-cc}" "${flags[@]}" "${linkopts[@]}" -o "$tmp/plexus" cni/plexus/plexus.c
fi
chmod 0755 "$tmp/plexus"
mv -f "$tmp/plexus" "$out"
