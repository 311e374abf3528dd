package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/apiservertest"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

const testNode = "node-1"

// kubeRig is a rig whose agent runs in Kubernetes mode against a real
// kube-apiserver, authenticated as the agent's ServiceAccount with the
// RBAC from deploy/.
type kubeRig struct {
	*rig
	api   *apiservertest.Server
	admin kubernetes.Interface
	nads  nadclient.Interface
}

func newKubeRig(t *testing.T) *kubeRig {
	t.Helper()
	cnitest.RequireRoot(t)
	api := apiservertest.Start(t)
	ctx := context.Background()
	adminCfg := api.Config(apiservertest.AdminToken)
	for _, f := range []string{"../../deploy/crds/network-attachment-definitions.yaml", "../../deploy/namespace.yaml", "../../deploy/rbac.yaml"} {
		// Server-side dry-run first, as an admin would, then for real.
		if err := apiservertest.ApplyFile(ctx, adminCfg, f, true); err != nil && !strings.Contains(f, "rbac") {
			t.Fatalf("dry-run apply %s: %v", f, err)
		}
		if err := apiservertest.ApplyFile(ctx, adminCfg, f, false); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
	}
	k := &kubeRig{rig: newRig(t, 2), api: api}
	var err error
	if k.admin, err = kubernetes.NewForConfig(adminCfg); err != nil {
		t.Fatal(err)
	}
	if k.nads, err = nadclient.NewForConfig(adminCfg); err != nil {
		t.Fatal(err)
	}
	// The CRD serves once it is established.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := k.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("default").List(ctx, metav1.ListOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NetworkAttachmentDefinition CRD not served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfgText := fmt.Sprintf("socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: cluster\nnamespaceIsolation: true\nglobalNamespaces: [shared]\nkubernetes: {kubeconfig: %s, nodeName: %s, podWaitSeconds: 0.5}\n",
		k.cfg.Socket, k.cfg.StateDir, k.cfg.CNIConfDir, k.cfg.BinDirs[0], api.Kubeconfig(t, apiservertest.AgentToken), testNode)
	write(t, filepath.Join(k.dir, "agent.yaml"), cfgText)
	if k.cfg, err = config.Parse([]byte(cfgText), "test"); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeRig) namespace(t *testing.T, name string) {
	t.Helper()
	if _, err := k.admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (k *kubeRig) nad(t *testing.T, ns, name, config string) {
	t.Helper()
	nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}
	if _, err := k.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Create(context.Background(), nad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (k *kubeRig) pod(t *testing.T, ns, name string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	p, err := k.admin.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (k *kubeRig) events(t *testing.T, ns, pod string) []corev1.Event {
	t.Helper()
	list, err := k.admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

type statusEntry struct {
	Name         string   `json:"name"`
	Interface    string   `json:"interface"`
	IPs          []string `json:"ips"`
	MAC          string   `json:"mac"`
	Default      bool     `json:"default"`
	DefaultRoute []string `json:"default-route"`
	Gateway      []string `json:"gateway"`
}

// Kubernetes mode's main path against a real kube-apiserver: ADD through the real
// shim, network-status read back from the API server field by field,
// Events, the API calls the agent made (one patch plus Events, no reads),
// namespace isolation for a selection and for the default-network
// override, and DEL with the API server stopped.
func TestKubeMode(t *testing.T) {
	k := newKubeRig(t)
	ctx := context.Background()
	k.namespace(t, "apps")
	k.namespace(t, "other")
	k.namespace(t, "shared")
	ipam := filepath.Join(k.dir, "ipam")
	k.nad(t, "apps", "side", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp1","ipam":{"type":"host-local","subnet":"10.231.0.0/24","dataDir":"`+ipam+`"}}`)
	k.nad(t, "shared", "common", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp2","ipam":{"type":"host-local","subnet":"10.232.0.0/24","dataDir":"`+ipam+`"}}`)
	k.nad(t, "other", "foreign", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp3","ipam":{"type":"host-local","subnet":"10.233.0.0/24","dataDir":"`+ipam+`"}}`)
	web := k.pod(t, "apps", "web", map[string]string{source.NetworksAnnotation: "side,shared/common"})
	k.pod(t, "apps", "thief", map[string]string{source.NetworksAnnotation: "other/foreign"})
	k.pod(t, "apps", "override", map[string]string{source.DefaultNetworkAnnotation: "other/foreign"})
	k.pod(t, "apps", "patient", map[string]string{source.NetworksAnnotation: "side"})
	t.Cleanup(func() { exec(t, "sh", "-c", "for l in pxapp2 pxapp3; do ip link del $l 2>/dev/null; done; true") })

	k.start(t)
	before := len(k.api.AgentRequests(t))
	n := cnitest.NewNS(t)
	rt := k.rt("web1", n.Path())
	rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", "web"}, {"K8S_POD_UID", string(web.UID)}}
	if _, err := k.runtime.AddNetworkList(ctx, k.list, rt); err != nil {
		t.Fatalf("ADD through the shim: %v", err)
	}

	// network-status, as the API server has it (A.14–17).
	got, err := k.admin.CoreV1().Pods("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw := got.Annotations[source.NetworkStatusAnnotation]
	var status []statusEntry
	if err := json.Unmarshal([]byte(raw), &status); err != nil {
		t.Fatalf("network-status %q: %v", raw, err)
	}
	if len(status) != 3 {
		t.Fatalf("network-status has %d entries, want 3: %s", len(status), raw)
	}
	want := []struct{ name, ifname, subnet string }{{"cluster", "eth0", "10.230.0."}, {"apps/side", "net1", "10.231.0."}, {"shared/common", "net2", "10.232.0."}}
	for i, w := range want {
		e := status[i]
		if e.Name != w.name || e.Interface != w.ifname || len(e.IPs) != 1 || !strings.HasPrefix(e.IPs[0], w.subnet) || e.MAC == "" || e.Default != (i == 0) {
			t.Errorf("entry %d = %+v, want name %s, interface %s, one IP in %s0/24, a MAC, default=%v", i, e, w.name, w.ifname, w.subnet, i == 0)
		}
	}
	for i, e := range status {
		if !slices.Equal(e.Gateway, e.DefaultRoute) {
			t.Errorf("entry %d: gateway %v, default-route %v; Multus's readers want the same values", i, e.Gateway, e.DefaultRoute)
		}
	}

	// Events: one per attached interface.
	added := 0
	for _, ev := range k.events(t, "apps", "web") {
		if ev.Reason == "AddedInterface" && ev.Type == corev1.EventTypeNormal {
			added++
		}
	}
	if added != 3 {
		t.Errorf("%d AddedInterface events, want 3", added)
	}

	// The agent's API calls for this ADD, counted by the API server.
	var patches, creates, reads int
	for _, r := range k.api.AgentRequests(t)[before:] {
		switch {
		case r.Verb == "patch" && r.ObjectRef.Resource == "pods" && r.ObjectRef.Name == "web" && r.ObjectRef.Subresource == "":
			patches++
		case r.Verb == "create" && r.ObjectRef.Resource == "events":
			creates++
		case r.Verb == "get" || r.Verb == "list":
			reads++
		case r.Verb == "watch":
		default:
			t.Errorf("unexpected agent request %s %s", r.Verb, r.RequestURI)
		}
	}
	if patches != 1 || creates != 3 || reads != 0 {
		t.Errorf("agent made %d pod patches, %d event creates, %d reads for one ADD; want 1, 3, 0", patches, creates, reads)
	}

	// Namespace isolation: a NAD of another namespace, in the selection
	// and in the default-network override, fails with a Warning Event.
	for _, pod := range []string{"thief", "override"} {
		n := cnitest.NewNS(t)
		rt := k.rt(pod, n.Path())
		rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", pod}}
		_, err := k.runtime.AddNetworkList(ctx, k.list, rt)
		var cniErr *types.Error
		if !errors.As(err, &cniErr) || cniErr.Code != 103 || !strings.Contains(cniErr.Msg, "other/foreign") || !strings.Contains(cniErr.Msg, "apps/"+pod) {
			t.Errorf("pod %s: ADD err = %v, want code 103 naming the pod and other/foreign", pod, err)
		}
		warned := false
		for _, ev := range k.events(t, "apps", pod) {
			warned = warned || (ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, "namespace isolation"))
		}
		if !warned {
			t.Errorf("pod %s: no Warning event naming namespace isolation", pod)
		}
		if links := cnitest.InNS(t, n, "-o", "link"); strings.Contains(links, "eth0") {
			t.Errorf("pod %s: refused ADD left eth0", pod)
		}
	}

	// A pod the informer does not have (here: bound to another node, as a
	// just-created pod may look to a lagging cache) costs one live GET.
	late := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "apps"},
		Spec:       corev1.PodSpec{NodeName: "node-2", Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
	if _, err := k.admin.CoreV1().Pods("apps").Create(ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before = len(k.api.AgentRequests(t))
	nl := cnitest.NewNS(t)
	rtLate := k.rt("late1", nl.Path())
	rtLate.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", "late"}}
	if _, err := k.runtime.AddNetworkList(ctx, k.list, rtLate); err != nil {
		t.Fatalf("ADD of a pod the cache lacks: %v", err)
	}
	gets := 0
	for _, r := range k.api.AgentRequests(t)[before:] {
		if r.Verb == "get" && r.ObjectRef.Resource == "pods" && r.ObjectRef.Name == "late" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d GETs of the uncached pod, want exactly 1", gets)
	}
	if err := k.runtime.DelNetworkList(ctx, k.list, rtLate); err != nil {
		t.Fatalf("DEL late: %v", err)
	}

	// Bad input from the API server: a pod that does not exist, a NAD whose
	// config does not parse, a selection naming a missing NAD. Each fails
	// with its code and names the pod and network; nothing is attached.
	k.nad(t, "apps", "broken", `{"cniVersion":`)
	k.pod(t, "apps", "usesbroken", map[string]string{source.NetworksAnnotation: "broken"})
	k.pod(t, "apps", "usesmissing", map[string]string{source.NetworksAnnotation: "nosuch"})
	for _, c := range []struct {
		pod  string
		code uint
		want []string
	}{
		{"ghost", 102, []string{"apps/ghost"}},
		{"usesbroken", 7, []string{"apps/usesbroken", "apps/broken"}},
		{"usesmissing", 102, []string{"apps/usesmissing", "apps/nosuch"}},
	} {
		nb := cnitest.NewNS(t)
		rtBad := k.rt(c.pod, nb.Path())
		rtBad.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", c.pod}}
		_, err := k.runtime.AddNetworkList(ctx, k.list, rtBad)
		var cniErr *types.Error
		if !errors.As(err, &cniErr) || cniErr.Code != c.code {
			t.Errorf("pod %s: err = %v, want CNI code %d", c.pod, err, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(cniErr.Msg, w) {
				t.Errorf("pod %s: error %q does not name %s", c.pod, cniErr.Msg, w)
			}
		}
		if links := cnitest.InNS(t, nb, "-o", "link"); strings.Contains(links, "eth0") {
			t.Errorf("pod %s: failed ADD left eth0", c.pod)
		}
	}

	// A hanging API server (frozen with SIGSTOP) delays the status report
	// by its bounded timeout but does not fail or block the pod's network;
	// a pod the cache lacks fails with a clear error instead of hanging.
	if err := k.api.PauseAPIServer(); err != nil {
		t.Fatal(err)
	}
	np := cnitest.NewNS(t)
	rtP := k.rt("patient1", np.Path())
	rtP.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", "patient"}}
	start := time.Now()
	_, errPatient := k.runtime.AddNetworkList(ctx, k.list, rtP)
	slowAdd := time.Since(start)
	nu := cnitest.NewNS(t)
	rtU := k.rt("unknown1", nu.Path())
	rtU.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "apps"}, {"K8S_POD_NAME", "not-cached"}}
	start = time.Now()
	_, errUnknown := k.runtime.AddNetworkList(ctx, k.list, rtU)
	slowGet := time.Since(start)
	if err := k.api.ResumeAPIServer(); err != nil {
		t.Fatal(err)
	}
	if errPatient != nil || slowAdd > 30*time.Second {
		t.Errorf("ADD with the API server hanging: %v after %v, want success within the report timeout", errPatient, slowAdd)
	} else if links := cnitest.InNS(t, np, "-o", "link"); !strings.Contains(links, "net1") {
		t.Errorf("ADD with the API server hanging did not attach net1:\n%s", links)
	}
	var slowErr *types.Error
	if !errors.As(errUnknown, &slowErr) || !strings.Contains(slowErr.Msg, "apps/not-cached") || slowGet > 30*time.Second {
		t.Errorf("uncached pod with the API server hanging: %v after %v, want a clear error naming the pod within the GET timeout", errUnknown, slowGet)
	}
	if err := k.runtime.DelNetworkList(ctx, k.list, rtP); err != nil {
		t.Errorf("DEL patient: %v", err)
	}

	// DEL with the API server down still tears everything down.
	k.api.StopAPIServer()
	if err := k.runtime.DelNetworkList(ctx, k.list, rt); err != nil {
		t.Fatalf("DEL with the API server stopped: %v", err)
	}
	if links := cnitest.InNS(t, n, "-o", "link"); strings.Contains(links, "eth0") || strings.Contains(links, "net1") || strings.Contains(links, "net2") {
		t.Errorf("links left after DEL:\n%s", links)
	}
	var left []string
	filepath.Walk(ipam, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Name() != "lock" && !strings.HasPrefix(info.Name(), "last_reserved_ip") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("IP allocations left after DEL: %v", left)
	}
}
