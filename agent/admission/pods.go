package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

// The Downward API volume network-resources-injector adds: the pod's
// annotations (so its network-status) at /etc/podnetinfo/annotations.
const (
	PodNetInfoVolume = "podnetinfo"
	PodNetInfoPath   = "/etc/podnetinfo"
)

// podRef names the pod of req: with generateName the name may not be set
// yet at admission.
func podRef(req *admissionv1.AdmissionRequest, pod *corev1.Pod) selection.PodRef {
	name := pod.Name
	if name == "" {
		name = req.Name
	}
	if name == "" {
		name = pod.GenerateName
	}
	return selection.PodRef{Namespace: req.Namespace, Name: name}
}

// networks is the pod's override and selection as the agent reads them,
// with the compatible-mode warnings the agent would report, worded as it
// words them.
func (h *Handler) networks(ref selection.PodRef, ann map[string]string) ([]selection.Element, []string, error) {
	var elems []selection.Element
	var warnings []string
	override, w, err := h.Policy.DefaultNetwork(ref, ann[source.DefaultNetworkAnnotation])
	if err != nil {
		return nil, nil, err
	}
	for _, w := range w {
		warnings = append(warnings, fmt.Sprintf("pod %s: %s annotation, %s", ref, source.DefaultNetworkAnnotation, w))
	}
	if override != nil {
		elems = append(elems, *override)
	}
	selected, w, err := h.Policy.Networks(ref, ann[source.NetworksAnnotation])
	if err != nil {
		return nil, nil, err
	}
	for _, w := range w {
		warnings = append(warnings, fmt.Sprintf("pod %s: %s annotation, %s", ref, source.NetworksAnnotation, w))
	}
	return append(elems, selected...), warnings, nil
}

// validatePod refuses a pod whose annotations the agent would refuse at
// ADD. An update is checked only when it changes them (hot-plug), so that
// a pod admitted before the webhook can still be updated otherwise. A
// NAD that does not exist is allowed with a warning: it may be created
// after the pod (the agent's ADD fails, and the runtime retries it,
// until then).
func (h *Handler) validatePod(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return invalid("pod", err)
	}
	if h.system(req.Namespace) {
		return allow(nil)
	}
	if req.Operation == admissionv1.Update {
		var old corev1.Pod
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return invalid("old pod", err)
		}
		if sameSelection(old.Annotations, pod.Annotations) {
			return allow(nil)
		}
	}
	ref := podRef(req, &pod)
	elems, warnings, err := h.networks(ref, pod.Annotations)
	if err != nil {
		return deny(422, err)
	}
	for _, e := range elems {
		if _, err := h.getNAD(ctx, e.Namespace, e.Name); err != nil {
			warnings = append(warnings, missingNAD(ref, e.Key(), err))
		}
	}
	return allow(warnings)
}

func sameSelection(a, b map[string]string) bool {
	return a[source.NetworksAnnotation] == b[source.NetworksAnnotation] && a[source.DefaultNetworkAnnotation] == b[source.DefaultNetworkAnnotation]
}

func missingNAD(ref selection.PodRef, key string, err error) string {
	if errors.Is(err, source.ErrNotFound) {
		return fmt.Sprintf("pod %s: NetworkAttachmentDefinition %s does not exist; the pod's network setup fails until it is created", ref, key)
	}
	return fmt.Sprintf("pod %s: could not check NetworkAttachmentDefinition %s: %v", ref, key, err)
}

func (h *Handler) getNAD(ctx context.Context, namespace, name string) (string, error) {
	lctx, cancel := h.lookup(ctx)
	defer cancel()
	nad, err := h.NADs.GetNAD(lctx, namespace, name)
	if err != nil {
		return "", err
	}
	return resolve.ResourceName(nad)
}

