package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/plexus-cni/plexus/agent/defaultroute"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/devinfo"
)

// teardownTimeout bounds the rollback of a failed ADD, which must run even
// when the ADD's own context has expired.
const teardownTimeout = 2 * time.Minute

// reportTimeout bounds publishing the network-status (annotation patch and
// Events) after a successful ADD.
const reportTimeout = 5 * time.Second

func (m *Manager) add(ctx context.Context, inv *invocation) ([]byte, error) {
	if _, err := m.records.Get(inv.ContainerID, inv.IfName); err == nil {
		return nil, withCode(CodeAlreadyAttached, fmt.Errorf("container %s already has interface %s attached by plexus; DEL it before adding it again", inv.ContainerID, inv.IfName))
	} else if !errors.Is(err, record.ErrNotFound) {
		return nil, withCode(CodeIOFailure, err)
	}
	pod, err := m.lookupPod(ctx, inv)
	if err != nil {
		return nil, err
	}
	plan, err := m.plan(ctx, inv, pod)
	if err != nil {
		m.reportFailure(ctx, pod, err)
		return nil, err
	}

	// The auxiliary chain runs last, on the cluster network's interface.
	all := plan
	aux, err := m.auxiliaryChain(plan[0].network.Config.CNIVersion)
	if err != nil {
		m.reportFailure(ctx, pod, err)
		return nil, err
	}
	if aux != nil {
		all = append(slices.Clip(plan), planned{network: aux, ifname: inv.IfName, origin: record.OriginAuxiliary})
	}

	cni := m.cni(inv.Path)
	if err := m.checkPlugins(ctx, inv, all, cni.Path); err != nil {
		m.reportFailure(ctx, pod, err)
		return nil, err
	}

	rec := &record.Record{
		ContainerID:  inv.ContainerID,
		IfName:       inv.IfName,
		Netns:        inv.Netns,
		PodNamespace: inv.pod.Namespace,
		PodName:      inv.pod.Name,
		PodUID:       inv.podUID(),
		Path:         inv.Path,
	}
	for _, p := range all {
		rec.Attachments = append(rec.Attachments, p.attachment(inv.args))
	}
	// The intent is on disk before any delegate runs: whatever happens
	// next, DEL knows what may exist.
	if err := m.records.PutIntent(rec); err != nil {
		return nil, withCode(CodeIOFailure, fmt.Errorf("pod %s: %w", inv.pod, err))
	}

	results := make([]types.Result, len(all))
	for i, p := range all {
		if p.devInfo != nil {
			// The delegate reads the device plugin's information here.
			if err := devinfo.WriteCNI(p.devInfoFile, p.devInfo); err != nil {
				err = withCode(CodeIOFailure, fmt.Errorf("pod %s: network %s (%s): %w", inv.pod, p.network.Name, p.ifname, err))
				return nil, m.rollback(inv, rec, i-1, pod, err)
			}
		}
		list := p.network.Config
		if i >= len(plan) {
			if list, err = withPrevResult(list, results[0]); err != nil {
				err = fmt.Errorf("pod %s: auxiliary chain %s: %w", inv.pod, p.network.Name, err)
				return nil, m.rollback(inv, rec, i-1, pod, err)
			}
		}
		res, err := cni.AddNetworkList(ctx, list, runtimeConf(inv, &rec.Attachments[i]))
		if err != nil {
			err = fmt.Errorf("pod %s: add network %s as %s: %w", inv.pod, p.network.Name, p.ifname, err)
			return nil, m.rollback(inv, rec, i, pod, err)
		}
		results[i] = res
	}

	for i := len(plan); i < len(all); i++ {
		// Recorded, not reported: the chain adds no interface of its own.
		if rec.Attachments[i].Result, err = json.Marshal(results[i]); err != nil {
			return nil, m.rollback(inv, rec, len(all)-1, pod, err)
		}
	}
	out, status, err := m.complete(inv, rec, plan, results[:len(plan)])
	if err != nil {
		return nil, m.rollback(inv, rec, len(all)-1, pod, err)
	}
	if m.reporter != nil && pod != nil {
		// A slow API server must not hold the pod's network hostage.
		reportCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := m.reporter.Report(reportCtx, pod, status)
		cancel()
		if err != nil {
			// The attachments work; a stale annotation is rewritten on the
			// next ADD. Failing here would tear down a working pod.
			m.log.WarnContext(ctx, "network-status not published", "pod", inv.pod.String(), "err", err)
		}
	}
	return out, nil
}

