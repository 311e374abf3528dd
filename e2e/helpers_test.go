//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	podImage      = "localhost/pause:dev"
	recordsDir    = "/var/lib/plexus/records"
	ipamDir       = "/var/lib/cni/networks"
	runningWithin = 120 * time.Second
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace that is deleted, with its pods, when the
// test ends; the deletion waits until the pods are gone so the next test
// starts from a quiet node.
func namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	_, err := env.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	// Pods are refused until the controller-manager has made the
	// namespace's default ServiceAccount.
	for {
		if _, err := env.cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s: no default ServiceAccount", name)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		deletePodsAndWait(t, ctx, name)
		env.cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

func deletePodsAndWait(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	if err := env.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete pods in %s: %v", ns, err)
		return
	}
	for {
		pods, err := env.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("pods in %s not gone: %v", ns, ctx.Err())
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// nad creates a NetworkAttachmentDefinition.
func nad(t *testing.T, ns, name, config string, annotations map[string]string) {
	t.Helper()
	n := &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: config},
	}
	if _, err := env.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Create(ctxFor(t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create NAD %s/%s: %v", ns, name, err)
	}
}

// bridgeNAD is a bridge + host-local network; bridge and network names
// start with cluster.LinkPrefix so the cluster's Clean removes them.
func bridgeNAD(bridge, subnet string, gateway bool) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"bridge","bridge":%q,"isGateway":%t,
"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]]}}`, bridge, bridge, gateway, subnet)
}

func podSpec(ns, name string, annotations map[string]string) *corev1.Pod {
	grace := int64(5)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: podImage, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
}

