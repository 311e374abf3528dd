// Package app wires discovery, pools and per-pool plugin servers into the
// plexus-deviceplugin daemon. Run returns errors; only main exits.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jaypipes/pcidb"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/inuse"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
	"github.com/plexus-cni/plexus/deviceplugin/server"
	"github.com/plexus-cni/plexus/deviceplugin/watch"
	"github.com/plexus-cni/plexus/devinfo"
)

// Options are the parsed command line.
type Options struct {
	Config      string
	Root        string
	PluginDir   string
	DevInfoDir  string
	RegistryDir string
	// PodResourcesSocket is kubelet's PodResources API, asked which
	// devices pods hold.
	PodResourcesSocket string
	HealthInterval     time.Duration
	PollInterval       time.Duration
	Rediscover         time.Duration
	DryRun             bool
}

// KubeletSocket is kubelet's registration socket inside the plugin dir.
func (o *Options) KubeletSocket() string { return filepath.Join(o.PluginDir, "kubelet.sock") }

func parseFlags(args []string, stderr io.Writer) (*Options, *slog.Logger, error) {
	fs := flag.NewFlagSet("plexus-deviceplugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &Options{}
	fs.StringVar(&o.Config, "config", "/etc/plexus/deviceplugin.yaml", "pool configuration file (YAML or JSON), see docs/deviceplugin.md")
	fs.StringVar(&o.Root, "sysfs-root", "/", "root under which sys/, dev/ and usr/share/hwdata/pci.ids are read (the host root when run in a container with it mounted)")
	fs.StringVar(&o.PluginDir, "device-plugin-dir", pb.DevicePluginPath, "kubelet device plugin directory holding kubelet.sock")
	fs.StringVar(&o.DevInfoDir, "devinfo-dir", devinfo.DefaultDir, `directory for Device Info spec files ("" disables them)`)
	fs.StringVar(&o.RegistryDir, "plugin-registry-dir", "", `kubelet plugin watcher directory (normally /var/lib/kubelet/plugins_registry); when set each pool also serves a pluginregistration v1 socket there ("" disables)`)
	fs.StringVar(&o.PodResourcesSocket, "pod-resources-socket", inuse.DefaultSocket, "kubelet PodResources API socket, asked which devices pods hold (held devices stay listed, and keep their Device Info files, until released)")
	fs.DurationVar(&o.HealthInterval, "health-interval", server.DefaultHealthInterval, "how often device health is re-evaluated")
	fs.DurationVar(&o.PollInterval, "poll-interval", 5*time.Second, "poll period backing up inotify for kubelet.sock and the config file, and for registration retries")
	fs.DurationVar(&o.Rediscover, "rediscover-interval", 30*time.Second, "how often devices are rediscovered so hot-plugged or removed devices (e.g. a changed sriov_numvfs) reach their pools; 0 disables")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the pools and their devices as JSON on stdout and exit")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch *format {
	case "text":
		h = slog.NewTextHandler(stderr, hopts)
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	default:
		return nil, nil, fmt.Errorf("--log-format: %q is not text or json", *format)
	}
	if o.HealthInterval <= 0 || o.PollInterval <= 0 {
		return nil, nil, errors.New("--health-interval and --poll-interval must be positive")
	}
	if o.Rediscover < 0 {
		return nil, nil, errors.New("--rediscover-interval must not be negative")
	}
	o.PluginDir = filepath.Clean(o.PluginDir)
	return o, slog.New(h), nil
}

