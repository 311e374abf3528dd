package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/plexus-cni/plexus/agent/podresources/podresourcestest"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/devinfo"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// hotRig is a Kubernetes-mode rig with hot-plug on and one running pod,
// apps/web, attached through the real shim.
type hotRig struct {
	*kubeRig
	netns ns.NetNS
	ipam  string
	uid   types.UID
}

// hotBridges are the bridges of the hot-plug NADs a, b and c.
var hotBridges = []string{"pxhp1", "pxhp2", "pxhp3"}

func newHotRig(t *testing.T, networks string) *hotRig {
	t.Helper()
	k := newKubeRig(t)
	rewrite(t, filepath.Join(k.dir, "agent.yaml"), "kubernetes:", "hotplug: true\nkubernetes:")
	h := &hotRig{kubeRig: k, ipam: filepath.Join(k.dir, "ipam")}
	k.namespace(t, "apps")
	for i, name := range []string{"a", "b", "c"} {
		k.nad(t, "apps", name, fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.24%d.0.0/24","dataDir":%q}}`, hotBridges[i], i+1, h.ipam))
	}
	t.Cleanup(func() {
		for _, l := range hotBridges {
			if hostLink(l) {
				exec(t, "ip", "link", "del", l)
			}
		}
	})
	h.uid = k.pod(t, "apps", "web", map[string]string{source.NetworksAnnotation: networks}).UID
	h.netns = cnitest.NewNS(t)
	return h
}

func (h *hotRig) podRT() *libcni.RuntimeConf {
	rt := h.rt("web1", h.netns.Path())
	rt.Args = podArgs("apps", "web", string(h.uid))
	return rt
}

// annotate sets (or, with value "", removes) one annotation of apps/web.
func (h *hotRig) annotate(t *testing.T, key, value string) {
	t.Helper()
	v := any(value)
	if value == "" {
		v = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: v}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.CoreV1().Pods("apps").Patch(context.Background(), "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// links are the pod's interfaces other than lo, sorted.
func (h *hotRig) links(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(cnitest.InNS(t, h.netns, "-o", "link"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "lo" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// status is the pod's network-status as the API server has it: interface
// → network name.
func (h *hotRig) status(t *testing.T) map[string]string {
	t.Helper()
	pod, err := h.admin.CoreV1().Pods("apps").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var entries []statusEntry
	if raw := pod.Annotations[source.NetworkStatusAnnotation]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &entries); err != nil {
			t.Fatalf("network-status %q: %v", raw, err)
		}
	}
	out := map[string]string{}
	for _, e := range entries {
		out[e.Interface] = e.Name
	}
	return out
}

// ips counts host-local's allocations per network (its dataDir has a
// directory per network name, the NAD's name here, and a file per IP).
func (h *hotRig) ips(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	dirs, _ := os.ReadDir(h.ipam)
	for _, d := range dirs {
		files, _ := os.ReadDir(filepath.Join(h.ipam, d.Name()))
		for _, f := range files {
			if f.Name() != "lock" && !strings.HasPrefix(f.Name(), "last_reserved_ip") {
				out[d.Name()]++
			}
		}
	}
	return out
}

// want polls, to a deadline, for the pod's interfaces and its
// network-status to be exactly ifaces (interface → network).
func (h *hotRig) want(t *testing.T, what string, ifaces map[string]string) {
	t.Helper()
	names := []string{}
	for n := range ifaces {
		names = append(names, n)
	}
	slices.Sort(names)
	var links []string
	var status map[string]string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		links, status = h.links(t), h.status(t)
		if slices.Equal(links, names) && mapsEqual(status, ifaces) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: pod has interfaces %v and network-status %v, want %v", what, links, status, ifaces)
}

// wantNetworks polls, to a deadline, for the pod's network-status to
// name exactly networks (in any order, by any interface names) and its
// interfaces to be the status's.
func (h *hotRig) wantNetworks(t *testing.T, what string, networks ...string) {
	t.Helper()
	slices.Sort(networks)
	var links, ifaces, got []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ifaces, got = nil, nil
		for ifname, network := range h.status(t) {
			ifaces, got = append(ifaces, ifname), append(got, network)
		}
		slices.Sort(ifaces)
		slices.Sort(got)
		if links = h.links(t); slices.Equal(links, ifaces) && slices.Equal(got, networks) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: pod has interfaces %v, network-status interfaces %v of networks %v, want networks %v", what, links, ifaces, got, networks)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// warned polls, to a deadline, for a Warning Event of the pod containing
// every one of parts.
func (h *hotRig) warned(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range h.events(t, "apps", "web") {
			if ev.Type != corev1.EventTypeWarning {
				continue
			}
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(ev.Message, p)
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no Warning Event of apps/web contains all of %q", parts)
}

func (h *hotRig) count(t *testing.T, reason string) int {
	t.Helper()
	n := 0
	for _, ev := range h.events(t, "apps", "web") {
		if ev.Reason == reason {
			n++
		}
	}
	return n
}

// Hot-plug against a real kube-apiserver, through the real shim and the
// reference plugins: add one, add two at once, remove one, replace one,
// generated and explicit names, then the refusals (conflict, eth0,
// missing NAD, invalid annotation), each leaving the pod as it was, a
// flapping annotation converging on its last value, and the runtime's DEL
// removing hot-plugged attachments with the others.
func TestHotPlug(t *testing.T) {
	h := newHotRig(t, "a")
	ctx := context.Background()
	h.start(t)
	if _, err := h.runtime.AddNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	h.want(t, "after ADD", map[string]string{"eth0": "cluster", "net1": "apps/a"})

	h.annotate(t, source.NetworksAnnotation, "a,b")
	h.want(t, "one added", map[string]string{"eth0": "cluster", "net1": "apps/a", "net2": "apps/b"})
	if n := h.count(t, "AddedInterface"); n != 3 {
		t.Errorf("%d AddedInterface Events, want 3 (eth0, net1 at ADD; net2 hot-plugged)", n)
	}

	h.annotate(t, source.NetworksAnnotation, `[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"a","interface":"fast0"}]`)
	h.want(t, "two added", map[string]string{"eth0": "cluster", "net1": "apps/a", "net2": "apps/b", "net3": "apps/c", "fast0": "apps/a"})

	h.annotate(t, source.NetworksAnnotation, `[{"name":"a"},{"name":"c"},{"name":"a","interface":"fast0"}]`)
	h.want(t, "b removed", map[string]string{"eth0": "cluster", "net1": "apps/a", "net3": "apps/c", "fast0": "apps/a"})
	if ips := h.ips(t); ips["b"] != 0 {
		t.Errorf("b's IP not released after its detach: %v", ips)
	}
	if n := h.count(t, "RemovedInterface"); n != 1 {
		t.Errorf("%d RemovedInterface Events, want 1", n)
	}

	// Replace c by b: b takes the first free netN, net2.
	h.annotate(t, source.NetworksAnnotation, `[{"name":"a"},{"name":"b"},{"name":"a","interface":"fast0"}]`)
	steady := map[string]string{"eth0": "cluster", "net1": "apps/a", "net2": "apps/b", "fast0": "apps/a"}
	h.want(t, "c replaced by b", steady)

	// Refusals: each leaves the pod as it is, with a Warning naming why.
	for _, c := range []struct {
		name, key, value string
		want             []string
	}{
		{"conflict", source.NetworksAnnotation, `[{"name":"a"},{"name":"b"},{"name":"a","interface":"fast0"},{"name":"c","interface":"net1"}]`, []string{"apps/web", "net1"}},
		{"missing NAD", source.NetworksAnnotation, `[{"name":"a"},{"name":"b"},{"name":"a","interface":"fast0"},{"name":"nosuch"}]`, []string{"apps/web", "apps/nosuch"}},
		{"invalid annotation", source.NetworksAnnotation, `[{"name":`, []string{"apps/web", source.NetworksAnnotation}},
		{"eth0", source.DefaultNetworkAnnotation, "apps/c", []string{"apps/web", "default network", "recreate the pod"}},
	} {
		restore := `[{"name":"a"},{"name":"b"},{"name":"a","interface":"fast0"}]`
		h.annotate(t, c.key, c.value)
		h.warned(t, c.want...)
		h.want(t, c.name+" refused", steady)
		if c.key == source.DefaultNetworkAnnotation {
			h.annotate(t, c.key, "")
		} else {
			h.annotate(t, c.key, restore)
		}
	}

	// A flapping annotation converges on its last value, without leaks.
	for _, v := range []string{"a", "a,b,c", "c", "a,b", "b", "a,c"} {
		h.annotate(t, source.NetworksAnnotation, v)
	}
	// Which netN c ends on depends on the values the agent saw on the
	// way (a generated name is never reused while attached): check the
	// networks, and that the pod's links are the status's interfaces.
	h.wantNetworks(t, "after flapping", "cluster", "apps/a", "apps/c")
	if ips := h.ips(t); ips["a"] != 1 || ips["b"] != 0 || ips["c"] != 1 {
		t.Errorf("IP allocations after flapping: %v, want one of a, one of c", ips)
	}

	// The runtime's DEL takes the hot-plugged attachments with the rest.
	if err := h.runtime.DelNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if links := h.links(t); len(links) != 0 {
		t.Errorf("links left after DEL: %v", links)
	}
	if ips := h.ips(t); len(ips) != 0 {
		t.Errorf("IP allocations left after DEL: %v", ips)
	}
	if recs, _ := os.ReadDir(filepath.Join(h.cfg.StateDir, "records")); len(recs) != 0 {
		t.Errorf("records left after DEL: %v", recs)
	}
}

// A NAD with a resourceName hot-plugged takes a device kubelet allocated
// to the pod that no attachment holds; with none left it is refused with
// a Warning naming the resource, and the pod keeps what it has.
func TestHotPlugDevices(t *testing.T) {
	h := newHotRig(t, "vf")
	ctx := context.Background()
	kubelet := podresourcestest.Start(t, filepath.Join(h.dir, "kubelet.sock"))
	kubelet.SetPod("apps", "web", podresourcestest.Container("c", map[string][]string{vfRes: {"0000:03:02.2", "0000:03:02.1"}}))
	infoDir := filepath.Join(h.dir, "devinfo")
	for _, vf := range []string{"0000:03:02.1", "0000:03:02.2"} {
		if _, err := devinfo.WritePCI(filepath.Join(infoDir, "dp"), vfRes, vf, "0000:03:00.0"); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(t, filepath.Join(h.dir, "agent.yaml"), "hotplug: true", fmt.Sprintf("hotplug: true\npodResourcesSocket: %s\ndeviceInfoDir: %s", kubelet.Socket, infoDir))
	nad := &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "vf", Namespace: "apps", Annotations: map[string]string{source.ResourceNameAnnotation: vfRes}},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.244.0.0/24","dataDir":%q}}`, hotBridges[0], h.ipam)},
	}
	if _, err := h.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("apps").Create(ctx, nad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.start(t)
	if _, err := h.runtime.AddNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	h.annotate(t, source.NetworksAnnotation, "vf,vf")
	h.want(t, "second VF", map[string]string{"eth0": "cluster", "net1": "apps/vf", "net2": "apps/vf"})
	for ifname, vf := range map[string]string{"net1": "0000:03:02.1", "net2": "0000:03:02.2"} {
		info, err := devinfo.ReadCNI(filepath.Join(infoDir, "cni", "web1_"+ifname+".json"))
		if err != nil || info.PCI == nil || info.PCI.PCIAddress != vf {
			t.Errorf("%s: device info %+v (%v), want VF %s", ifname, info, err, vf)
		}
	}

	h.annotate(t, source.NetworksAnnotation, "vf,vf,vf")
	h.warned(t, "apps/web", vfRes)
	h.want(t, "no VF left", map[string]string{"eth0": "cluster", "net1": "apps/vf", "net2": "apps/vf"})

	if err := h.runtime.DelNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(infoDir, "cni")); len(left) != 0 {
		t.Errorf("CNI device info files left after DEL: %v", left)
	}
}

// The agent SIGKILLed while a hot-plugged delegate's ADD runs: the next
// agent tears down the half-made attachment, attaches it again, and the
// pod ends as its annotation says, with one IP per attachment; detaching
// and the runtime's DEL then leave nothing.
func TestHotPlugAgentKilled(t *testing.T) {
	h := newHotRig(t, "a")
	ctx := context.Background()
	pidFile := filepath.Join(h.dir, "slow.pid")
	h.slowPlugin(t, "slow-bridge", "bridge", pidFile)
	rewrite(t, filepath.Join(h.dir, "agent.yaml"), "binDirs: [", "binDirs: ["+filepath.Join(h.dir, "bin")+", ")
	h.nad(t, "apps", "slow", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"slow-bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.245.0.0/24","dataDir":%q}}`, hotBridges[1], h.ipam))
	agent := h.startProcess(t)
	if _, err := h.runtime.AddNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	h.annotate(t, source.NetworksAnnotation, "a,slow")
	pid := waitForPID(t, pidFile)
	agent.kill(t)
	waitExited(t, pid, 5*time.Second)
	if err := os.Remove(pidFile); err != nil {
		t.Fatal(err)
	}

	h.startProcess(t)
	h.want(t, "after the restart", map[string]string{"eth0": "cluster", "net1": "apps/a", "net2": "apps/slow"})
	if ips := h.ips(t); ips["a"] != 1 || ips["slow"] != 1 {
		t.Errorf("IP allocations after the restart: %v, want one of a and one of slow", ips)
	}
	h.annotate(t, source.NetworksAnnotation, "a")
	h.want(t, "slow detached", map[string]string{"eth0": "cluster", "net1": "apps/a"})
	if err := h.runtime.DelNetworkList(ctx, h.list, h.podRT()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if ips := h.ips(t); len(ips) != 0 {
		t.Errorf("IP allocations left: %v", ips)
	}
	if links := h.links(t); len(links) != 0 {
		t.Errorf("links left: %v", links)
	}
}

// Local mode: editing the pod's manifest hot-plugs it as an annotation
// patch does in a cluster, and the status command shows the new status.
func TestHotPlugLocal(t *testing.T) {
	r := newRig(t, 2)
	rewrite(t, filepath.Join(r.dir, "agent.yaml"), "local:", "hotplug: true\nlocal:")
	r.start(t)
	ctx := context.Background()
	n := cnitest.NewNS(t)
	rt := r.rt("loc1", n.Path())
	if _, err := r.runtime.AddNetworkList(ctx, r.list, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	rewrite(t, filepath.Join(r.dir, "manifests", "all.yaml"), "k8s.v1.cni.cncf.io/networks: side", "k8s.v1.cni.cncf.io/networks: side,side")
	d := &devRig{rig: r}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ifaces []string
		for _, e := range d.status(t, "web") {
			ifaces = append(ifaces, e.Interface)
		}
		links := cnitest.InNS(t, n, "-o", "link")
		if strings.Contains(links, "net2") && slices.Equal(ifaces, []string{"eth0", "net1", "net2"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the manifest edit the status command shows %v and the pod has\n%s\nwant net2 in both", ifaces, links)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.runtime.DelNetworkList(ctx, r.list, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if held := r.ipamHolds(t, "loc1"); len(held) != 0 {
		t.Errorf("IP allocations left: %v", held)
	}
}
