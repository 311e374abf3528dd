// Package scale is the scale benchmark: the plexus-agent binary in
// Kubernetes mode against a real kube-apiserver holding many pods (default
// 10,000, 110 of them on the agent's node) and many NADs (default 2,000).
// It measures the time to sync, the agent's memory after the sync, and
// checks that ADDs are served from the informer caches (no API read).
// Results and their reading: docs/benchmarks.md. Run it with
//
//	sudo tools/bench/scale.sh
//
// It is a test only so that it can use apiservertest.Start; without
// PLEXUS_BENCH_SCALE=1 it skips.
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
	"github.com/plexus-cni/plexus/tools/bench/benchkube"
)

// Exact names of what the benchmark creates on the host.
const (
	nodeName   = "pxscale-node"
	clusterNet = "pxscale-cluster"
	namespaces = 20
	// rssTarget is the agent's RSS budget after sync on a 10,000-pod
	// cluster (docs/benchmarks.md, binary size, idle RSS and scale).
	rssTarget = 32 << 20
)

var (
	bridges = [3]string{"pxscale0", "pxscale1", "pxscale2"} // eth0, net1, net2
	subnets = [3]string{"10.190.0.0/16", "10.191.0.0/16", "10.192.0.0/16"}
)

type options struct {
	pods, nodePods, nads, adds int
	binDir                     string
	// agents to measure, in order: name → plexus-agent binary; the
	// first is binDir's.
	agents [][2]string
}

func envInt(t *testing.T, name string, def, lo int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		t.Fatalf("%s=%q: want a number ≥ %d", name, v, lo)
	}
	return n
}

func envOptions(t *testing.T) options {
	o := options{
		pods:     envInt(t, "PLEXUS_BENCH_SCALE_PODS", 10000, 1),
		nodePods: envInt(t, "PLEXUS_BENCH_SCALE_NODE_PODS", 110, 1),
		nads:     envInt(t, "PLEXUS_BENCH_SCALE_NADS", 2000, 2*namespaces),
		adds:     envInt(t, "PLEXUS_BENCH_SCALE_ADDS", 10, 1),
		binDir:   os.Getenv("PLEXUS_BENCH_BIN_DIR"),
	}
	o.nodePods = min(o.nodePods, o.pods)
	o.adds = min(o.adds, o.nodePods)
	// PLEXUS_BENCH_SCALE_BASELINE="name=/path/plexus-agent ...": more
	// agent binaries measured against the same cluster, after the one
	// under test (e.g. an older build, for a ratio in the same run).
	for _, f := range strings.Fields(os.Getenv("PLEXUS_BENCH_SCALE_BASELINE")) {
		name, path, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("PLEXUS_BENCH_SCALE_BASELINE entry %q: want name=path", f)
		}
		o.agents = append(o.agents, [2]string{name, path})
	}
	return o
}

type bench struct {
	*benchkube.Env
	o options
}

// result is one agent's figures.
type result struct {
	name        string
	size        int64
	ready       time.Duration // start → STATUS answered (informers synced)
	idle        benchhost.ProcStatus
	idleMin     int64
	idleMax     int64
	addCalls    benchkube.Calls
	addsChecked int
}

