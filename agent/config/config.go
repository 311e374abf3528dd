// Package config loads the agent's configuration file (YAML or JSON).
// docs/agent-config.md documents every key.
package config

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/devinfo"
)

// Config is the agent configuration.
type Config struct {
	// Socket is where the shim connects.
	Socket string `json:"socket,omitempty"`
	// StateDir holds attachment records and libcni's result cache.
	StateDir string `json:"stateDir,omitempty"`
	// CNIConfDir is searched for delegate configurations by name.
	CNIConfDir string `json:"cniConfDir,omitempty"`
	// BinDirs, when set, replace the runtime's CNI_PATH for delegates.
	BinDirs []string `json:"binDirs,omitempty"`

	// ClusterNetwork overrides the cluster default network; unset, it is
	// the node's primary CNI configuration CNIConf follows.
	ClusterNetwork string `json:"clusterNetwork,omitempty"`
	// AuxiliaryCNIChainName names a chain of .conf plugins in
	// CNIConfDir/<name>/ run on every pod's cluster network interface
	// after its attachments (Multus' auxiliaryCNIChainName).
	AuxiliaryCNIChainName string `json:"auxiliaryCNIChainName,omitempty"`

	DefaultNetworks    []string `json:"defaultNetworks,omitempty"`
	SystemNamespace    string   `json:"systemNamespace,omitempty"`
	SystemNamespaces   []string `json:"systemNamespaces,omitempty"`
	NamespaceIsolation bool     `json:"namespaceIsolation,omitempty"`
	GlobalNamespaces   []string `json:"globalNamespaces,omitempty"`
	// SelectionMode is what to do with a selection a Multus cluster
	// tolerates but the spec does not: compatible (the default) accepts it
	// with a Warning Event, strict refuses it.
	SelectionMode selection.Mode `json:"selectionMode,omitempty"`
	// HotPlug attaches and detaches a running pod's secondary networks
	// when its networks annotation changes (off by default; deploy/ turns
	// it on). A pod opts out with the plexus.io/hotplug: "false"
	// annotation.
	HotPlug bool `json:"hotplug,omitempty"`

	// MaxConcurrent caps CNI requests served at once.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
	// HealthAddress, when set, serves /healthz, /readyz and /metrics
	// (e.g. "127.0.0.1:9091").
	HealthAddress string `json:"healthAddress,omitempty"`

	// PodResourcesSocket is kubelet's PodResources API, asked which devices
	// a pod got when one of its NADs names a resource.
	PodResourcesSocket string `json:"podResourcesSocket,omitempty"`
	// DeviceInfoDir is the Device Info spec's root: device plugins' files
	// in dp/, the agent's per-attachment files in cni/.
	DeviceInfoDir string `json:"deviceInfoDir,omitempty"`

	// Local, when set, runs the agent without Kubernetes.
	Local *Local `json:"local,omitempty"`
	// Kubernetes configures Kubernetes mode, the mode when Local is unset.
	Kubernetes Kubernetes `json:"kubernetes,omitempty"`
	// CNIConf, when set, makes the agent write the runtime's plexus
	// conflist into CNIConfDir, following the primary configuration there.
	CNIConf *CNIConf `json:"cniConf,omitempty"`
	// ShimInstall, when set, copies the shim into the host's CNI bin dir.
	ShimInstall *ShimInstall `json:"shimInstall,omitempty"`

	// Warnings name the Multus keys the file used as aliases (MultusKeys),
	// for the caller to log once at start.
	Warnings []string `json:"-"`
}