// Run is the whole daemon: it returns when ctx ends (nil) or when start-up
// fails (the error). -h prints usage and returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, logger, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := pool.Load(o.Config)
	if err != nil {
		return err
	}
	db, err := discovery.LoadPCIDB(o.Root)
	if errors.Is(err, discovery.ErrNoPCIDB) {
		// Names are cosmetic; selectors and health use IDs and sysfs.
		logger.Warn("no pci.ids database: device names will read unknown (install hwdata or pciutils on the host)", "err", err)
		db = discovery.EmptyPCIDB()
	} else if err != nil {
		return err
	}
	d := &daemon{opts: o, log: logger, db: db, cfg: cfg, plugins: map[string]*running{},
		inUse: inuse.New(o.PodResourcesSocket, 0)}
	if o.DryRun {
		pools, _, err := d.discover(ctx, cfg)
		if err != nil {
			return err
		}
		return printPools(stdout, pools)
	}
	// Before the first plugin starts: it removes the Device Info files
	// of free devices only, and must know which are held.
	d.refreshInUse(ctx)
	if err := d.reconcile(ctx, cfg, "start-up"); err != nil {
		d.stopAll()
		return err
	}
	defer d.stopAll()

	var wg sync.WaitGroup
	wg.Go(func() {
		watch.Path(ctx, o.KubeletSocket(), watch.Inode, o.PollInterval, logger, func() { d.kubeletRestarted(ctx) })
	})
	wg.Go(func() {
		watch.Path(ctx, o.Config, watch.Content, o.PollInterval, logger, func() { d.reload(ctx) })
	})
	wg.Go(func() {
		// A pod releasing a device is seen here; then the pools shrink.
		every(ctx, o.PollInterval, func() {
			if d.refreshInUse(ctx) {
				d.rediscover(ctx)
			}
		})
	})
	if o.Rediscover > 0 {
		wg.Go(func() { every(ctx, o.Rediscover, func() { d.rediscover(ctx) }) })
	}
	every(ctx, o.PollInterval, func() { d.tick(ctx) })
	wg.Wait()
	logger.Info("shutting down")
	return nil
}

// every calls fn at each interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

type running struct {
	plugin     *server.Plugin
	spec       string // pool spec; a change restarts the plugin
	key        string // pool spec and devices; a device-only change updates it in place
	registered bool
}

type daemon struct {
	opts *Options
	log  *slog.Logger
	db   *pcidb.PCIDB

	// rmu serialises reconciles (config reload, rediscovery), so an
	// older discovery never overwrites a newer one.
	rmu sync.Mutex
	cfg *pool.Config // last accepted config; guarded by rmu

	mu      sync.Mutex
	plugins map[string]*running // by full resource name

	inUse *inuse.Tracker
	// inUseDown: the last PodResources query failed; only the goroutine
	// refreshing inUse touches it.
	inUseDown bool
}

// refreshInUse asks kubelet which devices pods hold and reports whether
// any was released. Failures are logged once until kubelet answers again:
// meanwhile nothing is released (see inuse.Tracker.Held).
func (d *daemon) refreshInUse(ctx context.Context) bool {
	released, err := d.inUse.Refresh(ctx)
	switch {
	case err != nil && ctx.Err() == nil && !d.inUseDown:
		d.inUseDown = true
		d.log.Warn("kubelet PodResources API unreachable: pools keep every listed device and its Device Info file until it answers",
			"socket", d.opts.PodResourcesSocket, "err", err)
	case err == nil && d.inUseDown:
		d.inUseDown = false
		d.log.Info("kubelet PodResources API answers again", "socket", d.opts.PodResourcesSocket)
	}
	return released
}

func (d *daemon) discover(ctx context.Context, cfg *pool.Config) ([]pool.Pool, []discovery.Device, error) {
	res, err := discovery.Discover(ctx, d.opts.Root, discovery.Options{DB: d.db})
	if err != nil {
		return nil, nil, err
	}
	for _, p := range res.Problems {
		d.log.Warn("PCI entry skipped", "entry", p.Entry, "reason", p.Reason)
	}
	pools, unassigned := pool.Assign(cfg, res.Devices)
	for _, u := range unassigned {
		d.log.Debug("device in no pool", "device", u.Address, "kind", u.Kind, "driver", u.Driver)
	}
	return pools, res.Devices, nil
}

