package podresources_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/podresources"
	"github.com/plexus-cni/plexus/agent/podresources/podresourcestest"
)

const res = "example.com/vf"

// socketPath is short: unix socket paths are limited to 108 bytes and
// t.TempDir() paths of long test names come close.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "prs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "kubelet.sock")
}

func start(t *testing.T) (*podresourcestest.Kubelet, *podresources.Client) {
	t.Helper()
	k := podresourcestest.Start(t, socketPath(t))
	k.SetPod("ns1", "p", podresourcestest.Container("init-sidecar", map[string][]string{res: {"0000:03:02.3"}}),
		podresourcestest.Container("app", map[string][]string{res: {"0000:03:02.1", "0000:03:02.2"}, "other.com/gpu": {"gpu0"}}, "0000:03:02.2"))
	k.SetPod("ns1", "plain", podresourcestest.Container("app", nil))
	c := podresources.New(k.Socket, 2*time.Second)
	t.Cleanup(func() { c.Close() })
	return k, c
}

// check asserts the pod "ns1/p" as start sets it: containers in kubelet's
// order, every device once (the NUMA duplicate folded).
func check(t *testing.T, got []devices.Container) {
	t.Helper()
	if len(got) != 2 || got[0].Name != "init-sidecar" || got[1].Name != "app" {
		t.Fatalf("containers = %+v, want init-sidecar then app", got)
	}
	if ids := got[0].Resources[res]; !slices.Equal(ids, []string{"0000:03:02.3"}) {
		t.Errorf("init-sidecar %s = %v", res, ids)
	}
	ids := slices.Clone(got[1].Resources[res])
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"0000:03:02.1", "0000:03:02.2"}) {
		t.Errorf("app %s = %v, want each device once", res, got[1].Resources[res])
	}
	if ids := got[1].Resources["other.com/gpu"]; !slices.Equal(ids, []string{"gpu0"}) {
		t.Errorf("app gpus = %v", ids)
	}
}

func TestGet(t *testing.T) {
	k, c := start(t)
	for range 3 {
		got, err := c.PodDevices(context.Background(), "ns1", "p")
		if err != nil {
			t.Fatal(err)
		}
		check(t, got)
	}
	if k.Gets.Load() != 3 || k.Lists.Load() != 0 {
		t.Errorf("Gets %d, Lists %d; want 3 Gets, no List", k.Gets.Load(), k.Lists.Load())
	}
	got, err := c.PodDevices(context.Background(), "ns1", "plain")
	if err != nil || len(got) != 1 || len(got[0].Resources) != 0 {
		t.Errorf("pod without devices: %+v, %v", got, err)
	}
	_, err = c.PodDevices(context.Background(), "ns1", "ghost")
	if err == nil || !strings.Contains(err.Error(), "ns1/ghost") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown pod: err = %v, want one naming ns1/ghost", err)
	}
}

// Get unimplemented (kubelet < 1.27) or disabled by its feature gate
// (1.27-1.29): List, filtered by namespace and name, and no more Gets on
// that connection.
func TestListFallback(t *testing.T) {
	for _, mode := range []podresourcestest.GetMode{podresourcestest.GetUnimplemented, podresourcestest.GetGateDisabled} {
		k, c := start(t)
		k.SetGetMode(mode)
		for range 2 {
			got, err := c.PodDevices(context.Background(), "ns1", "p")
			if err != nil {
				t.Fatalf("mode %d: %v", mode, err)
			}
			check(t, got)
		}
		if k.Gets.Load() != 1 || k.Lists.Load() != 2 {
			t.Errorf("mode %d: Gets %d, Lists %d; want 1 Get, then List only", mode, k.Gets.Load(), k.Lists.Load())
		}
		if _, err := c.PodDevices(context.Background(), "ns1", "ghost"); err == nil || !strings.Contains(err.Error(), "ns1/ghost") {
			t.Errorf("mode %d: pod missing from List: err = %v", mode, err)
		}
		// A restarted kubelet may serve Get: tried again.
		k.Restart(t)
		k.SetGetMode(podresourcestest.GetServed)
		if _, err := c.PodDevices(context.Background(), "ns1", "p"); err != nil {
			t.Fatal(err)
		}
		if k.Gets.Load() != 2 {
			t.Errorf("mode %d: Get not tried again after a kubelet restart", mode)
		}
	}
}

// A kubelet restart re-creates the socket (new inode): the client notices
// and reconnects, without a failed call in between.
func TestKubeletRestart(t *testing.T) {
	k, c := start(t)
	if _, err := c.PodDevices(context.Background(), "ns1", "p"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(k.Socket)
	k.Restart(t)
	after, _ := os.Stat(k.Socket)
	if os.SameFile(before, after) {
		t.Fatal("test setup: restart kept the socket inode")
	}
	for range 2 {
		got, err := c.PodDevices(context.Background(), "ns1", "p")
		if err != nil {
			t.Fatalf("after kubelet restart: %v", err)
		}
		check(t, got)
	}
}

// Kubelet down: a clear error, bounded in time; back: the next call works.
func TestKubeletDown(t *testing.T) {
	k, c := start(t)
	if _, err := c.PodDevices(context.Background(), "ns1", "p"); err != nil {
		t.Fatal(err)
	}
	// Killed: the socket file stays, nobody listens; the call fails,
	// redials once, fails again.
	k.Crash()
	t0 := time.Now()
	_, err := c.PodDevices(context.Background(), "ns1", "p")
	if err == nil || !strings.Contains(err.Error(), k.Socket) || !strings.Contains(err.Error(), "ns1/p") {
		t.Errorf("kubelet killed: err = %v, want one naming the socket and the pod", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("failing call took %v", d)
	}
	// Stopped cleanly: no socket at all.
	k.Stop()
	os.Remove(k.Socket)
	_, err = c.PodDevices(context.Background(), "ns1", "p")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("no socket: err = %v", err)
	}
	k.Restart(t)
	got, err := c.PodDevices(context.Background(), "ns1", "p")
	if err != nil {
		t.Fatalf("kubelet back: %v", err)
	}
	check(t, got)
}

// A kubelet that accepts but never answers cannot hold the caller longer
// than the timeout.
func TestTimeout(t *testing.T) {
	dir, err := os.MkdirTemp("", "prs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "kubelet.sock")
	// A listener that never speaks HTTP/2: the gRPC handshake hangs.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := podresources.New(sock, 300*time.Millisecond)
	defer c.Close()
	t0 := time.Now()
	if _, err := c.PodDevices(context.Background(), "ns1", "p"); err == nil {
		t.Fatal("query of a silent kubelet succeeded")
	}
	// Two attempts of one call each at most.
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("silent kubelet held the call for %v", d)
	}
}

// Close ends every goroutine the client started; queries after Close fail.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	k := podresourcestest.Start(t, socketPath(t))
	k.SetPod("ns1", "p", podresourcestest.Container("app", map[string][]string{res: {"a"}}))
	c := podresources.New(k.Socket, time.Second)
	for range 5 {
		if _, err := c.PodDevices(context.Background(), "ns1", "p"); err != nil {
			t.Fatal(err)
		}
	}
	k.Restart(t)
	if _, err := c.PodDevices(context.Background(), "ns1", "p"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	k.Stop()
	if _, err := c.PodDevices(context.Background(), "ns1", "p"); !errors.Is(err, podresources.ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
