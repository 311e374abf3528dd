package attach

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/devinfo"
)

// Handle serves one CNI invocation. On success it returns what the shim
// prints (the result for ADD, nothing for the other verbs); errors map to
// CNI error objects with ToCNIError.
func (m *Manager) Handle(ctx context.Context, req *Request) ([]byte, error) {
	inv, err := validate(req)
	if err != nil {
		return nil, err
	}
	if inv.Verb == VerbGC {
		m.gcLock.Lock()
		defer m.gcLock.Unlock()
		return nil, m.gc(ctx, inv)
	}
	m.gcLock.RLock()
	defer m.gcLock.RUnlock()
	if inv.Verb == VerbStatus {
		return nil, m.status(ctx, inv)
	}
	unlock := m.containers.lock(inv.ContainerID)
	defer unlock()
	switch inv.Verb {
	case VerbAdd:
		return m.add(ctx, inv)
	case VerbDel:
		return nil, m.del(ctx, inv)
	default:
		return nil, m.check(ctx, inv)
	}
}

// del tears down what the record lists. No record means nothing of ours is
// attached (never added, or already deleted): success, as DEL must be
// idempotent.
func (m *Manager) del(ctx context.Context, inv *invocation) error {
	rec, err := m.records.Get(inv.ContainerID, inv.IfName)
	var damaged *record.DamagedError
	switch {
	case errors.Is(err, record.ErrNotFound):
		return nil
	case errors.As(err, &damaged):
		return m.delDamaged(ctx, inv, damaged)
	case err != nil:
		return withCode(CodeIOFailure, err)
	}
	if err := m.teardown(ctx, inv.Path, inv.Netns, rec); err != nil {
		// Keep the record: the runtime retries DEL and we try again.
		return fmt.Errorf("pod %s/%s: %w", rec.PodNamespace, rec.PodName, err)
	}
	return m.records.Delete(rec.ContainerID, rec.IfName)
}

// delDamaged serves DEL when the record cannot be read. libcni's cache
// still knows every delegate ADD that completed, with its config and args:
// those are torn down, then the damaged file is moved aside. A delegate
// whose ADD had not completed when the record was damaged is not known to
// the cache; the warning says so.
func (m *Manager) delDamaged(ctx context.Context, inv *invocation, damaged *record.DamagedError) error {
	rec, err := m.cachedRecord(inv.Path, inv.ContainerID, inv.IfName)
	if err != nil {
		return withCode(CodeIOFailure, fmt.Errorf("container %s: %w; reading libcni's cache instead: %w", inv.ContainerID, damaged, err))
	}
	if err := m.teardown(ctx, inv.Path, inv.Netns, rec); err != nil {
		// The file stays: the runtime retries DEL, and so do we.
		return fmt.Errorf("container %s: %w; tearing down the %d attachments libcni's cache knows: %w", inv.ContainerID, damaged, len(rec.Attachments), err)
	}
	moved, err := m.records.Quarantine(damaged)
	if err != nil {
		return withCode(CodeIOFailure, fmt.Errorf("container %s: %w", inv.ContainerID, err))
	}
	m.log.WarnContext(ctx, "DEL with a damaged record: tore down what libcni's cache knows; an attachment whose ADD had not completed may remain",
		"container", inv.ContainerID, "ifname", inv.IfName, "interfaces", ifnames(rec), "damaged", damaged.Err, "movedTo", moved)
	return nil
}

// cachedRecord rebuilds what a record of (containerID, ifname) would list
// from libcni's cache: the container's attachments except those another
// readable record of the same container lists, the cluster network (the
// runtime's ifname) first so that teardown deletes it last.
func (m *Manager) cachedRecord(path []string, containerID, ifname string) (*record.Record, error) {
	cached, err := m.cni(path).GetCachedAttachments(containerID)
	if err != nil {
		return nil, err
	}
	// Best effort: a record that cannot be read claims nothing.
	others, _, _ := m.records.List()
	claimed := map[string]bool{}
	for _, r := range others {
		if r.ContainerID == containerID {
			for _, a := range r.Attachments {
				claimed[a.IfName] = true
			}
		}
	}
	rec := &record.Record{ContainerID: containerID, IfName: ifname}
	for _, c := range cached {
		if claimed[c.IfName] {
			continue
		}
		// The auxiliary chain shares the runtime's ifname; it goes after
		// the cluster network so that teardown deletes it first.
		a := record.Attachment{Network: c.Network, IfName: c.IfName, Config: c.Config, Args: c.CniArgs, CapabilityArgs: c.CapabilityArgs,
			Default: c.IfName == ifname && (c.Network != m.cfg.AuxiliaryCNIChainName || m.cfg.AuxiliaryCNIChainName == ""), DeviceInfoFile: m.info.CNIPath(containerID, c.IfName)}
		if a.Default {
			rec.Netns = c.NetNS
			rec.Attachments = append([]record.Attachment{a}, rec.Attachments...)
		} else {
			rec.Attachments = append(rec.Attachments, a)
		}
	}
	return rec, nil
}

