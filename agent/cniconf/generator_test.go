package cniconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

const waitTimeout = 10 * time.Second

// noPoll is a poll interval long enough that only fsnotify can have
// triggered what a test observes.
const noPoll = time.Hour

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// start runs g until the test ends and checks that Run then returns nil
// promptly.
func start(t *testing.T, g *Generator) {
	t.Helper()
	if g.Log == nil {
		g.Log = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after cancel")
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPasses waits until Run has completed n reconcile passes: what a pass
// would have written is on disk (or not) once it has returned.
func waitPasses(t *testing.T, g *Generator, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d reconcile passes", n), func() bool { return g.passes.Load() >= n })
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readOut returns our file decoded, or ok=false while it does not exist.
func readOut(t *testing.T, path string) (plexusOut, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return plexusOut{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return parseOut(t, data), true
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestRunPrimaryAppearsLater(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		noWatch bool
		poll    time.Duration
		// passes that must find no primary: with fsnotify and no events
		// only the first pass runs; polling gets a few.
		passes uint64
	}{
		{name: "fsnotify", poll: noPoll, passes: 1},
		{name: "poll fallback", noWatch: true, poll: 50 * time.Millisecond, passes: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			own := filepath.Join(dir, DefaultFileName)
			g := &Generator{ConfDir: dir, SocketPath: "/run/plexus/test.sock", PollInterval: tc.poll, noWatch: tc.noWatch}
			start(t, g)

			waitPasses(t, g, tc.passes)
			if exists(own) || g.Ready() {
				t.Fatalf("wrote %s (ready=%v) without a primary", own, g.Ready())
			}
			if s := g.Status(); s.Reason == "" {
				t.Errorf("not ready without a reason: %+v", s)
			}

			writeFile(t, filepath.Join(dir, "10-flannel.conflist"), conflist("cbr0", "1.0.0", map[string]bool{"portMappings": true}))
			waitFor(t, "our configuration", func() bool { return exists(own) })
			out, _ := readOut(t, own)
			if p := out.Plugins[0]; p.Primary != "10-flannel.conflist" || p.SocketPath != "/run/plexus/test.sock" || !p.Capabilities["portMappings"] {
				t.Errorf("generated %+v", out)
			}
			waitFor(t, "ready", g.Ready)
			if path, ok := g.Primary(); !ok || path != filepath.Join(dir, "10-flannel.conflist") {
				t.Errorf("Primary() = %q, %v", path, ok)
			}
			if s := g.Status(); s.PrimaryNetwork != "cbr0" {
				t.Errorf("status %+v", s)
			}
			st, err := os.Stat(own)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", st.Mode().Perm())
			}
		})
	}
}

func TestRunFollowsPrimary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := filepath.Join(dir, DefaultFileName)
	primary := filepath.Join(dir, "10-calico.conflist")
	writeFile(t, primary, conflist("k8s-pod-network", "0.3.1", map[string]bool{"portMappings": true}))
	g := &Generator{ConfDir: dir, PollInterval: noPoll}
	start(t, g)
	waitFor(t, "first configuration", func() bool {
		out, ok := readOut(t, own)
		return ok && out.Plugins[0].Capabilities["portMappings"]
	})

	writeFile(t, primary, conflist("k8s-pod-network", "1.0.0", map[string]bool{"bandwidth": true}, map[string]bool{"portMappings": false}))
	waitFor(t, "configuration following the primary", func() bool {
		out, _ := readOut(t, own)
		return out.CNIVersion == "1.0.0" && out.Plugins[0].Capabilities["bandwidth"] && !out.Plugins[0].Capabilities["portMappings"]
	})

	// A file sorting before the primary takes over.
	writeFile(t, filepath.Join(dir, "05-cilium.conf"), []byte(`{"cniVersion":"0.4.0","name":"cilium","type":"cilium-cni"}`))
	waitFor(t, "switch to the new first file", func() bool {
		out, _ := readOut(t, own)
		return out.Plugins[0].Primary == "05-cilium.conf" && out.CNIVersion == "0.4.0"
	})
	waitFor(t, "status following", func() bool { return g.Status().PrimaryNetwork == "cilium" })
}

func TestRunPrimaryDisappears(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		others      map[string][]byte
		wantPrimary string // after the removal; empty: ours removed
	}{
		{name: "only primary"},
		{
			name:   "only invalid and plexus files left",
			others: map[string][]byte{"20-broken.conflist": []byte("{"), "30-p.conf": []byte(`{"cniVersion":"1.0.0","name":"p","type":"plexus"}`)},
		},
		{
			name:        "next valid file takes over",
			others:      map[string][]byte{"20-next.conflist": conflist("next", "1.0.0", nil)},
			wantPrimary: "20-next.conflist",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			own := filepath.Join(dir, DefaultFileName)
			primary := filepath.Join(dir, "10-primary.conflist")
			writeFile(t, primary, conflist("primary", "1.0.0", nil))
			for name, data := range tt.others {
				writeFile(t, filepath.Join(dir, name), data)
			}
			g := &Generator{ConfDir: dir, PollInterval: noPoll}
			start(t, g)
			waitFor(t, "first configuration", func() bool {
				out, ok := readOut(t, own)
				return ok && out.Plugins[0].Primary == "10-primary.conflist"
			})

			if err := os.Remove(primary); err != nil {
				t.Fatal(err)
			}
			if tt.wantPrimary == "" {
				waitFor(t, "our configuration removed", func() bool { return !exists(own) })
				waitFor(t, "not ready", func() bool { return !g.Ready() })
				if _, ok := g.Primary(); ok {
					t.Errorf("still reports a primary")
				}
				return
			}
			waitFor(t, "switch to "+tt.wantPrimary, func() bool {
				out, ok := readOut(t, own)
				return ok && out.Plugins[0].Primary == tt.wantPrimary
			})
		})
	}
}

