"""The plexus shim's compiler and linker flags, the one place they live.

cni/plexus/BUILD.bazel loads them; tools/build-shim.sh reads the quoted
strings of these two lines, so keep each list on one line.
"""

SHIM_COPTS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
SHIM_LINKOPTS = ["-static"]
