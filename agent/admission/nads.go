package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
)

// validateNAD refuses a NAD the agent could not attach a pod with: the
// spec.config resolve.Parse refuses (not JSON, no or an unknown
// cniVersion, a plugin type that is a path, …) and a resourceName that
// is not an extended resource name. An empty spec.config names an on-disk
// configuration of the nodes, which the webhook cannot see.
func (h *Handler) validateNAD(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var nad nadv1.NetworkAttachmentDefinition
	if err := json.Unmarshal(req.Object.Raw, &nad); err != nil {
		return invalid("NetworkAttachmentDefinition", err)
	}
	nad.Namespace, nad.Name = req.Namespace, req.Name
	if strings.TrimSpace(nad.Spec.Config) != "" {
		if _, err := resolve.Parse(req.Namespace+"/"+req.Name, []byte(nad.Spec.Config), req.Name); err != nil {
			return deny(422, err)
		}
	}
	if _, err := resolve.ResourceName(&nad); err != nil {
		return deny(422, err)
	}
	return allow(nil)
}

// maxNamedPods bounds the pods a NAD-delete warning names.
const maxNamedPods = 10

// deleteNAD allows the deletion of a NAD, warning when pods still select
// it: their running attachments stay (DEL needs only the agent's
// records), but a new sandbox of theirs fails its ADD. When the pods
// cannot be listed within the look-up timeout the deletion is allowed
// with a warning saying so.
func (h *Handler) deleteNAD(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	key := req.Namespace + "/" + req.Name
	lctx, cancel := h.lookup(ctx)
	defer cancel()
	pods, err := h.Pods.ListPods(lctx)
	if err != nil {
		h.log().Warn("NetworkAttachmentDefinition delete: cannot list pods", "nad", key, "err", err)
		return allow([]string{fmt.Sprintf("NetworkAttachmentDefinition %s: could not check which pods select it: %v", key, err)})
	}
	var users []string
	for _, p := range pods {
		if h.system(p.Namespace) {
			continue
		}
		elems, _, err := h.networks(selection.PodRef{Namespace: p.Namespace, Name: p.Name}, p.Annotations)
		if err != nil {
			continue
		}
		for _, e := range elems {
			if e.Key() == key {
				users = append(users, p.Namespace+"/"+p.Name)
				break
			}
		}
	}
	if len(users) == 0 {
		return allow(nil)
	}
	named := strings.Join(users[:min(len(users), maxNamedPods)], ", ")
	if len(users) > maxNamedPods {
		named += fmt.Sprintf(" and %d more", len(users)-maxNamedPods)
	}
	return allow([]string{fmt.Sprintf("NetworkAttachmentDefinition %s is still selected by pods %s: their new sandboxes will fail to attach it", key, named)})
}
