// Package record stores what the agent attached to each container, so DEL,
// CHECK and GC work without the API server and survive agent restarts.
//
// A record is written before the first delegate ADD (listing every planned
// attachment) and rewritten with the results when ADD succeeds: whatever
// happens in between, DEL knows what may exist. Files are written atomically
// (temp file, fsync, rename).
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// FormatVersion is bumped when the record layout changes incompatibly.
const FormatVersion = 1

// ErrNotFound is returned by Get when no record exists.
var ErrNotFound = errors.New("attachment record not found")

// DamagedError is a record file that exists but cannot be decoded
// (truncated, overwritten): what it listed is lost. The file stays for a
// person to look at until Quarantine moves it aside.
type DamagedError struct {
	Path string
	Err  error
}

func (e *DamagedError) Error() string { return fmt.Sprintf("record %s is damaged: %v", e.Path, e.Err) }
func (e *DamagedError) Unwrap() error { return e.Err }

// Keys are the (container ID, ifname) pairs the file's name can stand
// for: both may contain '_', so a name has one reading per '_'.
func (e *DamagedError) Keys() [][2]string {
	name := strings.TrimSuffix(filepath.Base(e.Path), ".json")
	var keys [][2]string
	for i := range name {
		if name[i] == '_' && ValidContainerID(name[:i]) && validIfName(name[i+1:]) {
			keys = append(keys, [2]string{name[:i], name[i+1:]})
		}
	}
	return keys
}

// Attachment is one delegate network attached (or being attached) to a pod.
type Attachment struct {
	// Network names the delegate: "ns/name" for a NAD, the conf name otherwise.
	Network string `json:"network"`
	IfName  string `json:"ifname"`
	// Config is the delegate's conflist exactly as it was invoked (after
	// injections), so DEL sends the same config ADD did.
	Config json.RawMessage `json:"config"`
	// CapabilityArgs is the runtimeConfig handed to libcni.
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
	// Args is CNI_ARGS as key/value pairs.
	Args [][2]string `json:"args,omitempty"`
	// Default marks the cluster default network.
	Default bool `json:"default,omitempty"`
	// Result is the delegate's ADD result, absent until it succeeded.
	Result json.RawMessage `json:"result,omitempty"`
	// DeviceInfoFile is the CNI device-info file written for this attachment.
	DeviceInfoFile string `json:"deviceInfoFile,omitempty"`
	// Origin says why the attachment exists (the Origin constants). Hot-plug
	// adds and removes only OriginSelection attachments; records written
	// before origins were kept have none, and are not hot-plugged.
	Origin string `json:"origin,omitempty"`
	// Resource and DeviceID are the NAD's device resource and the device
	// the attachment took of it, so that hot-plug hands a new attachment
	// a device no other attachment uses.
	Resource string `json:"resource,omitempty"`
	DeviceID string `json:"deviceID,omitempty"`
}

// Why an attachment exists.
const (
	// OriginCluster is the cluster default network, OriginOverride the
	// pod's default-network override in its place.
	OriginCluster  = "cluster"
	OriginOverride = "override"
	// OriginDefault is one of the agent's defaultNetworks.
	OriginDefault = "default"
	// OriginSelection is an element of the pod's networks annotation.
	OriginSelection = "selection"
	// OriginAuxiliary is the auxiliary chain on the cluster network's
	// interface.
	OriginAuxiliary = "auxiliary"
)

