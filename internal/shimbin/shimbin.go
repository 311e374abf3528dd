// Package shimbin gives tests the plexus CNI shim binary built from
// cni/plexus/plexus.c: under Bazel the one the test's BUILD rule provides
// ($PLEXUS_SHIM_BINARY, from data = ["//cni:plexus"]); under go test one
// built by tools/build-shim.sh into the cache ($PLEXUS_CACHE or
// ~/.cache/plexus), named by a hash of its source so edits rebuild it.
package shimbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/internal/cachedir"
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
	for _, f := range []string{"cni/plexus/plexus.c", "cni/plexus/flags.bzl", "tools/build-shim.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	out := filepath.Join(cachedir.Dir(), "shim", hex.EncodeToString(h.Sum(nil))[:16], "plexus")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	cmd := exec.Command(filepath.Join(root, "tools", "build-shim.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tools/build-shim.sh (needs gcc and libc6-dev; tools/setup.sh installs them): %w\n%s", err, b)
	}
	return out, nil
}

// Result is one run of the shim.
type Result struct {
	Stdout, Stderr []byte
	// Exit is the exit status.
	Exit    int
	Elapsed time.Duration
}

// Run execs the shim as a runtime would: with exactly env (nothing
// inherited) and stdin. The error is for a shim that could not be run at
// all; a non-zero exit status is a Result. Call Path first from the test's
// own goroutine when Run is called from others: Path may Fatalf.
func Run(t testing.TB, env map[string]string, stdin []byte) (Result, error) {
	t.Helper()
	cmd := exec.Command(Path(t))
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.Bytes(), Stderr: errOut.Bytes(), Elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Exit = ee.ExitCode()
		return r, nil
	}
	return r, err
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
