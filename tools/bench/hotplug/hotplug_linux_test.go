// Package hotplug is the hot-plug latency benchmark: one pod attached
// through the real shim to the real plexus-agent binary in Kubernetes mode
// (a real kube-apiserver from internal/apiservertest), then N (default 50)
// patches of its networks annotation, alternately adding a second NAD and
// removing it again. Each is timed from the patch request to the pod's
// namespace having (or no longer having) net2 with its address and the
// network-status the API server serves saying the same; median and p99
// per direction. Results: docs/benchmarks.md. Run it with
//
//	sudo tools/bench/hotplug.sh
//
// It is a test only so that it can use apiservertest.Start; without
// PLEXUS_BENCH_HOTPLUG=1 it skips.
package hotplug

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
	"github.com/plexus-cni/plexus/tools/bench/benchkube"
)

// Names of everything the benchmark creates: exact names, cleaned up by
// name (tools/bench/kube.sh too).
const (
	nodeName   = "pxhotplug-node"
	podNS      = "pxhotplug"
	podName    = "web"
	clusterNet = "pxhotplug-cluster"
	nadA       = "pxhotplug-a"
	nadB       = "pxhotplug-b"
)

var (
	bridges = [3]string{"pxhotplug0", "pxhotplug1", "pxhotplug2"} // eth0, net1, net2
	subnets = [3]string{"10.190.0.0/16", "10.191.0.0/16", "10.192.0.0/16"}
)

func TestHotplug(t *testing.T) {
	if os.Getenv("PLEXUS_BENCH_HOTPLUG") != "1" {
		t.Skip("hot-plug benchmark: set PLEXUS_BENCH_HOTPLUG=1, or run sudo tools/bench/hotplug.sh (root, a minute)")
	}
	cnitest.RequireRoot(t)
	changes := 50
	if v := os.Getenv("PLEXUS_BENCH_HOTPLUG_CHANGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("PLEXUS_BENCH_HOTPLUG_CHANGES=%q: want a number of at least 2", v)
		}
		changes = n
	}
	ctx := context.Background()
	fmt.Printf("hotplug: %d changes, load average at start: %s\n", changes, benchhost.LoadAvg())
	defer func() { fmt.Printf("hotplug: load average at end: %s\n", benchhost.LoadAvg()) }()

	conf := func(dir string, k int) string {
		gw := ""
		if k == 0 {
			gw = `"isGateway":true,`
		}
		return fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,%s"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}`,
			bridges[k], gw, subnets[k], filepath.Join(dir, "ipam"))
	}
	e := benchkube.Start(t, ctx, benchkube.Config{
		Name: "pxhotplug", NodeName: nodeName, ClusterNet: clusterNet, Bridges: bridges, Subnets: subnets,
		Namespaces: []string{podNS}, QPS: 50, Burst: 100, BinDir: os.Getenv("PLEXUS_BENCH_BIN_DIR"), Keep: os.Getenv("PLEXUS_BENCH_HOTPLUG_KEEP") == "1",
	}, func(dir string) string { return conf(dir, 0) })
	for i, name := range []string{nadA, nadB} {
		nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: conf(e.Dir, i+1)}}
		if _, err := e.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS).Create(ctx, nad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: podNS, Annotations: map[string]string{source.NetworksAnnotation: nadA}},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if _, err := e.Admin.CoreV1().Pods(podNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.AddNetns(t, 1)
	agent := e.StartAgent(t, ctx, filepath.Join(e.BinDir, "plexus-agent"), e.Dir, "hotplug: true\n", nil)
	rt := e.RuntimeConf(0, podNS, podName)
	if _, err := e.Runtime.AddNetworkList(ctx, agent.List, rt); err != nil {
		t.Fatalf("ADD: %v (agent log %s)", err, agent.Log)
	}

	var attach, detach []time.Duration
	for i := range changes {
		add := i%2 == 0
		value := nadA
		if add {
			value = nadA + "," + nadB
		}
		d, err := change(ctx, e, value, add)
		if err != nil {
			t.Fatalf("change %d (%s): %v (agent log %s)", i, value, err, agent.Log)
		}
		if add {
			attach = append(attach, d)
		} else {
			detach = append(detach, d)
		}
	}
	if err := e.Runtime.DelNetworkList(ctx, agent.List, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if err := e.VerifyInterfaces(0, false); err != nil {
		t.Error(err)
	}
	for _, r := range []struct {
		what string
		d    []time.Duration
	}{{"attach", attach}, {"detach", detach}} {
		slices.Sort(r.d)
		fmt.Printf("hotplug: %s: %d changes, patch → interface and network-status: median %v, p99 %v, max %v\n",
			r.what, len(r.d), pct(r.d, 50), pct(r.d, 99), r.d[len(r.d)-1])
	}
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)].Round(100 * time.Microsecond)
}

// change patches the pod's networks annotation and times the patch until
// both the pod's namespace and its network-status have net2 (add) or lack
// it: the status from a watch started at the patch's resourceVersion, the
// namespace polled.
func change(ctx context.Context, e *benchkube.Env, value string, add bool) (time.Duration, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{source.NetworksAnnotation: value}}})
	if err != nil {
		return 0, err
	}
	pods := e.Admin.CoreV1().Pods(podNS)
	start := time.Now()
	p, err := pods.Patch(ctx, podName, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + podName, ResourceVersion: p.ResourceVersion})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	statusAt := make(chan time.Time, 1)
	go func() {
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Modified && hasNet2(pod.Annotations[source.NetworkStatusAnnotation]) == add {
				statusAt <- time.Now()
				return
			}
		}
	}()
	var linkAt time.Time
	for linkAt.IsZero() {
		links, err := benchhost.Links(e.NetnsPath(0))
		if err != nil {
			return 0, err
		}
		if _, ok := links["net2"]; ok == add && (!add || len(links["net2"]) == 1) {
			linkAt = time.Now()
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the pod's namespace has %v after 30 s", links)
		case <-time.After(2 * time.Millisecond):
		}
	}
	select {
	case at := <-statusAt:
		return later(at, linkAt).Sub(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("network-status did not follow within 30 s")
	}
}

func hasNet2(status string) bool {
	var entries []struct{ Interface string }
	if json.Unmarshal([]byte(status), &entries) != nil {
		return false
	}
	for _, e := range entries {
		if e.Interface == "net2" {
			return true
		}
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
