// Package cnitest gives tests what real-namespace CNI tests need: root, the
// reference plugins built by tools/cni-plugins.sh, and network namespaces
// that are removed when the test ends.
package cnitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/plexus-cni/plexus"
	"github.com/plexus-cni/plexus/internal/cachedir"
)

// PluginsVersion is the reference plugins release the tests use: go.mod's.
var PluginsVersion = plexus.CNIPluginsVersion

// required reports whether missing prerequisites fail instead of skip: CI
// and the README's test command set PLEXUS_REQUIRE_ROOT_TESTS=1 so that a
// broken setup cannot pass by skipping.
func required() bool { return os.Getenv("PLEXUS_REQUIRE_ROOT_TESTS") == "1" }

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if required() {
		t.Fatalf("%s (PLEXUS_REQUIRE_ROOT_TESTS=1)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (or fails, see above) unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for network namespaces; run the README's test command as root")
	}
	// Bazel's sandbox mounts /run/netns read-only: root tests run only
	// unsandboxed, with --config=root (which sets PLEXUS_REQUIRE_ROOT_TESTS).
	if os.Getenv("TEST_SRCDIR") != "" && !required() {
		t.Skip("under Bazel, tests that need root and network namespaces run with --config=root")
	}
}

// PluginDir returns the directory holding the reference CNI plugins:
// $PLEXUS_CNI_BIN_DIR, else the tools/cni-plugins.sh cache.
func PluginDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PLEXUS_CNI_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(cachedir.Dir(), "cni-plugins", PluginsVersion)
	}
	for _, p := range []string{"bridge", "host-local", "macvlan", "static", "loopback"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			skipOrFail(t, "reference CNI plugins not found in "+dir+"; run tools/cni-plugins.sh")
		}
	}
	return dir
}

// NewNS creates a network namespace (bind-mounted under /var/run/netns)
// that is closed and unmounted when the test ends.
func NewNS(t testing.TB) ns.NetNS {
	t.Helper()
	RequireRoot(t)
	// testutils.NewNS locks the OS thread while it works.
	runtime.LockOSThread()
	n, err := testutils.NewNS()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		testutils.UnmountNS(n)
	})
	return n
}

// InNS runs ip(8) inside n and returns its output; a failure fails the test.
func InNS(t testing.TB, n ns.NetNS, args ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.Path(), "ip"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v in %s: %v\n%s", args, n.Path(), err, out)
	}
	return string(out)
}