func TestScale(t *testing.T) {
	if os.Getenv("PLEXUS_BENCH_SCALE") != "1" {
		t.Skip("scale benchmark: set PLEXUS_BENCH_SCALE=1, or run sudo tools/bench/scale.sh (root, ~5 minutes)")
	}
	cnitest.RequireRoot(t)
	o := envOptions(t)
	b := &bench{o: o}
	ctx := context.Background()
	fmt.Printf("scale: %d pods (%d on the agent's node), %d NADs; load average at start: %s\n", o.pods, o.nodePods, o.nads, benchhost.LoadAvg())
	defer func() { fmt.Printf("scale: load average at end: %s\n", benchhost.LoadAvg()) }()

	ns := make([]string, namespaces)
	for i := range ns {
		ns[i] = nsName(i)
	}
	b.Env = benchkube.Start(t, ctx, benchkube.Config{
		Name: "pxscale", NodeName: nodeName, ClusterNet: clusterNet, Bridges: bridges, Subnets: subnets, Namespaces: ns,
		QPS: -1, Burst: 0, // no client-side limit: creation speed is the server's
		BinDir: o.binDir, Keep: os.Getenv("PLEXUS_BENCH_SCALE_KEEP") == "1",
	}, func(dir string) string { return delegateConf(dir, clusterNet, 0) })
	t0 := time.Now()
	b.createNADs(t, ctx)
	tNADs := time.Since(t0)
	t0 = time.Now()
	b.createPods(t, ctx)
	tPods := time.Since(t0)
	fmt.Printf("scale: created %d NADs in %.1f s (%.0f/s), %d pods in %.1f s (%.0f/s); load average %s\n",
		o.nads, tNADs.Seconds(), float64(o.nads)/tNADs.Seconds(), o.pods, tPods.Seconds(), float64(o.pods)/tPods.Seconds(), benchhost.LoadAvg())
	b.AddNetns(t, o.adds)

	agents := append([][2]string{{"under test", filepath.Join(b.BinDir, "plexus-agent")}}, o.agents...)
	var results []result
	for i, a := range agents {
		results = append(results, b.measure(t, ctx, i, a[0], a[1]))
	}

	w := os.Stdout
	fmt.Fprintf(w, "\n| agent | stripped binary | start → synced | RSS after sync (min–max, 5 s) | RssAnon + RssFile | VmHWM | agent API reads during %d ADDs |\n|---|---:|---:|---:|---:|---:|---:|\n", o.adds)
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %.1f MB | %.2f s | **%s** (%s–%s) MiB | %s + %s MiB | %s MiB | %d |\n",
			r.name, float64(r.size)/1e6, r.ready.Seconds(), benchhost.MiB(r.idle.RSS), benchhost.MiB(r.idleMin), benchhost.MiB(r.idleMax),
			benchhost.MiB(r.idle.Anon), benchhost.MiB(r.idle.File), benchhost.MiB(r.idle.HWM), r.addCalls.Reads)
	}
	for _, r := range results {
		fmt.Fprintf(w, "\n%s: agent API calls during %d ADDs: %s; %d ADDs verified (eth0/net1/net2 up with addresses, network-status on the API server)\n", r.name, o.adds, r.addCalls, r.addsChecked)
	}
	// The assertions: the figures were measured, ADD read nothing from the
	// API server, and (for the agent under test) the memory target.
	for _, r := range results {
		if r.idle.RSS == 0 || r.idle.File == 0 {
			t.Errorf("%s: RSS not measured (%+v)", r.name, r.idle)
		}
		if r.addCalls.Reads != 0 || r.addCalls.Patches != o.adds || r.addCalls.Events != 3*o.adds {
			t.Errorf("%s: agent API calls during %d ADDs: %s; want 1 pod patch and 3 Event creates per ADD and no reads", r.name, o.adds, r.addCalls)
		}
	}
	if rss := results[0].idleMax; o.pods >= 10000 && rss > rssTarget {
		t.Errorf("agent RSS after sync %s MiB, over the %s MiB target", benchhost.MiB(rss), benchhost.MiB(rssTarget))
	}
}

func nsName(i int) string { return fmt.Sprintf("pxscale-%d", i%namespaces) }

// delegateConf is network k's delegate (0: the cluster network): bridge +
// host-local in its /16.
func delegateConf(dir, name string, k int) string {
	gw := ""
	if k == 0 {
		gw = `"isGateway":true,`
	}
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":"bridge","bridge":%q,%s"mtu":1500,"ipam":{"type":"host-local","subnet":%q,"dataDir":%q,"routes":[{"dst":"10.200.0.0/16"}]}}`,
		name, bridges[k], gw, subnets[k], filepath.Join(dir, "ipam"))
}

func nadName(j int) string { return fmt.Sprintf("net-%04d", j) }

// parallel runs f(0..n-1) on 32 goroutines; the first error wins.
func parallel(n int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// hasResource: every tenth NAD of a namespace (the m = j/20-th for m%10 ==
// 9) names a device resource, as some of a cluster's would.
func hasResource(j int) bool { return (j/namespaces)%10 == 9 }

// createNADs: NAD j lives in namespace j%20 and is written as kubectl
// apply writes it (a last-applied-configuration annotation as large as
// the object).
func (b *bench) createNADs(t *testing.T, ctx context.Context) {
	err := parallel(b.o.nads, func(j int) error {
		ann := map[string]string{}
		if hasResource(j) {
			ann["k8s.v1.cni.cncf.io/resourceName"] = "example.com/unused"
		}
		nad := &nadv1.NetworkAttachmentDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: "k8s.cni.cncf.io/v1", Kind: "NetworkAttachmentDefinition"},
			ObjectMeta: metav1.ObjectMeta{Name: nadName(j), Namespace: nsName(j), Annotations: ann, Labels: map[string]string{"team": fmt.Sprintf("t%d", j%7)}},
			Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: delegateConf(b.Dir, nadName(j), nadBridge(j))},
		}
		applied, err := json.Marshal(nad)
		if err != nil {
			return err
		}
		ann["kubectl.kubernetes.io/last-applied-configuration"] = string(applied)
		_, err = b.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(nsName(j)).Create(ctx, nad, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("create NADs: %v", err)
	}
}

func podName(i int) string { return fmt.Sprintf("pod-%05d", i) }

// onNode: pod i is on the agent's node for i < nodePods (spread over the
// namespaces), elsewhere on one of 100 other nodes otherwise.
func (b *bench) node(i int) string {
	if i < b.o.nodePods {
		return nodeName
	}
	return fmt.Sprintf("pxscale-other-%d", i%100)
}

