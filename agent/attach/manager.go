// Package attach is the agent's core: for one CNI invocation it selects the
// pod's networks, resolves them to delegate configurations, invokes the
// delegates through libcni in order (cluster default network first), records
// what it attached, and builds the network-status. DEL, CHECK and GC work
// from the records alone, so they need no API server.
package attach

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/pluginexec"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/devinfo"
)

// Config is the part of the agent configuration the core uses.
type Config struct {
	// ClusterNetwork is the cluster default network every pod gets first:
	// "namespace/name" of a NAD, an absolute path to a conf file, or a
	// network name resolved as a NAD in SystemNamespace and then as an
	// on-disk configuration in the CNI conf dir. Empty means the node's
	// primary CNI configuration, as Options.Primary hands it out (Multus'
	// auto mode).
	ClusterNetwork string
	// AuxiliaryCNIChainName, when set, names a chain run on the cluster
	// network's interface after every other attachment: the .conf
	// plugins in <ConfDir>/<name>/, as its own network of that name
	// (Multus' auxiliaryCNIChainName).
	AuxiliaryCNIChainName string
	// ConfDir is the CNI configuration directory the auxiliary chain is
	// read from.
	ConfDir string
	// DefaultNetworks are attached to every pod (outside SystemNamespaces)
	// before the ones its annotation asks for: "[namespace/]name".
	DefaultNetworks []string
	// SystemNamespace is where bare network names in ClusterNetwork and
	// DefaultNetworks are looked up (default
	// config.DefaultSystemNamespace).
	SystemNamespace string
	// SystemNamespaces get only the cluster default network.
	SystemNamespaces []string
	// NamespaceIsolation restricts pods to NADs of their own namespace and
	// of GlobalNamespaces.
	NamespaceIsolation bool
	GlobalNamespaces   []string
	// SelectionMode is what to do with a selection Multus accepts but the
	// spec does not (unknown keys, interfaceRequest, ips or mac for a
	// network without the capability): selection.Compatible accepts it
	// as Multus does and warns the pod, anything else refuses it.
	SelectionMode selection.Mode
	// BinDirs, when set, replace CNI_PATH for delegates.
	BinDirs []string
	// DeviceInfoDir is the Device Info spec's root directory: device
	// plugins' files in dp/, ours in cni/ (default
	// config.DefaultDeviceInfoDir).
	DeviceInfoDir string
}

// StatusReporter publishes a pod's network-status: an annotation patch and
// Events in Kubernetes mode; nothing in local mode (the status is kept in
// the record and shown by `plexus-agent status`).
type StatusReporter interface {
	// Report publishes the status of an ADD, with an Event per interface.
	Report(ctx context.Context, pod *source.Pod, status []netstatus.Entry) error
	// Publish publishes a status without Events (a hot-plug has its own).
	Publish(ctx context.Context, pod *source.Pod, status []netstatus.Entry) error
	// Event records a Normal Event. Best effort, like Failed.
	Event(ctx context.Context, pod *source.Pod, reason, msg string)
	Failed(ctx context.Context, pod *source.Pod, err error)
	// Warn tells the pod's owner of a selection compatible mode accepted
	// (a Warning Event). Best effort, like Failed.
	Warn(ctx context.Context, pod *source.Pod, msg string)
}

// PrimarySource hands out the node's primary CNI configuration: the file's
// path and its content as read and validated once (cniconf.Generator).
// ok is false while there has never been one.
type PrimarySource interface {
	PrimaryConf() (path string, data []byte, ok bool)
}

// Manager serves CNI verbs.
type Manager struct {
	cfg      Config
	pods     source.PodGetter
	resolver *resolve.Resolver
	records  *record.Store
	cacheDir string
	exec     invoke.Exec
	reporter StatusReporter
	primary  PrimarySource
	devices  devices.Source
	info     devinfo.Root
	log      *slog.Logger

	// gcLock: GC runs alone; every other verb holds it shared.
	gcLock sync.RWMutex
	// containers serializes verbs for one container.
	containers keyedMutex
	versions   pluginVersions
}

// Options configures a Manager.
type Options struct {
	Config   Config
	Pods     source.PodGetter
	Resolver *resolve.Resolver
	Records  *record.Store
	// CacheDir is libcni's result cache.
	CacheDir string
	// Exec runs plugins; nil means a pluginexec.Exec (plugins die with the
	// agent).
	Exec     invoke.Exec
	Reporter StatusReporter
	// Primary is the cluster network when Config.ClusterNetwork is empty.
	Primary PrimarySource
	// Devices tells which devices kubelet allocated to a pod; asked only
	// for pods with a network whose NAD names a resource. Nil: such
	// networks fail. Close closes it if it is an io.Closer.
	Devices devices.Source
	Log     *slog.Logger
}

// New returns a Manager.
func New(o Options) (*Manager, error) {
	if o.Pods == nil || o.Resolver == nil || o.Records == nil || o.CacheDir == "" {
		return nil, fmt.Errorf("attach: Pods, Resolver, Records and CacheDir are required")
	}
	if strings.TrimSpace(o.Config.ClusterNetwork) == "" && o.Primary == nil {
		return nil, fmt.Errorf("attach: no cluster network: configure one, or a source of the node's primary CNI configuration")
	}
	// config.Parse has set both for the agent; library callers (tests,
	// tools) leaving them zero get the same defaults.
	if o.Config.SystemNamespace == "" {
		o.Config.SystemNamespace = config.DefaultSystemNamespace
	}
	if o.Config.DeviceInfoDir == "" {
		o.Config.DeviceInfoDir = config.DefaultDeviceInfoDir
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Exec == nil {
		o.Exec = &pluginexec.Exec{Stderr: os.Stderr}
	}
	return &Manager{
		cfg:      o.Config,
		pods:     o.Pods,
		resolver: o.Resolver,
		records:  o.Records,
		cacheDir: o.CacheDir,
		exec:     o.Exec,
		reporter: o.Reporter,
		primary:  o.Primary,
		devices:  o.Devices,
		info:     devinfo.Root(o.Config.DeviceInfoDir),
		log:      o.Log,
	}, nil
}

// Close releases the device source (its kubelet connection).
func (m *Manager) Close() error {
	if c, ok := m.devices.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (m *Manager) cni(path []string) *libcni.CNIConfig {
	if len(m.cfg.BinDirs) > 0 {
		path = m.cfg.BinDirs
	}
	return libcni.NewCNIConfigWithCacheDir(path, m.cacheDir, m.exec)
}

// keyedMutex is a set of mutexes created on demand and dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
