// Package pluginexec runs the delegate CNI plugins for the agent. It does
// what libcni's invoke.RawExec does, with one difference that matters after
// a crash: a plugin never outlives the agent that started it. A delegate
// left running by a killed agent would finish its ADD after the restarted
// agent had already served the runtime's DEL, leaving an interface and an
// IP allocation that nothing records.
package pluginexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// busyRetries bounds the retries of a plugin binary that is being written
// (ETXTBSY), as libcni does: another DaemonSet may be installing it.
const busyRetries = 5

// Exec runs plugin binaries; it implements invoke.Exec.
type Exec struct {
	version.PluginDecoder
	// Stderr receives what a successful plugin wrote to stderr; a failed
	// plugin's stderr goes into its error.
	Stderr io.Writer
	// Observe, if set, is told how long each plugin run took.
	Observe func(plugin, command string, d time.Duration)
}

var _ invoke.Exec = (*Exec)(nil)

// FindInPath finds a plugin binary in paths.
func (e *Exec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// ExecPlugin runs the plugin at path with stdin and environ and returns its
// stdout; a failure is the plugin's CNI error when it printed one.
func (e *Exec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := e.run(ctx, path, stdin, environ)
	if e.Observe != nil {
		e.Observe(filepath.Base(path), command(environ), time.Since(start))
	}
	return out, err
}

func (e *Exec) run(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		var stdout, stderr bytes.Buffer
		c := exec.CommandContext(ctx, path)
		c.Env = environ
		c.Stdin = bytes.NewReader(stdin)
		c.Stdout = &stdout
		c.Stderr = &stderr
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err := runLocked(c)
		if errors.Is(err, syscall.ETXTBSY) && attempt < busyRetries {
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("plugin %s busy: %w", path, ctx.Err())
			}
		}
		if err != nil {
			return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
		}
		if e.Stderr != nil && stderr.Len() > 0 {
			_, _ = stderr.WriteTo(e.Stderr)
		}
		return stdout.Bytes(), nil
	}
}

// runLocked runs c on a thread held until c exits. The parent-death signal
// is sent when the thread that forked the child ends, not the process, and
// the Go runtime may end a thread (one a goroutine left locked, e.g. after
// entering a network namespace); holding this one keeps the signal for the
// death of the agent alone.
func runLocked(c *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return c.Run()
}

// pluginError is the plugin's own CNI error object from stdout when it
// printed one, else an error carrying its stderr.
func pluginError(err error, stdout, stderr []byte) error {
	var cniErr types.Error
	switch {
	case len(stdout) > 0 && json.Unmarshal(stdout, &cniErr) == nil && (cniErr.Code != 0 || cniErr.Msg != ""):
		return &cniErr
	case len(stdout) > 0:
		return &types.Error{Msg: fmt.Sprintf("plugin failed (%v) and printed no CNI error: %q", err, stdout)}
	case len(stderr) > 0:
		return &types.Error{Msg: fmt.Sprintf("plugin failed (%v): %q", err, stderr)}
	default:
		return &types.Error{Msg: fmt.Sprintf("plugin failed with no error message: %v", err)}
	}
}

func command(environ []string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			return v
		}
	}
	return "UNKNOWN"
}
