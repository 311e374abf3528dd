"""Repository rules that fetch Bazel rule sets and the Go SDK as Go modules.

The only registries this project may reach are the Go module proxy, Debian and
npm.  rules_go and bazel-gazelle are Go modules, and the Go SDK is published as
the module golang.org/toolchain, so all three can come from the Go module proxy.

Rather than teaching Bazel the proxy protocol, these rules run the host's
`go mod download -json MODULE@VERSION`.  That gives us, for free:
  * the user's GOPROXY / GONOSUMDB / GOFLAGS settings (no host name is written
    in this repository),
  * verification against go.sum-style hashes through the checksum database,
    plus the `sum` pinned here,
  * the Go module cache as a persistent, machine-wide download cache.

The extracted module directory is read-only and has no executable bits (module
zips carry no file modes), so it is copied into the external repository and
then patched.
"""

# Environment variables that change what `go mod download` returns.  Listing
# them in `environ` makes Bazel refetch when they change.
_GO_ENV = [
    "GOENV",
    "GOFLAGS",
    "GOMODCACHE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOPATH",
    "GOPRIVATE",
    "GOPROXY",
    "GOSUMDB",
    "HOME",
    "PATH",
]

def _host_go(rctx):
    go = rctx.which("go")
    if go == None:
        fail("`go` was not found on PATH; the Go module proxy is reached through the host's go command")
    return go

def _download(rctx, module, version, want_sum):
    """Runs `go mod download -json` and returns the extracted directory."""
    go = _host_go(rctx)
    res = rctx.execute(
        [go, "mod", "download", "-json", "%s@%s" % (module, version)],
        # Run outside any module so that a go.mod in a parent directory of the
        # output base cannot influence the download.
        working_directory = str(rctx.path(".")),
        environment = {"GO111MODULE": "on"},
        timeout = 1200,
        quiet = True,
    )

    # `go mod download -json` prints a JSON object even on failure, with the
    # reason in "Error".
    info = json.decode(res.stdout) if res.stdout.strip() else {}
    if res.return_code or info.get("Error"):
        fail("go mod download %s@%s failed: %s %s" % (module, version, info.get("Error", ""), res.stderr))
    if want_sum and info["Sum"] != want_sum:
        fail("%s@%s: checksum mismatch: got %s, want %s" % (module, version, info["Sum"], want_sum))
    return info["Dir"]

def _copy_tree(rctx, src, exclude = []):
    """Copies the read-only module directory into the repository root.

    Files are copied, not symlinked, because patches must be applied to them
    and the shared module cache must never be modified.
    """
    cmd = ["find", src, "-mindepth", "1", "-maxdepth", "1"]
    for name in exclude:
        cmd += ["!", "-name", name]
    cmd += ["-exec", "cp", "-R", "{}", ".", ";"]
    for c in [cmd, ["chmod", "-R", "u+w", "."]]:
        res = rctx.execute(c)
        if res.return_code:
            fail("copying %s failed: %s" % (src, res.stderr))

def _apply_patches(rctx):
    for p in rctx.attr.patches:
        rctx.patch(p, strip = 1)

def _go_proxy_module_impl(rctx):
    src = _download(rctx, rctx.attr.module, rctx.attr.version, rctx.attr.sum)
    _copy_tree(rctx, src)
    _apply_patches(rctx)

go_proxy_module = repository_rule(
    implementation = _go_proxy_module_impl,
    doc = "A Bazel repository holding the files of one Go module version, with patches applied.",
    attrs = {
        "module": attr.string(mandatory = True, doc = "Go module path."),
        "version": attr.string(mandatory = True, doc = "Exact module version (a tag)."),
        "sum": attr.string(doc = "Expected h1: hash, as in go.sum; checked after download."),
        "patches": attr.label_list(doc = "Patch files applied with -p1 after extraction."),
    },
    environ = _GO_ENV,
)

def _go_proxy_sdk_impl(rctx):
    # repository_os.arch is Bazel 5.1+, so ask uname.
    machine = rctx.execute(["uname", "-m"]).stdout.strip()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine)
    if not rctx.os.name.startswith("linux") or not arch:
        fail("go_proxy_sdk supports linux/amd64 and linux/arm64 only (got %s/%s)" % (rctx.os.name, machine))
    version = "v0.0.1-go%s.linux-%s" % (rctx.attr.go_version, arch)
    src = _download(rctx, "golang.org/toolchain", version, rctx.attr.sums.get(arch, ""))

    # src/ is by far the largest part (~190 MB) and is only read, so it is
    # symlinked; everything else is copied so the binaries can be made
    # executable.
    _copy_tree(rctx, src, exclude = ["src"])
    rctx.symlink(src + "/src", "src")
    res = rctx.execute(["sh", "-c", "chmod a+x bin/* pkg/tool/*/*"])
    if res.return_code:
        fail("chmod failed: " + res.stderr)

    # rules_go's go_wrap_sdk finds GOROOT through a label of a file in it.
    rctx.file("BUILD.bazel", 'exports_files(["VERSION"])\n')

go_proxy_sdk = repository_rule(
    implementation = _go_proxy_sdk_impl,
    doc = "An unpacked Go distribution (GOROOT) taken from the golang.org/toolchain module.",
    attrs = {
        "go_version": attr.string(mandatory = True, doc = "Go release, e.g. 1.26.8."),
        "sums": attr.string_dict(doc = "Expected h1: hash of the toolchain module, by GOARCH."),
    },
    environ = _GO_ENV,
)
