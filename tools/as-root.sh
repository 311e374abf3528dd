# Sourced first by the scripts that need root (tools/setup.sh, demo.sh,
# test.sh): as root it does nothing; otherwise it re-runs the script through
# sudo, keeping the cache locations, and fails in one line when sudo is not
# there. Root because they install packages and make network namespaces.
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=PLEXUS_CACHE,GOMODCACHE,GOCACHE,GOPROXY,GOFLAGS,CNI_PLUGINS_VERSION -- "$0" "$@"
  fi
  echo "$0: needs root: run it as root (sudo is not installed to do it for you)" >&2
  exit 1
fi