// keepHeldLocked makes every device a pod holds stay in the pool that
// handed it out, and out of every other pool, even when the pool's
// selectors no longer match it, it vanished from sysfs (its last record
// is kept; health reports it), or the pool left the config (the pool is
// kept, with its old spec, holding only such devices). The pool shrinks
// once kubelet no longer lists the device. When kubelet cannot be asked,
// every device a plugin lists counts as held. d.mu must be held.
func (d *daemon) keepHeldLocked(pools []pool.Pool, found []discovery.Device) []pool.Pool {
	byAddr := make(map[string]discovery.Device, len(found))
	for _, dev := range found {
		byAddr[dev.Address] = dev
	}
	index := map[string]int{}
	for i := range pools {
		index[pools[i].Spec.FullName()] = i
	}
	names := slices.Collect(maps.Keys(index))
	for name := range d.plugins {
		if _, ok := index[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	holder := map[string]string{}                    // device -> resource
	kept := map[string]map[string]discovery.Device{} // resource -> held devices
	for _, name := range names {
		var cur pool.Pool
		if r, ok := d.plugins[name]; ok {
			cur = r.plugin.Pool()
		}
		listed := make(map[string]discovery.Device, len(cur.Devices))
		for _, dev := range cur.Devices {
			listed[dev.Address] = dev
		}
		held, known := d.inUse.Held(name)
		if !known {
			held = make(map[string]bool, len(listed))
			for id := range listed {
				held[id] = true
			}
		}
		for _, id := range slices.Sorted(maps.Keys(held)) {
			dev, ok := byAddr[id]
			if !ok {
				dev, ok = listed[id]
			}
			if _, taken := holder[id]; !ok || taken {
				continue // no record to serve it with, or claimed already
			}
			holder[id] = name
			if kept[name] == nil {
				kept[name] = map[string]discovery.Device{}
			}
			kept[name][id] = dev
		}
		if _, inConfig := index[name]; !inConfig && len(kept[name]) > 0 {
			d.log.Info("pool removed from config but devices are held, serving them until released", "resource", name, "held", len(kept[name]))
			index[name] = len(pools)
			pools = append(pools, pool.Pool{Spec: cur.Spec})
		}
	}
	for i := range pools {
		name := pools[i].Spec.FullName()
		devs := make([]discovery.Device, 0, len(pools[i].Devices)+len(kept[name]))
		in := map[string]bool{}
		for _, dev := range pools[i].Devices {
			if h, ok := holder[dev.Address]; ok && h != name {
				continue // a pod holds it through another pool
			}
			devs = append(devs, dev)
			in[dev.Address] = true
		}
		for _, id := range slices.Sorted(maps.Keys(kept[name])) {
			if !in[id] {
				devs = append(devs, kept[name][id])
			}
		}
		pools[i].Devices = devs
	}
	return pools
}

// reconcile discovers devices and makes the running plugins match cfg.
// Plugins whose pool spec and devices are unchanged keep running, so a
// config edit does not disturb kubelet's view of unrelated pools. why
// names the cause in the log line that ends the pass.
func (d *daemon) reconcile(ctx context.Context, cfg *pool.Config, why string) error {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	return d.reconcileLocked(ctx, cfg, why)
}

// reconcileLocked is reconcile with d.rmu held.
func (d *daemon) reconcileLocked(ctx context.Context, cfg *pool.Config, why string) error {
	pools, found, err := d.discover(ctx, cfg)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pools = d.keepHeldLocked(pools, found)
	want := map[string]pool.Pool{}
	keys := map[string]string{}
	specs := map[string]string{}
	for _, p := range pools {
		name := p.Spec.FullName()
		want[name] = p
		raw, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("fingerprint pool %s: %w", name, err)
		}
		keys[name] = string(raw)
		raw, err = json.Marshal(p.Spec)
		if err != nil {
			return fmt.Errorf("fingerprint pool %s: %w", name, err)
		}
		specs[name] = string(raw)
	}
	for name, r := range d.plugins {
		if keys[name] == r.key {
			continue
		}
		if s, ok := specs[name]; ok && s == r.spec {
			// Same spec, other devices (hot-plug, sriov_numvfs, rebind):
			// update in place, so kubelet keeps the plugin and the
			// devices pods hold.
			added, removed := r.plugin.UpdateDevices(want[name].Devices)
			r.key = keys[name]
			d.log.Info("pool devices changed", "resource", name, "added", added, "removed", removed,
				"devices", len(r.plugin.Devices()))
			continue
		}
		d.log.Info("stopping plugin", "resource", name)
		r.plugin.Stop()
		delete(d.plugins, name)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		if _, ok := d.plugins[name]; ok {
			continue
		}
		p := server.New(server.Config{
			Pool:           want[name],
			PluginDir:      d.opts.PluginDir,
			Root:           d.opts.Root,
			DevInfoDir:     d.opts.DevInfoDir,
			RegistryDir:    d.opts.RegistryDir,
			HealthInterval: d.opts.HealthInterval,
			InUse:          d.inUse,
			Logger:         d.log,
		})
		if err := p.Start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("start plugin %s: %w", name, err))
			continue
		}
		d.log.Info("serving pool", "resource", name, "devices", len(want[name].Devices), "socket", p.Socket())
		d.plugins[name] = &running{plugin: p, key: keys[name], spec: specs[name]}
	}
	d.registerPendingLocked(ctx)
	// Every stop, start, in-place update and Register of the pass is
	// done: what the pass did not do by now, it will not do.
	d.log.Debug("pools reconciled", "why", why, "pools", len(d.plugins))
	return errors.Join(errs...)
}