// Kubernetes configures Kubernetes mode.
type Kubernetes struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// NodeName is this node; empty means $NODE_NAME (downward API).
	NodeName string `json:"nodeName,omitempty"`
	// PodWaitSeconds bounds the wait for a pod the informer has not seen
	// before one live GET (default 2).
	PodWaitSeconds float64 `json:"podWaitSeconds,omitempty"`
	// QPS and Burst bound the agent's API requests (defaults 50 and 100).
	// client-go's own default of 5/10 stalls a burst of pod ADDs: each ADD
	// makes four writes (docs/benchmarks.md).
	QPS   float32 `json:"qps,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

// CNIConf configures CNI configuration generation.
type CNIConf struct {
	// FileName of the generated conflist (default 00-plexus.conflist).
	FileName string `json:"fileName,omitempty"`
	// ReadinessIndicatorFile: generate only while this file exists (Multus'
	// readinessindicatorfile).
	ReadinessIndicatorFile string `json:"readinessIndicatorFile,omitempty"`
	// RemoveOnExit removes the generated conflist when the agent stops, so
	// the node falls back to its primary CNI (uninstall). Off by default: an
	// agent restart must not let pods bypass plexus.
	RemoveOnExit bool `json:"removeOnExit,omitempty"`
}

// ShimInstall configures the shim installation.
type ShimInstall struct {
	// Source is the shim binary to copy (in the agent's image).
	Source string `json:"source"`
	// BinDir is the host's CNI bin dir as mounted into the agent.
	BinDir string `json:"binDir"`
}

// Local configures local mode.
type Local struct {
	// ManifestsDir holds NAD and Pod manifests.
	ManifestsDir string `json:"manifestsDir"`
}

// Defaults for unset keys.
const (
	DefaultSocket     = "/run/plexus/agent.sock"
	DefaultStateDir   = "/var/lib/plexus"
	DefaultCNIConfDir = "/etc/cni/net.d"
	// DefaultPodResourcesSocket is where kubelet serves the PodResources API.
	DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"
	// DefaultDeviceInfoDir is the Device Info spec's directory.
	DefaultDeviceInfoDir = devinfo.DefaultRoot
	// DefaultSystemNamespace is systemNamespace's default and
	// systemNamespaces' only member by default.
	DefaultSystemNamespace = "kube-system"
	// DefaultMaxConcurrent is maxConcurrent's default: CNI requests served
	// at once.
	DefaultMaxConcurrent = 64
)

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a configuration; name is used in errors.
// Multus keys with a Plexus meaning are read as the Plexus keys they alias
// and named in c.Warnings; the others are refused.
func Parse(data []byte, name string) (*Config, error) {
	data, warnings, err := translateMultus(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("agent config %s: %w", name, err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", name, err)
	}
	c.Warnings = warnings
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", name, err)
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	c.Socket = cmp.Or(c.Socket, DefaultSocket)
	c.StateDir = cmp.Or(c.StateDir, DefaultStateDir)
	c.CNIConfDir = cmp.Or(c.CNIConfDir, DefaultCNIConfDir)
	c.PodResourcesSocket = cmp.Or(c.PodResourcesSocket, DefaultPodResourcesSocket)
	c.DeviceInfoDir = cmp.Or(c.DeviceInfoDir, DefaultDeviceInfoDir)
	c.SystemNamespace = cmp.Or(c.SystemNamespace, DefaultSystemNamespace)
	if c.SystemNamespaces == nil {
		c.SystemNamespaces = []string{DefaultSystemNamespace}
	}
	c.SelectionMode = cmp.Or(c.SelectionMode, selection.Compatible)
	c.MaxConcurrent = cmp.Or(c.MaxConcurrent, DefaultMaxConcurrent)
	c.Kubernetes.QPS = cmp.Or(c.Kubernetes.QPS, 50)
	c.Kubernetes.Burst = cmp.Or(c.Kubernetes.Burst, 100)
}

func (c *Config) validate() error {
	if c.ClusterNetwork == "" && c.CNIConf == nil {
		return fmt.Errorf("clusterNetwork: required without cniConf (a NAD, a conf name or a conf file path); with cniConf the cluster network is the node's primary CNI configuration")
	}
	if n := c.AuxiliaryCNIChainName; n != "" && (strings.ContainsAny(n, `/\`) || n == "." || n == "..") {
		return fmt.Errorf("auxiliaryCNIChainName: %q must be a network name, not a path", n)
	}
	for _, p := range []struct{ key, val string }{{"socket", c.Socket}, {"stateDir", c.StateDir}, {"cniConfDir", c.CNIConfDir},
		{"podResourcesSocket", c.PodResourcesSocket}, {"deviceInfoDir", c.DeviceInfoDir}} {
		if !filepath.IsAbs(p.val) {
			return fmt.Errorf("%s: %q must be an absolute path", p.key, p.val)
		}
	}
	for _, d := range c.BinDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("binDirs: %q must be an absolute path", d)
		}
	}
	for _, ns := range append(append([]string{c.SystemNamespace}, c.SystemNamespaces...), c.GlobalNamespaces...) {
		if !selection.IsDNS1123Label(ns) {
			return fmt.Errorf("namespace %q is not a DNS-1123 label", ns)
		}
	}
	if c.SelectionMode != selection.Compatible && c.SelectionMode != selection.Strict {
		return fmt.Errorf("selectionMode: %q is not compatible or strict", c.SelectionMode)
	}
	if c.MaxConcurrent < 0 {
		return fmt.Errorf("maxConcurrent: must not be negative")
	}
	if c.Local != nil && !filepath.IsAbs(c.Local.ManifestsDir) {
		return fmt.Errorf("local.manifestsDir: %q must be an absolute path", c.Local.ManifestsDir)
	}
	if c.Kubernetes.QPS < 0 || c.Kubernetes.Burst < 0 {
		return fmt.Errorf("kubernetes.qps and kubernetes.burst: must not be negative")
	}
	if c.Kubernetes.PodWaitSeconds < 0 {
		return fmt.Errorf("kubernetes.podWaitSeconds: must not be negative")
	}
	if c.ShimInstall != nil && (!filepath.IsAbs(c.ShimInstall.Source) || !filepath.IsAbs(c.ShimInstall.BinDir)) {
		return fmt.Errorf("shimInstall: source and binDir must be absolute paths")
	}
	return nil
}

// SelectionPolicy is how pods' annotations are read under this
// configuration: by the agent and by the admission webhook alike.
func (c *Config) SelectionPolicy() selection.Policy {
	return selection.Policy{Mode: c.SelectionMode, SystemNamespace: c.SystemNamespace,
		NamespaceIsolation: c.NamespaceIsolation, GlobalNamespaces: c.GlobalNamespaces}
}
