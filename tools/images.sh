#!/usr/bin/env bash
# Builds the container images with Bazel and prints the absolute paths of
# their docker-archive tarballs on stdout, one per line, in this order:
#   agent (localhost/plexus-agent:dev)
#   deviceplugin (localhost/plexus-deviceplugin:dev)
#   pause (localhost/pause:dev)
#   webhook (localhost/plexus-webhook:dev)
# Stable interface: the e2e harness runs it and `ctr -n k8s.io images import`s
# each path. Bazel's own output goes to stderr. See docs/images.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bazel="$root/tools/bazel.sh"
images=(agent deviceplugin pause webhook)

targets=()
for i in "${images[@]}"; do targets+=("//images:$i"); done
"$bazel" build "${targets[@]}" >&2

# bazel-bin of the same options as the build above (an absolute path in the
# output base, unlike the bazel-bin symlink in the clone).
bin="$("$bazel" info bazel-bin)"
for i in "${images[@]}"; do
	tar="$bin/images/$i.tar"
	if [ ! -f "$tar" ]; then
		echo "tools/images.sh: $tar missing after the build" >&2
		exit 1
	fi
	echo "$tar"
done
