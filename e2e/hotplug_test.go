//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/plexus-cni/plexus/internal/cluster"
)

// hotPlugWithin is the bound: a Running pod gets net2 within 2 s of
// an annotation patch.
const hotPlugWithin = 2 * time.Second

// 12. Hot-plug (deploy/ has hotplug: true): a Running pod's networks
// annotation gains a second NAD → net2 in the pod's namespace with an
// address of that NAD's subnet and in network-status, within 2 s of the
// patch; the NAD removed again → net2, its status entry and its IP gone,
// the host as before the add; the pod deleted → nothing left.
func TestHotPlug(t *testing.T) {
	const subnet1, subnet2 = "10.64.0.0/24", "10.65.0.0/24"
	// The bridges exist before the snapshot: the plugin would create them
	// on first use and leave them, shared by pods, by design.
	br1 := hostBridge(t, cluster.LinkPrefix+"-hp1")
	br2 := hostBridge(t, cluster.LinkPrefix+"-hp2")
	ns := namespace(t, "e2e-hotplug")
	before := snapshot(t)
	nad(t, ns, "br", bridgeNAD(br1, subnet1, false), nil)
	nad(t, ns, "hp", bridgeNAD(br2, subnet2, false), nil)
	createPod(t, podSpec(ns, "hot", map[string]string{networksAnnot: "br"}))
	waitRunning(t, ns, "hot", runningWithin)
	p, st := waitStatus(t, ns, "hot", 2)
	ifs, _ := podInterfaces(t, p)
	net1, ok := ifs["net1"]
	if len(ifs) != 2 || !ok || len(net1.Addrs) != 1 || !inSubnet(net1.Addrs[0], subnet1) {
		t.Fatalf("interfaces %+v, want eth0 and net1 with one address in %s", ifs, subnet1)
	}
	if e := st[1]; e.Name != ns+"/br" || e.Interface != "net1" || !slices.Equal(e.IPs, []string{addrOf(net1.Addrs[0])}) || e.Mac != net1.MAC {
		t.Fatalf("status entry %+v, kernel %+v", e, net1)
	}
	one := snapshot(t)
	if len(one.records) != len(before.records)+1 || len(one.ipam) != len(before.ipam)+2 {
		t.Fatalf("the pod's record/IPs are not visible on the host: records %d→%d, IPs %d→%d",
			len(before.records), len(one.records), len(before.ipam), len(one.ipam))
	}
	h, err := netlink.NewHandleAt(podNetns(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// Add hp: no interface named, so net2, the first free netN.
	start := patchNetworks(t, ns, "hot", "br,hp")
	var kernelAt, statusAt time.Time
	var net2 iface
	var entry netStatus
	pollUntil(t, 30*time.Second, "net2 in the pod's namespace and network-status", func() bool {
		if kernelAt.IsZero() {
			if i, ok := podLink(t, h, "net2"); ok && len(i.Addrs) == 1 && inSubnet(i.Addrs[0], subnet2) {
				net2, kernelAt = i, time.Now()
			}
		}
		if statusAt.IsZero() {
			if e, ok := statusEntry(t, ns, "hot", "net2"); ok {
				entry, statusAt = e, time.Now()
			}
		}
		return !kernelAt.IsZero() && !statusAt.IsZero()
	})
	inKernel, inStatus := kernelAt.Sub(start), statusAt.Sub(start)
	up := max(inKernel, inStatus)
	t.Logf("hot-plug add: patch → net2 in the namespace %s, in network-status %s, both %s",
		inKernel.Round(time.Millisecond), inStatus.Round(time.Millisecond), up.Round(time.Millisecond))
	if up > hotPlugWithin {
		t.Errorf("net2 up and in network-status %s after the patch, want within %s", up.Round(time.Millisecond), hotPlugWithin)
	}
	ip2 := addrOf(net2.Addrs[0])
	if entry.Name != ns+"/hp" || !slices.Equal(entry.IPs, []string{ip2}) || entry.Mac != net2.MAC || entry.Default {
		t.Errorf("net2 status entry %+v, kernel %+v", entry, net2)
	}
	_, st = waitStatus(t, ns, "hot", 3)
	if st[0].Interface != "eth0" || !st[0].Default || st[1].Interface != "net1" || !slices.Equal(st[1].IPs, []string{addrOf(net1.Addrs[0])}) {
		t.Errorf("network-status after the add %+v: eth0 and net1 should be as they were", st)
	}
	if i, ok := podLink(t, h, "net1"); !ok || !slices.Equal(i.Addrs, net1.Addrs) || i.MAC != net1.MAC {
		t.Errorf("net1 after the add %+v, was %+v", i, net1)
	}
	alloc := filepath.Join(ipamDir, br2, ip2)
	if _, err := os.Stat(alloc); err != nil {
		t.Errorf("net2's IP allocation: %v", err)
	}
	if two := snapshot(t); len(two.records) != len(one.records) || len(two.ipam) != len(one.ipam)+1 {
		t.Errorf("after the add: records %d→%d (want the same one), IPs %d→%d (want one more)",
			len(one.records), len(two.records), len(one.ipam), len(two.ipam))
	}
	waitAgentEvent(t, ns, "hot", corev1.EventTypeNormal, "AddedInterface", "net2", ns+"/hp", "hot-plug")

	// Remove it again.
	start = patchNetworks(t, ns, "hot", "br")
	kernelAt, statusAt = time.Time{}, time.Time{}
	pollUntil(t, 30*time.Second, "net2 gone from the pod's namespace and network-status", func() bool {
		if kernelAt.IsZero() {
			if _, ok := podLink(t, h, "net2"); !ok {
				kernelAt = time.Now()
			}
		}
		if statusAt.IsZero() {
			if _, ok := statusEntry(t, ns, "hot", "net2"); !ok {
				statusAt = time.Now()
			}
		}
		return !kernelAt.IsZero() && !statusAt.IsZero()
	})
	inKernel, inStatus = kernelAt.Sub(start), statusAt.Sub(start)
	t.Logf("hot-plug remove: patch → net2 gone from the namespace %s, from network-status %s, both %s",
		inKernel.Round(time.Millisecond), inStatus.Round(time.Millisecond), max(inKernel, inStatus).Round(time.Millisecond))
	_, st = waitStatus(t, ns, "hot", 2)
	if st[1].Interface != "net1" || st[1].Name != ns+"/br" {
		t.Errorf("network-status after the removal %+v, want eth0 and net1", st)
	}
	if i, ok := podLink(t, h, "net1"); !ok || !slices.Equal(i.Addrs, net1.Addrs) || i.MAC != net1.MAC {
		t.Errorf("net1 after the removal %+v, was %+v", i, net1)
	}
	if _, err := os.Stat(alloc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("net2's IP %s not released: %s (%v)", ip2, alloc, err)
	}
	// Its host veth and IP gone: the host as it was with net1 alone.
	expectNoLeaks(t, one, 10*time.Second)
	waitAgentEvent(t, ns, "hot", corev1.EventTypeNormal, "RemovedInterface", "net2", ns+"/hp", "hot-plug")
	expectNoAgentWarning(t, ns, "hot")

	if err := env.cs.CoreV1().Pods(ns).Delete(ctxFor(t, 10*time.Second), "hot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "hot", 60*time.Second)
	expectNoLeaks(t, before, 60*time.Second)
}

// patchNetworks sets the pod's networks annotation with a merge patch and
// returns when it was sent.
func patchNetworks(t *testing.T, ns, pod, networks string) time.Time {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{networksAnnot: networks}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := env.cs.CoreV1().Pods(ns).Patch(ctxFor(t, 10*time.Second), pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch %s/%s networks to %q: %v", ns, pod, networks, err)
	}
	return start
}

// pollUntil calls done every 20 ms until it is true, failing the test
// after timeout.
func pollUntil(t *testing.T, timeout time.Duration, what string, done func() bool) {
	t.Helper()
	ctx := ctxFor(t, timeout)
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %s", what, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// podLink is what the kernel says of one interface of the pod whose
// namespace h is in; false when there is none of that name.
func podLink(t *testing.T, h *netlink.Handle, name string) (iface, bool) {
	t.Helper()
	l, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return iface{}, false
	}
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	i := iface{Name: name, MAC: l.Attrs().HardwareAddr.String(), Kind: l.Type()}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("addresses of %s: %v", name, err)
	}
	for _, a := range addrs {
		i.Addrs = append(i.Addrs, a.IPNet.String())
	}
	return i, true
}

// statusEntry is the pod's network-status entry for ifname, as the API
// has it now.
func statusEntry(t *testing.T, ns, pod, ifname string) (netStatus, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := env.cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s: %v", ns, pod, err)
	}
	var st []netStatus
	if raw, ok := p.Annotations[nadv1.NetworkStatusAnnot]; ok {
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatalf("pod %s/%s: network-status %q: %v", ns, pod, raw, err)
		}
	}
	for _, e := range st {
		if e.Interface == ifname {
			return e, true
		}
	}
	return netStatus{}, false
}

// expectNoAgentWarning fails the test if plexus-agent gave the pod a
// Warning Event.
func expectNoAgentWarning(t *testing.T, ns, pod string) {
	t.Helper()
	evs, err := env.cs.CoreV1().Events(ns).List(ctxFor(t, 10*time.Second), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Type == corev1.EventTypeWarning && e.Source.Component == "plexus-agent" {
			t.Errorf("Warning Event %s from plexus-agent: %s", e.Reason, e.Message)
		}
	}
}
