#!/usr/bin/env bash
# Fails (exit 1, printing a diff) when gazelle would change any BUILD file, or
# update-repos would change go_deps.bzl (or WORKSPACE).  Works on a clean
# checkout and leaves the tree as it found it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bazel="$root/tools/bazel.sh"
status=0

# BUILD files: gazelle's diff mode prints a diff, writes nothing, and exits
# non-zero when something would change.
"$bazel" run //:gazelle -- -mode=diff || status=1

# go_deps.bzl: update-repos has no diff mode for a macro file in gazelle 0.30,
# so run it for real and compare with (then restore) the checked-out files.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generated=(go_deps.bzl WORKSPACE)
for f in "${generated[@]}"; do cp "$f" "$tmp/$f"; done
"$bazel" run //:gazelle-update-repos
for f in "${generated[@]}"; do
	if ! diff -u "$tmp/$f" "$f"; then
		status=1
	fi
	cp "$tmp/$f" "$f"
done

if [ "$status" -ne 0 ]; then
	echo "gazelle-check: generated files are out of date; run" >&2
	echo "  tools/bazel.sh run //:gazelle-update-repos && tools/bazel.sh run //:gazelle" >&2
fi
exit "$status"
