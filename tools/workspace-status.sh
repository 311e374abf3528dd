#!/usr/bin/env bash
# The version string of Plexus builds, one source for both builds:
# Bazel runs this as --workspace_status_command (.bazelrc) and stamps
# STABLE_PLEXUS_VERSION into the binaries (x_defs, agent/cmd/plexus-agent);
# tools/build.sh reads the same line.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "STABLE_PLEXUS_VERSION $(git describe --always --dirty 2>/dev/null || echo dev)"