// mutatePod adds to the pod's resource container one unit of each NAD's
// resource per network that selects it (the default-network override
// included: the agent gives it a device too), never lowering what the
// user set, and the Downward API volume. A pod whose annotations the
// agent refuses is left to validation; a NAD that does not exist or has
// an invalid resourceName adds nothing (warned). A NAD that cannot be
// looked up refuses the pod, for its creator to retry: admitted without
// its devices, it would be scheduled where its ADD can never succeed.
func (h *Handler) mutatePod(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return invalid("pod", err)
	}
	// A mirror pod only shows a static pod kubelet runs from its own
	// manifest: changing it would not change that pod.
	if _, mirror := pod.Annotations[source.MirrorPodAnnotation]; mirror || h.system(req.Namespace) {
		return allow(nil)
	}
	ref := podRef(req, &pod)
	elems, _, err := h.networks(ref, pod.Annotations)
	if err != nil || len(elems) == 0 {
		return allow(nil)
	}
	counts := map[corev1.ResourceName]int64{}
	var warnings []string
	for _, e := range elems {
		rn, err := h.getNAD(ctx, e.Namespace, e.Name)
		var confErr *resolve.ConfigError
		switch {
		case errors.Is(err, source.ErrNotFound):
			warnings = append(warnings, missingNAD(ref, e.Key(), err)+"; no device resource was added for it")
		case errors.As(err, &confErr):
			warnings = append(warnings, fmt.Sprintf("pod %s: no device resource added: %v", ref, err))
		case err != nil:
			return deny(503, fmt.Errorf("pod %s: look up NetworkAttachmentDefinition %s for its device resource: %w", ref, e.Key(), err))
		case rn != "":
			counts[corev1.ResourceName(rn)]++
		}
	}
	var patch []patchOp
	if len(counts) > 0 {
		i := 0
		if name := pod.Annotations[ResourceContainerAnnotation]; name != "" {
			if i = slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == name }); i < 0 {
				return deny(422, fmt.Errorf("pod %s: annotation %s names container %q, which the pod does not have", ref, ResourceContainerAnnotation, name))
			}
		}
		if i < len(pod.Spec.Containers) {
			if res, changed := withResources(pod.Spec.Containers[i].Resources, counts, othersRequest(pod.Spec.Containers, i)); changed {
				patch = append(patch, patchOp{Op: "add", Path: "/spec/containers/" + strconv.Itoa(i) + "/resources", Value: res})
			}
		}
	}
	if h.DownwardAPI {
		patch = append(patch, downwardAPI(&pod)...)
	}
	resp := allow(warnings)
	if len(patch) > 0 {
		data, err := json.Marshal(patch)
		if err != nil {
			return deny(500, fmt.Errorf("encode patch: %w", err))
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = data, &pt
	}
	return resp
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// withResources sets requests and limits of each resource to the
// largest of the user's request, the user's limit and what the count
// leaves to this container: the agent counts the devices of the whole pod,
// so what the pod's other containers request (others) is subtracted.
// Kubernetes wants request and limit equal for an extended resource, and
// what the user asked for stays.
func withResources(res corev1.ResourceRequirements, counts, others map[corev1.ResourceName]int64) (corev1.ResourceRequirements, bool) {
	out := *res.DeepCopy()
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	if out.Limits == nil {
		out.Limits = corev1.ResourceList{}
	}
	changed := false
	for name, n := range counts {
		have := requested(res, name)
		need := n - others[name]
		if need <= have {
			// Enough already; set the missing half of a request/limit pair
			// only if the user set the other.
			if have == 0 {
				continue
			}
			need = have
		}
		want := *resource.NewQuantity(need, resource.DecimalSI)
		for _, list := range []corev1.ResourceList{out.Requests, out.Limits} {
			if q, ok := list[name]; !ok || q.Cmp(want) != 0 {
				list[name] = want
				changed = true
			}
		}
	}
	return out, changed
}

// requested is the larger of a container's request and limit of name.
func requested(res corev1.ResourceRequirements, name corev1.ResourceName) int64 {
	var n int64
	for _, list := range []corev1.ResourceList{res.Requests, res.Limits} {
		if q, ok := list[name]; ok && q.Value() > n {
			n = q.Value()
		}
	}
	return n
}

// othersRequest sums what the containers other than the i-th request.
func othersRequest(containers []corev1.Container, i int) map[corev1.ResourceName]int64 {
	out := map[corev1.ResourceName]int64{}
	for j, c := range containers {
		if j == i {
			continue
		}
		names := map[corev1.ResourceName]bool{}
		for _, list := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
			for name := range list {
				names[name] = true
			}
		}
		for name := range names {
			out[name] += requested(c.Resources, name)
		}
	}
	return out
}

// downwardAPI adds the podnetinfo volume, unless the pod has a volume of
// that name, and mounts it in every container that mounts nothing at
// PodNetInfoPath.
func downwardAPI(pod *corev1.Pod) []patchOp {
	var patch []patchOp
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == PodNetInfoVolume }) {
		vol := corev1.Volume{Name: PodNetInfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}},
		}}}
		patch = append(patch, patchOp{Op: "add", Path: "/spec/volumes", Value: append(slices.Clone(pod.Spec.Volumes), vol)})
	}
	for i, c := range pod.Spec.Containers {
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == PodNetInfoPath }) {
			continue
		}
		mounts := append(slices.Clone(c.VolumeMounts), corev1.VolumeMount{Name: PodNetInfoVolume, MountPath: PodNetInfoPath, ReadOnly: true})
		patch = append(patch, patchOp{Op: "add", Path: "/spec/containers/" + strconv.Itoa(i) + "/volumeMounts", Value: mounts})
	}
	return patch
}