// attachment is the record of p, before its delegates ran; runtimeArgs
// are the runtime's CNI_ARGS.
func (p *planned) attachment(runtimeArgs [][2]string) record.Attachment {
	a := record.Attachment{
		Network:        p.network.Name,
		IfName:         p.ifname,
		Config:         p.network.Config.Bytes,
		CapabilityArgs: p.capArgs,
		Args:           p.delegateArgs(runtimeArgs),
		Default:        p.primary,
		DeviceInfoFile: p.devInfoFile,
		Origin:         p.origin,
	}
	if p.network.ResourceName != "" {
		a.Resource, a.DeviceID = p.network.ResourceName, p.deviceID
	}
	return a
}

// complete finishes an ADD whose delegates all succeeded: default route,
// network-status, the result for the runtime, and the final record. Any
// error here means the caller rolls back.
func (m *Manager) complete(inv *invocation, rec *record.Record, plan []planned, results []types.Result) ([]byte, []netstatus.Entry, error) {
	if err := m.applyDefaultRoute(inv, plan, results); err != nil {
		return nil, nil, err
	}
	statusIn := make([]netstatus.Attachment, len(plan))
	for i, p := range plan {
		data, err := json.Marshal(results[i])
		if err != nil {
			return nil, nil, fmt.Errorf("encode result of %s: %w", p.network.Name, err)
		}
		rec.Attachments[i].Result = data
		statusIn[i] = netstatus.Attachment{Name: p.network.Name, IfName: p.ifname, Default: p.primary, Result: results[i], DeviceInfo: m.deviceInfo(inv, p)}
	}
	status, err := netstatus.Build(statusIn)
	if err != nil {
		return nil, nil, err
	}
	if rec.Status, err = json.Marshal(status); err != nil {
		return nil, nil, err
	}
	primary, err := results[0].GetAsVersion(inv.conf.CNIVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("convert result of the cluster network to cniVersion %s: %w", inv.conf.CNIVersion, err)
	}
	out, err := json.Marshal(primary)
	if err != nil {
		return nil, nil, err
	}
	rec.Complete = true
	if err := m.records.Put(rec); err != nil {
		return nil, nil, withCode(CodeIOFailure, err)
	}
	return out, status, nil
}

// deviceInfo reads the attachment's CNI Device Info file after its
// delegates ran, for the network-status (Device Info spec 6.1.1). A file
// a delegate left unreadable costs the status entry its device-info, not
// the pod its network.
func (m *Manager) deviceInfo(inv *invocation, p planned) *devinfo.Info {
	if p.devInfoFile == "" {
		return nil
	}
	info, err := devinfo.ReadCNI(p.devInfoFile)
	if err != nil {
		m.log.Warn("network-status without device-info", "pod", inv.pod.String(), "network", p.network.Name, "ifname", p.ifname, "err", err)
		return nil
	}
	return info
}

// checkPlugins fails before anything is attached when a plugin binary of
// any planned network (main or IPAM) is missing, or does not support the
// network's cniVersion: a clearer error than the exec failure halfway
// through, and nothing to roll back. A plugin refusing the version at ADD
// refuses it at DEL too, so the rollback could not remove what the
// plugins before it in the chain added.
func (m *Manager) checkPlugins(ctx context.Context, inv *invocation, plan []planned, path []string) error {
	for _, p := range plan {
		for _, plugin := range p.network.Config.Plugins {
			for _, typ := range []string{plugin.Network.Type, plugin.Network.IPAM.Type} {
				if typ == "" {
					continue
				}
				bin, err := invoke.FindInPath(typ, path)
				if err != nil {
					return withCode(CodeNotFound, fmt.Errorf("pod %s: network %s: plugin %q not found in %v", inv.pod, p.network.Name, typ, path))
				}
				supported, err := m.versions.supported(ctx, bin, m.exec)
				if err != nil {
					return withCode(CodeIncompatibleVersion, fmt.Errorf("pod %s: network %s: plugin %q: %w", inv.pod, p.network.Name, typ, err))
				}
				// libcni runs every plugin at the list's version.
				if v := p.network.Config.CNIVersion; !slices.Contains(supported, v) {
					return withCode(CodeIncompatibleVersion, fmt.Errorf("pod %s: network %s has cniVersion %q, which its plugin %q does not support (it supports %s)",
						inv.pod, p.network.Name, v, typ, strings.Join(supported, ", ")))
				}
			}
		}
	}
	return nil
}

// pluginVersions remembers the versions each plugin binary supports, by
// path, size and modification time: VERSION runs once per binary, not on
// every ADD.
type pluginVersions struct {
	mu    sync.Mutex
	known map[pluginFile][]string
}

type pluginFile struct {
	path  string
	size  int64
	mtime time.Time
}