// TestRunNeverWritesInvalid reads our file in a tight loop while the
// primary is rewritten (in place, like cp does), replaced and removed: every
// version observed must be a complete, valid configuration.
func TestRunNeverWritesInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := filepath.Join(dir, DefaultFileName)
	primary := filepath.Join(dir, "10-primary.conflist")
	writeFile(t, primary, conflist("primary", "1.0.0", nil))
	g := &Generator{ConfDir: dir, PollInterval: 20 * time.Millisecond}
	start(t, g)
	waitFor(t, "first configuration", func() bool { return exists(own) })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var observed, versions int
	var bad []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last []byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(own)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			observed++
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			if !bytes.Equal(data, last) {
				versions++
				last = data
			}
			if len(data) == 0 {
				bad = append(bad, "empty file")
				continue
			}
			if out, err := decodeOut(data); err != nil {
				bad = append(bad, err.Error()+": "+string(data))
			} else if out.Plugins[0].Primary == "" {
				bad = append(bad, "no primary recorded: "+string(data))
			}
		}
	}()

	// Each change is waited for in our file before the next, so every
	// kind of rewrite is followed (not coalesced away) while the reader
	// races the generator's writes.
	followed := func(what, version, capability string) {
		t.Helper()
		waitFor(t, what, func() bool {
			out, ok := readOut(t, own)
			return ok && out.CNIVersion == version && (capability == "" || out.Plugins[0].Capabilities[capability])
		})
	}
	caps := []string{"portMappings", "bandwidth", "ips", "mac"}
	for i := range 40 {
		c := caps[i%len(caps)]
		switch i % 4 {
		case 0, 1: // in place, truncating first
			writeFile(t, primary, conflist("primary", "1.0.0", map[string]bool{c: true}))
			followed("in-place rewrite with "+c, "1.0.0", c)
		case 2: // atomically
			tmp := primary + ".tmp"
			writeFile(t, tmp, conflist("primary", "0.4.0", map[string]bool{c: true}))
			if err := os.Rename(tmp, primary); err != nil {
				t.Fatal(err)
			}
			followed("atomic replacement with "+c, "0.4.0", c)
		case 3: // gone for a moment
			if err := os.Remove(primary); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "our configuration removed with the primary", func() bool { return !exists(own) })
			writeFile(t, primary, conflist("primary", "1.1.0", nil))
			followed("the primary back", "1.1.0", "")
		}
	}
	final := conflist("primary", "1.0.0", map[string]bool{"final": true})
	writeFile(t, primary, final)
	waitFor(t, "final configuration", func() bool {
		out, ok := readOut(t, own)
		return ok && out.Plugins[0].Capabilities["final"]
	})
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("observed %d bad versions of our file, first: %s", len(bad), bad[0])
	}
	if observed == 0 || versions < 3 {
		t.Fatalf("observed our file %d times in %d versions; the test did not exercise rewrites", observed, versions)
	}
	t.Logf("observed our file %d times, %d distinct versions", observed, versions)
}

