package uninstall

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "plexus-system", Name: "plexus-agent-x"}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func ds(uid types.UID, deleting bool) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "plexus-system", Name: "plexus-agent", UID: uid}}
	if deleting {
		now := metav1.Now()
		d.DeletionTimestamp = &now
	}
	return d
}

func TestDaemonSetGone(t *testing.T) {
	yes := true
	ref := &metav1.OwnerReference{Kind: "DaemonSet", Name: "plexus-agent", UID: "u1", Controller: &yes}
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		want    bool
		wantErr bool
	}{
		{"DaemonSet deleted", []runtime.Object{pod(ref)}, true, false},
		{"DaemonSet being deleted", []runtime.Object{pod(ref), ds("u1", true)}, true, false},
		{"restart: DaemonSet alive", []runtime.Object{pod(ref), ds("u1", false)}, false, false},
		{"replaced by a new DaemonSet", []runtime.Object{pod(ref), ds("u2", false)}, false, false},
		{"not owned by a DaemonSet", []runtime.Object{pod(nil)}, false, false},
		{"own pod unknown", nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DaemonSetGone(context.Background(), fake.NewSimpleClientset(tc.objs...), "plexus-system", "plexus-agent-x")
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %t, %v; want %t, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
