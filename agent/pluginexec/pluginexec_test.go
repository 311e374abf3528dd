package pluginexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// What a plugin prints reaches the caller as libcni's exec would pass it:
// stdout on success, its CNI error object on failure, else its stderr.
func TestExecPlugin(t *testing.T) {
	ctx := context.Background()
	var observed []string
	e := &Exec{Observe: func(plugin, command string, d time.Duration) { observed = append(observed, plugin+" "+command) }}
	env := []string{"CNI_COMMAND=ADD"}

	out, err := e.ExecPlugin(ctx, script(t, `cat; echo " seen"`), []byte("stdin"), env)
	if err != nil || string(out) != "stdin seen\n" {
		t.Errorf("success: %q, %v", out, err)
	}
	_, err = e.ExecPlugin(ctx, script(t, `echo '{"cniVersion":"1.0.0","code":7,"msg":"bad conf","details":"field x"}'; exit 1`), nil, env)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 7 || cniErr.Msg != "bad conf" || cniErr.Details != "field x" {
		t.Errorf("CNI error: %#v", err)
	}
	_, err = e.ExecPlugin(ctx, script(t, `echo oops >&2; exit 3`), nil, env)
	if err == nil || !strings.Contains(err.Error(), "oops") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("stderr only: %v", err)
	}
	_, err = e.ExecPlugin(ctx, script(t, `echo not-json; exit 1`), nil, env)
	if err == nil || !strings.Contains(err.Error(), "not-json") {
		t.Errorf("garbage on stdout: %v", err)
	}
	if len(observed) != 4 || observed[0] != "plugin ADD" {
		t.Errorf("observed %v", observed)
	}
}
