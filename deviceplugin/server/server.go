// Package server is the kubelet device plugin for one pool: a gRPC server
// on its own unix socket that registers with kubelet, streams device
// health, and answers allocation requests.
//
// Files by role, each with the lock it works under: lifecycle.go (the
// servers and socket, p.life), registration.go (kubelet.sock and the
// plugin watcher), health.go (device health, p.eval then p.mu),
// devices.go (in-place device updates, p.eval then p.mu) and handlers.go
// (the gRPC API; Allocate and ListAndWatch take p.mu only to read state
// and do no I/O under it).
package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
)

// DefaultHealthInterval is the Config.HealthInterval of a zero Config.
const DefaultHealthInterval = 5 * time.Second

// Config describes one plugin.
type Config struct {
	Pool       pool.Pool
	PluginDir  string // where kubelet looks for plugin sockets
	Root       string // sysfs/dev root for health checks
	DevInfoDir string // Device Info spec files; "" disables them
	// RegistryDir is kubelet's plugin watcher directory
	// (/var/lib/kubelet/plugins_registry). When set, the plugin also
	// serves the pluginregistration v1 API on a socket there; "" disables.
	RegistryDir    string
	HealthInterval time.Duration
	// InUse says which devices pods hold, so that their Device Info
	// files outlive a restart of the plugin; nil: none are.
	InUse  InUse
	Logger *slog.Logger
}

// InUse is told about allocations and says which devices are held.
// Neither method may do I/O: Allocate calls them.
type InUse interface {
	Allocated(resource string, ids []string)
	// Held returns the held IDs of resource; known false means that
	// cannot be told now, and every device must be taken as held.
	Held(resource string) (ids map[string]bool, known bool)
}

// noneInUse is the InUse of a plugin without one.
type noneInUse struct{}

func (noneInUse) Allocated(string, []string)                    {}
func (noneInUse) Held(string) (ids map[string]bool, known bool) { return nil, true }

// Plugin serves one pool. Start and Stop may be called from different
// goroutines; Stop is idempotent.
type Plugin struct {
	pb.UnimplementedDevicePluginServer

	cfg    Config
	log    *slog.Logger
	socket string
	// regSocket is the plugin watcher socket, "" when disabled.
	regSocket string
	recheck   chan struct{}
	wg        sync.WaitGroup

	// life guards the servers (Start, Stop, EnsureServing), which do
	// file and socket I/O while holding it; Allocate never takes it.
	life      sync.Mutex
	cancel    context.CancelFunc
	srv       *grpc.Server
	served    chan struct{} // closed when the current Serve returns
	regSrv    *grpc.Server  // plugin watcher registration server, or nil
	regServed chan struct{} // closed when the registration Serve returns
	stopped   bool

	// eval serialises health evaluations and device updates, which read
	// sysfs while holding it, so that an older result never overwrites
	// a newer one; Allocate never takes it.
	eval sync.Mutex

	// mu guards the device state that Allocate and ListAndWatch read; no
	// I/O is done while holding it.
	mu  sync.Mutex
	ctx context.Context // nil until Start; set under life and mu
	// devs is replaced, never modified, by UpdateDevices.
	devs    map[string]discovery.Device
	health  map[string]string // device ID -> "" (healthy) or reason
	changed chan struct{}     // closed and replaced on every change
}

// New builds a plugin; nothing runs until Start.
func New(cfg Config) *Plugin {
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InUse == nil {
		cfg.InUse = noneInUse{}
	}
	p := &Plugin{
		cfg:     cfg,
		log:     cfg.Logger.With("resource", cfg.Pool.Spec.FullName()),
		socket:  filepath.Join(cfg.PluginDir, SocketName(cfg.Pool.Spec.FullName())),
		devs:    map[string]discovery.Device{},
		health:  map[string]string{},
		changed: make(chan struct{}),
		recheck: make(chan struct{}, 1),
	}
	if cfg.RegistryDir != "" {
		p.regSocket = filepath.Join(cfg.RegistryDir, RegistrationSocketName(cfg.Pool.Spec.FullName()))
	}
	for _, d := range cfg.Pool.Devices {
		p.devs[d.Address] = d
	}
	return p
}

// SocketName is the plugin socket file name for a resource. Only the
// "/" is replaced, by "_", which a DNS-subdomain prefix cannot contain:
// distinct resources thus never share a socket.
func SocketName(resource string) string {
	return "plexus-" + strings.Replace(resource, "/", "_", 1) + ".sock"
}

// Socket is the plugin's socket path.
func (p *Plugin) Socket() string { return p.socket }

// ResourceName is prefix/name.
func (p *Plugin) ResourceName() string { return p.cfg.Pool.Spec.FullName() }
