// Package source defines where the agent reads pods and NADs from — files
// in local mode, informer caches in Kubernetes mode, both behind the
// getters here — and the names of the annotations it reads and writes.
// Both modes feed the same selection code.
package source

import (
	"context"
	"errors"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
)

// Annotation keys: the multi-net spec's and Multus' on pods and NADs, and
// kubelet's on mirror pods.
const (
	// NetworksAnnotation is the pod's network selection.
	NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"
	// NetworkStatusAnnotation is the pod's network-status, which the agent
	// writes.
	NetworkStatusAnnotation = "k8s.v1.cni.cncf.io/network-status"
	// DefaultNetworkAnnotation is the pod's override of the cluster
	// default network (Multus').
	DefaultNetworkAnnotation = "v1.multus-cni.io/default-network"
	// ResourceNameAnnotation is the NAD annotation naming the device
	// resource.
	ResourceNameAnnotation = "k8s.v1.cni.cncf.io/resourceName"
	// MirrorPodAnnotation is set by kubelet on the mirror pod of a static
	// pod to the static pod's UID, the UID kubelet passes to the runtime.
	MirrorPodAnnotation = "kubernetes.io/config.mirror"
	// HotPlugAnnotation "false" on a pod opts it out of hot-plug: changes
	// of its networks annotation wait for the pod to be re-created.
	HotPlugAnnotation = "plexus.io/hotplug"
)

// ErrNotFound is wrapped by getters for a pod or NAD that does not exist.
var ErrNotFound = errors.New("not found")

// Pod is what the agent needs of a pod.
type Pod struct {
	Namespace   string
	Name        string
	UID         string
	Annotations map[string]string
	// Deleting is set once the pod's deletion has begun.
	Deleting bool
}

// PodGetter finds a pod by namespace and name.
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*Pod, error)
}

// LivePodGetter is a PodGetter backed by a cache that can also read a pod
// from its origin (kube.Sources: the API server).
type LivePodGetter interface {
	GetPodLive(ctx context.Context, namespace, name string) (*Pod, error)
}

// NADGetter reads NetworkAttachmentDefinitions: files in local mode, an
// informer cache in Kubernetes mode. It returns an error wrapping
// ErrNotFound for a missing NAD.
type NADGetter interface {
	GetNAD(ctx context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error)
}
