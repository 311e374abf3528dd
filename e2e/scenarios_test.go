//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/internal/cluster"
)

const networksAnnot = "k8s.v1.cni.cncf.io/networks"

// 1. A pod without the annotation gets eth0 only, and a network-status
// with one default entry naming the address eth0 really has.
func TestPodWithoutAnnotation(t *testing.T) {
	ns := namespace(t, "e2e-plain")
	createPod(t, podSpec(ns, "plain", nil))
	waitRunning(t, ns, "plain", runningWithin)
	p, st := waitStatus(t, ns, "plain", 1)
	ifs, _ := podInterfaces(t, p)
	if len(ifs) != 1 {
		t.Fatalf("interfaces %v, want eth0 only", ifs)
	}
	eth0, ok := ifs["eth0"]
	if !ok || len(eth0.Addrs) != 1 || !inSubnet(eth0.Addrs[0], cluster.PrimarySubnet) {
		t.Fatalf("eth0 %+v, want one address in %s", eth0, cluster.PrimarySubnet)
	}
	e := st[0]
	if !e.Default || e.Interface != "eth0" || e.Name != cluster.PrimaryNetwork {
		t.Errorf("status entry %+v, want default eth0 of %s", e, cluster.PrimaryNetwork)
	}
	if len(e.IPs) != 1 || e.IPs[0] != strings.Split(eth0.Addrs[0], "/")[0] || e.Mac != eth0.MAC {
		t.Errorf("status %v/%s, kernel %v/%s", e.IPs, e.Mac, eth0.Addrs, eth0.MAC)
	}
}

