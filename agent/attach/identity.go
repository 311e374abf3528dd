package attach

import (
	"context"
	"errors"
	"fmt"

	"github.com/plexus-cni/plexus/agent/source"
)

// samePod reports whether pod is the one the runtime means by uid (its
// K8S_POD_UID). Without a UID on either side there is nothing to compare.
func samePod(pod *source.Pod, uid string) bool {
	return uid == "" || pod.UID == "" || pod.UID == uid || pod.Annotations[source.MirrorPodAnnotation] == uid
}

// confirmPod makes sure the pod found by name is the runtime's: a pod
// deleted and re-created under the same name must not lend the new pod's
// annotations to the old sandbox (or the old one's to the new). On a
// mismatch the pod is read once more, live, since the cache may lag; a
// mismatch then is retriable: the runtime's view will catch up (or the
// sandbox is torn down).
func (m *Manager) confirmPod(ctx context.Context, inv *invocation, pod *source.Pod) (*source.Pod, error) {
	uid := inv.podUID()
	if samePod(pod, uid) {
		return pod, nil
	}
	found := pod.UID
	if live, ok := m.pods.(source.LivePodGetter); ok {
		fresh, err := live.GetPodLive(ctx, inv.pod.Namespace, inv.pod.Name)
		switch {
		case errors.Is(err, source.ErrNotFound):
			return nil, withCode(CodeTryAgainLater, fmt.Errorf("pod %s: the runtime's K8S_POD_UID is %s, the cache's pod of that name has UID %s and the API server has no such pod", inv.pod, uid, found))
		case err != nil:
			return nil, withCode(CodeTryAgainLater, fmt.Errorf("pod %s: the runtime's K8S_POD_UID is %s, the cache's pod has UID %s: %w", inv.pod, uid, found, err))
		case samePod(fresh, uid):
			return fresh, nil
		}
		found = fresh.UID
	}
	return nil, withCode(CodeTryAgainLater, fmt.Errorf("pod %s: the runtime's K8S_POD_UID is %s but the pod of that name has UID %s (deleted and re-created?); its annotations are not this sandbox's", inv.pod, uid, found))
}
