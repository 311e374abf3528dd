// Package burst is the burst benchmark: N (default 200) concurrent CNI ADDs,
// then N concurrent DELs, through the real shim binary against the real
// plexus-agent binary in Kubernetes mode (a real kube-apiserver from
// internal/apiservertest), measuring the agent's RSS at idle and at peak.
// Results and their reading: docs/benchmarks.md. Run it with
//
//	sudo tools/bench/burst.sh
//
// It is a test only so that it can use apiservertest.Start; without
// PLEXUS_BENCH_BURST=1 it skips.
package burst

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/internal/apiservertest"
	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

// Names of everything the benchmark creates on the host: exact names,
// never prefixes to match (other tests use similar ones).
const (
	nodeName   = "pxburst-node"
	podNS      = "pxburst"
	clusterNet = "pxburst-cluster"
	nadA       = "pxburst-a"
	nadB       = "pxburst-b"
)

var (
	bridges = [3]string{"pxburst0", "pxburst1", "pxburst2"} // eth0, net1, net2
	subnets = [3]string{"10.180.0.0/16", "10.181.0.0/16", "10.182.0.0/16"}
	ifnames = [3]string{"eth0", "net1", "net2"}
	// network-status names, in order.
	statusNames = [3]string{clusterNet, podNS + "/" + nadA, podNS + "/" + nadB}
)

// Knobs, from the environment (burst.sh passes them through).
type options struct {
	pods       int
	binDir     string   // plexus and plexus-agent; built when empty
	agentEnv   []string // extra environment for the agent, e.g. GOGC=50
	maxConc    int      // agent maxConcurrent; 0 = the default (64)
	keep       bool     // keep the scratch dir (agent log, audit log)
	sampleTick time.Duration
}

func envOptions(t *testing.T) options {
	o := options{pods: 200, binDir: os.Getenv("PLEXUS_BENCH_BIN_DIR"), keep: os.Getenv("PLEXUS_BENCH_BURST_KEEP") == "1", sampleTick: 10 * time.Millisecond}
	if v := os.Getenv("PLEXUS_BENCH_BURST_PODS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60000 {
			t.Fatalf("PLEXUS_BENCH_BURST_PODS=%q: want a positive number", v)
		}
		o.pods = n
	}
	if v := os.Getenv("PLEXUS_BENCH_BURST_MAXCONCURRENT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PLEXUS_BENCH_BURST_MAXCONCURRENT=%q: want a positive number", v)
		}
		o.maxConc = n
	}
	if v := os.Getenv("PLEXUS_BENCH_BURST_AGENT_ENV"); v != "" {
		o.agentEnv = strings.Fields(v)
	}
	return o
}

// bench is the benchmark's world.
type bench struct {
	o       options
	dir     string
	plugins string
	api     *apiservertest.Server
	admin   kubernetes.Interface
	runtime *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	agent   *exec.Cmd
	exited  chan error
	mu      sync.Mutex
	netns   []string // names created, for cleanup
}