func (pv *pluginVersions) supported(ctx context.Context, bin string, exec invoke.Exec) ([]string, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	key := pluginFile{bin, fi.Size(), fi.ModTime()}
	pv.mu.Lock()
	v, ok := pv.known[key]
	pv.mu.Unlock()
	if ok {
		return v, nil
	}
	info, err := invoke.GetVersionInfo(ctx, bin, exec)
	if err != nil {
		return nil, fmt.Errorf("VERSION: %w", err)
	}
	v = info.SupportedVersions()
	pv.mu.Lock()
	if pv.known == nil {
		pv.known = map[pluginFile][]string{}
	}
	pv.known[key] = v
	pv.mu.Unlock()
	return v, nil
}

// lookupPod finds the pod CNI_ARGS names. Without pod identity (a runtime
// outside Kubernetes) the container gets the cluster network only.
func (m *Manager) lookupPod(ctx context.Context, inv *invocation) (*source.Pod, error) {
	if inv.pod.Namespace == "" || inv.pod.Name == "" {
		return nil, nil
	}
	pod, err := m.pods.GetPod(ctx, inv.pod.Namespace, inv.pod.Name)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", inv.pod, err)
	}
	return m.confirmPod(ctx, inv, pod)
}

// rollback tears down attachments 0..last in reverse after a failed ADD,
// the failed one included (a plugin may have half-created it). The record
// is dropped only when every DEL succeeded; otherwise it stays so the
// runtime's DEL retries.
func (m *Manager) rollback(inv *invocation, rec *record.Record, last int, pod *source.Pod, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	m.reportFailure(ctx, pod, cause)
	rec.Attachments = rec.Attachments[:last+1]
	rec.Complete = false
	if err := m.teardown(ctx, inv.Path, inv.Netns, rec); err != nil {
		if perr := m.records.Put(rec); perr != nil {
			err = errors.Join(err, perr)
		}
		return fmt.Errorf("%w (rollback incomplete: %w)", cause, err)
	}
	if err := m.records.Delete(rec.ContainerID, rec.IfName); err != nil {
		return fmt.Errorf("%w (rollback: %w)", cause, err)
	}
	return cause
}

func (m *Manager) reportFailure(ctx context.Context, pod *source.Pod, err error) {
	if m.reporter != nil && pod != nil {
		reportCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		m.reporter.Failed(reportCtx, pod, err)
	}
}

// applyDefaultRoute honours the selection's default-route: inside the pod,
// the chosen attachment's gateway becomes the only default route of its
// family, and the results are edited to match so network-status and the
// returned result tell the truth.
func (m *Manager) applyDefaultRoute(inv *invocation, plan []planned, results []types.Result) error {
	for i, p := range plan {
		if len(p.defaultRoute) == 0 {
			continue
		}
		if err := defaultroute.Apply(inv.Netns, p.ifname, p.defaultRoute); err != nil {
			return fmt.Errorf("pod %s: network %s: default-route: %w", inv.pod, p.network.Name, err)
		}
		for j := range results {
			var keep []net.IP
			if j == i {
				keep = p.defaultRoute
			}
			res, err := withDefaultRoutes(results[j], p.defaultRoute, keep)
			if err != nil {
				return fmt.Errorf("pod %s: network %s: %w", inv.pod, plan[j].network.Name, err)
			}
			results[j] = res
		}
	}
	return nil
}

// withDefaultRoutes removes the result's default routes of the families of
// gws and adds one per gateway in keep. The result keeps its version.
func withDefaultRoutes(r types.Result, gws, keep []net.IP) (types.Result, error) {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, err
	}
	isV4 := func(ip net.IP) bool { return ip.To4() != nil }
	families := map[bool]bool{}
	for _, gw := range gws {
		families[isV4(gw)] = true
	}
	var routes []*types.Route
	for _, rt := range res.Routes {
		if rt != nil && isDefaultDst(rt.Dst) && families[isV4(rt.Dst.IP)] {
			continue
		}
		routes = append(routes, rt)
	}
	for _, gw := range keep {
		dst := net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		if !isV4(gw) {
			dst = net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		routes = append(routes, &types.Route{Dst: dst, GW: gw})
	}
	res.Routes = routes
	return res.GetAsVersion(r.Version())
}

func isDefaultDst(dst net.IPNet) bool {
	ones, _ := dst.Mask.Size()
	return ones == 0 && dst.IP.IsUnspecified()
}

// runtimeConf is the libcni runtime configuration of one attachment.
func runtimeConf(inv *invocation, a *record.Attachment) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    inv.ContainerID,
		NetNS:          inv.Netns,
		IfName:         a.IfName,
		Args:           a.Args,
		CapabilityArgs: a.CapabilityArgs,
	}
}
