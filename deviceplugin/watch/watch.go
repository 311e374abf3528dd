// Package watch calls back when a file is replaced or changed: kubelet.sock
// re-created by a restarting kubelet, or the pool config rewritten (often
// by a ConfigMap symlink swap). inotify gives prompt notice; a poll catches
// what inotify misses (watch limits, the directory itself being replaced,
// filesystems without inotify).
package watch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settleDelay is how long the directory must be quiet after an event
// before the file is looked at.
const settleDelay = 100 * time.Millisecond

// Identity names the current version of the file at path; ok is false
// when there is none (e.g. the file does not exist).
type Identity func(path string) (id string, ok bool)

// Inode identifies a file by device, inode and change time: the right
// notion for sockets, which cannot be read.
func Inode(path string) (string, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.ModTime().String(), true
	}
	return fmt.Sprintf("%d:%d:%d.%d", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec), true
}

// Content identifies a file by the hash of its contents, so that touching
// or re-linking an unchanged config does not trigger a reload.
func Content(path string) (string, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// Path blocks until ctx ends, calling onChange whenever the identity of
// path changes to a new present value, or inotify saw path created
// (appearance included; removal alone is not reported). The identity at
// call time is the baseline. Polling alone cannot see a delete and
// re-create that reuses the inode within the filesystem's timestamp
// granularity; callers with sockets add their own liveness checks.
func Path(ctx context.Context, path string, ident Identity, poll time.Duration, logger *slog.Logger, onChange func()) {
	path = filepath.Clean(path)
	last, _ := ident(path)
	created := false
	check := func() {
		id, ok := ident(path)
		if !ok || (id == last && !created) {
			return
		}
		last, created = id, false
		onChange()
	}

	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(path)); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		logger.Warn("inotify unavailable, polling only", "path", path, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}

	t := time.NewTicker(poll)
	defer t.Stop()
	// Events are debounced: a writer truncates before it writes, and
	// checking between the two would report a transient empty file.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		case <-settle.C:
			check()
		case ev := <-events:
			// React to any event in the directory: a ConfigMap update
			// renames "..data", never the file we watch, and the
			// identity check filters out the unrelated ones. A
			// re-created file always counts as changed: a socket
			// deleted and re-created within a few milliseconds can get
			// the same inode number and timestamps back.
			if ev.Name == path && ev.Has(fsnotify.Create) {
				created = true
			}
			settle.Reset(settleDelay)
		case err := <-errs:
			logger.Warn("inotify error, relying on polling", "path", path, "err", err)
		}
	}
}
