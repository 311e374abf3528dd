"""The shim's version header: the C side of Bazel's stamping.

go_binary stamps with x_defs; a cc_binary has no such thing, so this rule
writes a header defining PLEXUS_VERSION from STABLE_PLEXUS_VERSION
(tools/workspace-status.sh) when Bazel stamps, and "dev" otherwise, the
shim's own default (as tools/build-shim.sh without a version).
"""

def _version_header_impl(ctx):
    out = ctx.outputs.out
    if not ctx.attr.stamp:
        ctx.actions.write(out, '#define PLEXUS_VERSION "dev"\n')
        return
    ctx.actions.run_shell(
        inputs = [ctx.info_file],
        outputs = [out],
        # The characters tools/build-shim.sh allows, so the string is a
        # plain C literal.
        command = """
v=$(sed -n 's/^STABLE_PLEXUS_VERSION //p' "$1")
case "${v:-dev}" in
  *[!A-Za-z0-9._+-]*) echo "bad STABLE_PLEXUS_VERSION: $v" >&2; exit 1 ;;
esac
printf '#define PLEXUS_VERSION "%s"\\n' "${v:-dev}" > "$2"
""",
        arguments = [ctx.info_file.path, out.path],
        mnemonic = "PlexusVersionHeader",
    )

version_header = rule(
    implementation = _version_header_impl,
    attrs = {
        "out": attr.output(mandatory = True),
        "stamp": attr.bool(mandatory = True),
    },
)
