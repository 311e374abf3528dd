package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/devinfo"
)

// ErrAddInProgress is HotPlug's answer for a pod whose runtime ADD has not
// completed: try again later, the record will say what is attached.
var ErrAddInProgress = errors.New("the pod's ADD has not completed")

// ErrNotAttached is HotPlug's answer for a pod with no sandbox attached by
// this agent (yet: its ADD may not have written its record; or never: a
// host-network pod). Nothing was done.
var ErrNotAttached = errors.New("no sandbox of the pod is attached")

// Change is one attachment hot-plug added or removed, or failed to.
type Change struct {
	// Op is "attach" or "detach".
	Op      string
	Network string
	IfName  string
	// Err is why the change was refused or failed; the other changes went on.
	Err error
}

// HotPlug brings a running pod's secondary attachments in line with its
// networks annotation: an element no attachment matches (same network,
// and the same interface when the element names one) is attached through
// the steps of a pod ADD, and an attachment of the selection no element
// matches is detached. The cluster network, its override and the agent's
// defaultNetworks are never changed. Each step rewrites the record before
// and after its delegate runs, so an agent killed in between converges on
// the next call: an attachment recorded without a result is torn down
// first. The runtime's verbs on the sandbox wait for it, and it for them.
//
// A pod being deleted, opted out, or in a system namespace is left alone.
// The returned error means nothing changed (an invalid annotation, a
// record of an older agent, ErrAddInProgress, ErrNotAttached) or, with changes, that the
// network-status could not be published; a Change's Err, that only that
// change failed. The pod gets an Event per change and a new
// network-status when one succeeded.
func (m *Manager) HotPlug(ctx context.Context, pod *source.Pod) ([]Change, error) {
	if pod.Deleting || pod.Annotations[source.HotPlugAnnotation] == "false" || slices.Contains(m.cfg.SystemNamespaces, pod.Namespace) {
		return nil, nil
	}
	recs, _, err := m.records.List()
	if err != nil && len(recs) == 0 {
		return nil, err
	}
	var changes []Change
	found := false
	for _, r := range recs {
		if r.PodNamespace != pod.Namespace || r.PodName != pod.Name || !samePod(pod, r.PodUID) {
			continue
		}
		found = true
		c, err := m.hotPlug(ctx, r.ContainerID, r.IfName, pod)
		changes = append(changes, c...)
		if err != nil {
			if !errors.Is(err, ErrAddInProgress) {
				m.reportFailure(ctx, pod, err)
			}
			return changes, err
		}
	}
	if !found {
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, ErrNotAttached)
	}
	return changes, nil
}

func (m *Manager) hotPlug(ctx context.Context, containerID, ifname string, pod *source.Pod) ([]Change, error) {
	m.gcLock.RLock()
	defer m.gcLock.RUnlock()
	unlock := m.containers.lock(containerID)
	defer unlock()
	rec, err := m.records.Get(containerID, ifname)
	switch {
	case errors.Is(err, record.ErrNotFound):
		return nil, nil // deleted meanwhile
	case err != nil:
		return nil, err
	case !rec.Complete:
		return nil, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, ErrAddInProgress)
	}
	ref := selection.PodRef{Namespace: pod.Namespace, Name: pod.Name}
	if len(rec.Attachments) == 0 || rec.Attachments[0].Origin == "" {
		return nil, fmt.Errorf("pod %s: its networks were attached by an older agent that did not record why each exists; recreate the pod to change them", ref)
	}
	if err := m.checkDefaultNetwork(ref, pod, rec); err != nil {
		return nil, err
	}
	// Parsed without Policy.Networks' isolation check: each new element
	// is checked on its own (attachOne), so one forbidden network fails
	// only its attach.
	elems, selWarnings, err := selection.Options{Mode: m.cfg.SelectionMode}.Parse(ref, pod.Annotations[source.NetworksAnnotation])
	if err != nil {
		return nil, err
	}
	var warnings []string
	for _, w := range selWarnings {
		warnings = append(warnings, fmt.Sprintf("pod %s: %s annotation, %s", ref, source.NetworksAnnotation, w))
	}
	inv := &invocation{
		Request: &Request{Verb: VerbAdd, ContainerID: rec.ContainerID, Netns: rec.Netns, IfName: rec.IfName, Path: rec.Path},
		args:    rec.Attachments[0].Args,
		pod:     ref,
	}

	var changes []Change
	// An attach the agent did not live to finish goes first.
	for i := len(rec.Attachments) - 1; i >= 0; i-- {
		if a := rec.Attachments[i]; a.Origin == record.OriginSelection && a.Result == nil {
			if err := m.detach(ctx, rec, i); err != nil {
				return nil, err
			}
		}
	}
	add, remove := diff(elems, rec.Attachments)
	for _, i := range slices.Backward(remove) {
		a := rec.Attachments[i]
		c := Change{Op: "detach", Network: a.Network, IfName: a.IfName}
		c.Err = m.detach(ctx, rec, i)
		changes = append(changes, c)
	}
	for _, e := range add {
		c := Change{Op: "attach", Network: e.Key(), IfName: e.Interface}
		c.IfName, c.Err = m.attachOne(ctx, inv, pod, rec, e, &warnings)
		changes = append(changes, c)
	}
	m.warn(ctx, pod, warnings)
	if slices.ContainsFunc(changes, func(c Change) bool { return c.Err == nil }) {
		err = m.publish(ctx, pod, rec)
	}
	m.notify(ctx, pod, changes)
	return changes, err
}

