// Package cniconf writes the node's plexus CNI configuration: it watches the
// CNI configuration directory, picks the primary (default network)
// configuration and keeps 00-plexus.conflist in step with it, so the
// container runtime calls the plexus shim first.
//
// The decision is a pure function of the directory's content (Generate);
// Generator adds the watching, the atomic writes and the readiness state.
package cniconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/containernetworking/cni/pkg/version"
)

// DefaultFileName is the name of the configuration plexus writes. It sorts
// before the usual primary names (10-flannel, 10-calico, ...) because
// runtimes load the first configuration file by name.
const DefaultFileName = "00-plexus.conflist"

// PluginType is the CNI "type" of the plexus shim.
const PluginType = "plexus"

// NetworkName is the "name" of the generated network configuration list.
const NetworkName = "plexus"

// PrimaryKey records, inside the plexus plugin object, the file the
// configuration was generated from. The shim ignores unknown keys; people
// debugging a node read it.
const PrimaryKey = "plexus.primary"

// maxConfSize bounds how much of a file is read: CNI configurations are a
// few KiB, and a stray large file in the directory must not cost memory.
const maxConfSize = 1 << 20

// supportedVersions are the CNI versions the shim accepts, oldest first. A
// test checks them against the shim's VERSION answer.
var supportedVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// confExtensions are the file extensions runtimes load from the directory.
var confExtensions = []string{".conflist", ".conf", ".json"}

// File is one configuration file in the CNI configuration directory.
type File struct {
	// Name is the base name.
	Name string
	Data []byte
	// Err is set when the file could not be read; Generate skips it.
	Err error
}

// Params is what the generated configuration says besides what it takes
// from the primary.
type Params struct {
	// FileName is our own file; it is never the primary. Empty means
	// DefaultFileName.
	FileName string
	// SocketPath is the agent's socket, written as the shim's socketPath.
	SocketPath string
	// ConnectTimeoutSeconds and TimeoutSeconds are passed to the shim
	// when non-zero (its defaults apply otherwise).
	ConnectTimeoutSeconds float64
	TimeoutSeconds        float64
	// Validate, when set, is a further check a candidate primary must pass
	// (the agent's own parse, so that it never picks a primary it cannot
	// attach pods with); one failing it is skipped like an invalid file.
	Validate func(name string, data []byte) error
}

// Skipped is a configuration file that was not taken as the primary.
type Skipped struct {
	Name   string
	Reason string
	// Ours marks a plexus configuration (rather than an invalid one).
	Ours bool
}

// Result is the outcome of Generate.
type Result struct {
	// Primary is the file name of the primary configuration, empty when
	// there is none.
	Primary string
	// PrimaryNetwork is the primary's network name.
	PrimaryNetwork string
	// PrimaryData is the primary's content as read and validated: the
	// bytes to attach pods with, never a second read of the file.
	PrimaryData []byte
	// Conflist is the plexus configuration to write; nil when not ready.
	Conflist []byte
	// NotReady says why Conflist is nil.
	NotReady string
	// Skipped lists the configuration files passed over before the
	// primary (or all of them when there is no primary), in name order.
	Skipped []Skipped
}

