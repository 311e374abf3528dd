package server

// Health: periodic and on-demand device health evaluation under p.eval;
// the results are applied under p.mu without I/O.

import (
	"time"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/health"
)

// Recheck asks for a health evaluation now rather than at the next tick.
func (p *Plugin) Recheck() {
	select {
	case p.recheck <- struct{}{}:
	default:
	}
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
