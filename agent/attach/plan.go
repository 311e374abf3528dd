package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

// planned is one attachment ADD will make.
type planned struct {
	network *resolve.Network
	ifname  string
	primary bool
	// origin is the record's Origin of the attachment.
	origin string
	// capArgs become the delegate's runtimeConfig (libcni passes only the
	// keys a plugin declares as capabilities).
	capArgs map[string]any
	// cniArgs are CNI_ARGS of this attachment's delegate only, on top of
	// the runtime's: compatible mode's IP= and MAC=.
	cniArgs [][2]string
	// defaultRoute is the selection's default-route gateways.
	defaultRoute []net.IP
	// deviceID is the attachment's device: the selection's deviceID, or
	// the device of the NAD's resource kubelet allocated (devices step).
	deviceID string
	// devInfo is the device plugin's Device Info file of deviceID, copied
	// to devInfoFile before the delegate runs.
	devInfo []byte
	// devInfoFile is the CNI Device Info file of the attachment: set when
	// it has a device of a resource or a plugin declares the
	// CNIDeviceInfoFile capability.
	devInfoFile string
}

// selectionCapabilities maps selection keys to the CNI capability carrying
// them.
var selectionCapabilities = []struct{ field, capability string }{
	{"ips", "ips"},
	{"mac", "mac"},
	{"portMappings", "portMappings"},
	{"bandwidth", "bandwidth"},
	{"infiniband-guid", "infinibandGUID"},
}

// plan turns the pod and its selection into the ordered attachment list:
// the cluster default network (or the pod's override) first, then the
// agent's defaultNetworks, then the pod's selection. What compatible mode
// accepted is reported to the pod as warnings once the plan stands.
func (m *Manager) plan(ctx context.Context, inv *invocation, pod *source.Pod) ([]planned, error) {
	var warnings []string
	primary, origin, err := m.primaryNetwork(ctx, pod, &warnings)
	if err != nil {
		return nil, err
	}
	// Runtime-supplied runtimeConfig (port mappings, bandwidth from the pod
	// spec) belongs to the cluster default network only.
	out := []planned{{network: primary, ifname: inv.IfName, primary: true, origin: origin, capArgs: inv.conf.RuntimeConfig}}
	if pod == nil || slices.Contains(m.cfg.SystemNamespaces, pod.Namespace) {
		return out, m.planDevices(ctx, inv, pod, out, nil)
	}
	ref := selection.PodRef{Namespace: pod.Namespace, Name: pod.Name}
	var elems []selection.Element
	// The defaultNetworks are the admin's: strict (the agent's own
	// configuration has no excuse) and exempt from namespace isolation.
	admin := selection.Options{Namespace: m.cfg.SystemNamespace}
	for _, name := range m.cfg.DefaultNetworks {
		e, _, err := admin.Parse(ref, name)
		if err != nil || len(e) != 1 {
			return nil, withCode(CodeInvalidConfig, fmt.Errorf("agent defaultNetworks entry %q is invalid: %w", name, err))
		}
		elems = append(elems, e[0])
	}
	fromAdmin := len(elems)
	selected, selWarnings, err := m.policy().Networks(ref, pod.Annotations[source.NetworksAnnotation])
	if err != nil {
		return nil, err
	}
	for _, w := range selWarnings {
		warnings = append(warnings, fmt.Sprintf("pod %s: %s annotation, %s", ref, source.NetworksAnnotation, w))
	}
	elems = append(elems, selected...)

	taken := map[string]bool{inv.IfName: true}
	more, err := m.planElements(ctx, pod, elems, fromAdmin, taken, func(i int) string { return "net" + strconv.Itoa(i+1) }, &warnings)
	if err != nil {
		return nil, err
	}
	out = append(out, more...)
	if err := m.planDevices(ctx, inv, pod, out, nil); err != nil {
		return nil, err
	}
	m.warn(ctx, pod, warnings)
	return out, nil
}

