#!/usr/bin/env bash
# Builds the reference CNI plugins (github.com/containernetworking/plugins)
# from the Go module proxy into a versioned cache outside the clone, and
# prints the directory. Skips the build when the cache is complete. The
# version is go.mod's (which internal/cnitest reads too), unless
# CNI_PLUGINS_VERSION says otherwise.
#
#   tools/cni-plugins.sh          all the plugins the tests use
#   tools/cni-plugins.sh --demo   only the demo's (tools/demo.sh), a quarter of the build
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"

version="${CNI_PLUGINS_VERSION:-$(cd "$(dirname "$0")/.." && go list -m -f '{{.Version}}' github.com/containernetworking/plugins)}"
cache="${PLEXUS_CACHE:-$HOME/.cache/plexus}"
dir="$cache/cni-plugins/$version"
# The demo's conflists and NADs use these; the tests use all of them.
demo_plugins=(main/bridge main/macvlan ipam/host-local ipam/static)
plugins=("${demo_plugins[@]}" main/ptp main/host-device main/loopback main/vlan main/ipvlan
         ipam/dhcp meta/tuning meta/portmap meta/bandwidth meta/firewall)
case "${1:-}" in
  "") ;;
  --demo) plugins=("${demo_plugins[@]}") ;;
  *) echo "usage: tools/cni-plugins.sh [--demo]" >&2; exit 2 ;;
esac

missing=()
for p in "${plugins[@]}"; do
  [ -x "$dir/$(basename "$p")" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building ${#missing[@]} reference CNI plugins $version into $dir: ${missing[*]##*/}" >&2
  mkdir -p "$dir"
  # One go install for all of them: the module is resolved, downloaded and
  # its shared packages compiled once, not once per plugin.
  pkgs=()
  for p in "${missing[@]}"; do
    pkgs+=("github.com/containernetworking/plugins/plugins/$p@$version")
  done
  GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install "${pkgs[@]}" >&2
fi
echo "$dir"
