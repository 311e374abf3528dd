// Package registrytest runs a real container registry on loopback for
// tests: Debian's docker-registry (CNCF distribution 2.8), with its storage
// in the test's temp dir, stopped when the test ends.
package registrytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/internal/childproc"
)

// Binary is the registry Debian's docker-registry package installs
// (tools/setup.sh installs it).
const Binary = "/usr/bin/docker-registry"

// skipOrFail skips, or fails when PLEXUS_REQUIRE_ROOT_TESTS=1: the README's
// test command sets it so that a missing prerequisite cannot pass as a skip
// (the convention of internal/cnitest).
func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("PLEXUS_REQUIRE_ROOT_TESTS") == "1" {
		t.Fatalf("%s (PLEXUS_REQUIRE_ROOT_TESTS=1)", msg)
	}
	t.Skip(msg)
}

// Start starts a registry listening on 127.0.0.1 and returns its address,
// host:port. It is ready (GET /v2/ answers 200) when Start returns, and is
// stopped, its storage removed, when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		skipOrFail(t, fmt.Sprintf("%s not found (apt-get install docker-registry, or run tools/setup.sh): %v", Binary, err))
	}
	dir := t.TempDir()
	// The free port is found by binding and releasing it, so another
	// process can take it before the registry binds: retry then.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeLoopbackAddr()
		if err != nil {
			t.Fatalf("registrytest: %v", err)
		}
		if lastErr = start(t, dir, addr, attempt); lastErr == nil {
			return addr
		}
		t.Logf("registrytest: attempt %d: %v", attempt+1, lastErr)
	}
	t.Fatalf("registrytest: could not start %s: %v", Binary, lastErr)
	return ""
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// start runs one registry process on addr and waits until it serves. On
// error the process is gone and the error says why (with its log).
func start(t testing.TB, dir, addr string, attempt int) error {
	cfgPath := filepath.Join(dir, "config-"+strconv.Itoa(attempt)+".json")
	logPath := filepath.Join(dir, "registry-"+strconv.Itoa(attempt)+".log")
	// The registry reads YAML; JSON is YAML too and is built by a marshaller
	// rather than by pasting strings.
	cfg, err := json.Marshal(map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "warn",
			"accesslog": map[string]any{"disabled": true},
		},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": filepath.Join(dir, "storage")},
		},
		"http": map[string]any{"addr": addr},
	})
	if err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("registry log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(Binary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The REGISTRY_* environment overrides the config file; keep the
	// caller's out of it.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	proc, err := childproc.Start(cmd, nil)
	if err != nil {
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	stop := func() { proc.Stop(syscall.SIGTERM, 5*time.Second) }
	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}

	if err := waitReady(addr, proc); err != nil {
		stop()
		return fmt.Errorf("%w; registry log:\n%s", err, readLog())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("registry log (%s):\n%s", addr, readLog())
		}
	})
	return nil
}

func waitReady(addr string, proc *childproc.Process) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-proc.Exited():
			return fmt.Errorf("registry exited before serving (wait: %v)", proc.Err())
		default:
		}
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("registry on %s not ready within 20s: %w", addr, lastErr)
}
