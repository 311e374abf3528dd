package server

// The device set: in-place updates (under p.eval, like health) and the
// Device Info files of devices no pod holds.

import (
	"slices"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
	"github.com/plexus-cni/plexus/devinfo"
)

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
