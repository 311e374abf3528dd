// Package devinfo is the k8snetworkplumbingwg Device Info spec (v1.1) in
// one place: the object, the directory layout (device plugins write dp/,
// CNI implementations cni/, under one root), the file names, and atomic
// writes and bounded reads. The device plugin writes dp/ files; the agent
// reads them, writes the cni/ file of each attachment and reads it back
// for the network-status.
//
// The dp/ file name is the contract readers rely on: it is derived from
// the resource name and device ID exactly as the spec's reference library
// does, so Multus-era readers find our files too.
package devinfo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// DefaultRoot is the spec's root directory on a node.
const DefaultRoot = "/var/run/k8s.cni.cncf.io/devinfo"

// DefaultDir is where the spec says device plugins write (dp/ under
// DefaultRoot).
const DefaultDir = DefaultRoot + "/" + dpSubdir

const (
	dpSubdir  = "dp"
	cniSubdir = "cni"
)

// SpecVersion is the Device Info spec version we write.
const SpecVersion = "1.1.0"

// maxInfoSize bounds a Device Info file read; real ones are a few hundred
// bytes.
const maxInfoSize = 64 << 10

// Info is a Device Info object.
type Info struct {
	Type    string `json:"type"`
	Version string `json:"version"`
	PCI     *PCI   `json:"pci,omitempty"`
	// Vdpa, VhostUser and Memif are passed through as the device plugin wrote them.
	Vdpa      json.RawMessage `json:"vdpa,omitempty"`
	VhostUser json.RawMessage `json:"vhost-user,omitempty"`
	Memif     json.RawMessage `json:"memif,omitempty"`
}

// PCI is the pci member of a Device Info object.
type PCI struct {
	PCIAddress        string `json:"pci-address,omitempty"`
	Vhostnet          string `json:"vhost-net,omitempty"`
	RdmaDevice        string `json:"rdma-device,omitempty"`
	PFPCIAddress      string `json:"pf-pci-address,omitempty"`
	RepresentorDevice string `json:"representor-device,omitempty"`
}

// Path returns a device plugin's file for one device of a resource in its
// directory (spec section 4.1):
// <dir>/<resourceName with '/' as '->-<deviceID>-device.json.
func Path(dir, resourceName, deviceID string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s-device.json",
		strings.ReplaceAll(resourceName, "/", "-"), strings.ReplaceAll(deviceID, "/", "-")))
}

// WritePCI writes a device plugin's file for a PCI device atomically (temp
// file, rename) so a CNI plugin reading concurrently never sees half a
// file. addr is the device's PCI address, never empty.
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

// Root is a Device Info root directory (DefaultRoot on a node), as a CNI
// implementation sees it: the device plugins' files in dp/, its own in
// cni/.
type Root string

// DPPath is the device plugin's file for one device (spec section 4.1).
func (r Root) DPPath(resource, deviceID string) string {
	return Path(filepath.Join(string(r), dpSubdir), resource, deviceID)
}

// CNIPath is the CNI Device Info file of one attachment (spec section
// 4.2): unique per attachment because a container's interface names are
// (the agent refuses a second ADD of an attached container/ifname).
// Overlong container IDs are hashed to keep the name a valid file name.
func (r Root) CNIPath(containerID, ifname string) string {
	name := containerID + "_" + ifname
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(name))
		name = hex.EncodeToString(sum[:])
	}
	return filepath.Join(string(r), cniSubdir, name+".json")
}

// ReadDP returns the device plugin's Device Info file of a device, checked
// to be a Device Info object, or nil when the plugin wrote none (the spec
// makes it optional).
func (r Root) ReadDP(resource, deviceID string) ([]byte, error) {
	path := r.DPPath(resource, deviceID)
	data, info, err := read(path)
	if err != nil || data == nil {
		return nil, err
	}
	if info.Type == "" {
		return nil, fmt.Errorf("device info file %s of %s device %s has no \"type\"", path, resource, deviceID)
	}
	return data, nil
}

// WriteCNI writes a CNI Device Info file atomically, creating its
// directory as the spec requires. No fsync: the directory is under
// /var/run, gone after a reboot together with the pods it describes.
func WriteCNI(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create device info dir: %w", err)
	}
	if err := atomicfile.WriteNoSync(path, data, 0o644); err != nil {
		return fmt.Errorf("write device info file: %w", err)
	}
	return nil
}

// ReadCNI reads a CNI Device Info file after the delegates ran (they may
// have written or rewritten it); nil when there is none.
func ReadCNI(path string) (*Info, error) {
	_, info, err := read(path)
	return info, err
}

// RemoveCNI removes a CNI Device Info file; a missing one is not an error
// (DEL is idempotent).
func RemoveCNI(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove device info file: %w", err)
	}
	return nil
}

func read(path string) ([]byte, *Info, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read device info file: %w", err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxInfoSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read device info file %s: %w", path, err)
	}
	if len(data) > maxInfoSize {
		return nil, nil, fmt.Errorf("device info file %s is over %d bytes", path, maxInfoSize)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, nil, fmt.Errorf("device info file %s is not a Device Info object: %w", path, err)
	}
	return data, &info, nil
}
