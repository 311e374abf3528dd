package cniconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PrimaryConf hands out the bytes the generator validated, and keeps the
// last good ones while the directory's primary is invalid, empty (an
// installer truncating it mid-write), missing or rejected by Validate:
// never nothing once there was something, never a half-written file. Each
// bad episode is counted once and reported by Stale.
func TestPrimaryConfKeepsLastGood(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := `{"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"bridge"}]}`
	upgraded := `{"cniVersion":"1.1.0","name":"flannel","plugins":[{"type":"bridge","mtu":1400}]}`
	primary := filepath.Join(dir, "10-flannel.conflist")
	g := &Generator{ConfDir: dir, Log: testLogger(t), Validate: func(path string, data []byte) error {
		if strings.Contains(string(data), `"reject"`) {
			return errors.New("rejected by the agent")
		}
		return nil
	}}
	pass := func() {
		t.Helper()
		_ = g.reconcile() // errors are states here, checked below
	}
	if _, _, ok := g.PrimaryConf(); ok {
		t.Fatal("a primary before any pass")
	}
	pass()
	if _, _, ok := g.PrimaryConf(); ok || g.Ready() {
		t.Fatal("a primary with an empty directory")
	}

	steps := []struct {
		name      string
		write     *string // nil removes the file
		wantData  string
		wantStale bool
		wantRej   uint64
	}{
		{"valid", &good, good, false, 0},
		{"empty file", ptr(""), good, true, 1},
		{"truncated JSON", ptr(good[:20]), good, true, 1},
		{"upgraded in place", &upgraded, upgraded, false, 1},
		{"rejected by Validate", ptr(`{"cniVersion":"1.0.0","name":"flannel","plugins":[{"type":"reject"}]}`), upgraded, true, 2},
		{"removed", nil, upgraded, true, 2},
		{"back", &good, good, false, 2},
	}
	for _, s := range steps {
		if s.write == nil {
			if err := os.Remove(primary); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, primary, []byte(*s.write))
		}
		pass()
		path, data, ok := g.PrimaryConf()
		if !ok || path != primary || string(data) != s.wantData {
			t.Errorf("%s: PrimaryConf = %s %q %v, want %s %q", s.name, path, data, ok, primary, s.wantData)
		}
		if stale := g.Stale(); (stale != "") != s.wantStale {
			t.Errorf("%s: Stale = %q, want stale %v", s.name, stale, s.wantStale)
		}
		if n := g.Rejections(); n != s.wantRej {
			t.Errorf("%s: Rejections = %d, want %d", s.name, n, s.wantRej)
		}
	}
}

// A file that fails Validate is never the primary, as if it did not parse:
// the next valid one by name is.
func TestValidateSkips(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "10-a.conflist"), []byte(`{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}`))
	writeFile(t, filepath.Join(dir, "20-b.conflist"), []byte(`{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}`))
	g := &Generator{ConfDir: dir, Log: testLogger(t), Validate: func(path string, data []byte) error {
		if filepath.Base(path) == "10-a.conflist" {
			return errors.New("no")
		}
		return nil
	}}
	if err := g.reconcile(); err != nil {
		t.Fatal(err)
	}
	if path, _, ok := g.PrimaryConf(); !ok || filepath.Base(path) != "20-b.conflist" {
		t.Errorf("PrimaryConf = %s %v, want 20-b.conflist", path, ok)
	}
}

func ptr(s string) *string { return &s }
