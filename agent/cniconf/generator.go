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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// DefaultPollInterval is how often Run rescans without an event: fsnotify
// misses changes on some mounts (NFS, some overlay and hostPath setups) and
// cannot watch a directory that does not exist yet.
const DefaultPollInterval = 3 * time.Second

// settleDelay lets a burst of events (an installer writing a file in
// several steps) end before the directory is read.
const settleDelay = 100 * time.Millisecond

// Status is the Generator's current state.
type Status struct {
	// Ready is true while our configuration is written and matches the
	// primary.
	Ready bool
	// Reason says why not Ready.
	Reason string
	// Primary is the path of the primary configuration file, empty when
	// there is none.
	Primary string
	// PrimaryNetwork is the primary's network name.
	PrimaryNetwork string
}

// Generator keeps FileName in ConfDir in step with the primary
// configuration. Set the exported fields, then call Run once; the other
// methods are safe to call concurrently with it.
type Generator struct {
	// ConfDir is the CNI configuration directory (/etc/cni/net.d).
	ConfDir string
	// FileName is our configuration's name; empty means DefaultFileName.
	FileName string
	// SocketPath is the agent's socket, written into the configuration
	// for the shim; empty leaves the shim's default.
	SocketPath string
	// ConnectTimeoutSeconds and TimeoutSeconds are written for the shim
	// when non-zero.
	ConnectTimeoutSeconds float64
	TimeoutSeconds        float64
	// ReadinessIndicatorFile, when set, must exist before our
	// configuration is written; while it is missing ours is removed.
	// Networks such as OVN-Kubernetes create one when they are up.
	ReadinessIndicatorFile string
	// Validate, when set, must accept a file before it becomes the
	// primary (path is the file's, data its bytes as read once).
	Validate func(path string, data []byte) error
	// PollInterval overrides DefaultPollInterval.
	PollInterval time.Duration
	// Log receives state changes and errors; nil discards them.
	Log *slog.Logger

	// noWatch disables fsnotify, so tests can prove polling alone works.
	noWatch bool
	// passes counts the reconcile passes Run has completed: a test that
	// must show nothing was written waits for a pass that would have.
	passes atomic.Uint64

	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed and replaced on every status change
	lastErr string        // last error logged by sync, to log each once
	// good is the last primary read and validated, kept while the
	// directory offers none (invalid, missing, mid-write): pods keep
	// getting it rather than an empty or half-read configuration.
	good     Primary
	stale    string // why good is in use although the directory offers no primary
	rejected atomic.Uint64
}

// Primary is a primary configuration as the Generator read and validated
// it.
type Primary struct {
	// Path is the file's path.
	Path string
	// Network is its network name.
	Network string
	// Data is its content, read once: the bytes that were validated.
	Data []byte
}

// Run watches the directory and rewrites our configuration until ctx is
// done. It returns nil when ctx is cancelled; it does not remove the
// configuration (a restarting agent must not send pods around plexus), use
// Uninstall for that.
func (g *Generator) Run(ctx context.Context) error {
	if g.ConfDir == "" {
		return errors.New("cniconf: no CNI configuration directory set")
	}
	if fn := g.fileName(); fn != filepath.Base(fn) || !isConfName(fn) {
		return fmt.Errorf("cniconf: file name %q must be a plain .conflist, .conf or .json name", fn)
	}
	dirs := []string{filepath.Clean(g.ConfDir)}
	if g.ReadinessIndicatorFile != "" {
		if d := filepath.Dir(filepath.Clean(g.ReadinessIndicatorFile)); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	var w *fsnotify.Watcher
	if !g.noWatch {
		var err error
		w, err = fsnotify.NewWatcher()
		if err != nil {
			g.logger().Warn("cannot watch the CNI configuration directory, polling only", "dir", g.ConfDir, "err", err)
		} else {
			defer w.Close()
			events, watchErrs = w.Events, w.Errors
			g.ensureWatches(w, dirs)
		}
	}

	interval := g.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	poll := time.NewTicker(interval)
	defer poll.Stop()
	settle := time.NewTimer(0) // the first sync runs at once
	defer settle.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if g.relevant(ev, dirs) {
				settle.Reset(settleDelay)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			// Usually an event queue overflow: events were lost, rescan.
			g.logger().Warn("CNI configuration directory watch error", "dir", g.ConfDir, "err", err)
			settle.Reset(settleDelay)
		case <-poll.C:
			if w != nil {
				g.ensureWatches(w, dirs)
			}
			g.sync()
		case <-settle.C:
			g.sync()
		}
	}
}

