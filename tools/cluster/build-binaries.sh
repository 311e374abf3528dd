#!/usr/bin/env bash
# Builds etcd and the Kubernetes binaries from the Go module proxy into a
# versioned cache outside the clone and prints the directory. Already built
# binaries are skipped. Takes minutes when cold (kube-apiserver ~13 min on 2
# cores); progress goes to stderr.
#
#   tools/cluster/build-binaries.sh [etcd kube-apiserver kubectl kubelet ...]
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS=-mod=mod
cache="${PLEXUS_CACHE:-$HOME/.cache/plexus}"
etcd_version=v3.7.3
k8s_version=v1.37.2
dir="$cache/cluster/k8s-$k8s_version-etcd-$etcd_version"
mkdir -p "$dir"
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver)

log() { echo "build-binaries: $*" >&2; }

build_etcd() {
  local mod="$dir/src/etcd"
  mkdir -p "$mod"
  cat > "$mod/go.mod" <<MOD
module plexus.local/etcd-build

go 1.26

require (
	go.etcd.io/etcd/server/v3 $etcd_version
	go.etcd.io/etcd/etcdctl/v3 $etcd_version
)
MOD
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
  (cd "$mod" && go mod tidy >&2 && go build -trimpath -o "$dir/etcd" go.etcd.io/etcd/server/v3)
}

build_k8s() {
  local bins=("$@") mod="$dir/src/kubernetes"
  mkdir -p "$mod"
  # Every staging module must be pinned to the matching v0 release, as the
  # kubernetes go.mod does with replace directives of its own.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module plexus.local/k8s-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $k8s_version"
    echo
    sed -n '/^replace (/,/^)/p' "$gomod" | grep -o 'k8s.io/[a-z0-9-]* => ./staging' | awk '{print $1}' |
      while read -r m; do echo "replace $m => $m v0${k8s_version#v1}"; done
  } > "$mod/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for b in "${bins[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; done
    echo ")"
  } > "$mod/tools.go"
  (cd "$mod" && go mod tidy >&2)
  local ld="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
  for b in "${bins[@]}"; do
    log "building $b $k8s_version"
    (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$dir/$b" "k8s.io/kubernetes/cmd/$b")
  done
}

k8s=()
for b in "${wanted[@]}"; do
  [ -x "$dir/$b" ] && continue
  case "$b" in
    etcd) log "building etcd $etcd_version"; build_etcd ;;
    *) k8s+=("$b") ;;
  esac
done
[ ${#k8s[@]} -eq 0 ] || build_k8s "${k8s[@]}"
echo "$dir"
