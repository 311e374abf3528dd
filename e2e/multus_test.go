//go:build e2e

package e2e

// The scenarios of Multus's own e2e suite (simple macvlan, static IPAM with
// per-pod ips, default-route, static pod, subdirectory chaining, auxiliary
// chain), with NADs and selections shaped
// the way Multus users write them: conflists without a "name", macvlan
// over a host uplink, static IPAM with and without the "ips" capability,
// the JSON selection form. The uplink is a veth pair on the host (there is
// no spare NIC); traffic stays between the pods' namespaces.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/internal/cluster"
)

// Multus's simple-macvlan1: a macvlan + tuning conflist with static IPAM
// declaring "ips", two pods with their own address; each reaches the
// other over net1.
func TestMultusSimpleMacvlan(t *testing.T) {
	master := uplink(t, cluster.LinkPrefix+"-mu1")
	ns := namespace(t, "e2e-multus-macvlan")
	before := snapshot(t)
	nad(t, ns, "macvlan1-config", fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "plugins": [
    {
      "type": "macvlan",
      "capabilities": {"ips": true},
      "master": %q,
      "mode": "bridge",
      "ipam": {"type": "static"}
    },
    {"type": "tuning"}
  ]
}`, master), nil)
	pods := map[string]string{"macvlan1-worker1": "10.71.1.11/24", "macvlan1-worker2": "10.71.1.12/24"}
	for name, ip := range pods {
		createPod(t, podSpec(ns, name, map[string]string{networksAnnot: fmt.Sprintf(`[
  {"name": "macvlan1-config",
   "ips": [%q]}
]`, ip)}))
	}
	running := map[string]*corev1.Pod{}
	for name, ip := range pods {
		waitRunning(t, ns, name, runningWithin)
		p, st := waitStatus(t, ns, name, 2)
		ifs, _ := podInterfaces(t, p)
		net1, ok := ifs["net1"]
		if !ok || net1.Kind != "macvlan" {
			t.Fatalf("%s: interfaces %+v, want a macvlan net1", name, ifs)
		}
		if !slices.Equal(net1.Addrs, []string{ip}) || !inSubnet(net1.Addrs[0], "10.71.1.0/24") {
			t.Fatalf("%s: net1 addresses %v, want exactly %s", name, net1.Addrs, ip)
		}
		e := st[1]
		if e.Name != ns+"/macvlan1-config" || e.Interface != "net1" || !slices.Equal(e.IPs, []string{addrOf(ip)}) || e.Mac != net1.MAC {
			t.Errorf("%s: status entry %+v, kernel %+v", name, e, net1)
		}
		running[name] = p
	}
	ping(t, running["macvlan1-worker1"], "10.71.1.12")
	ping(t, running["macvlan1-worker2"], "10.71.1.11")
	deleteAndExpectNoLeaks(t, ns, before)
}

// A static IPAM NAD without "capabilities" (as Multus's default-route1
// manifest has it) and a selection with "ips": compatible mode hands the
// address to the static plugin as CNI_ARGS IP=, and says so in a Warning
// Event naming the NAD.
func TestMultusStaticIPAMWithoutCapabilities(t *testing.T) {
	master := uplink(t, cluster.LinkPrefix+"-mu2")
	ns := namespace(t, "e2e-multus-static-ipam")
	before := snapshot(t)
	nad(t, ns, "static-config", fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "macvlan",
      "master": %q,
      "mode": "bridge",
      "ipam": {"type": "static"}
    }
  ]
}`, master), nil)
	createPod(t, podSpec(ns, "static-worker", map[string]string{networksAnnot: `[
  {"name": "static-config",
   "ips": ["10.72.1.31/24"]}
]`}))
	waitRunning(t, ns, "static-worker", runningWithin)
	p, st := waitStatus(t, ns, "static-worker", 2)
	ifs, _ := podInterfaces(t, p)
	if net1 := ifs["net1"]; !slices.Equal(net1.Addrs, []string{"10.72.1.31/24"}) {
		t.Fatalf("net1 %+v, want exactly 10.72.1.31/24 (all: %+v)", net1, ifs)
	}
	if e := st[1]; e.Name != ns+"/static-config" || e.Interface != "net1" || !slices.Equal(e.IPs, []string{"10.72.1.31"}) {
		t.Errorf("status entry %+v", e)
	}
	ev := waitAgentEvent(t, ns, "static-worker", corev1.EventTypeWarning, "NetworkSelectionWarning",
		"NetworkAttachmentDefinition "+ns+"/static-config", `"ips"`, "IP=10.72.1.31/24")
	t.Logf("warning: %s", ev.Message)
	deleteAndExpectNoLeaks(t, ns, before)
}