func TestRunReadinessIndicator(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runDir := filepath.Join(t.TempDir(), "run", "ovn")
	indicator := filepath.Join(runDir, "ready")
	own := filepath.Join(dir, DefaultFileName)
	writeFile(t, filepath.Join(dir, "10-ovn.conflist"), conflist("ovn", "1.0.0", nil))
	// A stale file of ours from a previous run must go while not ready.
	writeFile(t, own, []byte(`{"cniVersion":"1.0.0","name":"plexus","plugins":[{"type":"plexus"}]}`))
	// Polling picks up the indicator's directory, created after Run starts.
	g := &Generator{ConfDir: dir, ReadinessIndicatorFile: indicator, PollInterval: 100 * time.Millisecond}
	start(t, g)

	waitFor(t, "stale configuration removed", func() bool { return !exists(own) })
	// Two more polls without the indicator, each of which would have
	// written our configuration.
	waitPasses(t, g, g.passes.Load()+2)
	if exists(own) || g.Ready() {
		t.Fatalf("wrote our configuration before the readiness indicator exists")
	}

	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, indicator, nil)
	waitFor(t, "our configuration", func() bool { return exists(own) })
	waitFor(t, "ready", g.Ready)

	if err := os.Remove(indicator); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "our configuration removed with the indicator", func() bool { return !exists(own) })
	if g.Ready() {
		t.Errorf("ready without the readiness indicator")
	}
}

func TestUninstall(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := filepath.Join(dir, "05-custom.conflist")
	primary := filepath.Join(dir, "10-primary.conflist")
	primaryData := conflist("primary", "1.0.0", map[string]bool{"portMappings": true})
	writeFile(t, primary, primaryData)
	g := &Generator{ConfDir: dir, FileName: "05-custom.conflist", PollInterval: noPoll, Log: testLogger(t)}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	waitFor(t, "ready", g.Ready)
	if !exists(own) {
		t.Fatalf("%s not written", own)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !exists(own) {
		t.Fatalf("Run removed our configuration on exit; only Uninstall may")
	}

	for i := range 2 { // idempotent
		if err := g.Uninstall(); err != nil {
			t.Fatalf("Uninstall #%d: %v", i+1, err)
		}
	}
	if exists(own) {
		t.Errorf("%s still exists", own)
	}
	if g.Ready() {
		t.Errorf("ready after Uninstall")
	}
	got, err := os.ReadFile(primary)
	if err != nil || !bytes.Equal(got, primaryData) {
		t.Errorf("primary changed by Uninstall: %q, %v", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %v (%v), want only the primary", entries, err)
	}
}

func TestRunConfDirCreatedLater(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "net.d")
	g := &Generator{ConfDir: dir, PollInterval: 50 * time.Millisecond}
	start(t, g)
	// Run has looked at the missing directory before it appears.
	waitPasses(t, g, 1)
	if s := g.Status(); s.Ready || s.Reason == "" {
		t.Fatalf("status without a configuration directory: %+v", s)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "10-a.conflist"), conflist("a", "1.0.0", nil))
	waitFor(t, "our configuration", func() bool { return exists(filepath.Join(dir, DefaultFileName)) })
}

