#!/usr/bin/env bash
# Regenerates the checked-in Go code of proto/ with Debian's protoc and the
# protoc-gen-go of go.mod's google.golang.org/protobuf.
#   tools/proto.sh          regenerate in place
#   tools/proto.sh --check  fail (printing the diff) if regenerating changes anything
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
command -v protoc >/dev/null || { echo "protoc missing: run tools/setup.sh" >&2; exit 1; }
cache="${PLEXUS_CACHE:-$HOME/.cache/plexus}"
gen_version=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
plugin="$cache/bin/protoc-gen-go-$gen_version"
if [ ! -x "$plugin" ]; then
  mkdir -p "$cache/bin"
  go build -o "$plugin" google.golang.org/protobuf/cmd/protoc-gen-go
fi
out=.
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
protos=$(find proto -name '*.proto' | sort)
protoc --plugin=protoc-gen-go="$plugin" --go_out="$out" --go_opt=paths=source_relative $protos
if [ "${1:-}" = "--check" ]; then
  status=0
  for p in $protos; do
    gen="${p%.proto}.pb.go"
    if ! diff -u "$gen" "$out/$gen"; then
      echo "$gen is stale: run tools/proto.sh" >&2
      status=1
    fi
  done
  exit $status
fi