// Generate picks the primary among files (the first by name that is a valid
// CNI configuration and not plexus's own) and returns the plexus
// configuration list for it. files may be in any order; names without a CNI
// configuration extension are ignored.
func Generate(files []File, p Params) Result {
	own := p.FileName
	if own == "" {
		own = DefaultFileName
	}
	sorted := make([]File, 0, len(files))
	for _, f := range files {
		if isConfName(f.Name) {
			sorted = append(sorted, f)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	var res Result
	for _, f := range sorted {
		if f.Name == own {
			continue
		}
		if f.Err != nil {
			res.Skipped = append(res.Skipped, Skipped{Name: f.Name, Reason: f.Err.Error()})
			continue
		}
		c, err := parseConf(f.Name, f.Data)
		if err != nil {
			res.Skipped = append(res.Skipped, Skipped{Name: f.Name, Reason: err.Error()})
			continue
		}
		if c.plexus {
			res.Skipped = append(res.Skipped, Skipped{Name: f.Name, Reason: "a plexus configuration", Ours: true})
			continue
		}
		if p.Validate != nil {
			if err := p.Validate(f.Name, f.Data); err != nil {
				res.Skipped = append(res.Skipped, Skipped{Name: f.Name, Reason: err.Error()})
				continue
			}
		}
		data, err := render(c, f.Name, p)
		if err != nil {
			// Only reachable with a non-finite timeout in p.
			res.NotReady = err.Error()
			return res
		}
		res.Primary = f.Name
		res.PrimaryNetwork = c.name
		res.PrimaryData = f.Data
		res.Conflist = data
		return res
	}
	res.NotReady = "no primary CNI configuration (.conflist, .conf or .json) found"
	if len(res.Skipped) > 0 {
		res.NotReady = fmt.Sprintf("no valid primary CNI configuration: %d file(s) skipped", len(res.Skipped))
	}
	return res
}

func isConfName(name string) bool {
	ext := filepath.Ext(name)
	for _, e := range confExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

// conf is what Generate needs from a candidate primary.
type conf struct {
	name         string
	cniVersion   string
	capabilities map[string]bool
	plexus       bool
}

// rawPlugin is a plugin object of a conflist, or a whole .conf.
type rawPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// parseConf checks what the runtime would need to load the file: a name, a
// usable cniVersion and plugins with a type. .conflist files are
// configuration lists; .conf and .json files hold a single plugin.
func parseConf(name string, data []byte) (*conf, error) {
	var top struct {
		Name        string          `json:"name"`
		CNIVersion  *string         `json:"cniVersion"`
		CNIVersions []string        `json:"cniVersions"`
		Plugins     json.RawMessage `json:"plugins"`
		rawPlugin
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	if top.Name == "" {
		return nil, fmt.Errorf("parse %s: no network name", name)
	}
	v, err := chooseVersion(top.CNIVersion, top.CNIVersions)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	c := &conf{name: top.Name, cniVersion: v, capabilities: map[string]bool{}}
	var plugins []rawPlugin
	if filepath.Ext(name) == ".conflist" {
		if len(top.Plugins) == 0 || string(top.Plugins) == "null" {
			return nil, fmt.Errorf("parse %s: no plugins", name)
		}
		if err := json.Unmarshal(top.Plugins, &plugins); err != nil {
			return nil, fmt.Errorf("parse %s: plugins: %w", name, err)
		}
		if len(plugins) == 0 {
			return nil, fmt.Errorf("parse %s: empty plugin list", name)
		}
	} else {
		plugins = []rawPlugin{top.rawPlugin}
	}
	for i, pl := range plugins {
		if pl.Type == "" {
			return nil, fmt.Errorf("parse %s: plugin %d has no type", name, i)
		}
		if pl.Type == PluginType {
			c.plexus = true
		}
		for k, on := range pl.Capabilities {
			if on {
				c.capabilities[k] = true
			}
		}
	}
	return c, nil
}

// chooseVersion returns the CNI version the plexus configuration declares:
// the primary's when the shim supports it, 1.1.0 when the primary is newer
// than anything the shim knows, else the newest supported version below it
// (a runtime that speaks the primary's version speaks that one too).
// cniVersions (CNI 1.1) lists alternatives; the newest one counts.
func chooseVersion(single *string, list []string) (string, error) {
	var candidates []string
	if single != nil {
		candidates = append(candidates, *single)
	}
	candidates = append(candidates, list...)
	if len(candidates) == 0 {
		// libcni, which the runtime loads the file with, reads a missing
		// version as 0.1.0.
		candidates = append(candidates, "")
	}
	best := ""
	for _, v := range candidates {
		if _, _, _, err := version.ParseVersion(v); err != nil {
			return "", fmt.Errorf("cniVersion %q: %w", v, err)
		}
		if best == "" {
			best = v
			continue
		}
		if gt, _ := version.GreaterThan(v, best); gt {
			best = v
		}
	}
	for i := len(supportedVersions) - 1; i >= 0; i-- {
		if ge, _ := version.GreaterThanOrEqualTo(best, supportedVersions[i]); ge {
			return supportedVersions[i], nil
		}
	}
	return "", fmt.Errorf("cniVersion %q is older than any the plexus shim supports", best)
}

type plexusPlugin struct {
	Type                  string          `json:"type"`
	SocketPath            string          `json:"socketPath,omitempty"`
	ConnectTimeoutSeconds float64         `json:"connectTimeoutSeconds,omitempty"`
	TimeoutSeconds        float64         `json:"timeoutSeconds,omitempty"`
	Capabilities          map[string]bool `json:"capabilities,omitempty"`
	Primary               string          `json:"plexus.primary"`
}

type plexusConflist struct {
	CNIVersion string         `json:"cniVersion"`
	Name       string         `json:"name"`
	Plugins    []plexusPlugin `json:"plugins"`
}

// render marshals the configuration list. encoding/json sorts map keys, so
// the same input always gives the same bytes and unchanged files are not
// rewritten.
func render(c *conf, primary string, p Params) ([]byte, error) {
	caps := c.capabilities
	if len(caps) == 0 {
		caps = nil
	}
	out := plexusConflist{
		CNIVersion: c.cniVersion,
		Name:       NetworkName,
		Plugins: []plexusPlugin{{
			Type:                  PluginType,
			SocketPath:            p.SocketPath,
			ConnectTimeoutSeconds: p.ConnectTimeoutSeconds,
			TimeoutSeconds:        p.TimeoutSeconds,
			Capabilities:          caps,
			Primary:               primary,
		}},
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plexus configuration: %w", err)
	}
	return append(data, '\n'), nil
}

// ReadDir reads the CNI configuration files in dir (by extension, as the
// runtime's libcni lists them). A file removed between the listing and the
// read is left out; one that cannot be read (or is larger than 1 MiB) is
// returned with Err set, so it is skipped without hiding the others.
func ReadDir(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list CNI configuration directory: %w", err)
	}
	var files []File
	for _, e := range entries {
		if e.IsDir() || !isConfName(e.Name()) {
			continue
		}
		data, err := readLimited(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		files = append(files, File{Name: e.Name(), Data: data, Err: err})
	}
	return files, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxConfSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfSize)
	}
	return data, nil
}
