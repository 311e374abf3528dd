#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a Debian bookworm
# machine (run as root), and builds the reference CNI plugins into the cache.
# Idempotent: installed packages and cached builds are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "tools/setup.sh: run as root (it installs packages and the tests need network namespaces)" >&2
    exit 1
  fi
}
need_root

# Debian packages: network tooling for the demo and the tests, gcc and a
# static libc for the C shim (cni/plexus), protoc for the generated-code
# check, a registry for the image push test, runc for the end-to-end cluster. tools/setup-bazel.sh installs Bazel.
packages=(iproute2 iptables iputils-ping gcc libc6-dev protobuf-compiler ca-certificates git docker-registry runc)
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
tools/setup-bazel.sh
tools/cni-plugins.sh >/dev/null
# etcd, the Kubernetes binaries and containerd for the Kubernetes-mode and
# end-to-end tests (cached by version; ~12 min cold on 2 cores, progress on
# stderr).
tools/cluster/build-binaries.sh all >/dev/null
