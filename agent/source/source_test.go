package source_test

import (
	"testing"

	"github.com/plexus-cni/plexus/agent/source"
)

// The keys are the specs' (multi-net v1.3, Multus, kubelet): every other
// use in the repository refers to these constants, so this is where a typo
// would be caught.
func TestAnnotationNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		source.NetworksAnnotation:       "k8s.v1.cni.cncf.io/networks",
		source.NetworkStatusAnnotation:  "k8s.v1.cni.cncf.io/network-status",
		source.DefaultNetworkAnnotation: "v1.multus-cni.io/default-network",
		source.ResourceNameAnnotation:   "k8s.v1.cni.cncf.io/resourceName",
		source.MirrorPodAnnotation:      "kubernetes.io/config.mirror",
		source.HotPlugAnnotation:        "plexus.io/hotplug",
	} {
		if got != want {
			t.Errorf("annotation key %q, want %q", got, want)
		}
	}
}