func TestBurst(t *testing.T) {
	if os.Getenv("PLEXUS_BENCH_BURST") != "1" {
		t.Skip("burst benchmark: set PLEXUS_BENCH_BURST=1, or run sudo tools/bench/burst.sh (root, a few minutes)")
	}
	cnitest.RequireRoot(t)
	o := envOptions(t)
	b := &bench{o: o, plugins: cnitest.PluginDir(t)}
	ctx := context.Background()

	fmt.Printf("burst: %d pods, load average at start: %s\n", o.pods, benchhost.LoadAvg())
	defer func() { fmt.Printf("burst: load average at end: %s\n", benchhost.LoadAvg()) }()

	b.setUpDir(t)
	b.setUpAPI(t, ctx)
	b.setUpFiles(t)
	b.setUpPods(t, ctx)
	b.setUpNetns(t)
	b.startAgent(t, ctx)

	pid := b.agent.Process.Pid
	// Idle: startAgent returned on the first STATUS answered, which the
	// agent serves only once its informers synced (200 pods in the
	// cache); then start-up work and garbage have settled.
	idleSettle := settle(t, pid)
	idle := sampleFor(pid, 5*time.Second, 100*time.Millisecond)
	idleSt := benchhost.ReadProcStatus(pid)
	startHWM := idleSt.HWM
	cpu0 := cpuSeconds(pid)

	// ADD burst.
	auditBefore := len(b.api.AgentRequests(t))
	sampler := startSampler(pid, o.sampleTick)
	add := b.burst(ctx, true)
	addPeak := sampler.stop()
	addHWM := benchhost.ReadProcStatus(pid).HWM
	cpuAdd := cpuSeconds(pid) - cpu0
	if len(add.errs) > 0 {
		t.Fatalf("%d of %d ADDs failed; first: %v (agent log %s)", len(add.errs), o.pods, add.errs[0], filepath.Join(b.dir, "agent.log"))
	}
	addCalls := b.apiCalls(t, auditBefore)
	b.verifyAdded(t, ctx)

	// After the burst: every ADD answered and checked, then the agent
	// settled.
	afterSettle := settle(t, pid)
	after := sampleFor(pid, 3*time.Second, 100*time.Millisecond)
	afterSt := benchhost.ReadProcStatus(pid)

	// DEL burst.
	auditBefore = len(b.api.AgentRequests(t))
	cpu1 := cpuSeconds(pid)
	sampler = startSampler(pid, o.sampleTick)
	del := b.burst(ctx, false)
	delPeak := sampler.stop()
	delHWM := benchhost.ReadProcStatus(pid).HWM
	cpuDel := cpuSeconds(pid) - cpu1
	if len(del.errs) > 0 {
		t.Fatalf("%d of %d DELs failed; first: %v", len(del.errs), o.pods, del.errs[0])
	}
	delCalls := b.apiCalls(t, auditBefore)
	b.verifyDeleted(t)
	afterDelSettle := settle(t, pid)
	afterDel := sampleFor(pid, 3*time.Second, 100*time.Millisecond)

	maxConc := o.maxConc
	if maxConc == 0 {
		maxConc = 64
	}
	w := os.Stdout
	fmt.Fprintf(w, "\nagent: maxConcurrent %d, extra env %q, RSS sampled every %v\n", maxConc, o.agentEnv, o.sampleTick)
	fmt.Fprintf(w, "\n| agent memory, MiB | RSS min | RSS median | RSS max | VmHWM |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| idle, informers synced (%d pods cached), settled in %s, 5 s | %s | %s | %s | %s |\n", o.pods, secs(idleSettle), benchhost.MiB(idle.min), benchhost.MiB(idle.median), benchhost.MiB(idle.max), benchhost.MiB(startHWM))
	fmt.Fprintf(w, "| during %d concurrent ADDs (%d samples) | %s | %s | **%s** | %s |\n", o.pods, addPeak.n, benchhost.MiB(addPeak.min), benchhost.MiB(addPeak.median), benchhost.MiB(addPeak.max), benchhost.MiB(addHWM))
	fmt.Fprintf(w, "| after the ADD burst, settled in %s, 3 s | %s | %s | %s | |\n", secs(afterSettle), benchhost.MiB(after.min), benchhost.MiB(after.median), benchhost.MiB(after.max))
	fmt.Fprintf(w, "| during %d concurrent DELs (%d samples) | %s | %s | %s | %s |\n", o.pods, delPeak.n, benchhost.MiB(delPeak.min), benchhost.MiB(delPeak.median), benchhost.MiB(delPeak.max), benchhost.MiB(delHWM))
	fmt.Fprintf(w, "| after the DEL burst, settled in %s, 3 s | %s | %s | %s | |\n", secs(afterDelSettle), benchhost.MiB(afterDel.min), benchhost.MiB(afterDel.median), benchhost.MiB(afterDel.max))
	fmt.Fprintf(w, "\nRSS split (RssAnon + RssFile, MiB): idle %s + %s, after the ADD burst %s + %s\n", benchhost.MiB(idleSt.Anon), benchhost.MiB(idleSt.File), benchhost.MiB(afterSt.Anon), benchhost.MiB(afterSt.File))
	fmt.Fprintf(w, "agent threads: idle %d, peak during ADD %d, during DEL %d\n", idle.threads, addPeak.threads, delPeak.threads)
	fmt.Fprintf(w, "\n| %d concurrent | wall | per-call median | p90 | max | min | agent CPU |\n|---|---:|---:|---:|---:|---:|---:|\n", o.pods)
	fmt.Fprintf(w, "| ADD | %.1f s | %s | %s | %s | %s | %.1f s |\n", add.wall.Seconds(), secs(add.pct(50)), secs(add.pct(90)), secs(add.pct(100)), secs(add.pct(0)), cpuAdd)
	fmt.Fprintf(w, "| DEL | %.1f s | %s | %s | %s | %s | %.1f s |\n", del.wall.Seconds(), secs(del.pct(50)), secs(del.pct(90)), secs(del.pct(100)), secs(del.pct(0)), cpuDel)
	fmt.Fprintf(w, "\nagent API calls, ADD burst: %s\nagent API calls, DEL burst: %s\n", addCalls.String(o.pods), delCalls.String(o.pods))
	if addCalls.patches != o.pods || addCalls.events != 3*o.pods || addCalls.reads != 0 || addCalls.other != 0 {
		t.Errorf("ADD burst: agent API calls %s; want 1 pod patch and 3 event creates per ADD, no reads", addCalls.String(o.pods))
	}
	fmt.Fprintf(w, "\nall %d ADDs verified (eth0/net1/net2 up with addresses, network-status on the API server); all DELs verified (no links, IP allocations, records or cached results left)\n", o.pods)
}

