package admission

import (
	"context"
	"fmt"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/plexus-cni/plexus/agent/source"
)

// Cluster reads what the handlers need from the API server as object
// metadata only: a NAD's resourceName is an annotation, and a pod's
// selection is too. Each call is one live request (bounded by the
// caller's context), except for NADs once CacheNADs was called.
type Cluster struct {
	Client metadata.Interface
	// nads, when set, is a metadata informer's cache of every NAD.
	nads       cache.Indexer
	nadsSynced cache.InformerSynced
}

// NADsSynced reports whether CacheNADs' informer has listed every NAD.
func (c *Cluster) NADsSynced() bool { return c.nadsSynced != nil && c.nadsSynced() }

// CacheNADs makes GetNAD answer from a metadata informer of every NAD
// (their identity and resourceName) when the cache has the NAD, and live
// when it does not: a NAD created a moment before the pods that select it
// is never missed, and a burst of pod creates no longer waits on one GET
// per network (docs/benchmarks.md, admission). Call it before serving;
// run runs the informer until its context ends.
func (c *Cluster) CacheNADs() (run func(context.Context) error, err error) {
	inf := metadatainformer.NewFilteredMetadataInformer(c.Client, nadsResource, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	if err := inf.SetTransform(func(obj any) (any, error) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return obj, nil
		}
		keep := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion}}
		if r, ok := m.Annotations[source.ResourceNameAnnotation]; ok {
			keep.Annotations = map[string]string{source.ResourceNameAnnotation: r}
		}
		return keep, nil
	}); err != nil {
		return nil, err
	}
	c.nads, c.nadsSynced = inf.GetIndexer(), inf.HasSynced
	return func(ctx context.Context) error { inf.Run(ctx.Done()); return nil }, nil
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
	if c.nads != nil {
		if obj, ok, _ := c.nads.GetByKey(namespace + "/" + name); ok {
			return &nadv1.NetworkAttachmentDefinition{ObjectMeta: obj.(*metav1.PartialObjectMetadata).ObjectMeta}, nil
		}
	}
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
