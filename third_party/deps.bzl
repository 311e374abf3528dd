"""Declares the rule sets and the Go SDK this workspace builds with.

rules_go, gazelle and the Go SDK are fetched through the Go module proxy (see
go_proxy.bzl).  bazel-skylib and rules_java come from Debian's bazel-skylib
and bazel-rules-java packages (installed by tools/setup-bazel.sh); rules_cc
and remote_coverage_tools are small stand-ins kept in third_party/.
@platforms is built into Debian's Bazel 4.2.3.
"""

load("@bazel_tools//tools/build_defs/repo:utils.bzl", "maybe")
load("//third_party:go_proxy.bzl", "go_proxy_module", "go_proxy_sdk")

GO_VERSION = "1.26.8"

def plexus_bazel_repositories():
    """Repositories needed before rules_go and gazelle can be loaded."""

    # Debian's bazel-skylib 1.0.3 has every file rules_go 0.39 and gazelle 0.30
    # load from it.
    maybe(
        native.local_repository,
        name = "bazel_skylib",
        path = "/usr/share/bazel/tools/skylib",
    )

    # Bazel 4's toolchain resolution parses @bazel_tools//tools/jdk:all (a
    # registered toolchain), which needs @rules_java, and @bazel_tools' C++
    # support loads @rules_cc.  Bazel's built-in defaults download both.
    # Debian's bazel-rules-java works with Bazel 4.2.3; Debian's rules_cc is
    # too new for it, so a small forwarding stand-in is kept in third_party.
    maybe(
        native.local_repository,
        name = "rules_java",
        path = "/usr/share/bazel/rules/java",
    )
    maybe(
        native.local_repository,
        name = "rules_cc",
        path = "third_party/rules_cc",
    )

    # Implicit dependency of every test rule; Bazel's default downloads it.
    maybe(
        native.local_repository,
        name = "remote_coverage_tools",
        path = "third_party/remote_coverage_tools",
    )

    # rules_go 0.39.1: builds the standard library itself and links with
    # importcfg files (needed since Go 1.20 dropped the precompiled
    # GOROOT/pkg); its Starlark runs on Bazel 4.2.3 with small patches.
    # See README.md for the version choice and the patches.
    go_proxy_module(
        name = "io_bazel_rules_go",
        module = "github.com/bazelbuild/rules_go",
        version = "v0.39.1",
        sum = "h1:wkJLUDx59dntWMghuL8++GteoU1To6sRoKJXuyFtmf8=",
        patches = [
            "//third_party:rules_go-bazel4.patch",
            "//third_party:rules_go-go126.patch",
        ],
    )

    # gazelle 0.30.0 is the release made for rules_go 0.39.
    go_proxy_module(
        name = "bazel_gazelle",
        module = "github.com/bazelbuild/bazel-gazelle",
        version = "v0.30.0",
        sum = "h1:q9XLWQSCA5NZPJ98WFqicHkq6fxrDPnfvMO1XycQBMg=",
        patches = [
            "//third_party:gazelle-bazel4.patch",
            "//third_party:gazelle-module-mode-tools.patch",
            "//third_party:gazelle-newer-go.patch",
        ],
    )

    # The Go distribution itself, from the golang.org/toolchain module.
    go_proxy_sdk(
        name = "go_sdk_dist",
        go_version = GO_VERSION,
        sums = {
            "amd64": "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM=",
            "arm64": "h1:sYL/O6MqS68ML0kjsQ36WoYIpJqkw60TxizWUYUKQMc=",
        },
    )
