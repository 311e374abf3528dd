// Package kube is the agent's Kubernetes side: informer-backed sources of
// pods (this node's only) and NetworkAttachmentDefinitions for the shared
// selection code, and the reporter that publishes network-status and Events.
package kube

import (
	"context"
	"fmt"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadinformers "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/informers/externalversions"
	nadlisters "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/listers/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/source"
)

// liveGetTimeout bounds the one GET for a pod the cache lacks, so a slow API
// server fails the ADD with a clear error (the runtime retries) instead of
// holding it.
const liveGetTimeout = 10 * time.Second

// Sources serves pods and NADs from informer caches.
type Sources struct {
	client kubernetes.Interface
	nads   nadclient.Interface
	pods   corelisters.PodLister
	nadLs  nadlisters.NetworkAttachmentDefinitionLister
	// PodWait bounds how long GetPod waits for the cache to see a pod it
	// does not know yet before one live GET.
	podWait time.Duration
	synced  []cache.InformerSynced
}

// Options configures Sources.
type Options struct {
	Client    kubernetes.Interface
	NADClient nadclient.Interface
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
	podFactory := informers.NewSharedInformerFactoryWithOptions(o.Client, o.Resync,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", o.NodeName).String()
		}),
		informers.WithTransform(trimPod))
	podInformer := podFactory.Core().V1().Pods()
	nadFactory := nadinformers.NewSharedInformerFactory(o.NADClient, o.Resync)
	nadInformer := nadFactory.K8sCniCncfIo().V1().NetworkAttachmentDefinitions()
	s := &Sources{
		client:  o.Client,
		pods:    podInformer.Lister(),
		nadLs:   nadInformer.Lister(),
		podWait: o.PodWait,
		synced:  []cache.InformerSynced{podInformer.Informer().HasSynced, nadInformer.Informer().HasSynced},
	}
	return s, &Informers{pods: podFactory, nads: nadFactory, synced: s.synced}, nil
}

// Informers runs the informers.
type Informers struct {
	pods   informers.SharedInformerFactory
	nads   nadinformers.SharedInformerFactory
	synced []cache.InformerSynced
}

// Start runs the informers until ctx ends and waits, at most until syncCtx
// ends, for their first sync.
func (i *Informers) Start(ctx, syncCtx context.Context) error {
	i.pods.Start(ctx.Done())
	i.nads.Start(ctx.Done())
	if !cache.WaitForCacheSync(syncCtx.Done(), i.synced...) {
		return fmt.Errorf("kube: informer caches did not sync: %w", context.Cause(syncCtx))
	}
	return nil
}

// Shutdown waits for the pod informer's goroutines after ctx ended (the NAD
// client's generated factory has no such wait; its goroutines exit with ctx).
func (i *Informers) Shutdown() {
	i.pods.Shutdown()
}

// trimPod keeps only what the agent reads of a pod, so the cache of a busy
// node stays small: identity and annotations.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pod.Name,
			Namespace:       pod.Namespace,
			UID:             pod.UID,
			ResourceVersion: pod.ResourceVersion,
			Annotations:     pod.Annotations,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}, nil
}

func toPod(p *corev1.Pod) *source.Pod {
	return &source.Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Annotations: p.Annotations}
}

// GetPod implements source.PodGetter: the cache, then a short wait for a
// pod the cache has not seen yet, then one live GET.
func (s *Sources) GetPod(ctx context.Context, namespace, name string) (*source.Pod, error) {
	if p, err := s.pods.Pods(namespace).Get(name); err == nil {
		return toPod(p), nil
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
			if p, err := s.pods.Pods(namespace).Get(name); err == nil {
				return toPod(p), nil
			}
		}
	}
	getCtx, cancel := context.WithTimeout(ctx, liveGetTimeout)
	defer cancel()
	p, err := s.client.CoreV1().Pods(namespace).Get(getCtx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	return toPod(p), nil
}

// GetNAD implements resolve.NADGetter from the cache alone. The informer
// watches every NAD, so a miss is a NAD that does not exist (or was created
// a moment ago: the runtime retries the ADD). No API read: the cluster
// network's bare name is looked up as a NAD on every ADD.
func (s *Sources) GetNAD(_ context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	n, err := s.nadLs.NetworkAttachmentDefinitions(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s from the cache: %w", namespace, name, err)
	}
	return n, nil
}

var (
	_ source.PodGetter  = (*Sources)(nil)
	_ resolve.NADGetter = (*Sources)(nil)
)
