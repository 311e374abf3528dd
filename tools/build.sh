#!/usr/bin/env bash
# Builds the binaries (static, stripped) into the directory given:
# plexus (the shim, C: tools/build-shim.sh), plexus-agent, plexus-deviceplugin (when present) and
# cniexec (the runtime stand-in used by the demo, tests and benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tools/build.sh OUTDIR}"
mkdir -p "$out"
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0
# The version Bazel stamps too (.bazelrc's --workspace_status_command).
version=$(tools/workspace-status.sh | sed -n 's/^STABLE_PLEXUS_VERSION //p')
# git describe's characters are all build-shim.sh allows.
tools/build-shim.sh "$out/plexus" "$version"
go build -trimpath -ldflags "-s -w -X github.com/plexus-cni/plexus/agent/app.Version=$version" -o "$out/plexus-agent" ./agent/cmd/plexus-agent
go build -trimpath -o "$out/cniexec" ./tools/cniexec
if [ -d deviceplugin/cmd/plexus-deviceplugin ]; then
  go build -trimpath -ldflags "-s -w" -o "$out/plexus-deviceplugin" ./deviceplugin/cmd/plexus-deviceplugin
fi
