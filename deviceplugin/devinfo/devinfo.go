// Package devinfo writes the Device Information files (k8snetworkplumbingwg
// Device Info spec v1.1) that tell the CNI delegate which PCI function a
// pod got. The file name is the contract readers rely on: it is derived
// from the resource name and device ID exactly as the spec's reference
// library does, so Multus-era readers find our files too.
package devinfo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// DefaultDir is where the spec says device plugins write.
const DefaultDir = "/var/run/k8s.cni.cncf.io/devinfo/dp"

// SpecVersion is the Device Info spec version we write.
const SpecVersion = "1.1.0"

// Info is the file body.
type Info struct {
	Type    string `json:"type"`
	Version string `json:"version"`
	PCI     *PCI   `json:"pci,omitempty"`
}

// PCI carries the PCI device fields of the spec.
type PCI struct {
	PCIAddress   string `json:"pci-address"`
	PFPCIAddress string `json:"pf-pci-address,omitempty"`
}

// Path returns the file for one device of a resource:
// <dir>/<resourceName with '/' as '->-<deviceID>-device.json.
func Path(dir, resourceName, deviceID string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s-device.json",
		strings.ReplaceAll(resourceName, "/", "-"), strings.ReplaceAll(deviceID, "/", "-")))
}

// WritePCI writes the file for a PCI device atomically (temp file, rename)
// so a CNI plugin reading concurrently never sees half a file.
func WritePCI(dir, resourceName, addr, pfAddr string) (string, error) {
	body, err := json.Marshal(Info{Type: "pci", Version: SpecVersion, PCI: &PCI{PCIAddress: addr, PFPCIAddress: pfAddr}})
	if err != nil {
		return "", fmt.Errorf("encode device info for %s: %w", addr, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create device info dir: %w", err)
	}
	path := Path(dir, resourceName, addr)
	// The content is a function of the device alone: a device allocated
	// again finds its file in place and costs one read, not a rewrite.
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, body) {
		return path, nil
	}
	// No fsync: the file lives under /var/run, volatile by design, and is
	// rewritten on every allocation; the rename alone keeps readers from
	// ever seeing half a file. (An fsync here cost Allocate ~3 ms.)
	if err := atomicfile.WriteNoSync(path, body, 0o644); err != nil {
		return "", fmt.Errorf("device info for %s: %w", addr, err)
	}
	return path, nil
}

// Remove deletes files; already-missing files are not an error.
func Remove(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove device info: %w", err))
		}
	}
	return errors.Join(errs...)
}