// setUpDir makes the scratch directory, removed at the end unless keep.
func (b *bench) setUpDir(t *testing.T) {
	d, err := os.MkdirTemp("", "pxburst-")
	if err != nil {
		t.Fatal(err)
	}
	b.dir = d
	t.Cleanup(func() {
		if b.o.keep || t.Failed() {
			fmt.Println("burst: scratch files kept in", d)
			return
		}
		os.RemoveAll(d)
	})
	for _, sub := range []string{"bin", "net.d", "runtime", "ipam", "state"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *bench) setUpAPI(t *testing.T, ctx context.Context) {
	b.api = apiservertest.Start(t)
	adminCfg := b.api.Config(apiservertest.AdminToken)
	adminCfg.QPS, adminCfg.Burst = 500, 1000
	for _, f := range []string{"../../../deploy/crds/network-attachment-definitions.yaml", "../../../deploy/namespace.yaml", "../../../deploy/rbac.yaml"} {
		if err := apiservertest.ApplyFile(ctx, adminCfg, f, false); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
	}
	var err error
	if b.admin, err = kubernetes.NewForConfig(adminCfg); err != nil {
		t.Fatal(err)
	}
	nads, err := nadclient.NewForConfig(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS).List(ctx, metav1.ListOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NetworkAttachmentDefinition CRD not served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, name := range []string{nadA, nadB} {
		nad := &nadv1.NetworkAttachmentDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS},
			Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: b.delegateConf(i + 1)},
		}
		if _, err := nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS).Create(ctx, nad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// delegateConf is network k's delegate: bridge + host-local in its /16.
func (b *bench) delegateConf(k int) string {
	gw := ""
	if k == 0 {
		gw = `"isGateway":true,`
	}
	return fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,%s"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}`,
		bridges[k], gw, subnets[k], filepath.Join(b.dir, "ipam"))
}