// checkDefaultNetwork refuses a change of the default-network annotation:
// the cluster network's interface stays what the runtime's ADD made it.
func (m *Manager) checkDefaultNetwork(ref selection.PodRef, pod *source.Pod, rec *record.Record) error {
	override, _, err := m.policy().DefaultNetwork(ref, pod.Annotations[source.DefaultNetworkAnnotation])
	if err != nil {
		return err
	}
	first := rec.Attachments[0]
	was := ""
	if first.Origin == record.OriginOverride {
		was = first.Network
	}
	now := ""
	if override != nil {
		now = override.Key()
	}
	if was != now {
		return &selection.Error{Pod: ref, Field: source.DefaultNetworkAnnotation,
			Reason: fmt.Sprintf("the default network of a running pod is not hot-plugged (%s has %s, the annotation now asks for %s); recreate the pod to change it", rec.IfName, orCluster(was), orCluster(now))}
	}
	return nil
}

func orCluster(override string) string {
	if override == "" {
		return "the cluster network"
	}
	return override
}

// diff matches the selection's elements with the record's selection
// attachments: elements naming an interface first, then the others, each
// with the first attachment of its network not matched yet. It returns
// the elements to attach and the indexes of the attachments to detach, in
// record order.
func diff(elems []selection.Element, atts []record.Attachment) (add []selection.Element, remove []int) {
	matched := make([]bool, len(atts))
	found := make([]bool, len(elems))
	for _, named := range []bool{true, false} {
		for k, e := range elems {
			if (e.Interface != "") != named {
				continue
			}
			for i, a := range atts {
				if !matched[i] && a.Origin == record.OriginSelection && a.Network == e.Key() && (e.Interface == "" || e.Interface == a.IfName) {
					matched[i], found[k] = true, true
					break
				}
			}
		}
	}
	for k, e := range elems {
		if !found[k] {
			add = append(add, e)
		}
	}
	for i, a := range atts {
		if a.Origin == record.OriginSelection && !matched[i] {
			remove = append(remove, i)
		}
	}
	return add, remove
}

// detach tears down attachment i and drops it from the record. On failure
// it stays recorded, so the runtime's DEL (or the next hot-plug) retries.
func (m *Manager) detach(ctx context.Context, rec *record.Record, i int) error {
	a := rec.Attachments[i]
	one := &record.Record{ContainerID: rec.ContainerID, IfName: rec.IfName, Attachments: []record.Attachment{a}}
	if err := m.teardown(ctx, rec.Path, rec.Netns, one); err != nil {
		return fmt.Errorf("pod %s/%s: %w", rec.PodNamespace, rec.PodName, err)
	}
	rec.Attachments = slices.Delete(rec.Attachments, i, i+1)
	if err := m.records.Put(rec); err != nil {
		return withCode(CodeIOFailure, err)
	}
	return nil
}

