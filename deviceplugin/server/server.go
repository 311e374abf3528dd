// Package server is the kubelet device plugin for one pool: a gRPC server
// on its own unix socket that registers with kubelet, streams device
// health, and answers allocation requests.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/allocate"
	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/health"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
	"github.com/plexus-cni/plexus/devinfo"
)

// Defaults for Config fields left zero.
const (
	DefaultHealthInterval = 5 * time.Second
	readyTimeout          = 10 * time.Second
	registerTimeout       = 10 * time.Second
)

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

// Start listens on the plugin socket, serves, waits until the server
// answers, and starts health checking. Everything stops with ctx or Stop.
func (p *Plugin) Start(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.ctx != nil {
		p.mu.Unlock()
		return errors.New("plugin already started")
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.mu.Unlock()
	p.evaluate()
	// A previous run (crash, restart, reload) may have left files for
	// devices that are free now; those a pod holds must stay.
	p.removeFreeDevInfo("stale")
	if err := p.listenLocked(); err != nil {
		p.cancel()
		return err
	}
	// The plugin socket answers already, so the plugin watcher may hand
	// its endpoint to kubelet's device manager right away.
	if err := p.listenRegistryLocked(); err != nil {
		p.cancel()
		p.srv.Stop()
		p.wg.Wait()
		_ = os.Remove(p.socket)
		return err
	}
	done := p.ctx.Done()
	p.wg.Go(func() { p.healthLoop(done) })
	// Stop when the parent context ends even if nobody calls Stop.
	p.wg.Go(func() {
		<-done
		p.life.Lock()
		if p.srv != nil {
			p.srv.Stop()
		}
		if p.regSrv != nil {
			p.regSrv.Stop()
		}
		p.life.Unlock()
	})
	return nil
}

// listenLocked replaces any stale socket, serves on a fresh one and waits
// until a client can reach it. p.life must be held.
func (p *Plugin) listenLocked() error {
	if err := os.MkdirAll(p.cfg.PluginDir, 0o750); err != nil {
		return fmt.Errorf("create plugin dir: %w", err)
	}
	if err := os.Remove(p.socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	lis, err := net.Listen("unix", p.socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p.socket, err)
	}
	// Only kubelet (root) should talk to us.
	if err := os.Chmod(p.socket, 0o600); err != nil {
		_ = lis.Close()
		return fmt.Errorf("chmod %s: %w", p.socket, err)
	}
	srv := grpc.NewServer()
	pb.RegisterDevicePluginServer(srv, p)
	served := make(chan struct{})
	p.srv, p.served = srv, served
	p.wg.Go(func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil {
			p.log.Error("device plugin server stopped", "err", err)
		}
	})
	if err := waitReady(p.ctx, p.socket); err != nil {
		srv.Stop()
		return fmt.Errorf("plugin %s not ready: %w", p.socket, err)
	}
	return nil
}

// waitReady dials the socket until an RPC succeeds, so that we never
// register with kubelet before kubelet could reach us.
func waitReady(ctx context.Context, socket string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := pb.NewDevicePluginClient(conn).GetDevicePluginOptions(ctx, &pb.Empty{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// EnsureServing re-creates the socket if it disappeared: kubelet deletes
// every socket in the plugin dir when it restarts.
func (p *Plugin) EnsureServing() error {
	p.life.Lock()
	defer p.life.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return errors.New("plugin not running")
	}
	if err := p.ensureRegistryLocked(); err != nil {
		return err
	}
	if _, err := os.Stat(p.socket); err == nil {
		return nil
	}
	p.log.Info("plugin socket gone, serving again")
	p.srv.Stop()
	<-p.served
	return p.listenLocked()
}

// Stop shuts the server down and removes the socket and the Device Info
// files of devices no pod holds: a held device's file must outlive the
// plugin, which may be restarting. It waits for every goroutine and is
// idempotent.
func (p *Plugin) Stop() {
	p.life.Lock()
	if p.ctx == nil || p.stopped {
		// A second Stop must not touch the socket: a replacement plugin
		// for the same resource may own that path by now.
		p.life.Unlock()
		return
	}
	p.stopped = true
	p.cancel()
	if p.srv != nil {
		p.srv.Stop()
	}
	if p.regSrv != nil {
		p.regSrv.Stop()
	}
	p.life.Unlock()
	p.wg.Wait()

	p.life.Lock()
	defer p.life.Unlock()
	if err := os.Remove(p.socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("remove plugin socket", "err", err)
	}
	if p.regSocket != "" {
		if err := os.Remove(p.regSocket); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("remove plugin registration socket", "err", err)
		}
	}
	p.removeFreeDevInfo("stop")
}

// Register tells kubelet about this plugin through kubelet's registration
// socket.
func (p *Plugin) Register(ctx context.Context, kubeletSocket string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial kubelet: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	_, err = pb.NewRegistrationClient(conn).Register(ctx, &pb.RegisterRequest{
		Version:      pb.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.ResourceName(),
		Options:      options(),
	}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("register %s with kubelet: %w", p.ResourceName(), err)
	}
	p.log.Info("registered with kubelet", "endpoint", filepath.Base(p.socket), "devices", len(p.devices()))
	return nil
}

// Recheck asks for a health evaluation now rather than at the next tick.
func (p *Plugin) Recheck() {
	select {
	case p.recheck <- struct{}{}:
	default:
	}
}

func options() *pb.DevicePluginOptions {
	return &pb.DevicePluginOptions{GetPreferredAllocationAvailable: true}
}

func (p *Plugin) healthLoop(done <-chan struct{}) {
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		case <-p.recheck:
		}
		p.evaluate()
	}
}

