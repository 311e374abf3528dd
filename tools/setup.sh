#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a Debian bookworm
# machine, and builds the reference CNI plugins into the cache. Runs as root
# (through sudo when not root: tools/as-root.sh).
#
#   tools/setup.sh          everything tools/test.sh and tools/cluster need
#                           (Bazel, etcd, Kubernetes, containerd: ~12 min cold)
#   tools/setup.sh --demo   only what tools/demo.sh needs (~1-2 min cold)
#
# Idempotent: installed packages and cached builds are skipped.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."

demo=""
case "${1:-}" in
  "") ;;
  --demo) demo=1 ;;
  *) echo "usage: tools/setup.sh [--demo]" >&2; exit 2 ;;
esac

# Debian packages. The demo: ip and ping, gcc and a static libc for the C
# shim (tools/build-shim.sh), CA certificates for the Go module proxy.
demo_packages=(iproute2 iputils-ping gcc libc6-dev ca-certificates)
# The tests on top: iptables, protoc for the generated-code check, git, a
# registry for the image push test, runc for the end-to-end cluster.
# tools/setup-bazel.sh installs Bazel.
test_packages=(iptables protobuf-compiler git docker-registry runc)
packages=("${demo_packages[@]}")
[ -n "$demo" ] || packages+=("${test_packages[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "tools/setup.sh: Go 1.26 is required (expected at /usr/local/go)" >&2
    exit 1
  fi
fi
if [ -z "$demo" ]; then
  tools/setup-bazel.sh
fi
if [ -n "$demo" ]; then
  tools/cni-plugins.sh --demo >/dev/null
  exit 0
fi
tools/cni-plugins.sh >/dev/null
# etcd, the Kubernetes binaries and containerd for the Kubernetes-mode and
# end-to-end tests (cached by version; ~12 min cold on 2 cores, progress on
# stderr).
tools/cluster/build-binaries.sh all >/dev/null