// reload re-reads the config after it changed. A bad config is reported
// and the running pools are left alone.
func (d *daemon) reload(ctx context.Context) {
	cfg, err := pool.Load(d.opts.Config)
	if err != nil {
		d.log.Error("config change rejected, keeping current pools", "err", err)
		return
	}
	d.log.Info("config changed, reconciling pools")
	d.rmu.Lock()
	defer d.rmu.Unlock()
	d.cfg = cfg
	if err := d.reconcileLocked(ctx, cfg, "config change"); err != nil {
		d.log.Error("reconcile pools", "err", err)
	}
}

// rediscover re-runs discovery with the last accepted config, so that
// hot-plugged or removed devices reach their pools without a config
// change. Unchanged pools are left alone; see reconcile.
func (d *daemon) rediscover(ctx context.Context) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if err := d.reconcileLocked(ctx, d.cfg, "rediscovery"); err != nil {
		d.log.Error("rediscovery", "err", err)
	}
}

// kubeletRestarted re-serves sockets kubelet deleted and registers again.
func (d *daemon) kubeletRestarted(ctx context.Context) {
	d.log.Info("kubelet.sock re-created, re-registering")
	d.mu.Lock()
	defer d.mu.Unlock()
	// Every plugin registers again, even one the socket check in tick
	// already re-registered: stat cannot tell two quick kubelet restarts
	// apart, and kubelet takes a repeated Register as a no-op
	// reconnect, while a missed one leaves the resource unavailable.
	for name, r := range d.plugins {
		r.registered = false
		if err := r.plugin.EnsureServing(); err != nil {
			d.log.Error("re-serve plugin", "resource", name, "err", err)
		}
	}
	d.registerPendingLocked(ctx)
	// Every socket re-served and every Register answered.
	d.log.Debug("kubelet restart handled", "pools", len(d.plugins))
}

// tick re-serves plugins whose socket vanished and retries registration.
// A vanished socket means kubelet restarted (it deletes every socket in
// the plugin dir) even when the kubelet.sock watch missed the restart.
func (d *daemon) tick(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, r := range d.plugins {
		if _, err := os.Stat(r.plugin.Socket()); err == nil {
			continue
		}
		r.registered = false
		if err := r.plugin.EnsureServing(); err != nil {
			d.log.Error("re-serve plugin", "resource", name, "err", err)
		}
	}
	d.registerPendingLocked(ctx)
}

// registerPendingLocked registers plugins kubelet has not accepted yet.
// Without kubelet.sock there is nobody to register with; the watcher
// calls again when it appears.
func (d *daemon) registerPendingLocked(ctx context.Context) {
	if _, err := os.Stat(d.opts.KubeletSocket()); err != nil {
		return
	}
	for name, r := range d.plugins {
		if r.registered {
			continue
		}
		if err := r.plugin.Register(ctx, d.opts.KubeletSocket()); err != nil {
			d.log.Warn("registration failed, will retry", "resource", name, "err", err)
			continue
		}
		r.registered = true
	}
}

func (d *daemon) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, r := range d.plugins {
		r.plugin.Stop()
		delete(d.plugins, name)
	}
}

func printPools(w io.Writer, pools []pool.Pool) error {
	type out struct {
		Resource string             `json:"resource"`
		Devices  []discovery.Device `json:"devices"`
	}
	list := make([]out, 0, len(pools))
	for _, p := range pools {
		devs := p.Devices
		if devs == nil {
			devs = []discovery.Device{} // print [], not null
		}
		list = append(list, out{Resource: p.Spec.FullName(), Devices: devs})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(list); err != nil {
		return fmt.Errorf("print pools: %w", err)
	}
	return nil
}