// evaluate re-checks every device and wakes ListAndWatch streams if any
// health changed.
func (p *Plugin) evaluate() {
	p.eval.Lock()
	defer p.eval.Unlock()
	devs := p.devices()
	results := p.check(devs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.applyHealthLocked(results) {
		p.wakeLocked()
	}
}

// check reads each device's health from sysfs; no lock is needed.
func (p *Plugin) check(devs map[string]discovery.Device) map[string]string {
	results := make(map[string]string, len(devs))
	for id, d := range devs {
		results[id] = health.Check(p.cfg.Root, &d)
	}
	return results
}

// applyHealthLocked records results and reports whether any device went
// from healthy to unhealthy or back: kubelet sees only that, so a new
// reason for an unhealthy device is logged, not sent. p.mu must be held.
func (p *Plugin) applyHealthLocked(results map[string]string) bool {
	changed := false
	for id, reason := range results {
		old, known := p.health[id]
		if known && old == reason {
			continue
		}
		p.health[id] = reason
		if !known || (old == "") != (reason == "") {
			changed = true
		}
		switch {
		case reason != "":
			p.log.Warn("device unhealthy", "device", id, "reason", reason)
		case known:
			p.log.Info("device healthy again", "device", id)
		}
	}
	return changed
}

// wakeLocked makes ListAndWatch streams send the list again. p.mu must be
// held.
func (p *Plugin) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// snapshot returns the device list to send and the channel that closes on
// the next change.
func (p *Plugin) snapshot() (*pb.ListAndWatchResponse, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &pb.ListAndWatchResponse{Devices: make([]*pb.Device, 0, len(p.devs))}
	for _, d := range p.cfg.Pool.Devices {
		h := pb.Healthy
		if p.health[d.Address] != "" {
			h = pb.Unhealthy
		}
		dev := &pb.Device{ID: d.Address, Health: h}
		if d.NUMANode >= 0 {
			dev.Topology = &pb.TopologyInfo{Nodes: []*pb.NUMANode{{ID: int64(d.NUMANode)}}}
		}
		resp.Devices = append(resp.Devices, dev)
	}
	return resp, p.changed
}

// GetDevicePluginOptions implements the device plugin API.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pb.Empty) (*pb.DevicePluginOptions, error) {
	return options(), nil
}

// ListAndWatch sends the device list, then again on every health change,
// until kubelet hangs up or the plugin stops.
func (p *Plugin) ListAndWatch(_ *pb.Empty, stream grpc.ServerStreamingServer[pb.ListAndWatchResponse]) error {
	p.mu.Lock()
	done := p.ctx.Done()
	p.mu.Unlock()
	for {
		resp, changed := p.snapshot()
		if err := stream.Send(resp); err != nil {
			return fmt.Errorf("send device list: %w", err)
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		case <-done:
			return nil
		}
	}
}

// PreStartContainer is never called (PreStartRequired is false) but
// answers rather than failing should a kubelet call it anyway.
func (p *Plugin) PreStartContainer(context.Context, *pb.PreStartContainerRequest) (*pb.PreStartContainerResponse, error) {
	return &pb.PreStartContainerResponse{}, nil
}