func ifnames(rec *record.Record) []string {
	out := make([]string, len(rec.Attachments))
	for i, a := range rec.Attachments {
		out[i] = a.IfName
	}
	return out
}

// teardown DELs every attachment of rec in reverse order, continuing past
// failures, and returns the joined errors. An attachment's CNI Device Info
// file goes once its DEL succeeded. netns may be empty (the runtime
// already removed the namespace); the delegates must cope, as the spec says.
func (m *Manager) teardown(ctx context.Context, path []string, netns string, rec *record.Record) error {
	cni := m.cni(path)
	var errs []error
	for i := len(rec.Attachments) - 1; i >= 0; i-- {
		a := &rec.Attachments[i]
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s (%s): stored config: %w", a.Network, a.IfName, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: rec.ContainerID, NetNS: netns, IfName: a.IfName, Args: a.Args, CapabilityArgs: a.CapabilityArgs}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("delete network %s (%s): %w", a.Network, a.IfName, err))
			continue
		}
		// After the delegate's DEL, which may still read it.
		if a.DeviceInfoFile != "" {
			if err := devinfo.RemoveCNI(a.DeviceInfoFile); err != nil {
				errs = append(errs, fmt.Errorf("network %s (%s): %w", a.Network, a.IfName, err))
			}
		}
	}
	return errors.Join(errs...)
}

// check runs CHECK for every attachment whose config supports it.
func (m *Manager) check(ctx context.Context, inv *invocation) error {
	rec, err := m.records.Get(inv.ContainerID, inv.IfName)
	if errors.Is(err, record.ErrNotFound) {
		return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s has no plexus attachments on %s", inv.ContainerID, inv.IfName))
	}
	if err != nil {
		return withCode(CodeIOFailure, err)
	}
	if !rec.Complete {
		return withCode(CodeTryAgainLater, fmt.Errorf("container %s: ADD has not completed", inv.ContainerID))
	}
	cni := m.cni(inv.Path)
	for i := range rec.Attachments {
		a := &rec.Attachments[i]
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			return fmt.Errorf("network %s (%s): stored config: %w", a.Network, a.IfName, err)
		}
		if ok, _ := version.GreaterThanOrEqualTo(list.CNIVersion, "0.4.0"); !ok {
			continue // CHECK does not exist before 0.4.0
		}
		if err := cni.CheckNetworkList(ctx, list, runtimeConf(inv, a)); err != nil {
			return fmt.Errorf("pod %s/%s: check network %s (%s): %w", rec.PodNamespace, rec.PodName, a.Network, a.IfName, err)
		}
	}
	return nil
}

// status reports the cluster default network's STATUS: plexus can add pods
// only if it can.
func (m *Manager) status(ctx context.Context, inv *invocation) error {
	net, err := m.clusterNetwork(ctx)
	if err != nil {
		return withCode(CodeNotAvailable, err)
	}
	if err := m.cni(inv.Path).GetStatusNetworkList(ctx, net.Config); err != nil {
		var cniErr *types.Error
		if errors.As(err, &cniErr) && cniErr.Code != 0 {
			return fmt.Errorf("cluster network %s: %w", net.Name, err)
		}
		return withCode(CodeNotAvailable, fmt.Errorf("cluster network %s: %w", net.Name, err))
	}
	return nil
}