// Multus's default-route1: one pod moves its default route to net1's
// gateway with "default-route", the other on the same NAD keeps the
// cluster network's. network-status lists the gateway as "default-route"
// and as Multus's "gateway" on the interface that has it.
func TestMultusDefaultRoute(t *testing.T) {
	master := uplink(t, cluster.LinkPrefix+"-mu3")
	ns := namespace(t, "e2e-multus-route")
	before := snapshot(t)
	nad(t, ns, "default-route-config", fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "macvlan",
      "master": %q,
      "mode": "bridge",
      "ipam": {"type": "static"}
    }
  ]
}`, master), nil)
	createPod(t, podSpec(ns, "default-route-worker1", map[string]string{networksAnnot: `[
  {"name": "default-route-config",
   "ips": ["10.73.1.21/24"],
   "default-route": ["10.73.1.254"]}
]`}))
	createPod(t, podSpec(ns, "default-route-worker2", map[string]string{networksAnnot: `[
  {"name": "default-route-config",
   "ips": ["10.73.1.22/24"]}
]`}))
	clusterGW := firstHost(t, cluster.PrimarySubnet)
	for _, c := range []struct {
		pod, addr, gw, dev string
	}{
		{"default-route-worker1", "10.73.1.21/24", "10.73.1.254", "net1"},
		{"default-route-worker2", "10.73.1.22/24", clusterGW, "eth0"},
	} {
		waitRunning(t, ns, c.pod, runningWithin)
		p, st := waitStatus(t, ns, c.pod, 2)
		ifs, routes := podInterfaces(t, p)
		if !slices.Equal(ifs["net1"].Addrs, []string{c.addr}) {
			t.Fatalf("%s: net1 %+v, want exactly %s", c.pod, ifs["net1"], c.addr)
		}
		defs := defaultRoutes(routes)
		var got []string
		for _, r := range defs {
			got = append(got, fmt.Sprintf("via %s dev %s", r.Gw, linkName(t, p, r.LinkIndex)))
		}
		if want := fmt.Sprintf("via %s dev %s", c.gw, c.dev); !slices.Equal(got, []string{want}) {
			t.Fatalf("%s: default routes %v, want exactly [%s]", c.pod, got, want)
		}
		// The status names the default route where the kernel has it, and
		// nowhere else.
		for _, e := range st {
			var want []string
			if e.Interface == c.dev {
				want = []string{c.gw}
			}
			if !slices.Equal(e.DefaultRoute, want) || !slices.Equal(e.Gateway, want) {
				t.Errorf("%s: status of %s: default-route %v, gateway %v; want %v in both", c.pod, e.Interface, e.DefaultRoute, e.Gateway, want)
			}
		}
		if !st[0].Default || st[0].Interface != "eth0" || st[1].Default {
			t.Errorf("%s: status %+v, want eth0 the default entry, net1 not", c.pod, st)
		}
	}
	deleteAndExpectNoLeaks(t, ns, before)
}

// Multus's static pod: a manifest in kubelet's staticPodPath with the
// networks annotation. kubelet's CNI ADD carries the static pod's UID; the
// agent finds its mirror pod (kubernetes.io/config.mirror) and writes the
// network-status there.
func TestMultusStaticPod(t *testing.T) {
	bridge := hostBridge(t, cluster.LinkPrefix+"-st0")
	ns := namespace(t, "e2e-multus-static-pod")
	before := snapshot(t)
	nad(t, ns, "bridge-nad", fmt.Sprintf(`{
  "cniVersion": "0.3.1",
  "name": "%s-static",
  "type": "bridge",
  "bridge": %q,
  "ipam": {
    "type": "host-local",
    "subnet": "10.74.0.0/24"
  }
}`, cluster.LinkPrefix, bridge), nil)
	static := podSpec(ns, "static-web", map[string]string{networksAnnot: "bridge-nad"})
	manifest := writeStaticPod(t, static)
	mirror := static.Name + "-" + cluster.NodeName
	waitRunning(t, ns, mirror, runningWithin)
	p, st := waitStatus(t, ns, mirror, 2)
	if _, ok := p.Annotations[corev1.MirrorPodAnnotationKey]; !ok {
		t.Fatalf("pod %s/%s has no %s: not a mirror pod", ns, mirror, corev1.MirrorPodAnnotationKey)
	}
	ifs, _ := podInterfaces(t, p)
	net1, ok := ifs["net1"]
	if !ok || len(net1.Addrs) != 1 || !inSubnet(net1.Addrs[0], "10.74.0.0/24") {
		t.Fatalf("net1 %+v, want one address in 10.74.0.0/24 (all: %+v)", net1, ifs)
	}
	if e := st[1]; e.Name != ns+"/bridge-nad" || e.Interface != "net1" || !slices.Equal(e.IPs, []string{addrOf(net1.Addrs[0])}) || e.Mac != net1.MAC {
		t.Errorf("status entry %+v, kernel %+v", e, net1)
	}
	// A static pod goes when its manifest does (deleting the mirror pod
	// only makes kubelet create it again).
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, mirror, 90*time.Second)
	expectNoLeaks(t, before, 60*time.Second)
}

// Multus's subdirectory chaining: the .conf plugins in
// <cniConfDir>/<cluster network name>/ are appended to the cluster
// network's conflist, so a tuning plugin there sets a sysctl on every new
// pod's eth0. DEL runs the chain from the record: nothing leaks.
func TestMultusSubdirectoryChaining(t *testing.T) {
	ns := namespace(t, "e2e-multus-subdir")
	dir := filepath.Join(env.c.CNIConfDir(), cluster.PrimaryNetwork)
	writeChainConf(t, dir, "10-tuning.conf", cluster.PrimaryNetwork, "net.ipv4.conf.eth0.arp_filter", "1")
	before := snapshot(t)
	createPod(t, podSpec(ns, "subdir-worker", nil))
	waitRunning(t, ns, "subdir-worker", runningWithin)
	p, st := waitStatus(t, ns, "subdir-worker", 1)
	if st[0].Name != cluster.PrimaryNetwork || st[0].Interface != "eth0" || !st[0].Default {
		t.Errorf("status %+v, want eth0 the default entry of %s", st, cluster.PrimaryNetwork)
	}
	expectSysctl(t, p, "eth0", "arp_filter", "1")
	deleteAndExpectNoLeaks(t, ns, before)
}

// Multus's auxiliary chain: with auxiliaryCNIChainName the .conf plugins in
// <cniConfDir>/<name>/ run after all of a pod's attachments — in Plexus on
// eth0, fed eth0's result (Multus runs them behind passthru on net<N>) — as
// an attachment of their own that network-status does not list.
func TestMultusAuxiliaryChain(t *testing.T) {
	const chain = "plexus-aux"
	ns := namespace(t, "e2e-multus-aux")
	writeChainConf(t, filepath.Join(env.c.CNIConfDir(), chain), "10-tuning.conf", chain, "net.ipv4.conf.eth0.arp_ignore", "2")
	setAgentConfig(t, "auxiliaryCNIChainName", chain)
	before := snapshot(t)
	createPod(t, podSpec(ns, "aux-worker", nil))
	waitRunning(t, ns, "aux-worker", runningWithin)
	p, st := waitStatus(t, ns, "aux-worker", 1)
	if st[0].Name != cluster.PrimaryNetwork || st[0].Interface != "eth0" || !st[0].Default {
		t.Errorf("status %+v, want only eth0's default entry of %s (the chain is not listed)", st, cluster.PrimaryNetwork)
	}
	expectSysctl(t, p, "eth0", "arp_ignore", "2")
	deleteAndExpectNoLeaks(t, ns, before)
}

// writeChainConf writes a tuning plugin .conf setting one sysctl into a
// chain directory, which goes when the test ends, so later pods get the
// plain cluster network.
func writeChainConf(t *testing.T, dir, file, network, sysctl, value string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "type": "tuning",
  "sysctl": {%q: %q}
}`, network, sysctl, value)
	if err := os.WriteFile(filepath.Join(dir, file), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectSysctl checks an IPv4 per-interface sysctl in the pod's namespace
// and that the namespace's default for new interfaces differs: the value
// is the chain's doing, not inherited.
func expectSysctl(t *testing.T, p *corev1.Pod, ifname, key, want string) {
	t.Helper()
	h := podNetns(t, p)
	got := map[string]string{}
	err := inNetns(h, func() error {
		for _, dev := range []string{ifname, "default"} {
			data, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", dev, key))
			if err != nil {
				return err
			}
			got[dev] = strings.TrimSpace(string(data))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: read %s: %v", p.Name, key, err)
	}
	if got[ifname] != want {
		t.Fatalf("%s: %s %s is %q, want %q", p.Name, ifname, key, got[ifname], want)
	}
	if got["default"] == want {
		t.Fatalf("%s: the namespace's default %s is %q too: the check proves nothing", p.Name, key, want)
	}
	t.Logf("%s: %s %s = %s (namespace default %s)", p.Name, ifname, key, got[ifname], got["default"])
}

// setAgentConfig sets one key of the agent's configuration (agent.yaml in
// the ConfigMap deploy/ mounts at /etc/plexus) and restarts the agent,
// which reads it at start. When the test ends the configuration is put
// back and the agent restarted again.
func setAgentConfig(t *testing.T, key string, value any) {
	t.Helper()
	cms := env.cs.CoreV1().ConfigMaps("plexus-system")
	ctx := ctxFor(t, 10*time.Second)
	cm, err := cms.Get(ctx, "plexus-agent-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orig := cm.Data["agent.yaml"]
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(orig), &cfg); err != nil || cfg == nil {
		t.Fatalf("agent.yaml is not a YAML object (%v):\n%s", err, orig)
	}
	cfg[key] = value
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	put := func(ctx context.Context, text string) {
		cm, err := cms.Get(ctx, "plexus-agent-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["agent.yaml"] = text
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update the agent's ConfigMap: %v", err)
		}
		restartAgent(t)
		waitAgentConfig(t, text)
	}
	t.Cleanup(func() { put(ctxFor(t, 10*time.Second), orig) })
	put(ctx, string(data))
}

// waitAgentConfig waits until the agent's pod is the only one, Ready, and
// has text as the agent.yaml kubelet mounted for it: the DaemonSet may
// look ready while the deleted pod is still terminating.
func waitAgentConfig(t *testing.T, text string) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	var last string
	for {
		pods, err := env.cs.CoreV1().Pods("plexus-system").List(ctx,
			metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=plexus-agent"})
		switch {
		case err != nil:
			last = err.Error()
		case len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil || !podReady(&pods.Items[0]):
			last = fmt.Sprintf("%d agent pods, not one Ready", len(pods.Items))
		default:
			p := pods.Items[0]
			data, err := os.ReadFile(filepath.Join(env.c.KubeletRootDir(), "pods", string(p.UID),
				"volumes", "kubernetes.io~configmap", "config", "agent.yaml"))
			if err == nil && string(data) == text {
				return
			}
			last = fmt.Sprintf("pod %s has agent.yaml (%v):\n%s", p.Name, err, data)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the agent never ran with\n%s\nlast: %s", text, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// uplink creates a veth pair on the host, both ends up, to serve as a
// macvlan master (a macvlan has carrier only while its master has), and
// deletes it when the test ends. The name starts with cluster.LinkPrefix,
// so Clean removes it after a crash.
func uplink(t *testing.T, name string) string {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("uplink %s: %v", name, err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("uplink %s up: %v", n, err)
		}
	}
	return name
}

// hostBridge creates the bridge a bridge NAD names before any pod uses it:
// the plugin would create it on the first ADD and leave it (shared by
// pods), which a leak check would count.
func hostBridge(t *testing.T, name string) string {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge %s: %v", name, err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) })
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatalf("bridge %s up: %v", name, err)
	}
	return name
}

// snapshot is the host's state before a test's pods. The cluster
// network's bridge counts as there already: the primary plugin creates it
// on the cluster's first pod and it stays, by design, until Down.
func snapshot(t *testing.T) host {
	t.Helper()
	h, err := hostState()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.links, cluster.PrimaryBridge) {
		h.links = append(h.links, cluster.PrimaryBridge)
	}
	return h
}

// deleteAndExpectNoLeaks deletes the namespace's pods and checks the host
// holds nothing more than before.
func deleteAndExpectNoLeaks(t *testing.T, ns string, before host) {
	t.Helper()
	deletePodsAndWait(t, ctxFor(t, 2*time.Minute), ns)
	expectNoLeaks(t, before, 60*time.Second)
}

// writeStaticPod places the pod's manifest in kubelet's staticPodPath
// (written aside and renamed: kubelet ignores dot files) and removes it,
// if still there, when the test ends — before the namespace goes.
func writeStaticPod(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := env.c.StaticPodDir()
	path := filepath.Join(dir, p.Namespace+"-"+p.Name+".json")
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err == nil {
			waitGone(t, p.Namespace, p.Name+"-"+cluster.NodeName, 90*time.Second)
		}
	})
	return path
}

// waitAgentEvent waits for an Event of the given type and reason from
// plexus-agent on the pod whose message has every one of parts.
func waitAgentEvent(t *testing.T, ns, pod, typ, reason string, parts ...string) corev1.Event {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	for {
		evs, err := env.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err == nil {
			for _, e := range evs.Items {
				if e.Type != typ || e.Reason != reason || e.Source.Component != "plexus-agent" {
					continue
				}
				all := true
				for _, p := range parts {
					all = all && strings.Contains(e.Message, p)
				}
				if all {
					return e
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s %s Event from plexus-agent with %q; events:\n%s", typ, reason, parts, podEvents(ns, pod))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ping sends ICMP echo requests to dst from inside the pod's network
// namespace and fails the test unless one is answered.
func ping(t *testing.T, from *corev1.Pod, dst string) {
	t.Helper()
	conn, err := rawICMP(podNetns(t, from))
	if err != nil {
		t.Fatalf("ping from %s: %v", from.Name, err)
	}
	defer conn.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	const id = 0x7078
	var last error
	// The first request may wait on ARP; a few tries.
	for seq := 1; seq <= 5; seq++ {
		if _, err := conn.WriteTo(echoRequest(id, seq), to); err != nil {
			t.Fatalf("ping %s from %s: %v", dst, from.Name, err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			buf := make([]byte, 1500)
			n, addr, err := conn.ReadFrom(buf)
			if err != nil {
				last = err
				break
			}
			// An echo reply (type 0) to this request.
			if addr.String() == dst && n >= 8 && buf[0] == 0 &&
				binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == uint16(seq) {
				t.Logf("ping %s from %s: echo reply to request %d", dst, from.Name, seq)
				return
			}
		}
	}
	t.Fatalf("ping %s from %s (%s): no echo reply: %v", dst, from.Name, from.Namespace, last)
}

// rawICMP opens a raw ICMP socket inside the namespace: a socket stays in
// the namespace it was made in.
func rawICMP(target netns.NsHandle) (net.PacketConn, error) {
	var conn net.PacketConn
	err := inNetns(target, func() (err error) {
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil && conn != nil {
		conn.Close()
		return nil, err
	}
	return conn, err
}

// inNetns runs fn on a thread switched into the namespace, then back. The
// thread's namespace is what a socket is made in and what /proc/sys/net
// shows when opened; if the thread cannot come back it is never unlocked,
// so Go retires it.
func inNetns(target netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		err = fn()
		if rerr := netns.Set(orig); rerr != nil {
			done <- errors.Join(err, fmt.Errorf("back to the test's namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// echoRequest is an ICMPv4 echo request (RFC 792) with its checksum.
func echoRequest(id, seq int) []byte {
	b := make([]byte, 8, 8+16)
	b[0] = 8 // echo request, code 0
	binary.BigEndian.PutUint16(b[4:], uint16(id))
	binary.BigEndian.PutUint16(b[6:], uint16(seq))
	b = append(b, "plexus-e2e-ping!"...)
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}

func addrOf(cidr string) string { return strings.Split(cidr, "/")[0] }

// firstHost is a subnet's first address, where the harness's primary
// bridge (isGateway) has its gateway.
func firstHost(t *testing.T, subnet string) string {
	t.Helper()
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	ip := slices.Clone(n.IP.To4())
	ip[3]++
	return ip.String()
}