// ensureWatches (re-)adds watches on dirs: a directory created after Run
// started, or removed and re-created (which drops the inotify watch), is
// picked up at the next poll.
func (g *Generator) ensureWatches(w *fsnotify.Watcher, dirs []string) {
	have := w.WatchList()
	for _, d := range dirs {
		if slices.Contains(have, d) {
			continue
		}
		if err := w.Add(d); err != nil {
			g.logger().Debug("cannot watch directory yet, polling", "dir", d, "err", err)
		}
	}
}

// relevant filters out events that cannot change the outcome, such as the
// temp files of our own atomic writes.
func (g *Generator) relevant(ev fsnotify.Event, dirs []string) bool {
	name := filepath.Clean(ev.Name)
	if isConfName(name) || slices.Contains(dirs, name) {
		return true
	}
	return g.ReadinessIndicatorFile != "" && name == filepath.Clean(g.ReadinessIndicatorFile)
}

// sync reconciles once and logs a failure when it differs from the last one,
// so a persistent problem is not logged at every poll.
func (g *Generator) sync() {
	err := g.reconcile()
	g.mu.Lock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	report := msg != g.lastErr
	g.lastErr = msg
	g.mu.Unlock()
	if report && err != nil {
		g.logger().Error("update plexus CNI configuration", "err", err)
	}
	g.passes.Add(1)
}

func (g *Generator) reconcile() error {
	own := filepath.Join(g.ConfDir, g.fileName())
	if g.ReadinessIndicatorFile != "" {
		if _, err := os.Stat(g.ReadinessIndicatorFile); err != nil {
			reason := fmt.Sprintf("waiting for readiness indicator file %s", g.ReadinessIndicatorFile)
			g.setStatus(Status{Reason: reason})
			g.setStale(reason)
			return removeIfExists(own)
		}
	}
	files, err := ReadDir(g.ConfDir)
	if err != nil {
		g.setStatus(Status{Reason: err.Error()})
		g.setStale(err.Error())
		return errors.Join(err, removeIfExists(own))
	}
	var validate func(string, []byte) error
	if g.Validate != nil {
		validate = func(name string, data []byte) error { return g.Validate(filepath.Join(g.ConfDir, name), data) }
	}
	res := Generate(files, Params{
		FileName:              g.fileName(),
		SocketPath:            g.SocketPath,
		ConnectTimeoutSeconds: g.ConnectTimeoutSeconds,
		TimeoutSeconds:        g.TimeoutSeconds,
		Validate:              validate,
	})
	if reason, ok := g.currentPrimaryUnreadable(res); ok {
		g.setStale(reason)
		return nil
	}
	if res.Conflist == nil {
		g.setStatus(Status{Reason: res.NotReady})
		g.setStale(res.NotReady)
		return removeIfExists(own)
	}
	// Before ours is written: once the runtime can see it, ADDs get this
	// primary.
	g.setGood(Primary{Path: filepath.Join(g.ConfDir, res.Primary), Network: res.PrimaryNetwork, Data: res.PrimaryData})
	cur, err := os.ReadFile(own)
	if err != nil || !bytes.Equal(cur, res.Conflist) {
		if err := atomicfile.Write(own, res.Conflist, 0o644); err != nil {
			g.setStatus(Status{Reason: fmt.Sprintf("cannot write %s", own)})
			return fmt.Errorf("write plexus CNI configuration: %w", err)
		}
		g.logger().Info("wrote plexus CNI configuration", "file", own, "primary", res.Primary)
	}
	changed := g.setStatus(Status{Ready: true, Primary: filepath.Join(g.ConfDir, res.Primary), PrimaryNetwork: res.PrimaryNetwork})
	if changed && res.Primary < g.fileName() {
		// Runtimes load the first file by name: that one, not ours.
		g.logger().Warn("the primary CNI configuration sorts before plexus's, so the runtime bypasses plexus; rename one of them", "primary", res.Primary, "file", own)
	}
	return nil
}

