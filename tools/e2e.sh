#!/usr/bin/env bash
# End-to-end tests on a real single-node cluster (internal/cluster): builds
# (or reuses from ~/.cache/plexus) the cluster binaries, the reference CNI
# plugins and the images, then runs e2e/ as root. The cluster is started
# and cleaned by the tests themselves; measurements go to
# $PLEXUS_E2E_RESULTS (default /tmp/plexus-e2e-results.txt).
#
#   sudo tools/e2e.sh [go test flags, e.g. -run TestBurstOf30]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
  echo "e2e: needs root (kubelet, containerd, network namespaces)" >&2
  exit 1
fi
tools/cluster/build-binaries.sh all >/dev/null
tools/cni-plugins.sh >/dev/null
images=$(tools/images.sh | paste -sd: -)
export PLEXUS_E2E_IMAGES="$images"
# The TEST ONLY delegate that records what it receives (the device e2e
# tests, e2e/devices_test.go, read what it recorded).
recorder_dir=$(mktemp -d)
trap 'rm -rf "$recorder_dir"' EXIT
CGO_ENABLED=0 go build -o "$recorder_dir/plexus-test-recorder" ./internal/testplugins/cmd/plexus-test-recorder
export PLEXUS_E2E_RECORDER="$recorder_dir/plexus-test-recorder"
export PLEXUS_E2E_RESULTS="${PLEXUS_E2E_RESULTS:-/tmp/plexus-e2e-results.txt}"
go test -tags e2e -count=1 -timeout 40m -v ./e2e "$@"
