#!/usr/bin/env bash
# Wrapper for Bazel that everyone (developers and CI) uses:
#   tools/bazel.sh build //...
#   tools/bazel.sh test //...
#   tools/bazel.sh run //:gazelle
#
# It keeps Bazel's caches outside the clone, under
# ${PLEXUS_CACHE:-$HOME/.cache/plexus}, so that a fresh clone (CI) starts warm:
#   bazel-disk/  action outputs (--disk_cache): the Go standard library,
#                rules_go's builder, gazelle and everything else built once;
#   bazel-repo/  Bazel's download cache (--repository_cache).
# With --config=root (see .bazelrc) tests also get PLEXUS_CACHE, where
# tools/cni-plugins.sh puts the reference CNI plugins (Bazel's test
# environment has no HOME to derive it from); without it those tests skip.
# The Go SDK, rules_go, gazelle and external Go modules are fetched with the
# go command, so they are cached in the Go module cache ($(go env GOMODCACHE)),
# which is persistent too.  .bazelrc cannot expand $HOME, hence this script.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PLEXUS_CACHE:-$HOME/.cache/plexus}"
mkdir -p "$cache/bazel-disk" "$cache/bazel-repo"

# The repository rules in third_party/ run the host go command.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

# go_repository (gazelle) then downloads modules into the host's module cache
# instead of a per-clone one.
export GO_REPOSITORY_USE_HOST_CACHE=1

# Cache flags go into a generated rc file (passed with --bazelrc) rather than
# onto the command line, so they apply to exactly the commands that accept
# them ("build" lines are inherited by test, run, info, cquery, ...).
rc="$cache/bazelrc"
cat >"$rc.tmp" <<RC
build --disk_cache=$cache/bazel-disk
build --repository_cache=$cache/bazel-repo
fetch --repository_cache=$cache/bazel-repo
query --repository_cache=$cache/bazel-repo
sync --repository_cache=$cache/bazel-repo
test:root --test_env=PLEXUS_CACHE=$cache
RC
mv "$rc.tmp" "$rc"

cd "$root"
exec bazel --bazelrc="$rc" "$@"