func (b *bench) setUpFiles(t *testing.T) {
	t.Cleanup(func() {
		for _, l := range bridges {
			if err := benchhost.DelLink(l); err != nil {
				t.Error(err)
			}
		}
	})
	for _, l := range bridges { // leftovers of an interrupted run
		if err := benchhost.DelLink(l); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, clusterNet, b.delegateConf(0))
	write(t, filepath.Join(b.dir, "net.d", "10-pxburst.conflist"), conf)
	if _, err := libcni.ConfListFromFile(filepath.Join(b.dir, "net.d", "10-pxburst.conflist")); err != nil {
		t.Fatalf("cluster conflist: %v\n%s", err, conf)
	}

	if b.o.binDir == "" {
		b.o.binDir = filepath.Join(b.dir, "build")
		out, err := exec.Command("../../build.sh", b.o.binDir).CombinedOutput()
		if err != nil {
			t.Fatalf("tools/build.sh: %v\n%s", err, out)
		}
	}
	if err := os.Symlink(filepath.Join(b.o.binDir, "plexus"), filepath.Join(b.dir, "bin", "plexus")); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(b.dir, "run", "agent.sock")
	maxConc := ""
	if b.o.maxConc > 0 {
		maxConc = fmt.Sprintf("maxConcurrent: %d\n", b.o.maxConc)
	}
	write(t, filepath.Join(b.dir, "agent.yaml"), fmt.Sprintf(
		"socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: %s\n%skubernetes: {kubeconfig: %s, nodeName: %s}\n",
		socket, filepath.Join(b.dir, "state"), filepath.Join(b.dir, "net.d"), b.plugins, clusterNet, maxConc,
		b.api.Kubeconfig(t, apiservertest.AgentToken), nodeName))
	var err error
	// The shim's defaults (connect 3 s, request 300 s), as a runtime
	// would have them.
	b.list, err = libcni.NetworkConfFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":%q}]}`, socket)))
	if err != nil {
		t.Fatal(err)
	}
	b.runtime = libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(b.dir, "bin")}, filepath.Join(b.dir, "runtime"), nil)
}

func podName(i int) string { return fmt.Sprintf("pod-%d", i) }

func (b *bench) setUpPods(t *testing.T, ctx context.Context) {
	errs := make(chan error, b.o.pods)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range b.o.pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: podNS, Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": nadA + "," + nadB}},
				Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
			}
			if _, err := b.admin.CoreV1().Pods(podNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("create pods: %v", err)
	}
}

func netnsName(i int) string { return fmt.Sprintf("pxburst-%d-%d", os.Getpid(), i) }

func (b *bench) setUpNetns(t *testing.T) {
	t.Cleanup(func() {
		for _, n := range b.netns {
			if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v: %s", n, err, out)
			}
		}
	})
	for i := range b.o.pods {
		n := netnsName(i)
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", n, err, out)
		}
		b.netns = append(b.netns, n)
	}
}

// startAgent runs the plexus-agent binary and waits until it answers a
// STATUS through the shim (it serves only after its informers synced).
func (b *bench) startAgent(t *testing.T, ctx context.Context) {
	log, err := os.Create(filepath.Join(b.dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(b.o.binDir, "plexus-agent"), "run", "--config", filepath.Join(b.dir, "agent.yaml"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), b.o.agentEnv...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.agent = cmd
	b.exited = make(chan error, 1)
	go func() { b.exited <- cmd.Wait(); log.Close() }()
	// Registered after the netns and bridge cleanups, so it runs first.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-b.exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := b.runtime.GetStatusNetworkList(ctx, b.list)
		if err == nil {
			return
		}
		select {
		case werr := <-b.exited:
			b.exited <- werr
			t.Fatalf("agent exited (%v); see %s: %v", werr, filepath.Join(b.dir, "agent.log"), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type burstResult struct {
	wall time.Duration
	lat  []time.Duration // sorted
	errs []error
}

func (r burstResult) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat) - 1) * p / 100
	return r.lat[i]
}

func (b *bench) rt(i int) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: fmt.Sprintf("pxburst%06d", i),
		NetNS:       filepath.Join("/var/run/netns", netnsName(i)),
		IfName:      "eth0",
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", podNS}, {"K8S_POD_NAME", podName(i)}},
	}
}

