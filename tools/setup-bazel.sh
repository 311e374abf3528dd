#!/usr/bin/env bash
# Installs what tools/bazel.sh needs, from Debian.  Idempotent.
#   bazel-bootstrap    Bazel 4.2.3 (/usr/bin/bazel) and its JDK dependency
#   bazel-skylib       @bazel_skylib (used by rules_go and gazelle)
#   bazel-rules-java   @rules_java (Bazel 4 parses its JDK toolchains)
# rules_go, gazelle and the Go SDK come through the Go module proxy
# (third_party/go_proxy.bzl), so Go itself must be on PATH as well.
set -euo pipefail

pkgs=(bazel-bootstrap bazel-skylib bazel-rules-java)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
bazel --version >/dev/null
