#!/usr/bin/env bash
# Builds the binaries (static, stripped) into the directory given:
# plexus (the shim, C: tools/build-shim.sh), plexus-agent, plexus-webhook, plexus-deviceplugin (when present) and
# cniexec (the runtime stand-in used by the demo, tests and benchmarks).
#
#   tools/build.sh OUTDIR              all of them
#   tools/build.sh OUTDIR NAME...      only those (the demo skips plexus-deviceplugin)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tools/build.sh OUTDIR [plexus|plexus-agent|plexus-webhook|cniexec|plexus-deviceplugin]...}"
shift
names=("$@")
if [ ${#names[@]} = 0 ]; then
  names=(plexus plexus-agent plexus-webhook cniexec)
  if [ -d deviceplugin/cmd/plexus-deviceplugin ]; then
    names+=(plexus-deviceplugin)
  fi
fi
mkdir -p "$out"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0
# The version Bazel stamps too (.bazelrc's --workspace_status_command).
version=$(tools/workspace-status.sh | sed -n 's/^STABLE_PLEXUS_VERSION //p')
for name in "${names[@]}"; do
  case "$name" in
    # git describe's characters are all build-shim.sh allows.
    plexus) tools/build-shim.sh "$out/plexus" "$version" ;;
    plexus-agent) go build -trimpath -ldflags "-s -w -X github.com/plexus-cni/plexus/agent/app.Version=$version" -o "$out/plexus-agent" ./agent/cmd/plexus-agent ;;
    plexus-webhook) go build -trimpath -ldflags "-s -w -X github.com/plexus-cni/plexus/agent/admission.Version=$version" -o "$out/plexus-webhook" ./agent/cmd/plexus-webhook ;;
    cniexec) go build -trimpath -o "$out/cniexec" ./tools/cniexec ;;
    plexus-deviceplugin) go build -trimpath -ldflags "-s -w" -o "$out/plexus-deviceplugin" ./deviceplugin/cmd/plexus-deviceplugin ;;
    *) echo "tools/build.sh: unknown binary $name" >&2; exit 2 ;;
  esac
done
