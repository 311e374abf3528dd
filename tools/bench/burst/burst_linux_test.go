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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
	"github.com/plexus-cni/plexus/tools/bench/benchkube"
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
	*benchkube.Env
	o     options
	agent *benchkube.Agent
}

func TestBurst(t *testing.T) {
	if os.Getenv("PLEXUS_BENCH_BURST") != "1" {
		t.Skip("burst benchmark: set PLEXUS_BENCH_BURST=1, or run sudo tools/bench/burst.sh (root, a few minutes)")
	}
	cnitest.RequireRoot(t)
	o := envOptions(t)
	b := &bench{o: o}
	ctx := context.Background()

	fmt.Printf("burst: %d pods, load average at start: %s\n", o.pods, benchhost.LoadAvg())
	defer func() { fmt.Printf("burst: load average at end: %s\n", benchhost.LoadAvg()) }()

	b.Env = benchkube.Start(t, ctx, benchkube.Config{
		Name: "pxburst", NodeName: nodeName, ClusterNet: clusterNet, Bridges: bridges, Subnets: subnets,
		Namespaces: []string{podNS}, QPS: 500, Burst: 1000, BinDir: o.binDir, Keep: o.keep,
	}, func(dir string) string { return delegateConf(dir, 0) })
	b.createNADs(t, ctx)
	b.setUpPods(t, ctx)
	b.AddNetns(t, o.pods)
	maxConcYAML := ""
	if o.maxConc > 0 {
		maxConcYAML = fmt.Sprintf("maxConcurrent: %d\n", o.maxConc)
	}
	b.agent = b.StartAgent(t, ctx, filepath.Join(b.BinDir, "plexus-agent"), b.Dir, maxConcYAML, o.agentEnv)

	pid := b.agent.Cmd.Process.Pid
	// Idle: StartAgent returned on the first STATUS answered, which the
	// agent serves only once its informers synced (200 pods in the
	// cache); then start-up work and garbage have settled.
	idleSettle := benchkube.Settle(t, pid)
	idle := benchhost.SampleRSS(pid, 5*time.Second, 100*time.Millisecond)
	idleSt := benchhost.ReadProcStatus(pid)
	startHWM := idleSt.HWM
	cpu0 := benchkube.CPUSeconds(pid)

	// ADD burst.
	auditBefore := len(b.API.AgentRequests(t))
	sampler := benchhost.StartSampler(pid, o.sampleTick)
	add := b.burst(ctx, true)
	addPeak := sampler.Stop()
	addHWM := benchhost.ReadProcStatus(pid).HWM
	cpuAdd := benchkube.CPUSeconds(pid) - cpu0
	if len(add.errs) > 0 {
		t.Fatalf("%d of %d ADDs failed; first: %v (agent log %s)", len(add.errs), o.pods, add.errs[0], b.agent.Log)
	}
	addCalls := b.AgentCalls(t, auditBefore)
	b.verifyAdded(t, ctx)

	// After the burst: every ADD answered and checked, then the agent
	// settled.
	afterSettle := benchkube.Settle(t, pid)
	after := benchhost.SampleRSS(pid, 3*time.Second, 100*time.Millisecond)
	afterSt := benchhost.ReadProcStatus(pid)

	// DEL burst.
	auditBefore = len(b.API.AgentRequests(t))
	cpu1 := benchkube.CPUSeconds(pid)
	sampler = benchhost.StartSampler(pid, o.sampleTick)
	del := b.burst(ctx, false)
	delPeak := sampler.Stop()
	delHWM := benchhost.ReadProcStatus(pid).HWM
	cpuDel := benchkube.CPUSeconds(pid) - cpu1
	if len(del.errs) > 0 {
		t.Fatalf("%d of %d DELs failed; first: %v", len(del.errs), o.pods, del.errs[0])
	}
	delCalls := b.AgentCalls(t, auditBefore)
	b.verifyDeleted(t)
	afterDelSettle := benchkube.Settle(t, pid)
	afterDel := benchhost.SampleRSS(pid, 3*time.Second, 100*time.Millisecond)

	maxConc := o.maxConc
	if maxConc == 0 {
		maxConc = 64
	}
	w := os.Stdout
	fmt.Fprintf(w, "\nagent: maxConcurrent %d, extra env %q, RSS sampled every %v\n", maxConc, o.agentEnv, o.sampleTick)
	fmt.Fprintf(w, "\n| agent memory, MiB | RSS min | RSS median | RSS max | VmHWM |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(w, "| idle, informers synced (%d pods cached), settled in %s, 5 s | %s | %s | %s | %s |\n", o.pods, secs(idleSettle), benchhost.MiB(idle.Min), benchhost.MiB(idle.Median), benchhost.MiB(idle.Max), benchhost.MiB(startHWM))
	fmt.Fprintf(w, "| during %d concurrent ADDs (%d samples) | %s | %s | **%s** | %s |\n", o.pods, addPeak.N, benchhost.MiB(addPeak.Min), benchhost.MiB(addPeak.Median), benchhost.MiB(addPeak.Max), benchhost.MiB(addHWM))
	fmt.Fprintf(w, "| after the ADD burst, settled in %s, 3 s | %s | %s | %s | |\n", secs(afterSettle), benchhost.MiB(after.Min), benchhost.MiB(after.Median), benchhost.MiB(after.Max))
	fmt.Fprintf(w, "| during %d concurrent DELs (%d samples) | %s | %s | %s | %s |\n", o.pods, delPeak.N, benchhost.MiB(delPeak.Min), benchhost.MiB(delPeak.Median), benchhost.MiB(delPeak.Max), benchhost.MiB(delHWM))
	fmt.Fprintf(w, "| after the DEL burst, settled in %s, 3 s | %s | %s | %s | |\n", secs(afterDelSettle), benchhost.MiB(afterDel.Min), benchhost.MiB(afterDel.Median), benchhost.MiB(afterDel.Max))
	fmt.Fprintf(w, "\nRSS split (RssAnon + RssFile, MiB): idle %s + %s, after the ADD burst %s + %s\n", benchhost.MiB(idleSt.Anon), benchhost.MiB(idleSt.File), benchhost.MiB(afterSt.Anon), benchhost.MiB(afterSt.File))
	fmt.Fprintf(w, "agent threads: idle %d, peak during ADD %d, during DEL %d\n", idle.Threads, addPeak.Threads, delPeak.Threads)
	fmt.Fprintf(w, "\n| %d concurrent | wall | per-call median | p90 | max | min | agent CPU |\n|---|---:|---:|---:|---:|---:|---:|\n", o.pods)
	fmt.Fprintf(w, "| ADD | %.1f s | %s | %s | %s | %s | %.1f s |\n", add.wall.Seconds(), secs(add.pct(50)), secs(add.pct(90)), secs(add.pct(100)), secs(add.pct(0)), cpuAdd)
	fmt.Fprintf(w, "| DEL | %.1f s | %s | %s | %s | %s | %.1f s |\n", del.wall.Seconds(), secs(del.pct(50)), secs(del.pct(90)), secs(del.pct(100)), secs(del.pct(0)), cpuDel)
	fmt.Fprintf(w, "\nagent API calls, ADD burst: %s\nagent API calls, DEL burst: %s\n", perPod(addCalls, o.pods), perPod(delCalls, o.pods))
	if addCalls.Patches != o.pods || addCalls.Events != 3*o.pods || addCalls.Reads != 0 || addCalls.Other != 0 {
		t.Errorf("ADD burst: agent API calls %s; want 1 pod patch and 3 event creates per ADD, no reads", perPod(addCalls, o.pods))
	}
	fmt.Fprintf(w, "\nall %d ADDs verified (eth0/net1/net2 up with addresses, network-status on the API server); all DELs verified (no links, IP allocations, records or cached results left)\n", o.pods)
}

func (b *bench) createNADs(t *testing.T, ctx context.Context) {
	for i, name := range []string{nadA, nadB} {
		nad := &nadv1.NetworkAttachmentDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS},
			Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: delegateConf(b.Dir, i+1)},
		}
		if _, err := b.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS).Create(ctx, nad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// delegateConf is network k's delegate: bridge + host-local in its /16.
func delegateConf(dir string, k int) string {
	gw := ""
	if k == 0 {
		gw = `"isGateway":true,`
	}
	return fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,%s"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}`,
		bridges[k], gw, subnets[k], filepath.Join(dir, "ipam"))
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
			if _, err := b.Admin.CoreV1().Pods(podNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
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
			rt := b.RuntimeConf(i, podNS, podName(i))
			ready.Done()
			<-start
			var err error
			if add {
				_, err = b.Runtime.AddNetworkList(ctx, b.agent.List, rt)
			} else {
				err = b.Runtime.DelNetworkList(ctx, b.agent.List, rt)
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

// perPod is c with the patches and events per pod.
func perPod(c benchkube.Calls, pods int) string {
	f := func(n int) string { return strconv.FormatFloat(float64(n)/float64(pods), 'f', 2, 64) }
	return fmt.Sprintf("%d pod patches (%s/pod), %d event creates (%s/pod), %d get/list, %d watch, %d other",
		c.Patches, f(c.Patches), c.Events, f(c.Events), c.Reads, c.Watches, c.Other)
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
		if err := b.VerifyInterfaces(i, true); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	list, err := b.Admin.CoreV1().Pods(podNS).List(ctx, metav1.ListOptions{})
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
			if e.Name != statusNames[k] || e.Interface != benchkube.Ifnames[k] || len(e.IPs) != 1 || !ipv4Net(subnets[k]).Contains(net.ParseIP(e.IPs[0])) || e.MAC == "" {
				t.Fatalf("pod %s: network-status entry %d = %+v, want %s on %s in %s", p.Name, k, e, statusNames[k], benchkube.Ifnames[k], subnets[k])
			}
		}
	}
}

// verifyDeleted checks nothing is left: no interfaces in the namespaces, no
// ports on the bridges, no host-local allocations, no attachment records,
// no cached results in the agent or the runtime.
func (b *bench) verifyDeleted(t *testing.T) {
	for i := range b.o.pods {
		if err := b.VerifyInterfaces(i, false); err != nil {
			t.Errorf("pod %d: %v", i, err)
		}
	}
	ports, err := benchhost.BridgePorts(bridges[:]...)
	if err != nil {
		t.Fatal(err)
	}
	if ports != 0 {
		t.Errorf("%d veths still on the pxburst bridges after DEL", ports)
	}
	for _, dir := range []string{"ipam", "state/records", "state/cache", "runtime"} {
		var left []string
		filepath.Walk(filepath.Join(b.Dir, dir), func(p string, info os.FileInfo, err error) error {
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

// cpuSeconds is the process's user + system CPU time.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ipv4Net(s string) *net.IPNet {
	_, n, _ := net.ParseCIDR(s)
	return n
}
