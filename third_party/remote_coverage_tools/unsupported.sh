#!/bin/sh
echo "bazel coverage is not supported by this Bazel 4 setup; use go test -cover" >&2
exit 1
