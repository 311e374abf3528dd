// Package uninstall tells an agent that stops because its DaemonSet is
// being deleted (an uninstall: the node must fall back to its primary CNI,
// so the generated conflist goes) from one that stops to be restarted or
// replaced by a rolling update (the conflist must stay, or pods created
// in the gap would silently miss their secondary networks).
package uninstall

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API is what DaemonSetGone reads (agent/kube.Client).
type API interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	DaemonSetMeta(ctx context.Context, namespace, name string) (*metav1.ObjectMeta, error)
}

// DaemonSetGone reports whether the DaemonSet that owns pod ns/name is
// gone or being deleted. A pod without a DaemonSet owner, or a DaemonSet
// replaced by a new one of the same name (another UID) that is not being
// deleted, is not an uninstall. Errors mean "cannot tell": callers keep
// the conflist.
func DaemonSetGone(ctx context.Context, api API, ns, name string) (bool, error) {
	pod, err := api.GetPod(ctx, ns, name)
	if err != nil {
		return false, fmt.Errorf("get own pod %s/%s: %w", ns, name, err)
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind != "DaemonSet" || ref.Controller == nil || !*ref.Controller {
			continue
		}
		ds, err := api.DaemonSetMeta(ctx, ns, ref.Name)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("get DaemonSet %s/%s: %w", ns, ref.Name, err)
		}
		return ds.DeletionTimestamp != nil && ds.UID == ref.UID, nil
	}
	return false, nil
}