// nadBridge: NAD j (the m = j/20-th of namespace j%20) is on bridge 1 for
// even m, bridge 2 for odd m.
func nadBridge(j int) int { return 1 + (j/namespaces)%2 }

// nodePodNADs: the two NADs of its namespace pod i selects, net1 on bridge
// 1 and net2 on bridge 2; pods of a namespace go through its NADs in turn.
func (b *bench) nodePodNADs(i int) (string, string) {
	perNS := b.o.nads / namespaces
	m := 2 * (i / namespaces) % (perNS - perNS%2)
	if hasResource(m*namespaces) || hasResource((m+1)*namespaces) {
		m -= 2 // a pair without device resources: no kubelet here
	}
	j := m*namespaces + i%namespaces
	return nadName(j), nadName(j + namespaces)
}

// createPods: pods shaped like a deployment's (labels, owner, two
// containers with resources, env, probes, volumes), as the API server
// stores them (managedFields come with the create).
func (b *bench) createPods(t *testing.T, ctx context.Context) {
	err := parallel(b.o.pods, func(i int) error {
		ann := map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-12-01T00:00:00Z"}
		if i < b.o.nodePods {
			n1, n2 := b.nodePodNADs(i)
			ann["k8s.v1.cni.cncf.io/networks"] = n1 + "," + n2
		}
		res := corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
		ctr := func(name string, port int32) corev1.Container {
			return corev1.Container{
				Name: name, Image: "registry.example.com/team/" + name + ":v1.2.3", Resources: res,
				Env:            []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Ports:          []corev1.ContainerPort{{Name: name, ContainerPort: port}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString(name)}}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
			}
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: podName(i), Namespace: nsName(i), Annotations: ann,
				Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%50), "pod-template-hash": "5d8f7c9b6d"},
			},
			Spec: corev1.PodSpec{
				NodeName:   b.node(i),
				Containers: []corev1.Container{ctr("app", 8080), ctr("sidecar", 9090)},
				Volumes:    []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}},
			},
		}
		_, err := b.Admin.CoreV1().Pods(nsName(i)).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("create pods: %v", err)
	}
}

// measure runs one agent binary: start, time to sync, memory after sync,
// then ADDs of this node's pods with the agent's API calls counted, DELs,
// stop.
func (b *bench) measure(t *testing.T, ctx context.Context, n int, name, bin string) result {
	r := result{name: name}
	if fi, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	} else {
		r.size = fi.Size()
	}
	a := b.StartAgent(t, ctx, bin, filepath.Join(b.Dir, fmt.Sprintf("agent%d", n)), "", nil)
	defer a.Stop()
	r.ready = a.Ready
	pid := a.Cmd.Process.Pid
	// After the first STATUS answered (informers synced): sampled once the
	// agent is as quiet as an idle one.
	benchkube.Settle(t, pid)
	idle := benchhost.SampleRSS(pid, 5*time.Second, 100*time.Millisecond)
	r.idle = benchhost.ReadProcStatus(pid)
	r.idleMin, r.idleMax = idle.Min, idle.Max

	before := len(b.API.AgentRequests(t))
	for i := range b.o.adds {
		if _, err := b.Runtime.AddNetworkList(ctx, a.List, b.rt(i)); err != nil {
			t.Fatalf("%s: ADD pod %d: %v (agent log %s)", name, i, err, a.Log)
		}
	}
	r.addCalls = b.AgentCalls(t, before)
	for i := range b.o.adds {
		if err := b.VerifyInterfaces(i, true); err != nil {
			t.Fatalf("%s: pod %d: %v", name, i, err)
		}
		p, err := b.Admin.CoreV1().Pods(nsName(i)).Get(ctx, podName(i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var st []struct{ Name, Interface string }
		n1, n2 := b.nodePodNADs(i)
		want := []string{clusterNet, nsName(i) + "/" + n1, nsName(i) + "/" + n2}
		if err := json.Unmarshal([]byte(p.Annotations["k8s.v1.cni.cncf.io/network-status"]), &st); err != nil || len(st) != 3 {
			t.Fatalf("%s: pod %d: network-status %q (%v)", name, i, p.Annotations["k8s.v1.cni.cncf.io/network-status"], err)
		}
		for k := range st {
			if st[k].Name != want[k] || st[k].Interface != benchkube.Ifnames[k] {
				t.Fatalf("%s: pod %d: network-status entry %d %+v, want %s on %s", name, i, k, st[k], want[k], benchkube.Ifnames[k])
			}
		}
		r.addsChecked++
	}
	for i := range b.o.adds {
		if err := b.Runtime.DelNetworkList(ctx, a.List, b.rt(i)); err != nil {
			t.Fatalf("%s: DEL pod %d: %v", name, i, err)
		}
		if err := b.VerifyInterfaces(i, false); err != nil {
			t.Fatalf("%s: after DEL, pod %d: %v", name, i, err)
		}
	}
	return r
}

func (b *bench) rt(i int) *libcni.RuntimeConf { return b.RuntimeConf(i, nsName(i), podName(i)) }
