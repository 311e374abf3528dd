package selection

import (
	"fmt"
	"slices"
	"strings"

	"github.com/plexus-cni/plexus/agent/source"
)

// Policy is how the agent configuration reads a pod's two annotations:
// the mode, where the override's bare names live, and namespace
// isolation. The agent's ADD and hot-plug and the admission webhook all
// call it, so that their verdicts cannot differ.
type Policy struct {
	Mode Mode
	// SystemNamespace holds the override's bare names, and its networks
	// stay allowed to the override under isolation (as in Multus).
	SystemNamespace    string
	NamespaceIsolation bool
	GlobalNamespaces   []string
}

// ForbiddenError is a namespace isolation violation.
type ForbiddenError struct{ Msg string }

func (e *ForbiddenError) Error() string { return e.Msg }

// Networks parses the networks annotation value of pod and checks each
// element against namespace isolation.
func (p Policy) Networks(pod PodRef, value string) ([]Element, []Warning, error) {
	elems, warnings, err := Options{Mode: p.Mode}.Parse(pod, value)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range elems {
		if err := p.CheckIsolation(pod, e.Namespace, e.Name, "network selection"); err != nil {
			return nil, nil, err
		}
	}
	return elems, warnings, nil
}

// DefaultNetwork parses the default-network override of pod (nil for
// none) and checks it against namespace isolation. Unlike Multus,
// isolation applies to the override too; the system namespace's networks
// are the admin's alternatives to the cluster network and stay allowed.
func (p Policy) DefaultNetwork(pod PodRef, value string) (*Element, []Warning, error) {
	e, warnings, err := Options{Mode: p.Mode, Namespace: p.SystemNamespace}.ParseDefaultNetwork(pod, value)
	if err != nil || e == nil {
		return nil, nil, err
	}
	if e.Namespace != p.SystemNamespace {
		if err := p.CheckIsolation(pod, e.Namespace, e.Name, source.DefaultNetworkAnnotation); err != nil {
			return nil, nil, err
		}
	}
	return e, warnings, nil
}

// CheckIsolation enforces namespaceIsolation: a pod may use NADs of its
// own namespace and of the global namespaces only. what names the
// annotation that asks for the NAD.
func (p Policy) CheckIsolation(pod PodRef, nadNamespace, nadName, what string) error {
	if !p.NamespaceIsolation || nadNamespace == pod.Namespace || slices.Contains(p.GlobalNamespaces, nadNamespace) {
		return nil
	}
	return &ForbiddenError{Msg: fmt.Sprintf("pod %s: %s names NetworkAttachmentDefinition %s/%s of another namespace, which namespace isolation forbids (allowed: %s, %s)",
		pod, what, nadNamespace, nadName, pod.Namespace, strings.Join(p.GlobalNamespaces, ", "))}
}