// GetPreferredAllocation keeps each request on one NUMA node and spreads
// or packs it across PFs per the pool's allocationPolicy.
func (p *Plugin) GetPreferredAllocation(_ context.Context, req *pb.PreferredAllocationRequest) (*pb.PreferredAllocationResponse, error) {
	devs := p.devices()
	resp := &pb.PreferredAllocationResponse{}
	for _, cr := range req.GetContainerRequests() {
		for _, id := range append(cr.GetAvailableDeviceIDs(), cr.GetMustIncludeDeviceIDs()...) {
			if _, ok := devs[id]; !ok {
				return nil, status.Errorf(codes.InvalidArgument, "device %q is not in pool %s", id, p.ResourceName())
			}
		}
		ids := allocate.Preferred(cr.GetAvailableDeviceIDs(), cr.GetMustIncludeDeviceIDs(), int(cr.GetAllocationSize()), devs, p.cfg.Pool.Spec.AllocationPolicy)
		resp.ContainerResponses = append(resp.ContainerResponses, &pb.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// Allocate returns env, device nodes, mounts and CDI devices, and writes
// device info files.
func (p *Plugin) Allocate(_ context.Context, req *pb.AllocateRequest) (*pb.AllocateResponse, error) {
	spec := p.cfg.Pool.Spec
	devs := p.devices()
	resp := &pb.AllocateResponse{}
	for _, cr := range req.GetContainerRequests() {
		c, err := allocate.Container(&spec, cr.GetDevicesIds(), devs)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		// Held from now on, before its file exists, so that a Stop
		// racing with this call keeps the file.
		p.cfg.InUse.Allocated(p.ResourceName(), cr.GetDevicesIds())
		if err := p.writeDevInfo(devs, cr.GetDevicesIds()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		resp.ContainerResponses = append(resp.ContainerResponses, c)
	}
	p.log.Debug("allocated", "containers", len(resp.ContainerResponses))
	return resp, nil
}

func (p *Plugin) writeDevInfo(devs map[string]discovery.Device, ids []string) error {
	if p.cfg.DevInfoDir == "" {
		return nil
	}
	for _, id := range ids {
		d := devs[id]
		if _, err := devinfo.WritePCI(p.cfg.DevInfoDir, p.ResourceName(), d.Address, d.PFAddress); err != nil {
			return err
		}
	}
	return nil
}

// removeFreeDevInfo deletes the Device Info files of the plugin's devices
// that no pod holds. When nobody can tell which are held (kubelet's
// PodResources API unreachable) it deletes none: a stale file is
// harmless, a missing one breaks the pod's network set-up.
func (p *Plugin) removeFreeDevInfo(why string) {
	if p.cfg.DevInfoDir == "" {
		return
	}
	held, known := p.cfg.InUse.Held(p.ResourceName())
	if !known {
		p.log.Info("which devices pods hold is unknown, keeping their device info files", "when", why)
		return
	}
	var paths []string
	for id := range p.devices() {
		if !held[id] {
			paths = append(paths, devinfo.Path(p.cfg.DevInfoDir, p.ResourceName(), id))
		}
	}
	if err := devinfo.Remove(paths...); err != nil {
		p.log.Warn("remove device info files", "when", why, "err", err)
	}
}

// devices returns the current device map; callers must not modify it.
func (p *Plugin) devices() map[string]discovery.Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.devs
}

// Devices returns the IDs of the devices the plugin currently lists.
func (p *Plugin) Devices() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.cfg.Pool.Devices))
	for _, d := range p.cfg.Pool.Devices {
		ids = append(ids, d.Address)
	}
	return ids
}

// Pool returns the pool spec and the devices the plugin lists now.
func (p *Plugin) Pool() pool.Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pool.Pool{Spec: p.cfg.Pool.Spec, Devices: slices.Clone(p.cfg.Pool.Devices)}
}

// UpdateDevices replaces the pool's devices in place, after rediscovery
// or a reload found a different set for an unchanged pool spec: the
// socket and kubelet's registration stay, and ListAndWatch streams the
// new list. The caller keeps the devices pods hold in devs; a device
// dropped here is free, and its Device Info file is removed. It returns
// the IDs added and removed.
func (p *Plugin) UpdateDevices(devs []discovery.Device) (added, removed []string) {
	p.eval.Lock()
	defer p.eval.Unlock()
	old := p.devices()
	next := make(map[string]discovery.Device, len(devs))
	list := make([]discovery.Device, 0, len(devs))
	for _, d := range devs {
		if _, dup := next[d.Address]; dup {
			continue
		}
		next[d.Address] = d
		list = append(list, d)
		if _, ok := old[d.Address]; !ok {
			added = append(added, d.Address)
		}
	}
	for id := range old {
		if _, ok := next[id]; !ok {
			removed = append(removed, id)
		}
	}
	slices.Sort(removed)
	results := p.check(next)

	p.mu.Lock()
	p.devs = next
	p.cfg.Pool.Devices = list
	for _, id := range removed {
		delete(p.health, id)
	}
	p.applyHealthLocked(results)
	// Always wake ListAndWatch: device records (not just IDs) may differ.
	p.wakeLocked()
	p.mu.Unlock()

	if p.cfg.DevInfoDir != "" && len(removed) > 0 {
		paths := make([]string, 0, len(removed))
		for _, id := range removed {
			paths = append(paths, devinfo.Path(p.cfg.DevInfoDir, p.ResourceName(), id))
		}
		if err := devinfo.Remove(paths...); err != nil {
			p.log.Warn("remove device info files of dropped devices", "err", err)
		}
	}
	return added, removed
}