// gc removes every record the runtime no longer knows, after tearing down
// its attachments, then runs the delegates' own GC for each network with
// the delegate attachments that remain valid. A damaged record stands for
// what libcni's cache knows of its container: torn down and moved aside
// when the container is gone, kept (and its attachments kept valid for the
// delegates' GC) while it lives.
func (m *Manager) gc(ctx context.Context, inv *invocation) error {
	valid := map[types.GCAttachment]bool{}
	for _, a := range inv.conf.ValidAttachments {
		valid[a] = true
	}
	recs, damagedRecs, err := m.records.List()
	var errs []error
	if err != nil {
		if len(recs) == 0 && len(damagedRecs) == 0 {
			return withCode(CodeIOFailure, err)
		}
		errs = append(errs, err) // the readable ones are still collected
	}
	damagedOf := map[*record.Record]*record.DamagedError{}
	for _, d := range damagedRecs {
		containerID, ifname, ok := m.damagedKey(inv.Path, d, valid)
		if !ok {
			errs = append(errs, fmt.Errorf("gc: %w; its name is no container ID and ifname", d))
			continue
		}
		rec, err := m.cachedRecord(inv.Path, containerID, ifname)
		if err != nil {
			errs = append(errs, fmt.Errorf("gc: %w; reading libcni's cache instead: %w", d, err))
			continue
		}
		recs = append(recs, rec)
		damagedOf[rec] = d
	}
	// libcni caches attachments by the conflist's name, and its GC works
	// per name, so networks are grouped by that name here too (two NADs may
	// share one).
	lists := map[string]*libcni.NetworkConfigList{}
	validDelegates := map[string][]types.GCAttachment{}
	for _, rec := range recs {
		keep := valid[types.GCAttachment{ContainerID: rec.ContainerID, IfName: rec.IfName}]
		for _, a := range rec.Attachments {
			list, err := libcni.NetworkConfFromBytes(a.Config)
			if err != nil {
				errs = append(errs, fmt.Errorf("gc container %s: network %s: stored config: %w", rec.ContainerID, a.Network, err))
				continue
			}
			lists[list.Name] = list
			if keep {
				validDelegates[list.Name] = append(validDelegates[list.Name], types.GCAttachment{ContainerID: rec.ContainerID, IfName: a.IfName})
			}
		}
		damaged := damagedOf[rec]
		if keep {
			if damaged != nil {
				m.log.WarnContext(ctx, "GC: damaged record of a live container left in place; its DEL will tear down what libcni's cache knows",
					"container", rec.ContainerID, "ifname", rec.IfName, "damaged", damaged)
			}
			continue
		}
		if err := m.teardown(ctx, inv.Path, rec.Netns, rec); err != nil {
			errs = append(errs, fmt.Errorf("gc container %s: %w", rec.ContainerID, err))
			continue
		}
		if damaged == nil {
			err = m.records.Delete(rec.ContainerID, rec.IfName)
		} else {
			var moved string
			if moved, err = m.records.Quarantine(damaged); err == nil {
				m.log.WarnContext(ctx, "GC: damaged record of a gone container: tore down what libcni's cache knows",
					"container", rec.ContainerID, "interfaces", ifnames(rec), "damaged", damaged.Err, "movedTo", moved)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if net, err := m.clusterNetwork(ctx); err == nil {
		lists[net.Config.Name] = net.Config
	}
	cni := m.cni(inv.Path)
	for name, list := range lists {
		if err := cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: validDelegates[name]}); err != nil {
			errs = append(errs, fmt.Errorf("gc network %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// damagedKey picks the (container ID, ifname) a damaged record's file name
// stands for: the reading the runtime says is valid, else one whose
// container libcni's cache knows, else the first; none (not ok) for a name
// no record of ours can have.
func (m *Manager) damagedKey(path []string, d *record.DamagedError, valid map[types.GCAttachment]bool) (containerID, ifname string, ok bool) {
	keys := d.Keys()
	for _, k := range keys {
		if valid[types.GCAttachment{ContainerID: k[0], IfName: k[1]}] {
			return k[0], k[1], true
		}
	}
	for _, k := range keys {
		if cached, err := m.cni(path).GetCachedAttachments(k[0]); err == nil && len(cached) > 0 {
			return k[0], k[1], true
		}
	}
	if len(keys) == 0 {
		return "", "", false
	}
	return keys[0][0], keys[0][1], true
}