// planElements plans an attachment for each element, the first fromAdmin
// of them the agent's defaultNetworks (the others have passed namespace
// isolation: Policy.Networks).
// taken holds the interface names in use and gets the new ones; name
// gives the interface of the i-th element that names none.
func (m *Manager) planElements(ctx context.Context, pod *source.Pod, elems []selection.Element, fromAdmin int, taken map[string]bool, name func(i int) string, warnings *[]string) ([]planned, error) {
	ref := selection.PodRef{Namespace: pod.Namespace, Name: pod.Name}
	var out []planned
	var v4Route, v6Route string
	for i := range elems {
		e := &elems[i]
		origin := record.OriginSelection
		if i < fromAdmin {
			origin = record.OriginDefault
		}
		net, err := m.resolver.NAD(ctx, e.Namespace, e.Name)
		if err != nil {
			return nil, fmt.Errorf("pod %s: resolve network %s: %w", ref, e.Key(), err)
		}
		p := planned{network: net, ifname: e.Interface, origin: origin, defaultRoute: e.DefaultRoute, deviceID: e.DeviceID}
		if p.ifname == "" {
			p.ifname = name(i)
		}
		if taken[p.ifname] {
			return nil, &selection.Error{Pod: ref, Network: e.Key(), Field: "interface", Reason: fmt.Sprintf("interface name %q is used twice in the pod", p.ifname)}
		}
		taken[p.ifname] = true
		for _, gw := range e.DefaultRoute {
			claim := &v6Route
			if gw.To4() != nil {
				claim = &v4Route
			}
			if *claim != "" {
				return nil, &selection.Error{Pod: ref, Network: e.Key(), Field: "default-route", Reason: fmt.Sprintf("%s already claims the default route for this IP family", *claim)}
			}
			*claim = e.Key()
		}
		if p.capArgs, p.cniArgs, err = m.capabilityArgs(ref, e, net.Config, warnings); err != nil {
			return nil, err
		}
		if p.network, err = injectSelection(net, e); err != nil {
			return nil, fmt.Errorf("pod %s: network %s: %w", ref, e.Key(), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// warn tells the pod's owner what compatible mode accepted: a Warning
// Event in Kubernetes mode, and the agent's log.
func (m *Manager) warn(ctx context.Context, pod *source.Pod, warnings []string) {
	for _, w := range warnings {
		m.log.WarnContext(ctx, "selection accepted in compatible mode", "pod", pod.Namespace+"/"+pod.Name, "warning", w)
		if m.reporter != nil {
			reportCtx, cancel := context.WithTimeout(ctx, reportTimeout)
			m.reporter.Warn(reportCtx, pod, w)
			cancel()
		}
	}
}

// delegateArgs is the CNI_ARGS of the attachment's delegate: the
// runtime's, with the attachment's own keys replacing any of the same
// name. IgnoreUnknown=1 is added with them, so that a plugin reading none
// of them does not fail on them.
func (p *planned) delegateArgs(runtime [][2]string) [][2]string {
	if len(p.cniArgs) == 0 {
		return runtime
	}
	out := make([][2]string, 0, len(runtime)+len(p.cniArgs)+1)
	ignore := false
	for _, kv := range runtime {
		if slices.ContainsFunc(p.cniArgs, func(own [2]string) bool { return own[0] == kv[0] }) {
			continue
		}
		if kv[0] == "IgnoreUnknown" {
			kv[1], ignore = "1", true
		}
		out = append(out, kv)
	}
	if !ignore {
		out = append(out, [2]string{"IgnoreUnknown", "1"})
	}
	return append(out, p.cniArgs...)
}

// planDevices is the devices step. Every attachment whose NAD names a
// resource gets one of the devices kubelet allocated to the pod
// (devices.Assign documents the order); kubelet is asked only when there
// is such an attachment. Each attachment with a device gets it as deviceID
// (and pciBusID for a PCI address) in every plugin of its config and as
// runtimeConfig.deviceID for the plugins declaring that capability; the
// device plugin's Device Info file is read for the CNI one (Device Info
// spec 4.2), whose path goes to the plugins declaring CNIDeviceInfoFile.
// Without pod identity there is nobody to ask: no devices, as in Multus.
//
// attached are the devices the pod's attachments already hold (a
// hot-plug): reserved, so that the plan gets others.
func (m *Manager) planDevices(ctx context.Context, inv *invocation, pod *source.Pod, plan []planned, attached []devices.Request) error {
	need := -1
	reqs := slices.Clone(attached)
	for i, p := range plan {
		reqs = append(reqs, devices.Request{Network: p.network.Name, IfName: p.ifname, Resource: p.network.ResourceName, DeviceID: p.deviceID})
		if need < 0 && p.network.ResourceName != "" {
			need = i
		}
	}
	fromResource := make([]bool, len(plan))
	if need >= 0 && pod != nil {
		first := plan[need].network
		if m.devices == nil {
			return withCode(CodeInvalidConfig, fmt.Errorf("pod %s/%s: network %s needs a device of resource %s, but the agent has no source of device allocations",
				pod.Namespace, pod.Name, first.Name, first.ResourceName))
		}
		containers, err := m.devices.PodDevices(ctx, pod.Namespace, pod.Name)
		if err != nil {
			// Kubelet restarting or not answering yet: the runtime retries.
			return withCode(CodeTryAgainLater, fmt.Errorf("pod %s/%s: network %s needs a device of resource %s: %w",
				pod.Namespace, pod.Name, first.Name, first.ResourceName, err))
		}
		ids, err := devices.Assign(pod.Namespace+"/"+pod.Name, reqs, containers)
		if err != nil {
			return err
		}
		for i, id := range ids[len(attached):] {
			if id != "" {
				plan[i].deviceID, fromResource[i] = id, true
			}
		}
	}
	for i := range plan {
		p := &plan[i]
		if p.deviceID != "" {
			net, err := injectDevice(p.network, p.deviceID)
			if err != nil {
				return fmt.Errorf("pod %s: network %s: %w", inv.pod, p.network.Name, err)
			}
			p.network = net
			p.capArgs = withCapArg(p.capArgs, "deviceID", p.deviceID)
		}
		if fromResource[i] {
			data, err := m.info.ReadDP(p.network.ResourceName, p.deviceID)
			if err != nil {
				return withCode(CodeIOFailure, fmt.Errorf("pod %s: network %s: device %s: %w", inv.pod, p.network.Name, p.deviceID, err))
			}
			p.devInfo = data
		}
		if fromResource[i] || declares(p.network.Config, "CNIDeviceInfoFile") {
			p.devInfoFile = m.info.CNIPath(inv.ContainerID, p.ifname)
			p.capArgs = withCapArg(p.capArgs, "CNIDeviceInfoFile", p.devInfoFile)
		}
	}
	return nil
}

// withCapArg returns args with key set, leaving args itself alone: the
// cluster network's args are the runtime's own map.
func withCapArg(args map[string]any, key string, value any) map[string]any {
	out := make(map[string]any, len(args)+1)
	for k, v := range args {
		out[k] = v
	}
	out[key] = value
	return out
}

// primaryNetwork resolves the cluster default network, or the pod's
// default-network override. Bare names in the override are the system
// namespace's, as in Multus (its multusNamespace).
func (m *Manager) primaryNetwork(ctx context.Context, pod *source.Pod, warnings *[]string) (net *resolve.Network, origin string, err error) {
	if pod != nil {
		ref := selection.PodRef{Namespace: pod.Namespace, Name: pod.Name}
		override, w, err := m.policy().DefaultNetwork(ref, pod.Annotations[source.DefaultNetworkAnnotation])
		if err != nil {
			return nil, "", err
		}
		for _, w := range w {
			*warnings = append(*warnings, fmt.Sprintf("pod %s: %s annotation, %s", ref, source.DefaultNetworkAnnotation, w))
		}
		if override != nil {
			net, err := m.resolver.NAD(ctx, override.Namespace, override.Name)
			if err != nil {
				return nil, "", fmt.Errorf("pod %s: resolve default network override %s: %w", ref, override.Key(), err)
			}
			return net, record.OriginOverride, nil
		}
	}
	net, err = m.clusterNetwork(ctx)
	return net, record.OriginCluster, err
}

// clusterNetwork resolves Config.ClusterNetwork; unset, the node's primary
// CNI configuration as the generator last validated it: its bytes, never a
// second read of a file that may be mid-write. A configuration file brings
// its subdirectory chain.
func (m *Manager) clusterNetwork(ctx context.Context) (*resolve.Network, error) {
	name := m.cfg.ClusterNetwork
	if name == "" {
		path, data, ok := m.primary.PrimaryConf()
		if !ok {
			return nil, withCode(CodeTryAgainLater, errors.New("cluster network: no primary CNI configuration found on the node yet"))
		}
		net, err := m.resolver.ConfBytes(path, data)
		if err != nil {
			return nil, fmt.Errorf("cluster network: primary CNI configuration %s: %w", path, err)
		}
		return net, nil
	}
	var (
		net *resolve.Network
		err error
	)
	switch {
	case filepath.IsAbs(name):
		net, err = m.resolver.ConfFile(name)
	case strings.Contains(name, "/"):
		ns, n, _ := strings.Cut(name, "/")
		net, err = m.resolver.NAD(ctx, ns, n)
	default:
		net, err = m.resolver.NAD(ctx, m.cfg.SystemNamespace, name)
		if errors.Is(err, source.ErrNotFound) {
			net, err = m.resolver.ConfName(name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("resolve cluster network %q: %w", name, err)
	}
	return net, nil
}

// policy is how the pod's annotations are read: the same
// selection.Policy the admission webhook applies.
func (m *Manager) policy() selection.Policy {
	return selection.Policy{Mode: m.cfg.SelectionMode, SystemNamespace: m.cfg.SystemNamespace,
		NamespaceIsolation: m.cfg.NamespaceIsolation, GlobalNamespaces: m.cfg.GlobalNamespaces}
}

// capabilityArgs routes the selection's runtime keys to runtimeConfig and
// fails when no plugin of the network declares the capability: silently
// dropping a requested static IP or MAC would be worse than failing. In
// compatible mode ips and mac without the capability go to the delegate
// as CNI_ARGS IP= and MAC= instead, as Multus passes them (the static IPAM
// plugin reads IP=, bridge, macvlan and tuning read MAC=), with a warning.
func (m *Manager) capabilityArgs(pod selection.PodRef, e *selection.Element, list *libcni.NetworkConfigList, warnings *[]string) (map[string]any, [][2]string, error) {
	values := map[string]any{}
	var cniArgs [][2]string
	if len(e.IPs) > 0 {
		values["ips"] = e.IPs
	}
	if e.MAC != "" {
		values["mac"] = e.MAC
	}
	if len(e.PortMappings) > 0 {
		values["portMappings"] = e.PortMappings
	}
	if e.Bandwidth != nil {
		values["bandwidth"] = e.Bandwidth
	}
	if e.InfinibandGUID != "" {
		values["infinibandGUID"] = e.InfinibandGUID
	}
	for _, sc := range selectionCapabilities {
		if _, ok := values[sc.capability]; !ok || declares(list, sc.capability) {
			continue
		}
		arg := compatibleArgs[sc.field]
		if arg == nil || m.cfg.SelectionMode != selection.Compatible {
			return nil, nil, &selection.Error{Pod: pod, Network: e.Key(), Field: sc.field,
				Reason: fmt.Sprintf("no plugin of network %s declares the %q capability", e.Key(), sc.capability)}
		}
		kv := arg(e)
		cniArgs = append(cniArgs, kv)
		delete(values, sc.capability)
		*warnings = append(*warnings, fmt.Sprintf("pod %s: network %s: no plugin declares the %q capability, so the selection's %q went to the delegate as CNI_ARGS %s=%s, which only some plugins read; declare \"capabilities\": {%q: true} on the plugin of NetworkAttachmentDefinition %s that takes it",
			pod, e.Key(), sc.capability, sc.field, kv[0], kv[1], sc.capability, e.Key()))
	}
	if len(values) == 0 {
		values = nil
	}
	return values, cniArgs, nil
}

// compatibleArgs are the selection keys compatible mode passes as CNI_ARGS
// when no plugin declares their capability, the way Multus does.
var compatibleArgs = map[string]func(*selection.Element) [2]string{
	"ips": func(e *selection.Element) [2]string { return [2]string{"IP", strings.Join(e.IPs, ",")} },
	"mac": func(e *selection.Element) [2]string { return [2]string{"MAC", e.MAC} },
}

func declares(list *libcni.NetworkConfigList, capability string) bool {
	for _, p := range list.Plugins {
		if p.Network.Capabilities[capability] {
			return true
		}
	}
	return false
}
