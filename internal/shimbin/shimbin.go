// Package shimbin gives tests the plexus CNI shim binary built from
// cni/plexus/plexus.c: under Bazel the one the test's BUILD rule provides
// ($PLEXUS_SHIM_BINARY, from data = ["//cni:plexus"]); under go test one
// built by tools/build-shim.sh into the cache ($PLEXUS_CACHE or
// ~/.cache/plexus), named by a hash of its source so edits rebuild it.
package shimbin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// EnvBinary names a prebuilt shim to use instead of building one.
const EnvBinary = "PLEXUS_SHIM_BINARY"

var (
	once    sync.Once
	binPath string
	binErr  error
)

// Path returns the absolute path of the shim binary; a failure to build it
// fails the test.
func Path(t testing.TB) string {
	t.Helper()
	once.Do(func() { binPath, binErr = locate() })
	if binErr != nil {
		t.Fatalf("plexus shim binary: %v", binErr)
	}
	return binPath
}

func locate() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		// Bazel's $(rootpath) is relative to the runfiles root, while a
		// go_test runs in its package's directory below it.
		if src := os.Getenv("TEST_SRCDIR"); src != "" && !filepath.IsAbs(p) {
			p = filepath.Join(src, os.Getenv("TEST_WORKSPACE"), p)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvBinary, err)
		}
		return abs, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"cni/plexus/plexus.c", "tools/build-shim.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache := os.Getenv("PLEXUS_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: %w", err)
		}
		cache = filepath.Join(home, ".cache", "plexus")
	}
	out := filepath.Join(cache, "shim", hex.EncodeToString(h.Sum(nil))[:16], "plexus")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	cmd := exec.Command(filepath.Join(root, "tools", "build-shim.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tools/build-shim.sh (needs gcc and libc6-dev; tools/setup.sh installs them): %w\n%s", err, b)
	}
	return out, nil
}

// repoRoot walks up from the working directory (go test runs in the
// package's directory) to the directory holding cni/plexus/plexus.c.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cni", "plexus", "plexus.c")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("cni/plexus/plexus.c not found above %s; set $%s", dir, EnvBinary)
		}
	}
}