// attachOne plans, records and adds one element, and returns its
// interface name. A failure tears down what its delegates made and leaves
// the other attachments alone.
func (m *Manager) attachOne(ctx context.Context, inv *invocation, pod *source.Pod, rec *record.Record, e selection.Element, warnings *[]string) (string, error) {
	ref := inv.pod
	if len(e.DefaultRoute) > 0 {
		return e.Interface, &selection.Error{Pod: ref, Network: e.Key(), Field: "default-route", Reason: "the default route of a running pod is not hot-plugged; recreate the pod to move it"}
	}
	// Checked per element, not for the whole annotation as at ADD: one
	// forbidden network fails its own attach only.
	if err := m.policy().CheckIsolation(ref, e.Namespace, e.Name, "network selection"); err != nil {
		return e.Interface, err
	}
	taken := map[string]bool{}
	var held []devices.Request
	for _, a := range rec.Attachments {
		taken[a.IfName] = true
		if a.Resource != "" {
			held = append(held, devices.Request{Network: a.Network, IfName: a.IfName, Resource: a.Resource, DeviceID: a.DeviceID})
		}
	}
	// The next netN no attachment has.
	next := func(int) string {
		for n := 1; ; n++ {
			if name := "net" + strconv.Itoa(n); !taken[name] {
				return name
			}
		}
	}
	plan, err := m.planElements(ctx, pod, []selection.Element{e}, 0, taken, next, warnings)
	if err != nil {
		return e.Interface, err
	}
	if err := m.planDevices(ctx, inv, pod, plan, held); err != nil {
		return plan[0].ifname, err
	}
	p := plan[0]
	cni := m.cni(inv.Path)
	if err := m.checkPlugins(ctx, inv, plan, cni.Path); err != nil {
		return p.ifname, err
	}
	// Before the auxiliary chain, which teardown deletes first.
	at := len(rec.Attachments)
	if rec.Attachments[at-1].Origin == record.OriginAuxiliary {
		at--
	}
	rec.Attachments = slices.Insert(rec.Attachments, at, p.attachment(inv.args))
	if err := m.records.PutIntent(rec); err != nil {
		rec.Attachments = slices.Delete(rec.Attachments, at, at+1)
		return p.ifname, withCode(CodeIOFailure, err)
	}
	a := &rec.Attachments[at]
	err = func() error {
		if p.devInfo != nil {
			// The delegate reads the device plugin's information here.
			if err := devinfo.WriteCNI(p.devInfoFile, p.devInfo); err != nil {
				return err
			}
		}
		res, err := cni.AddNetworkList(ctx, p.network.Config, runtimeConf(inv, a))
		if err != nil {
			return err
		}
		if a.Result, err = json.Marshal(res); err != nil {
			return err
		}
		return m.records.Put(rec)
	}()
	if err == nil {
		return p.ifname, nil
	}
	cause := fmt.Errorf("pod %s: add network %s as %s: %w", ref, p.network.Name, p.ifname, err)
	tctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	if derr := m.detach(tctx, rec, at); derr != nil {
		return p.ifname, fmt.Errorf("%w (rollback incomplete: %w)", cause, derr)
	}
	return p.ifname, cause
}

// publish writes the record's network-status, rebuilt from the results
// it holds, and reports it.
func (m *Manager) publish(ctx context.Context, pod *source.Pod, rec *record.Record) error {
	var in []netstatus.Attachment
	for _, a := range rec.Attachments {
		if a.Origin == record.OriginAuxiliary {
			continue // recorded, not reported, as in ADD
		}
		res, err := create.CreateFromBytes(a.Result)
		if err != nil {
			return fmt.Errorf("pod %s/%s: network %s (%s): recorded result: %w", pod.Namespace, pod.Name, a.Network, a.IfName, err)
		}
		st := netstatus.Attachment{Name: a.Network, IfName: a.IfName, Default: a.Default, Result: res}
		if a.DeviceInfoFile != "" {
			st.DeviceInfo, _ = devinfo.ReadCNI(a.DeviceInfoFile) // absent or unreadable: no device-info, as in ADD
		}
		in = append(in, st)
	}
	status, err := netstatus.Build(in)
	if err != nil {
		return err
	}
	if rec.Status, err = json.Marshal(status); err != nil {
		return err
	}
	if err := m.records.Put(rec); err != nil {
		return withCode(CodeIOFailure, err)
	}
	if m.reporter == nil {
		return nil
	}
	reportCtx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	return m.reporter.Publish(reportCtx, pod, status)
}

// notify gives the pod one Event per change.
func (m *Manager) notify(ctx context.Context, pod *source.Pod, changes []Change) {
	if m.reporter == nil {
		return
	}
	for _, c := range changes {
		reportCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		switch {
		case c.Err != nil:
			m.reporter.Failed(reportCtx, pod, fmt.Errorf("hot-plug %s of %s: %w", c.Op, c.Network, c.Err))
		case c.Op == "attach":
			m.reporter.Event(reportCtx, pod, "AddedInterface", fmt.Sprintf("Add %s from %s (hot-plug)", c.IfName, c.Network))
		default:
			m.reporter.Event(reportCtx, pod, "RemovedInterface", fmt.Sprintf("Remove %s from %s (hot-plug)", c.IfName, c.Network))
		}
		cancel()
	}
}
