package uninstall

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/agent/kube"
	"github.com/plexus-cni/plexus/internal/apiservertest"
)

// Against a real kube-apiserver (no controllers run, so a foreground
// deletion stays "being deleted" and pods are created by hand).
func TestDaemonSetGone(t *testing.T) {
	srv := apiservertest.Start(t)
	cs, err := kubernetes.NewForConfig(srv.Config(apiservertest.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	// The agent's own client for the call, the clientset to set up.
	api, err := kube.NewClient(srv.Config(apiservertest.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "plexus-system"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "agent"}
	newDS := func(name string) *appsv1.DaemonSet {
		ds, err := cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent"}}},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	yes := true
	newPod := func(name string, owner *appsv1.DaemonSet) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent"}}},
		}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: owner.Name, UID: owner.UID, Controller: &yes}}
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what, pod string, want, wantErr bool) {
		t.Helper()
		got, err := DaemonSetGone(ctx, api, ns, pod)
		if (err != nil) != wantErr || got != want {
			t.Fatalf("%s: got %t, %v; want %t, error %t", what, got, err, want, wantErr)
		}
	}

	alive := newDS("alive")
	newPod("restarting", alive)
	check("restart: the DaemonSet is there", "restarting", false, false)

	newPod("static", nil)
	check("not owned by a DaemonSet", "static", false, false)
	check("own pod unknown", "nosuchpod", false, true)

	deleting := newDS("deleting")
	newPod("deleting-pod", deleting)
	fg := metav1.DeletePropagationForeground
	if err := cs.AppsV1().DaemonSets(ns).Delete(ctx, "deleting", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	check("DaemonSet being deleted (foreground)", "deleting-pod", true, false)

	gone := newDS("gone")
	newPod("gone-pod", gone)
	if err := cs.AppsV1().DaemonSets(ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("DaemonSet deleted (background)", "gone-pod", true, false)

	// Deleted and recreated under the same name (a reinstall): keep the
	// configuration, the new DaemonSet's pod takes over.
	replaced := newDS("replaced")
	newPod("replaced-pod", replaced)
	if err := cs.AppsV1().DaemonSets(ns).Delete(ctx, "replaced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	newDS("replaced")
	check("replaced by a new DaemonSet", "replaced-pod", false, false)
}
