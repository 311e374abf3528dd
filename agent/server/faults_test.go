package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/agent/metrics"
	"github.com/plexus-cni/plexus/agent/server"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// failingListener fails its first n Accepts with err, then accepts.
type failingListener struct {
	net.Listener
	n     atomic.Int32
	err   error
	tries atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.tries.Add(1)
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	l, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

var ok = server.HandlerFunc(func(context.Context, *plexusv1.CNIRequest) *plexusv1.CNIResponse {
	return &plexusv1.CNIResponse{Result: []byte(`{}`)}
})

// I: running out of file descriptors makes accept back off, not stop
// serving; a listener that is gone makes Serve return at once, so that the
// agent exits instead of living on deaf.
func TestAcceptErrors(t *testing.T) {
	l, path := listen(t)
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	fl := &failingListener{Listener: l, err: emfile}
	fl.n.Store(4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&server.Server{Handler: ok, Version: "test"}).Serve(ctx, fl) }()
	if out, exit := shim(t, "ADD", fmt.Sprintf(`{"cniVersion":"1.1.0","socketPath":%q,"timeoutSeconds":10}`, path)); exit != 0 || string(out) != "{}" {
		t.Errorf("ADD after accept ran out of file descriptors: exit %d, %s", exit, out)
	}
	if tries := fl.tries.Load(); tries < 5 {
		t.Errorf("%d accept calls, want the 4 failures retried", tries)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}

	l2, _ := listen(t)
	gone := &failingListener{Listener: l2, err: &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EINVAL)}}
	gone.n.Store(1)
	go func() { done <- (&server.Server{Handler: ok, Version: "test"}).Serve(context.Background(), gone) }()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Serve on a dead listener returned %v, want the accept error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve kept going on a dead listener")
	}
}

// I: with Limit N and N+k slow requests, exactly N are served at once and
// k wait, as the in-flight and queued gauges say; then all complete.
func TestConcurrencyBound(t *testing.T) {
	const limit, extra = 3, 2
	l, path := listen(t)
	m := metrics.New()
	release := make(chan struct{})
	var running, peak atomic.Int32
	h := server.HandlerFunc(func(ctx context.Context, _ *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &plexusv1.CNIResponse{Result: []byte(`{}`)}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&server.Server{Handler: h, Version: "test", Limit: limit, Queue: m}).Serve(ctx, l) }()

	config := fmt.Sprintf(`{"cniVersion":"1.1.0","socketPath":%q,"timeoutSeconds":60}`, path)
	var wg sync.WaitGroup
	exits := make([]int, limit+extra)
	for i := range exits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, exits[i] = shim(t, "ADD", config)
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for running.Load() != limit || gauge(t, m, "plexus_cni_requests_in_flight") != limit || gauge(t, m, "plexus_cni_requests_queued") != extra {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, in flight %v, queued %v; want %d, %d and %d", running.Load(),
				gauge(t, m, "plexus_cni_requests_in_flight"), gauge(t, m, "plexus_cni_requests_queued"), limit, limit, extra)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, exit := range exits {
		if exit != 0 {
			t.Errorf("request %d exited %d", i, exit)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrency %d, want %d", p, limit)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if q, f := gauge(t, m, "plexus_cni_requests_queued"), gauge(t, m, "plexus_cni_requests_in_flight"); q != 0 || f != 0 {
		t.Errorf("after the burst: queued %v, in flight %v; want 0, 0", q, f)
	}
}

// gauge reads a gauge from the metrics registry.
func gauge(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