// currentPrimaryUnreadable reports whether the current primary still exists
// but no longer parses. Installers often write their configuration in place
// (cp, shell redirection); mid-write the file is truncated JSON, and
// switching to another primary or removing ours for that moment would send
// pods around plexus. The state is kept until the file parses again or is
// removed.
func (g *Generator) currentPrimaryUnreadable(res Result) (reason string, ok bool) {
	g.mu.Lock()
	cur := g.status
	g.mu.Unlock()
	if !cur.Ready {
		return "", false
	}
	name := filepath.Base(cur.Primary)
	if res.Primary == name {
		return "", false
	}
	for _, s := range res.Skipped {
		if s.Name == name && !s.Ours {
			return fmt.Sprintf("primary %s is not usable: %s", cur.Primary, s.Reason), true
		}
	}
	return "", false
}

// setGood records p as the primary pods get, the directory offering it.
func (g *Generator) setGood(p Primary) {
	g.mu.Lock()
	changed := g.good.Path != p.Path || !bytes.Equal(g.good.Data, p.Data)
	g.good = p
	g.mu.Unlock()
	if changed {
		g.logger().Info("primary CNI configuration for new pods", "primary", p.Path, "network", p.Network)
	}
	g.setStale("")
}

// setStale records why the directory offers no usable primary (empty: it
// does). With a last good primary that is kept, logged once per episode and
// counted; without one there is nothing to keep (Ready is false).
func (g *Generator) setStale(reason string) {
	g.mu.Lock()
	if g.good.Data == nil || reason == g.stale {
		g.mu.Unlock()
		return
	}
	prev, good := g.stale, g.good.Path
	g.stale = reason
	g.mu.Unlock()
	switch {
	case reason == "":
		g.logger().Info("primary CNI configuration usable again", "primary", good)
	case prev == "":
		g.rejected.Add(1)
		g.logger().Warn("primary CNI configuration unusable, new pods keep getting the last good one", "lastGood", good, "reason", reason)
	default:
		g.logger().Debug("primary CNI configuration still unusable", "lastGood", good, "reason", reason)
	}
}

// PrimaryConf returns the primary configuration pods get: the last one
// read and validated, kept while the directory's is invalid or missing;
// ok is false until there has been one.
func (g *Generator) PrimaryConf() (path string, data []byte, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.good.Path, g.good.Data, g.good.Data != nil
}

// Stale says why PrimaryConf's configuration is the last good one rather
// than what the directory holds; empty when it is current (or there is
// none).
func (g *Generator) Stale() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stale
}

// Rejections counts the times the directory's primary became unusable
// while a good one was in use (each episode once).
func (g *Generator) Rejections() uint64 { return g.rejected.Load() }

// setStatus records s and reports whether it differs from the previous one.
func (g *Generator) setStatus(s Status) bool {
	g.mu.Lock()
	if g.status == s {
		g.mu.Unlock()
		return false
	}
	g.status = s
	if g.changed != nil {
		close(g.changed)
	}
	g.changed = make(chan struct{})
	g.mu.Unlock()
	if s.Ready {
		g.logger().Info("plexus CNI configuration ready", "primary", s.Primary, "network", s.PrimaryNetwork)
	} else {
		g.logger().Info("plexus CNI configuration not ready", "reason", s.Reason)
	}
	return true
}

// Status returns the current state.
func (g *Generator) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.status
}

// Ready reports whether our configuration is written for a primary.
func (g *Generator) Ready() bool { return g.Status().Ready }

// Primary returns the path of the primary configuration file and whether
// there is one (only while Ready).
func (g *Generator) Primary() (string, bool) {
	s := g.Status()
	return s.Primary, s.Ready
}

// WaitReady blocks until Ready or ctx is done. ADD calls it so a pod
// created before the default network is installed waits instead of
// failing (CONFORMANCE A.20).
func (g *Generator) WaitReady(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		s, ch := g.status, g.changed
		g.mu.Unlock()
		if s.Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			reason := s.Reason
			if reason == "" {
				reason = "not generated yet"
			}
			return fmt.Errorf("plexus CNI configuration not ready (%s): %w", reason, ctx.Err())
		case <-ch:
		}
	}
}

// Uninstall removes our configuration so the node falls back to its primary
// CNI; the primary is left alone. Call it after Run has returned, or Run
// writes the file again.
func (g *Generator) Uninstall() error {
	g.setStatus(Status{Reason: "uninstalled"})
	return removeIfExists(filepath.Join(g.ConfDir, g.fileName()))
}

func (g *Generator) fileName() string {
	if g.FileName == "" {
		return DefaultFileName
	}
	return g.FileName
}

func (g *Generator) logger() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove plexus CNI configuration: %w", err)
	}
	return nil
}