// Record is everything attached for one (container, plexus ifname).
type Record struct {
	Version      int    `json:"version"`
	ContainerID  string `json:"containerID"`
	IfName       string `json:"ifname"`
	Netns        string `json:"netns"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
	// Path is the runtime's CNI_PATH of the ADD, which a hot-plug of the
	// pod runs its delegates with.
	Path []string `json:"cniPath,omitempty"`
	// Complete is false while ADD is in progress (or was interrupted). A
	// complete record's attachment without a Result is a hot-plug that was
	// interrupted.
	Complete    bool            `json:"complete"`
	Attachments []Attachment    `json:"attachments"`
	Status      json.RawMessage `json:"networkStatus,omitempty"`
}

// Store keeps records as files in a directory.
type Store struct {
	dir string
}

// Open returns a store in dir, creating it (0700) if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create record dir: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is where the records live.
func (s *Store) Dir() string { return s.dir }

// containerIDRe is the CNI spec's container ID syntax. Enforcing it also keeps
// IDs from escaping the record directory.
var containerIDRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ValidContainerID reports whether id is a valid CNI container ID.
func ValidContainerID(id string) bool { return len(id) <= 1024 && containerIDRe.MatchString(id) }

func (s *Store) path(containerID, ifname string) (string, error) {
	if !ValidContainerID(containerID) {
		return "", fmt.Errorf("invalid container ID %q", containerID)
	}
	if !validIfName(ifname) {
		return "", fmt.Errorf("invalid interface name %q", ifname)
	}
	return filepath.Join(s.dir, containerID+"_"+ifname+".json"), nil
}

func validIfName(ifname string) bool {
	return ifname != "" && !strings.ContainsAny(ifname, "/\x00") && ifname != "." && ifname != ".."
}

// Get reads the record of (containerID, ifname).
func (s *Store) Get(containerID, ifname string) (*Record, error) {
	p, err := s.path(containerID, ifname)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read record %s: %w", p, err)
	}
	return decode(p, data)
}

// decode reads a record file's content; a version this agent does not know
// is an error, not damage (a newer agent wrote it).
func decode(path string, data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, &DamagedError{Path: path, Err: err}
	}
	if r.Version != FormatVersion {
		return nil, fmt.Errorf("record %s has format version %d, want %d", path, r.Version, FormatVersion)
	}
	return &r, nil
}

// Put writes r atomically and durably (fsync before the rename).
func (s *Store) Put(r *Record) error { return s.put(r, true) }

// PutIntent writes r atomically but without fsync: the record ADD writes
// before its delegates run only has to survive an agent crash, which the
// page cache does; after a kernel crash the namespaces it describes are gone
// too. It saves a disk flush on every pod ADD (docs/benchmarks.md).
func (s *Store) PutIntent(r *Record) error { return s.put(r, false) }

func (s *Store) put(r *Record, durable bool) error {
	p, err := s.path(r.ContainerID, r.IfName)
	if err != nil {
		return err
	}
	r.Version = FormatVersion
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record for container %s: %w", r.ContainerID, err)
	}
	if durable {
		return atomicfile.Write(p, data, 0o600)
	}
	return atomicfile.WriteNoSync(p, data, 0o600)
}

// Delete removes the record; a missing record is not an error.
func (s *Store) Delete(containerID, ifname string) error {
	p, err := s.path(containerID, ifname)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove record %s: %w", p, err)
	}
	return nil
}

// Quarantine moves a damaged record aside (same directory, a name List
// skips) and returns its new path: the container's attachments were torn
// down without it, and the bytes are kept for a post-mortem.
func (s *Store) Quarantine(d *DamagedError) (string, error) {
	to := fmt.Sprintf("%s.damaged-%d", d.Path, time.Now().UnixNano())
	if err := os.Rename(d.Path, to); err != nil {
		return "", fmt.Errorf("move damaged record aside: %w", err)
	}
	return to, nil
}

// List returns every readable record, sorted by container ID, and the
// damaged ones. Files it cannot read are reported in the joined error
// while the rest are still returned.
func (s *Store) List() ([]*Record, []*DamagedError, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list records: %w", err)
	}
	var out []*Record
	var damaged []*DamagedError
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		p := filepath.Join(s.dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := decode(p, data)
		var d *DamagedError
		switch {
		case errors.As(err, &d):
			damaged = append(damaged, d)
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ContainerID != out[j].ContainerID {
			return out[i].ContainerID < out[j].ContainerID
		}
		return out[i].IfName < out[j].IfName
	})
	return out, damaged, errors.Join(errs...)
}