func TestWaitReady(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := &Generator{ConfDir: dir, PollInterval: noPoll}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady before Run: %v, want deadline exceeded", err)
	}

	start(t, g)
	// Run has found no primary: WaitReady blocks until its own deadline
	// (its error, not nil, says it did not return early).
	waitPasses(t, g, 1)
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if err := g.WaitReady(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady without a primary: %v, want deadline exceeded", err)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		waited <- g.WaitReady(ctx)
	}()
	writeFile(t, filepath.Join(dir, "10-a.conflist"), conflist("a", "1.0.0", nil))
	if err := <-waited; err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if !g.Ready() {
		t.Errorf("WaitReady returned while not ready")
	}
}

// TestReconcile drives single reconcile passes, where timing cannot hide a
// rewrite or a wrong switch.
func TestReconcile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := filepath.Join(dir, DefaultFileName)
	first := filepath.Join(dir, "10-first.conflist")
	writeFile(t, first, conflist("first", "1.0.0", nil))
	writeFile(t, filepath.Join(dir, "20-second.conflist"), conflist("second", "1.0.0", nil))
	g := &Generator{ConfDir: dir, Log: testLogger(t)}

	reconcile := func() {
		t.Helper()
		if err := g.reconcile(); err != nil {
			t.Fatal(err)
		}
	}
	inode := func() uint64 {
		t.Helper()
		st, err := os.Stat(own)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	primaryOf := func() string {
		t.Helper()
		out, ok := readOut(t, own)
		if !ok {
			t.Fatalf("%s missing", own)
		}
		return out.Plugins[0].Primary
	}

	reconcile()
	ino := inode()
	reconcile()
	if inode() != ino {
		t.Errorf("unchanged configuration was rewritten")
	}

	// Someone edits our file: it is restored.
	writeFile(t, own, []byte("{}"))
	reconcile()
	if primaryOf() != "10-first.conflist" {
		t.Fatalf("edited file not restored")
	}

	// The primary mid-rewrite does not parse: keep it rather than switch.
	writeFile(t, first, []byte(`{"cniVersion":"1.0.0","na`))
	reconcile()
	if got := primaryOf(); got != "10-first.conflist" || !g.Ready() {
		t.Errorf("switched to %s (ready %v) while the primary was being rewritten", got, g.Ready())
	}
	// Gone for good: the next one takes over.
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if got := primaryOf(); got != "20-second.conflist" {
		t.Errorf("primary %s after removal, want 20-second.conflist", got)
	}
}

// TestRunStopsGoroutines checks that nothing Run started outlives it. Not
// parallel: it counts goroutines.
func TestRunStopsGoroutines(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "10-a.conflist"), conflist("a", "1.0.0", nil))
	before := runtime.NumGoroutine()

	g := &Generator{ConfDir: dir, ReadinessIndicatorFile: filepath.Join(t.TempDir(), "ready"), PollInterval: 10 * time.Millisecond, Log: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	// Polls (which re-add watches) have run, so every goroutine Run
	// starts is up.
	waitPasses(t, g, 3)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within a second of cancel")
	}
	waitFor(t, "goroutines to stop", func() bool { return runtime.NumGoroutine() <= before })
}

func TestRunRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for _, g := range []*Generator{
		{},
		{ConfDir: t.TempDir(), FileName: "../escape.conflist"},
		{ConfDir: t.TempDir(), FileName: "plexus.yaml"},
	} {
		if err := g.Run(context.Background()); err == nil {
			t.Errorf("Run(%+v) accepted bad settings", g)
		}
	}
}
