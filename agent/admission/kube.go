package admission

import (
	"context"
	"fmt"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/plexus-cni/plexus/agent/source"
)

// Cluster reads what the handlers need from the API server as object
// metadata only: a NAD's resourceName is an annotation, and a pod's
// selection is too. Each call is one live request (bounded by the
// caller's context): no cache to sync or to go stale.
type Cluster struct {
	Client metadata.Interface
}

var (
	podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	nadsResource = nadv1.SchemeGroupVersion.WithResource("network-attachment-definitions")
)

// listPageSize is the pods per List request.
const listPageSize = 500

// GetNAD implements source.NADGetter with the NAD's metadata (no
// spec.config).
func (c *Cluster) GetNAD(ctx context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	m, err := c.Client.Resource(nadsResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get NetworkAttachmentDefinition %s/%s: %w", namespace, name, err)
	}
	return &nadv1.NetworkAttachmentDefinition{ObjectMeta: m.ObjectMeta}, nil
}

// ListPods implements PodLister, a page at a time.
func (c *Cluster) ListPods(ctx context.Context) ([]source.Pod, error) {
	var out []source.Pod
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		list, err := c.Client.Resource(podsResource).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for _, p := range list.Items {
			out = append(out, source.Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Annotations: p.Annotations})
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}
