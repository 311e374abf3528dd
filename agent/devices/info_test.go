package devices_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/deviceplugin/devinfo"
)

// The device plugin's file is found where deviceplugin/devinfo writes it,
// copied into the CNI file, read back, and removed idempotently.
func TestInfoFiles(t *testing.T) {
	t.Parallel()
	f := &devices.InfoFiles{Dir: t.TempDir()}
	if _, err := devinfo.WritePCI(filepath.Join(f.Dir, "dp"), vf, "0000:03:02.1", "0000:03:00.0"); err != nil {
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
	if filepath.Dir(path) != filepath.Join(f.Dir, "cni") {
		t.Errorf("CNI file %s is not in %s/cni", path, f.Dir)
	}
	if err := devices.WriteCNI(path, data); err != nil {
		t.Fatal(err)
	}
	info, err := devices.ReadCNI(path)
	if err != nil || info == nil || info.Type != "pci" || info.Version != devinfo.SpecVersion || info.PCI == nil ||
		info.PCI.PCIAddress != "0000:03:02.1" || info.PCI.PFPCIAddress != "0000:03:00.0" {
		t.Fatalf("ReadCNI = %+v, %v", info, err)
	}
	for range 2 {
		if err := devices.RemoveCNI(path); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := devices.ReadCNI(path); info != nil || err != nil {
		t.Errorf("ReadCNI after RemoveCNI = %+v, %v", info, err)
	}
}

func TestInfoFilesBad(t *testing.T) {
	t.Parallel()
	f := &devices.InfoFiles{Dir: t.TempDir()}
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
