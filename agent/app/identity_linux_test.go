package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// deletePod deletes a pod at once (no kubelet here to finish a graceful
// deletion).
func (k *kubeRig) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	zero := int64(0)
	if err := k.admin.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

// podArgs are the CNI_ARGS kubelet passes for a pod.
func podArgs(ns, name, uid string) [][2]string {
	return [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", ns}, {"K8S_POD_NAME", name}, {"K8S_POD_UID", uid}}
}

// Pod identity: a pod deleted and re-created under the same name
// never lends its annotations to the other's sandbox. The runtime's
// K8S_POD_UID is compared with the pod found: a stale UID fails retriably
// (code 11) naming the pod and both UIDs after one live GET; the new
// pod's UID gets the new pod's networks and its network-status; a static
// pod's UID matches its mirror pod.
func TestPodIdentity(t *testing.T) {
	k := newKubeRig(t)
	ctx := context.Background()
	k.namespace(t, "apps")
	ipam := k.dir + "/ipam"
	k.nad(t, "apps", "side", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp1","ipam":{"type":"host-local","subnet":"10.231.0.0/24","dataDir":"`+ipam+`"}}`)
	k.nad(t, "apps", "fresh", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp4","ipam":{"type":"host-local","subnet":"10.234.0.0/24","dataDir":"`+ipam+`"}}`)
	t.Cleanup(func() { exec(t, "sh", "-c", "ip link del pxapp4 2>/dev/null; true") })
	old := k.pod(t, "apps", "web", map[string]string{source.NetworksAnnotation: "side"})
	k.deletePod(t, "apps", "web")
	cur := k.pod(t, "apps", "web", map[string]string{source.NetworksAnnotation: "fresh"})
	k.pod(t, "apps", "static-web-node-1", map[string]string{source.NetworksAnnotation: "side", source.MirrorPodAnnotation: "static-uid-1"})
	k.start(t)

	// The old pod's sandbox, the cache holding the new pod.
	before := len(k.api.AgentRequests(t))
	n := cnitest.NewNS(t)
	rt := k.rt("old1", n.Path())
	rt.Args = podArgs("apps", "web", string(old.UID))
	_, err := k.runtime.AddNetworkList(ctx, k.list, rt)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 11 {
		t.Fatalf("ADD with the deleted pod's UID: err = %v, want CNI code 11", err)
	}
	for _, want := range []string{"apps/web", string(old.UID), string(cur.UID)} {
		if !strings.Contains(cniErr.Msg, want) {
			t.Errorf("error %q does not name %s", cniErr.Msg, want)
		}
	}
	gets := 0
	for _, r := range k.api.AgentRequests(t)[before:] {
		if r.Verb == "get" && r.ObjectRef.Resource == "pods" && r.ObjectRef.Name == "web" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d live GETs of the pod on a UID mismatch, want 1", gets)
	}
	if links := cnitest.InNS(t, n, "-o", "link"); strings.Contains(links, "eth0") {
		t.Errorf("refused ADD left eth0:\n%s", links)
	}
	got, err := k.admin.CoreV1().Pods("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Annotations[source.NetworkStatusAnnotation]; s != "" {
		t.Errorf("the new pod got a network-status from the old pod's sandbox: %s", s)
	}

	// The new pod's sandbox gets the new pod's networks and status.
	n2 := cnitest.NewNS(t)
	rt2 := k.rt("cur1", n2.Path())
	rt2.Args = podArgs("apps", "web", string(cur.UID))
	if _, err := k.runtime.AddNetworkList(ctx, k.list, rt2); err != nil {
		t.Fatalf("ADD with the pod's UID: %v", err)
	}
	if addrs := cnitest.InNS(t, n2, "-4", "addr", "show", "dev", "net1"); !strings.Contains(addrs, "10.234.0.") {
		t.Errorf("net1 is not on the new pod's network fresh:\n%s", addrs)
	}
	got, err = k.admin.CoreV1().Pods("apps").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var status []statusEntry
	if err := json.Unmarshal([]byte(got.Annotations[source.NetworkStatusAnnotation]), &status); err != nil || len(status) != 2 || status[1].Name != "apps/fresh" {
		t.Errorf("network-status of the new pod = %+v (%v), want cluster and apps/fresh", status, err)
	}
	if err := k.runtime.DelNetworkList(ctx, k.list, rt2); err != nil {
		t.Errorf("DEL: %v", err)
	}

	// A static pod: kubelet passes its UID, the mirror pod carries it.
	n3 := cnitest.NewNS(t)
	rt3 := k.rt("static1", n3.Path())
	rt3.Args = podArgs("apps", "static-web-node-1", "static-uid-1")
	before = len(k.api.AgentRequests(t))
	if _, err := k.runtime.AddNetworkList(ctx, k.list, rt3); err != nil {
		t.Fatalf("ADD of a static pod with its mirror pod's config.mirror UID: %v", err)
	}
	// The cache matches the mirror pod by itself: no live GET.
	for _, r := range k.api.AgentRequests(t)[before:] {
		if r.Verb == "get" && r.ObjectRef.Resource == "pods" {
			t.Errorf("live GET of pod %s for a static pod whose mirror pod is cached", r.ObjectRef.Name)
		}
	}
	if links := cnitest.InNS(t, n3, "-o", "link"); !strings.Contains(links, "net1") {
		t.Errorf("static pod did not get its mirror pod's networks:\n%s", links)
	}
	if err := k.runtime.DelNetworkList(ctx, k.list, rt3); err != nil {
		t.Errorf("DEL static: %v", err)
	}
}

// Compatible selection mode (the default) in Kubernetes mode: a selection
// Multus accepts but the spec does not is attached, and the pod gets a
// Warning Event naming the network, the key and the fix.
func TestSelectionWarningEvent(t *testing.T) {
	k := newKubeRig(t)
	ctx := context.Background()
	k.namespace(t, "apps")
	ipam := k.dir + "/ipam"
	k.nad(t, "apps", "side", `{"cniVersion":"1.0.0","type":"bridge","bridge":"pxapp1","ipam":{"type":"host-local","subnet":"10.231.0.0/24","dataDir":"`+ipam+`"}}`)
	pod := k.pod(t, "apps", "web", map[string]string{source.NetworksAnnotation: `[{"name":"side","colour":"red"}]`})
	k.start(t)
	n := cnitest.NewNS(t)
	rt := k.rt("w1", n.Path())
	rt.Args = podArgs("apps", "web", string(pod.UID))
	if _, err := k.runtime.AddNetworkList(ctx, k.list, rt); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var warnings []string
	found := false
	for _, ev := range k.events(t, "apps", "web") {
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		warnings = append(warnings, ev.Reason+": "+ev.Message)
		found = found || ev.Reason == "NetworkSelectionWarning" && ev.InvolvedObject.UID == pod.UID &&
			strings.Contains(ev.Message, "apps/side") && strings.Contains(ev.Message, `"colour"`) && strings.Contains(ev.Message, "remove it")
	}
	if !found {
		t.Errorf("no NetworkSelectionWarning event on the pod naming apps/side, \"colour\" and the fix; Warning events: %q", warnings)
	}
	if err := k.runtime.DelNetworkList(ctx, k.list, rt); err != nil {
		t.Errorf("DEL: %v", err)
	}
}
