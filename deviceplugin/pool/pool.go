package pool

import (
	"slices"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
)

// Pool is a pool spec with the devices that joined it.
type Pool struct {
	Spec    Spec
	Devices []discovery.Device
}

// Matches reports whether d belongs in the pool: the device kind must be
// the pool's deviceType and at least one selector must match.
func (p *Spec) Matches(d *discovery.Device) bool {
	if d.Kind != p.DeviceType {
		return false
	}
	for i := range p.Selectors {
		if p.Selectors[i].Matches(d) {
			return true
		}
	}
	return false
}

// Matches reports whether every non-empty field of s matches d.
func (s *Selector) Matches(d *discovery.Device) bool {
	root := d.PFAddress
	if !d.IsVF {
		root = d.Address
	}
	switch {
	case len(s.Vendors) > 0 && !slices.Contains(s.Vendors, d.VendorID),
		len(s.Devices) > 0 && !slices.Contains(s.Devices, d.DeviceID),
		len(s.Drivers) > 0 && !slices.Contains(s.Drivers, d.Driver),
		len(s.PCIAddresses) > 0 && !slices.Contains(s.PCIAddresses, d.Address),
		len(s.RootDevices) > 0 && !slices.Contains(s.RootDevices, root),
		len(s.LinkTypes) > 0 && !slices.Contains(s.LinkTypes, d.LinkType):
		return false
	}
	if len(s.PFNames) > 0 {
		parsed := s.pfNames
		if parsed == nil {
			// A Selector built in code rather than by Parse; parse
			// locally so that matching never writes shared state.
			for _, v := range s.PFNames {
				if pf, err := parsePFName(v); err == nil {
					parsed = append(parsed, pf)
				}
			}
		}
		if !slices.ContainsFunc(parsed, func(p pfName) bool { return p.matches(d) }) {
			return false
		}
	}
	return true
}

// Assign sorts devices into the config's pools, first match wins. Every
// pool is returned, in config order, even when empty: kubelet should see
// the resource with zero capacity rather than not at all. Devices no pool
// wants are returned separately so they can be logged.
func Assign(cfg *Config, devices []discovery.Device) (pools []Pool, unassigned []discovery.Device) {
	pools = make([]Pool, len(cfg.Pools))
	for i := range cfg.Pools {
		pools[i].Spec = cfg.Pools[i]
	}
	for _, d := range devices {
		joined := false
		for i := range cfg.Pools {
			if cfg.Pools[i].Matches(&d) {
				pools[i].Devices = append(pools[i].Devices, d)
				joined = true
				break
			}
		}
		if !joined {
			unassigned = append(unassigned, d)
		}
	}
	return pools, unassigned
}