// 2. macvlan with static IPAM and the selection's "ips": net1 has exactly
// that address.
func TestMacvlanStaticIPs(t *testing.T) {
	ns := namespace(t, "e2e-macvlan")
	// The uplink: a veth pair on the host (no dummy links here).
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: cluster.LinkPrefix + "-up0"}, PeerName: cluster.LinkPrefix + "-up0p"}
	if err := netlink.LinkAdd(up); err != nil {
		t.Fatalf("uplink: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(up) })
	if err := netlink.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	nad(t, ns, "mv", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"%s-mv","type":"macvlan","master":%q,"mode":"bridge",
"capabilities":{"ips":true},"ipam":{"type":"static"}}`, cluster.LinkPrefix, up.Name), nil)
	createPod(t, podSpec(ns, "mv", map[string]string{networksAnnot: `[{"name":"mv","ips":["10.60.0.7/24"]}]`}))
	waitRunning(t, ns, "mv", runningWithin)
	p, st := waitStatus(t, ns, "mv", 2)
	ifs, _ := podInterfaces(t, p)
	net1, ok := ifs["net1"]
	if !ok || net1.Kind != "macvlan" {
		t.Fatalf("interfaces %+v, want a macvlan net1", ifs)
	}
	if len(net1.Addrs) != 1 || net1.Addrs[0] != "10.60.0.7/24" {
		t.Fatalf("net1 addresses %v, want exactly 10.60.0.7/24", net1.Addrs)
	}
	if st[1].Name != ns+"/mv" || st[1].Interface != "net1" || len(st[1].IPs) != 1 || st[1].IPs[0] != "10.60.0.7" {
		t.Errorf("status entry %+v", st[1])
	}
}

// 3. The same bridge NAD listed twice: net1 and net2, both in the status.
func TestSameNADTwice(t *testing.T) {
	ns := namespace(t, "e2e-twice")
	nad(t, ns, "br", bridgeNAD(cluster.LinkPrefix+"-br3", "10.53.0.0/24", false), nil)
	createPod(t, podSpec(ns, "twice", map[string]string{networksAnnot: "br,br"}))
	waitRunning(t, ns, "twice", runningWithin)
	p, st := waitStatus(t, ns, "twice", 3)
	ifs, _ := podInterfaces(t, p)
	for i, name := range []string{"net1", "net2"} {
		k, ok := ifs[name]
		if !ok || len(k.Addrs) != 1 || !inSubnet(k.Addrs[0], "10.53.0.0/24") {
			t.Fatalf("%s: %+v, want one address in 10.53.0.0/24 (all: %+v)", name, k, ifs)
		}
		e := st[i+1]
		if e.Name != ns+"/br" || e.Interface != name || len(e.IPs) != 1 || e.IPs[0] != strings.Split(k.Addrs[0], "/")[0] {
			t.Errorf("status entry %d %+v, kernel %+v", i+1, e, k)
		}
	}
	if ifs["net1"].Addrs[0] == ifs["net2"].Addrs[0] {
		t.Errorf("net1 and net2 share %s", ifs["net1"].Addrs[0])
	}
}

// 4. default-route on a secondary: the pod's only default route goes
// through it.
func TestDefaultRouteOnSecondary(t *testing.T) {
	ns := namespace(t, "e2e-route")
	nad(t, ns, "gw", bridgeNAD(cluster.LinkPrefix+"-gw", "10.54.0.0/24", true), nil)
	createPod(t, podSpec(ns, "route", map[string]string{networksAnnot: `[{"name":"gw","default-route":["10.54.0.1"]}]`}))
	waitRunning(t, ns, "route", runningWithin)
	p, st := waitStatus(t, ns, "route", 2)
	_, routes := podInterfaces(t, p)
	defs := defaultRoutes(routes)
	if len(defs) != 1 {
		var s []string
		for _, r := range defs {
			s = append(s, fmt.Sprintf("via %s dev %s", r.Gw, linkName(t, p, r.LinkIndex)))
		}
		t.Fatalf("default routes %v, want exactly one, via net1", s)
	}
	if defs[0].Gw.String() != "10.54.0.1" || linkName(t, p, defs[0].LinkIndex) != "net1" {
		t.Fatalf("default route via %s dev %s, want via 10.54.0.1 dev net1", defs[0].Gw, linkName(t, p, defs[0].LinkIndex))
	}
	// "default" marks the cluster network (as in Multus); the gateway
	// list says which interface carries the default route.
	if !st[0].Default || st[1].Default || len(st[0].DefaultRoute) != 0 || len(st[1].DefaultRoute) != 1 || st[1].DefaultRoute[0] != "10.54.0.1" {
		t.Errorf("status: eth0 default %t default-route %v, net1 default %t default-route %v; want true [], false [10.54.0.1]",
			st[0].Default, st[0].DefaultRoute, st[1].Default, st[1].DefaultRoute)
	}
}

// 5. Namespace isolation: a pod selecting another namespace's NAD never
// gets a sandbox, and a Warning Event names the reason.
func TestNamespaceIsolation(t *testing.T) {
	other := namespace(t, "e2e-iso-a")
	ns := namespace(t, "e2e-iso-b")
	nad(t, other, "br", bridgeNAD(cluster.LinkPrefix+"-iso", "10.55.0.0/24", false), nil)
	intruder := podSpec(ns, "intruder", map[string]string{networksAnnot: other + "/br"})
	// plexus-webhook refuses it at create, in the agent's words.
	_, err := env.cs.CoreV1().Pods(ns).Create(ctxFor(t, 10*time.Second), intruder, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "namespace isolation forbids") || !strings.Contains(err.Error(), other+"/br") {
		t.Fatalf("create: %v, want the webhook's namespace isolation refusal", err)
	}
	// Past the webhook (as when it is down: failurePolicy Ignore), the
	// agent refuses it at ADD.
	withoutPodValidation(t, intruder)
	createPod(t, intruder)
	waitWarning(t, ns, "intruder", "namespace isolation", other+"/br")
}

// 6. A deleted pod leaves no link, IP allocation, record or namespace.
func TestDeleteLeavesNothing(t *testing.T) {
	ns, before := warmNamespace(t, "e2e-delete", cluster.LinkPrefix+"-br6", "10.56.0.0/24")
	createPod(t, podSpec(ns, "gone", map[string]string{networksAnnot: "br,br"}))
	waitRunning(t, ns, "gone", runningWithin)
	p, _ := waitStatus(t, ns, "gone", 3)
	during, _ := hostState()
	// One record per CNI ADD (the pod), one address per interface.
	if len(during.records) != len(before.records)+1 || len(during.ipam) != len(before.ipam)+3 {
		t.Fatalf("the pod's records/IPs are not visible on the host: records %d→%d, IPs %d→%d",
			len(before.records), len(during.records), len(before.ipam), len(during.ipam))
	}
	if err := env.cs.CoreV1().Pods(ns).Delete(ctxFor(t, 10*time.Second), p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, p.Name, 60*time.Second)
	expectNoLeaks(t, before, 60*time.Second)
}

// warmNamespace makes a namespace with a bridge NAD "br" and one running
// pod on it, and returns the host's state then: the NAD's bridge persists
// by design (the bridge plugin creates it, shared by pods), so it must
// exist before the snapshot that leaks are measured against.
func warmNamespace(t *testing.T, name, bridge, subnet string) (string, host) {
	t.Helper()
	ns := namespace(t, name)
	nad(t, ns, "br", bridgeNAD(bridge, subnet, false), nil)
	createPod(t, podSpec(ns, "warm", map[string]string{networksAnnot: "br"}))
	waitRunning(t, ns, "warm", runningWithin)
	waitStatus(t, ns, "warm", 2)
	before, err := hostState()
	if err != nil {
		t.Fatal(err)
	}
	return ns, before
}

func waitGone(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	ctx := ctxFor(t, timeout)
	for {
		_, err := env.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s still there after %s", ns, name, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createAndTime creates n pods at once and returns each one's create →
// Running time.
func createAndTime(t *testing.T, ns, prefix string, n int, annotations map[string]string) []time.Duration {
	t.Helper()
	return timeRunning(t, ns, prefix, createAll(t, ns, prefix, n, annotations))
}

// createAll creates pods prefix-00 … prefix-(n-1) at once and returns when
// each was created.
func createAll(t *testing.T, ns, prefix string, n int, annotations map[string]string) []time.Time {
	t.Helper()
	starts := make([]time.Time, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := podSpec(ns, fmt.Sprintf("%s-%02d", prefix, i), annotations)
			starts[i] = time.Now()
			if _, err := env.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
				errs <- fmt.Errorf("create %s: %w", p.Name, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return starts
}

// timeRunning waits until the pods createAll started are all Running and
// returns each one's create → Running time.
func timeRunning(t *testing.T, ns, prefix string, starts []time.Time) []time.Duration {
	t.Helper()
	n := len(starts)
	running := make([]time.Time, n)
	ctx := ctxFor(t, 5*time.Minute)
	for left := n; left > 0; {
		pods, err := env.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, p := range pods.Items {
			var i int
			if _, err := fmt.Sscanf(strings.TrimPrefix(p.Name, prefix+"-"), "%d", &i); err != nil || !strings.HasPrefix(p.Name, prefix+"-") {
				continue
			}
			if p.Status.Phase == corev1.PodRunning && running[i].IsZero() {
				running[i] = now
				left--
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d pods not Running after 5 min", left, n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = running[i].Sub(starts[i])
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// 9. Thirty pods with two secondary networks created at once all run,
// each with its three interfaces.
func TestBurstOf30(t *testing.T) {
	ns := namespace(t, "e2e-burst")
	nad(t, ns, "a", bridgeNAD(cluster.LinkPrefix+"-ba", "10.57.0.0/24", false), nil)
	nad(t, ns, "b", bridgeNAD(cluster.LinkPrefix+"-bb", "10.58.0.0/24", false), nil)
	// The same burst without secondary networks first, for comparison.
	start := time.Now()
	plain := createAndTime(t, ns, "plain", 30, nil)
	plainTotal := time.Since(start)
	deletePodsAndWait(t, ctxFor(t, 3*time.Minute), ns)
	start = time.Now()
	times := createAndTime(t, ns, "burst", 30, map[string]string{networksAnnot: "a,b"})
	total := time.Since(start)
	report("30 pods created at once: with two secondary networks all Running in %s (create→Running median %s, max %s); "+
		"without secondary networks %s (median %s, max %s)",
		total.Round(time.Millisecond), median(times).Round(time.Millisecond), maxOf(times).Round(time.Millisecond),
		plainTotal.Round(time.Millisecond), median(plain).Round(time.Millisecond), maxOf(plain).Round(time.Millisecond))
	for i := 0; i < 30; i++ {
		_, st := waitStatus(t, ns, fmt.Sprintf("burst-%02d", i), 3)
		if st[1].Interface != "net1" || st[2].Interface != "net2" || len(st[1].IPs) != 1 || len(st[2].IPs) != 1 {
			t.Errorf("burst-%02d: status %+v", i, st)
		}
	}
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// The measure: create → Running with two secondary networks vs.
// none, same cluster, same run, interleaved rounds.
func TestCreateToRunningRatio(t *testing.T) {
	ns := namespace(t, "e2e-ratio")
	nad(t, ns, "a", bridgeNAD(cluster.LinkPrefix+"-ra", "10.61.0.0/24", false), nil)
	nad(t, ns, "b", bridgeNAD(cluster.LinkPrefix+"-rb", "10.62.0.0/24", false), nil)
	var plain, multi []time.Duration
	const rounds, perRound = 4, 5
	for r := 0; r < rounds; r++ {
		for _, withNets := range []bool{false, true} {
			ann := map[string]string(nil)
			prefix := fmt.Sprintf("plain%d", r)
			if withNets {
				ann = map[string]string{networksAnnot: "a,b"}
				prefix = fmt.Sprintf("multi%d", r)
			}
			// One at a time: the time a pod takes, not a burst's queue.
			for i := 0; i < perRound; i++ {
				d := createAndTime(t, ns, fmt.Sprintf("%s%d", prefix, i), 1, ann)
				if withNets {
					multi = append(multi, d...)
				} else {
					plain = append(plain, d...)
				}
			}
			deletePodsAndWait(t, ctxFor(t, 2*time.Minute), ns)
		}
	}
	mp, mm := median(plain), median(multi)
	ratio := float64(mm) / float64(mp)
	report("pod create→Running, median of %d pods each: no secondary networks %s, two secondary networks %s: ratio %.2fx",
		len(plain), mp.Round(time.Millisecond), mm.Round(time.Millisecond), ratio)
	if ratio > 1.5 {
		t.Errorf("two secondary networks make pods %.2fx slower to run (target 1.10x)", ratio)
	}
}

// 7. The agent's pod is deleted (DaemonSet replaces it) during pod churn:
// every pod still ends up Running with its networks, and after deletion
// nothing leaks.
func TestAgentRestartDuringChurn(t *testing.T) {
	ns, before := warmNamespace(t, "e2e-churn", cluster.LinkPrefix+"-ch", "10.59.0.0/24")
	const n = 12
	starts := createAll(t, ns, "churn", n, map[string]string{networksAnnot: "br"})
	// The restart goes in once kubelet is setting the pods up.
	waitCreating(t, ns, "churn-")
	restartAgent(t)
	timeRunning(t, ns, "churn", starts)
	for i := 0; i < n; i++ {
		_, st := waitStatus(t, ns, fmt.Sprintf("churn-%02d", i), 2)
		if st[1].Interface != "net1" || len(st[1].IPs) != 1 {
			t.Errorf("churn-%02d: status %+v", i, st)
		}
	}
	// Delete while the agent restarts once more.
	for i := 0; i < n; i++ {
		env.cs.CoreV1().Pods(ns).Delete(context.Background(), fmt.Sprintf("churn-%02d", i), metav1.DeleteOptions{})
	}
	restartAgent(t)
	for i := 0; i < n; i++ {
		waitGone(t, ns, fmt.Sprintf("churn-%02d", i), 2*time.Minute)
	}
	expectNoLeaks(t, before, 90*time.Second)
}

// waitCreating waits until kubelet reports a pod named prefix… as creating
// its containers (its sandbox, and so its CNI ADD, under way), or Running.
func waitCreating(t *testing.T, ns, prefix string) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	for {
		pods, err := env.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				if !strings.HasPrefix(p.Name, prefix) {
					continue
				}
				if p.Status.Phase == corev1.PodRunning {
					return
				}
				for _, cs := range p.Status.ContainerStatuses {
					if cs.State.Waiting != nil && cs.State.Waiting.Reason == "ContainerCreating" {
						return
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubelet started none of the %s pods: %v", prefix, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitKilling waits until kubelet has recorded killing the containers of
// each of pods: it has seen their deletion.
func waitKilling(t *testing.T, ns string, pods []string) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	var missing []string
	for {
		evs, err := env.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Killing"})
		if err == nil {
			killed := map[string]bool{}
			for _, e := range evs.Items {
				if e.Source.Component == "kubelet" {
					killed[e.InvolvedObject.Name] = true
				}
			}
			missing = missing[:0]
			for _, p := range pods {
				if !killed[p] {
					missing = append(missing, p)
				}
			}
			if len(missing) == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubelet did not kill the containers of %v (%v)", missing, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// restartAgent deletes the agent's pod and waits for its replacement.
func restartAgent(t *testing.T) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=plexus-agent"}
	pods, err := env.cs.CoreV1().Pods("plexus-system").List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	// The pod an earlier restart replaced may still be terminating (its
	// grace period): the DaemonSet is ready as soon as the new one is.
	live := slices.DeleteFunc(pods.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
	if len(live) != 1 {
		t.Fatalf("agent pods not terminating: %d, want 1", len(live))
	}
	if err := env.cs.CoreV1().Pods("plexus-system").Delete(ctx, live[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted agent pod %s", live[0].Name)
	if err := env.c.WaitDaemonSet(context.Background(), "plexus-system", "plexus-agent", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// 8. kube-apiserver is stopped while pods are being deleted: kubelet still
// tears the sandboxes down through the agent (which needs no API server
// for DEL) and nothing leaks.
func TestAPIServerDownDuringDelete(t *testing.T) {
	ns, before := warmNamespace(t, "e2e-apidown", cluster.LinkPrefix+"-ad", "10.63.0.0/24")
	const n = 5
	createAndTime(t, ns, "down", n, map[string]string{networksAnnot: "br,br"})
	for i := 0; i < n; i++ {
		waitStatus(t, ns, fmt.Sprintf("down-%02d", i), 3)
	}
	zero := int64(1)
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("down-%02d", i))
		if err := env.cs.CoreV1().Pods(ns).Delete(context.Background(), names[i], metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	// Once kubelet has seen the deletions (it is killing the containers),
	// take the API away.
	waitKilling(t, ns, names)
	// Killed, not stopped gracefully: its shutdown would take seconds,
	// long enough for kubelet to finish before it is down.
	env.c.KillAPIServer()
	stopped := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			env.c.StartAPIServer(context.Background())
		}
	}()
	// Teardown must complete on the host with the API server down.
	deadline := time.Now().Add(90 * time.Second)
	for {
		after, err := hostState()
		if err != nil {
			t.Fatal(err)
		}
		if before.diff(after) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the API server down, teardown left:\n%s", before.diff(after))
		}
		time.Sleep(250 * time.Millisecond)
	}
	report("API server down: %d multi-homed pods torn down on the host in %s", n, time.Since(stopped).Round(time.Millisecond))
	if err := env.c.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for i := 0; i < n; i++ {
		waitGone(t, ns, fmt.Sprintf("down-%02d", i), 2*time.Minute)
	}
	expectNoLeaks(t, before, 30*time.Second)
}

// 10. Uninstall: deleting the agent's DaemonSet removes our CNI conf and
// new pods start on the primary network alone. Runs last.
func TestZUninstall(t *testing.T) {
	conf := filepath.Join(env.c.CNIConfDir(), "00-plexus.conflist")
	if _, err := os.Stat(conf); err != nil {
		t.Fatalf("before uninstall: %v", err)
	}
	ctx := ctxFor(t, 2*time.Minute)
	if err := env.cs.AppsV1().DaemonSets("plexus-system").Delete(ctx, "plexus-agent", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		pods, err := env.cs.CoreV1().Pods("plexus-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=plexus-agent"})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("agent pod not gone")
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The agent removes it before it exits, and kubelet deletes the pod
	// only after its container has exited.
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Fatalf("%s still there after uninstall (%v)", conf, err)
	}
	ns := namespace(t, "e2e-uninstalled")
	createPod(t, podSpec(ns, "after", nil))
	p := waitRunning(t, ns, "after", runningWithin)
	ifs, _ := podInterfaces(t, p)
	if len(ifs) != 1 || len(ifs["eth0"].Addrs) != 1 || !inSubnet(ifs["eth0"].Addrs[0], cluster.PrimarySubnet) {
		t.Fatalf("interfaces %+v, want eth0 on the primary network", ifs)
	}
	// No agent is left to write one: its pod is gone.
	if _, ok := p.Annotations["k8s.v1.cni.cncf.io/network-status"]; ok {
		t.Errorf("a pod started after uninstall has a network-status from plexus")
	}
}
