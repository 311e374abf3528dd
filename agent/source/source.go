// Package source defines where the agent reads pods from: files in local
// mode, informer caches in Kubernetes mode. Both feed the same selection code.
package source

import (
	"context"
	"errors"
)

// ErrNotFound is wrapped by getters for a pod or NAD that does not exist.
var ErrNotFound = errors.New("not found")

// Pod is what the agent needs of a pod.
type Pod struct {
	Namespace   string
	Name        string
	UID         string
	Annotations map[string]string
}

// PodGetter finds a pod by namespace and name.
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*Pod, error)
}
