package devinfo_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/devinfo"
)

func TestPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ resource, id, want string }{
		{"plexus.io/sriov_net", "0000:3b:01.0", "/d/plexus.io-sriov_net-0000:3b:01.0-device.json"},
		{"a/b/c", "x/y", "/d/a-b-c-x-y-device.json"},
	}
	for _, tt := range tests {
		if got := devinfo.Path("/d", tt.resource, tt.id); got != tt.want {
			t.Errorf("Path(%q, %q) = %q, want %q", tt.resource, tt.id, got, tt.want)
		}
	}
}

func TestWriteAndRemove(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dp")
	tests := []struct{ addr, pf, want string }{
		{"0000:3b:01.0", "0000:3b:00.0", `{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:3b:01.0","pf-pci-address":"0000:3b:00.0"}}`},
		{"0000:5e:00.0", "", `{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:5e:00.0"}}`},
	}
	for _, tt := range tests {
		path, err := devinfo.WritePCI(dir, "plexus.io/p", tt.addr, tt.pf)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != tt.want {
			t.Errorf("%s = %s, want %s", path, raw, tt.want)
		}
		// Rewriting (re-allocation) replaces the file in place.
		if _, err := devinfo.WritePCI(dir, "plexus.io/p", tt.addr, tt.pf); err != nil {
			t.Fatal(err)
		}
		if err := devinfo.Remove(path, path); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Remove", path)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

// A file already holding the right content is left alone (same inode);
// one holding anything else is replaced.
func TestWriteReusesOnlyIdenticalFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path, err := devinfo.WritePCI(dir, "plexus.io/x", "0000:3b:01.0", "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devinfo.WritePCI(dir, "plexus.io/x", "0000:3b:01.0", ""); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("an identical file was rewritten")
	}
	if err := os.WriteFile(path, []byte(`{"stale":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devinfo.WritePCI(dir, "plexus.io/x", "0000:3b:01.0", ""); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("stale file not replaced: %s", got)
	}
}
