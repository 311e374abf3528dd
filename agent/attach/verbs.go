package attach

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/record"
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
	if errors.Is(err, record.ErrNotFound) {
		return nil
	}
	if err != nil {
		return withCode(CodeIOFailure, err)
	}
	if err := m.teardown(ctx, inv.Path, inv.Netns, rec); err != nil {
		// Keep the record: the runtime retries DEL and we try again.
		return fmt.Errorf("pod %s/%s: %w", rec.PodNamespace, rec.PodName, err)
	}
	return m.records.Delete(rec.ContainerID, rec.IfName)
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
			if err := devices.RemoveCNI(a.DeviceInfoFile); err != nil {
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
// the delegate attachments that remain valid.
func (m *Manager) gc(ctx context.Context, inv *invocation) error {
	valid := map[types.GCAttachment]bool{}
	for _, a := range inv.conf.ValidAttachments {
		valid[a] = true
	}
	recs, err := m.records.List()
	if err != nil {
		return withCode(CodeIOFailure, err)
	}
	// libcni caches attachments by the conflist's name, and its GC works
	// per name, so networks are grouped by that name here too (two NADs may
	// share one).
	var errs []error
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
		if keep {
			continue
		}
		if err := m.teardown(ctx, inv.Path, rec.Netns, rec); err != nil {
			errs = append(errs, fmt.Errorf("gc container %s: %w", rec.ContainerID, err))
			continue
		}
		if err := m.records.Delete(rec.ContainerID, rec.IfName); err != nil {
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