// burst fires all ADDs (or DELs) at once from one goroutine each, as a
// runtime starting many pods would, and times each from the common start.
func (b *bench) burst(ctx context.Context, add bool) burstResult {
	var wg, ready sync.WaitGroup
	var mu sync.Mutex
	var r burstResult
	start := make(chan struct{})
	var t0 time.Time
	for i := range b.o.pods {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			rt := b.rt(i)
			ready.Done()
			<-start
			var err error
			if add {
				_, err = b.runtime.AddNetworkList(ctx, b.list, rt)
			} else {
				err = b.runtime.DelNetworkList(ctx, b.list, rt)
			}
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			r.lat = append(r.lat, d)
			if err != nil {
				r.errs = append(r.errs, fmt.Errorf("pod %d: %w", i, err))
			}
		}()
	}
	ready.Wait() // every goroutine created and at the barrier
	t0 = time.Now()
	close(start)
	wg.Wait()
	r.wall = time.Since(t0)
	slices.Sort(r.lat)
	return r
}

type calls struct{ patches, events, reads, watches, other int }

func (c calls) String(pods int) string {
	f := func(n int) string { return strconv.FormatFloat(float64(n)/float64(pods), 'f', 2, 64) }
	return fmt.Sprintf("%d pod patches (%s/pod), %d event creates (%s/pod), %d get/list, %d watch, %d other",
		c.patches, f(c.patches), c.events, f(c.events), c.reads, c.watches, c.other)
}

func (b *bench) apiCalls(t *testing.T, from int) calls {
	var c calls
	for _, r := range b.api.AgentRequests(t)[from:] {
		switch {
		case r.Verb == "patch" && r.ObjectRef.Resource == "pods" && r.ObjectRef.Subresource == "":
			c.patches++
		case r.Verb == "create" && r.ObjectRef.Resource == "events":
			c.events++
		case r.Verb == "get" || r.Verb == "list":
			c.reads++
		case r.Verb == "watch":
			c.watches++
		default:
			c.other++
			t.Logf("other agent request: %s %s", r.Verb, r.RequestURI)
		}
	}
	return c
}

type statusEntry struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	MAC       string   `json:"mac"`
}