func createPod(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if _, err := env.cs.CoreV1().Pods(p.Namespace).Create(ctxFor(t, 10*time.Second), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// waitRunning waits for a pod to be Running and returns it.
func waitRunning(t *testing.T, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	ctx := ctxFor(t, timeout)
	var last string
	for {
		p, err := env.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
		if err == nil {
			last = string(p.Status.Phase)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not Running after %s (%s); events:\n%s", ns, name, timeout, last, podEvents(ns, name))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func podEvents(ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := env.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", e.Type, e.Source.Component, e.Reason, e.Message)
	}
	return b.String()
}

// netStatus is one network-status entry as the NPWG spec (v1.3) has it
// ("default-route"), with Multus's "gateway" (the NAD client's name for
// the same list) beside it.
type netStatus struct {
	Name         string            `json:"name"`
	Interface    string            `json:"interface"`
	IPs          []string          `json:"ips"`
	Mac          string            `json:"mac"`
	Default      bool              `json:"default"`
	DefaultRoute []string          `json:"default-route"`
	Gateway      []string          `json:"gateway"`
	DeviceInfo   *nadv1.DeviceInfo `json:"device-info"`
}

// waitStatus waits until the pod's network-status has n entries (the
// annotation is written by the agent right after ADD, the pod may be
// Running a moment before the informer sees it).
func waitStatus(t *testing.T, ns, name string, n int) (*corev1.Pod, []netStatus) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for {
		p, err := env.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if raw, ok := p.Annotations[nadv1.NetworkStatusAnnot]; ok {
				var st []netStatus
				if json.Unmarshal([]byte(raw), &st) == nil && len(st) == n {
					return p, st
				}
			}
		}
		select {
		case <-ctx.Done():
			if p != nil {
				t.Fatalf("pod %s/%s: network-status never had %d entries: %q", ns, name, n, p.Annotations[nadv1.NetworkStatusAnnot])
			}
			t.Fatalf("pod %s/%s: %v", ns, name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// podNetns opens the network namespace of the pod's (first) container,
// through its task's pid in containerd.
func podNetns(t *testing.T, p *corev1.Pod) netns.NsHandle {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].ContainerID == "" {
		t.Fatalf("pod %s/%s has no container ID", p.Namespace, p.Name)
	}
	pid := taskPid(t, strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://"))
	h, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatalf("netns of pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// taskPid is the pid of a container's task in containerd.
func taskPid(t *testing.T, id string) int {
	t.Helper()
	out, err := env.c.Ctr(ctxFor(t, 10*time.Second), "tasks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("task %s: pid %q", id, f[1])
			}
			return pid
		}
	}
	t.Fatalf("container %s not among containerd's tasks:\n%s", id, out)
	return 0
}

// iface is what the kernel says of one interface in a pod.
type iface struct {
	Name  string
	MAC   string
	Kind  string
	Addrs []string // IPv4 CIDRs
}

// podInterfaces lists the pod's interfaces (without lo) and its IPv4 routes.
func podInterfaces(t *testing.T, p *corev1.Pod) (map[string]iface, []netlink.Route) {
	t.Helper()
	h, err := netlink.NewHandleAt(podNetns(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]iface{}
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			continue
		}
		i := iface{Name: l.Attrs().Name, MAC: l.Attrs().HardwareAddr.String(), Kind: l.Type()}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			i.Addrs = append(i.Addrs, a.IPNet.String())
		}
		out[i.Name] = i
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return out, routes
}

func linkName(t *testing.T, p *corev1.Pod, index int) string {
	h, err := netlink.NewHandleAt(podNetns(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return strconv.Itoa(index)
	}
	return l.Attrs().Name
}

func defaultRoutes(routes []netlink.Route) []netlink.Route {
	var out []netlink.Route
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			out = append(out, r)
		}
	}
	return out
}

func inSubnet(cidr, subnet string) bool {
	ip, _, err := net.ParseCIDR(cidr)
	if err != nil {
		return false
	}
	_, n, err := net.ParseCIDR(subnet)
	return err == nil && n.Contains(ip)
}

// host is what a pod may leave behind on the node.
type host struct {
	links   []string
	netns   []string
	records []string
	ipam    []string
	cgroups []string
}

func hostState() (host, error) {
	var h host
	links, err := netlink.LinkList()
	if err != nil {
		return h, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		h.links = append(h.links, l.Attrs().Name)
	}
	for _, d := range []string{"/var/run/netns", "/run/netns"} {
		m, _ := filepath.Glob(filepath.Join(d, "cni-*"))
		h.netns = append(h.netns, m...)
	}
	recs, _ := os.ReadDir(recordsDir)
	for _, r := range recs {
		h.records = append(h.records, r.Name())
	}
	nets, _ := os.ReadDir(ipamDir)
	for _, n := range nets {
		files, _ := os.ReadDir(filepath.Join(ipamDir, n.Name()))
		for _, f := range files {
			if net.ParseIP(f.Name()) != nil {
				h.ipam = append(h.ipam, n.Name()+"/"+f.Name())
			}
		}
	}
	// Test pods are BestEffort; the agent's own (Burstable) pod is
	// replaced when it restarts and is not a leak.
	h.cgroups, _ = filepath.Glob("/sys/fs/cgroup/*/kubepods/besteffort/pod*")
	for _, s := range [][]string{h.links, h.netns, h.records, h.ipam, h.cgroups} {
		sort.Strings(s)
	}
	return h, nil
}

// diff says what b has that a lacks (leaks), or "".
func (a host) diff(b host) string {
	var out []string
	extra := func(what string, x, y []string) {
		have := map[string]bool{}
		for _, v := range x {
			have[v] = true
		}
		for _, v := range y {
			if !have[v] {
				out = append(out, what+" "+v)
			}
		}
	}
	extra("link", a.links, b.links)
	extra("netns", a.netns, b.netns)
	extra("record", a.records, b.records)
	extra("IP allocation", a.ipam, b.ipam)
	extra("pod cgroup", a.cgroups, b.cgroups)
	return strings.Join(out, "\n")
}

// expectNoLeaks waits (bounded) until the host holds nothing more than
// before: kubelet tears sandboxes down asynchronously after a pod is gone.
func expectNoLeaks(t *testing.T, before host, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		after, err := hostState()
		if err != nil {
			t.Fatal(err)
		}
		d := before.diff(after)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind on the host after %s:\n%s", timeout, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func mustGetPod(t *testing.T, ns, name string) *corev1.Pod {
	p, err := env.cs.CoreV1().Pods(ns).Get(ctxFor(t, 10*time.Second), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
