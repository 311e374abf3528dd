// Package kube is the agent's Kubernetes side: informer-backed sources of
// pods (this node's only) and NetworkAttachmentDefinitions for the shared
// selection code, and the reporter that publishes network-status and Events.
package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/plexus-cni/plexus/agent/source"
)

// liveGetTimeout bounds the one GET for a pod the cache lacks, so a slow API
// server fails the ADD with a clear error (the runtime retries) instead of
// holding it.
const liveGetTimeout = 10 * time.Second

// Sources serves pods and NADs from informer caches.
type Sources struct {
	client *Client
	pods   cache.Indexer
	nads   cache.Indexer
	// PodWait bounds how long GetPod waits for the cache to see a pod it
	// does not know yet before one live GET.
	podWait time.Duration
}

// Options configures Sources.
type Options struct {
	Client *Client
	// NodeName restricts the pod informer to this node's pods.
	NodeName string
	// PodWait: see Sources; 0 means 2s.
	PodWait time.Duration
	Resync  time.Duration
}

// NewSources creates the informers. Start them with Start.
func NewSources(o Options) (*Sources, *Informers, error) {
	if o.NodeName == "" {
		return nil, nil, fmt.Errorf("kube: node name is required (set NODE_NAME from the downward API)")
	}
	if o.PodWait == 0 {
		o.PodWait = 2 * time.Second
	}
	podLW := cache.NewListWatchFromClient(o.Client.core, "pods", metav1.NamespaceAll,
		fields.OneTermEqualSelector("spec.nodeName", o.NodeName))
	pods := cache.NewSharedIndexInformerWithOptions(podLW, &corev1.Pod{}, cache.SharedIndexInformerOptions{ResyncPeriod: o.Resync})
	nadLW := cache.NewListWatchFromClient(o.Client.nads, "network-attachment-definitions", metav1.NamespaceAll, fields.Everything())
	nads := cache.NewSharedIndexInformerWithOptions(nadLW, &nadv1.NetworkAttachmentDefinition{}, cache.SharedIndexInformerOptions{ResyncPeriod: o.Resync})
	for _, x := range []struct {
		inf cache.SharedIndexInformer
		tr  cache.TransformFunc
	}{{pods, trimPod}, {nads, trimNAD}} {
		if err := x.inf.SetTransform(x.tr); err != nil {
			return nil, nil, err
		}
	}
	s := &Sources{client: o.Client, pods: pods.GetIndexer(), nads: nads.GetIndexer(), podWait: o.PodWait}
	return s, &Informers{informers: []cache.SharedIndexInformer{pods, nads}, pods: pods}, nil
}

// Informers runs the informers.
type Informers struct {
	informers []cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	wg        sync.WaitGroup
}

// OnPods calls changed with every pod of the node the cache adds or
// updates (from the informer's goroutine: it must not block) and gone
// with the "namespace/name" of every pod it drops.
func (i *Informers) OnPods(changed func(*source.Pod), gone func(key string)) error {
	_, err := i.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { changed(toPod(obj.(*corev1.Pod))) },
		UpdateFunc: func(_, obj any) { changed(toPod(obj.(*corev1.Pod))) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				gone(key)
			}
		},
	})
	return err
}

// Start runs the informers until ctx ends and waits, at most until syncCtx
// ends, for their first sync.
func (i *Informers) Start(ctx, syncCtx context.Context) error {
	synced := make([]cache.InformerSynced, 0, len(i.informers))
	for _, inf := range i.informers {
		i.wg.Go(func() { inf.Run(ctx.Done()) })
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		return fmt.Errorf("kube: informer caches did not sync: %w", context.Cause(syncCtx))
	}
	return nil
}

// Shutdown waits for the informers' goroutines after ctx ended.
func (i *Informers) Shutdown() {
	i.wg.Wait()
}

// trimPod keeps only what the agent reads of a pod, so the cache of a busy
// node stays small: identity, the two annotations selection reads, the
// mirror pod's UID the identity check reads, and hot-plug's opt-out and
// the deletion mark (not the other annotations: kubectl's
// last-applied-configuration alone holds the whole pod, and the
// network-status the agent writes comes back in every event).
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	meta := trimMeta(pod.ObjectMeta, source.NetworksAnnotation, source.DefaultNetworkAnnotation, source.MirrorPodAnnotation, source.HotPlugAnnotation)
	meta.DeletionTimestamp = pod.DeletionTimestamp
	return &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName}}, nil
}

// trimMeta is m's identity and the given annotations.
func trimMeta(m metav1.ObjectMeta, annotations ...string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Annotations: keep(m.Annotations, annotations...)}
}

// keep returns the given keys of m, nil if it has none of them.
func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
}

// trimNAD keeps what resolve reads of a NAD (spec.config and the
// resourceName annotation) and its identity: every NAD of the cluster is
// cached, and managedFields and the last-applied annotation of kubectl
// apply can each be as large as the config.
func trimNAD(obj any) (any, error) {
	nad, ok := obj.(*nadv1.NetworkAttachmentDefinition)
	if !ok {
		return obj, nil
	}
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: trimMeta(nad.ObjectMeta, source.ResourceNameAnnotation),
		Spec:       nad.Spec,
	}, nil
}

func toPod(p *corev1.Pod) *source.Pod {
	return &source.Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Annotations: p.Annotations, Deleting: p.DeletionTimestamp != nil}
}

// CachedPod is the pod of "namespace/name" from the cache, nil if it is
// not there.
func (s *Sources) CachedPod(key string) *source.Pod {
	obj, ok, err := s.pods.GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	return toPod(obj.(*corev1.Pod))
}

// GetPod implements source.PodGetter: the cache, then a short wait for a
// pod the cache has not seen yet, then one live GET.
func (s *Sources) GetPod(ctx context.Context, namespace, name string) (*source.Pod, error) {
	if p := s.CachedPod(namespace + "/" + name); p != nil {
		return p, nil
	}
	deadline := time.NewTimer(s.podWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, ctx.Err())
		case <-deadline.C:
			waiting = false
		case <-tick.C:
			if p := s.CachedPod(namespace + "/" + name); p != nil {
				return p, nil
			}
		}
	}
	return s.GetPodLive(ctx, namespace, name)
}

// GetPodLive reads the pod from the API server, bypassing the cache: for a
// pod the cache lacks, or has in an older incarnation (another UID).
func (s *Sources) GetPodLive(ctx context.Context, namespace, name string) (*source.Pod, error) {
	getCtx, cancel := context.WithTimeout(ctx, liveGetTimeout)
	defer cancel()
	p, err := s.client.GetPod(getCtx, namespace, name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	return toPod(p), nil
}

// GetNAD implements source.NADGetter from the cache alone. The informer
// watches every NAD, so a miss is a NAD that does not exist (or was created
// a moment ago: the runtime retries the ADD). No API read: the cluster
// network's bare name is looked up as a NAD on every ADD.
func (s *Sources) GetNAD(_ context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	obj, ok, err := s.nads.GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s from the cache: %w", namespace, name, err)
	}
	if !ok {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	return obj.(*nadv1.NetworkAttachmentDefinition), nil
}

var (
	_ source.PodGetter = (*Sources)(nil)
	_ source.NADGetter = (*Sources)(nil)
)