// verifyAdded checks every pod: three interfaces up with an address in
// their subnets, and the network-status annotation on the API server.
func (b *bench) verifyAdded(t *testing.T, ctx context.Context) {
	for i := range b.o.pods {
		if err := verifyNetns(filepath.Join("/var/run/netns", netnsName(i)), true); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	list, err := b.admin.CoreV1().Pods(podNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != b.o.pods {
		t.Fatalf("%d pods listed, want %d", len(list.Items), b.o.pods)
	}
	for _, p := range list.Items {
		raw := p.Annotations["k8s.v1.cni.cncf.io/network-status"]
		var st []statusEntry
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatalf("pod %s: network-status %q: %v", p.Name, raw, err)
		}
		if len(st) != 3 {
			t.Fatalf("pod %s: network-status has %d entries: %s", p.Name, len(st), raw)
		}
		for k, e := range st {
			if e.Name != statusNames[k] || e.Interface != ifnames[k] || len(e.IPs) != 1 || !ipv4Net(subnets[k]).Contains(net.ParseIP(e.IPs[0])) || e.MAC == "" {
				t.Fatalf("pod %s: network-status entry %d = %+v, want %s on %s in %s", p.Name, k, e, statusNames[k], ifnames[k], subnets[k])
			}
		}
	}
}

// verifyDeleted checks nothing is left: no interfaces in the namespaces, no
// ports on the bridges, no host-local allocations, no attachment records,
// no cached results in the agent or the runtime.
func (b *bench) verifyDeleted(t *testing.T) {
	for i := range b.o.pods {
		if err := verifyNetns(filepath.Join("/var/run/netns", netnsName(i)), false); err != nil {
			t.Errorf("pod %d: %v", i, err)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	masters := map[int]string{}
	for _, l := range links {
		if slices.Contains(bridges[:], l.Attrs().Name) {
			masters[l.Attrs().Index] = l.Attrs().Name
		}
	}
	ports := 0
	for _, l := range links {
		if _, ok := masters[l.Attrs().MasterIndex]; ok {
			ports++
		}
	}
	if ports != 0 {
		t.Errorf("%d veths still on the pxburst bridges after DEL", ports)
	}
	for _, dir := range []string{"ipam", "state/records", "state/cache", "runtime"} {
		var left []string
		filepath.Walk(filepath.Join(b.dir, dir), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && info.Name() != "lock" && !strings.HasPrefix(info.Name(), "last_reserved_ip") {
				left = append(left, p)
			}
			return nil
		})
		if len(left) != 0 {
			t.Errorf("%d files left in %s after DEL, e.g. %s", len(left), dir, left[0])
		}
	}
}

func verifyNetns(path string, added bool) error {
	return benchhost.VerifyInterfaces(path, ifnames[:], subnets[:], added)
}

// cpuSeconds is the process's user + system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	fs := strings.Fields(rest)
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fs[11], 64)
	s, _ := strconv.ParseFloat(fs[12], 64)
	return (u + s) / 100 // USER_HZ
}

type rssStats struct {
	n                int
	min, median, max int64
	threads          int // max
}

func stats(samples []int64, threads int) rssStats {
	if len(samples) == 0 {
		return rssStats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return rssStats{n: len(s), min: s[0], median: s[len(s)/2], max: s[len(s)-1], threads: threads}
}

// settle waits until the agent is as quiet as an idle agent: over the last
// second it used at most 20 ms of CPU and its RSS moved by at most 1%. It
// returns how long that took, and fails the benchmark after a minute.
func settle(t *testing.T, pid int) time.Duration {
	t.Helper()
	const every, window, limit = 100 * time.Millisecond, 10, time.Minute
	start := time.Now()
	var rss []int64
	var cpu []float64
	for {
		rss = append(rss, benchhost.ReadProcStatus(pid).RSS)
		cpu = append(cpu, cpuSeconds(pid))
		if len(rss) > window+1 {
			rss, cpu = rss[1:], cpu[1:]
		}
		used, lo, hi := cpu[len(cpu)-1]-cpu[0], slices.Min(rss), slices.Max(rss)
		if len(rss) == window+1 && used <= 0.02 && hi-lo <= hi/100 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("agent not settled after %v: last second %.2f s CPU, RSS %s to %s MiB", limit, used, benchhost.MiB(lo), benchhost.MiB(hi))
		}
		time.Sleep(every)
	}
}

func sampleFor(pid int, d, every time.Duration) rssStats {
	var samples []int64
	threads := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
		st := benchhost.ReadProcStatus(pid)
		samples = append(samples, st.RSS)
		threads = max(threads, st.Threads)
	}
	return stats(samples, threads)
}

type sampler struct {
	done chan struct{}
	out  chan rssStats
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{done: make(chan struct{}), out: make(chan rssStats, 1)}
	go func() {
		var samples []int64
		threads := 0
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			st := benchhost.ReadProcStatus(pid)
			samples = append(samples, st.RSS)
			threads = max(threads, st.Threads)
			select {
			case <-s.done:
				s.out <- stats(samples, threads)
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() rssStats { close(s.done); return <-s.out }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ipv4Net(s string) *net.IPNet {
	_, n, _ := net.ParseCIDR(s)
	return n
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
