package devinfo_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/devinfo"
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

const vf = "example.com/vf"

// The device plugin's file is found where WritePCI writes it,
// copied into the CNI file, read back, and removed idempotently.
func TestRoot(t *testing.T) {
	t.Parallel()
	f := devinfo.Root(t.TempDir())
	if _, err := devinfo.WritePCI(filepath.Join(string(f), "dp"), vf, "0000:03:02.1", "0000:03:00.0"); err != nil {
		t.Fatal(err)
	}
	data, err := f.ReadDP(vf, "0000:03:02.1")
	if err != nil || data == nil {
		t.Fatalf("ReadDP = %s, %v", data, err)
	}
	if data, err := f.ReadDP(vf, "0000:03:02.2"); err != nil || data != nil {
		t.Errorf("ReadDP of a device without a file = %s, %v; want nothing", data, err)
	}
	path := f.CNIPath("c1", "net1")
	if filepath.Dir(path) != filepath.Join(string(f), "cni") {
		t.Errorf("CNI file %s is not in %s/cni", path, f)
	}
	if err := devinfo.WriteCNI(path, data); err != nil {
		t.Fatal(err)
	}
	info, err := devinfo.ReadCNI(path)
	if err != nil || info == nil || info.Type != "pci" || info.Version != devinfo.SpecVersion || info.PCI == nil ||
		info.PCI.PCIAddress != "0000:03:02.1" || info.PCI.PFPCIAddress != "0000:03:00.0" {
		t.Fatalf("ReadCNI = %+v, %v", info, err)
	}
	for range 2 {
		if err := devinfo.RemoveCNI(path); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := devinfo.ReadCNI(path); info != nil || err != nil {
		t.Errorf("ReadCNI after RemoveCNI = %+v, %v", info, err)
	}
}

func TestRootBad(t *testing.T) {
	t.Parallel()
	f := devinfo.Root(t.TempDir())
	dp := f.DPPath(vf, "vf0")
	if err := os.MkdirAll(filepath.Dir(dp), 0o755); err != nil {
		t.Fatal(err)
	}
	for content, mention := range map[string]string{
		`{"version":"1.1.0"}`:              `no "type"`,
		`not json`:                         "not a Device Info object",
		strings.Repeat(" ", 70<<10) + "{}": "over",
	} {
		if err := os.WriteFile(dp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := f.ReadDP(vf, "vf0")
		if err == nil || !strings.Contains(err.Error(), mention) || !strings.Contains(err.Error(), dp) {
			t.Errorf("ReadDP of %.20q: err = %v, want one naming the file and %q", content, err, mention)
		}
	}
	// Distinct attachments, distinct files; overlong IDs still give a
	// valid file name.
	long := strings.Repeat("a", 1000)
	if f.CNIPath("c1", "net1") == f.CNIPath("c1", "net2") || len(filepath.Base(f.CNIPath(long, "net1"))) > 255 {
		t.Error("CNI file names are not unique per attachment or too long")
	}
}
