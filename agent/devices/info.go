package devices

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/deviceplugin/devinfo"
	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// DefaultInfoDir is the Device Info spec's root: device plugins write
// dp/<resource>-<device>-device.json, NPWG implementations (us) write
// cni/<unique name>.
const DefaultInfoDir = "/var/run/k8s.cni.cncf.io/devinfo"

// maxInfoSize bounds a Device Info file; real ones are a few hundred bytes.
const maxInfoSize = 64 << 10

// InfoFiles reads the device plugins' Device Info files and keeps the CNI
// ones, under Dir (DefaultInfoDir on a node).
type InfoFiles struct {
	Dir string
}

// DPPath is the device plugin's file for one device (spec section 4.1),
// named as deviceplugin/devinfo names it.
func (f *InfoFiles) DPPath(resource, deviceID string) string {
	return devinfo.Path(filepath.Join(f.Dir, "dp"), resource, deviceID)
}

// CNIPath is the CNI Device Info file of one attachment (spec section
// 4.2): unique per attachment because a container's interface names are
// (the agent refuses a second ADD of an attached container/ifname).
// Overlong container IDs are hashed to keep the name a valid file name.
func (f *InfoFiles) CNIPath(containerID, ifname string) string {
	name := containerID + "_" + ifname
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(name))
		name = hex.EncodeToString(sum[:])
	}
	return filepath.Join(f.Dir, "cni", name+".json")
}

// ReadDP returns the device plugin's Device Info file of a device, checked
// to be a Device Info object, or nil when the plugin wrote none (the spec
// makes it optional).
func (f *InfoFiles) ReadDP(resource, deviceID string) ([]byte, error) {
	path := f.DPPath(resource, deviceID)
	data, info, err := readInfo(path)
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
func ReadCNI(path string) (*netstatus.DeviceInfo, error) {
	_, info, err := readInfo(path)
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

func readInfo(path string) ([]byte, *netstatus.DeviceInfo, error) {
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
	var info netstatus.DeviceInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, nil, fmt.Errorf("device info file %s is not a Device Info object: %w", path, err)
	}
	return data, &info, nil
}
