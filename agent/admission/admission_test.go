package admission_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/plexus-cni/plexus/agent/admission"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

// fakeCluster serves NADs and pods from maps. A NAD named "hang" blocks
// until its context ends, as a hung API server would.
type fakeCluster struct {
	nads    map[string]string // ns/name → resourceName ("" for none)
	pods    []source.Pod
	podsErr error
	hang    bool
}

func (f *fakeCluster) GetNAD(ctx context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	if name == "hang" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	rn, ok := f.nads[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if rn != "" {
		nad.Annotations = map[string]string{source.ResourceNameAnnotation: rn}
	}
	return nad, nil
}

func (f *fakeCluster) ListPods(ctx context.Context) ([]source.Pod, error) {
	if f.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.pods, f.podsErr
}

func newHandler(c *fakeCluster) *admission.Handler {
	return &admission.Handler{
		Policy:           selection.Policy{Mode: selection.Compatible, SystemNamespace: "kube-system", NamespaceIsolation: true, GlobalNamespaces: []string{"shared"}},
		SystemNamespaces: []string{"kube-system"},
		DownwardAPI:      true,
		NADs:             c, Pods: c,
		LookupTimeout: 200 * time.Millisecond,
	}
}

var cluster = &fakeCluster{nads: map[string]string{
	"apps/vf":      "example.com/vf",
	"apps/vf2":     "example.com/vf2",
	"apps/plain":   "",
	"shared/vf":    "example.com/shared-vf",
	"apps/badres":  "no-domain",
	"other/secret": "example.com/vf",
}}

func rawObject(t *testing.T, obj any) runtime.RawExtension {
	t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: data}
}

type podOpt func(*corev1.Pod)

func networks(v string) podOpt { return annotation(source.NetworksAnnotation, v) }

func annotation(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func containers(names ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = nil
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "pause"})
		}
	}
}

func newPod(ns string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func podRequest(t *testing.T, op admissionv1.Operation, pod *corev1.Pod) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: op,
		Namespace: pod.Namespace, Name: pod.Name, Object: rawObject(t, pod)}
}

// mutated applies the response's patch to pod.
func mutated(t *testing.T, pod *corev1.Pod, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("refused: %v", resp.Result)
	}
	out := pod.DeepCopy()
	if len(resp.Patch) == 0 {
		return out
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", resp.PatchType)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.Apply(rawObject(t, pod).Raw)
	if err != nil {
		t.Fatalf("apply %s: %v", resp.Patch, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func quantities(list corev1.ResourceList) map[string]string {
	out := map[string]string{}
	for k, v := range list {
		out[string(k)] = v.String()
	}
	return out
}

func TestMutateResources(t *testing.T) {
	withRes := func(container int, req, lim map[string]string) podOpt {
		return func(p *corev1.Pod) {
			r := &p.Spec.Containers[container].Resources
			for _, x := range []struct {
				in  map[string]string
				out *corev1.ResourceList
			}{{req, &r.Requests}, {lim, &r.Limits}} {
				for k, v := range x.in {
					if *x.out == nil {
						*x.out = corev1.ResourceList{}
					}
					(*x.out)[corev1.ResourceName(k)] = resource.MustParse(v)
				}
			}
		}
	}
	for _, tt := range []struct {
		name      string
		pod       *corev1.Pod
		container int
		want      map[string]string // requests and limits alike
		others    map[string]string // of the other containers (default none)
		warning   string
	}{
		{name: "one", pod: newPod("apps", networks("vf")), want: map[string]string{"example.com/vf": "1"}},
		{name: "repeated selections count", pod: newPod("apps", networks("vf,vf@sriov2,plain,vf2")),
			want: map[string]string{"example.com/vf": "2", "example.com/vf2": "1"}},
		{name: "JSON form and another namespace", pod: newPod("apps", networks(`[{"name":"vf"},{"name":"vf","namespace":"shared"}]`)),
			want: map[string]string{"example.com/vf": "1", "example.com/shared-vf": "1"}},
		{name: "the override needs a device too", pod: newPod("apps", networks("vf"), annotation(source.DefaultNetworkAnnotation, "apps/vf")),
			want: map[string]string{"example.com/vf": "2"}},
		{name: "user's larger value kept, request = limit", pod: newPod("apps", networks("vf,vf"), withRes(0, nil, map[string]string{"example.com/vf": "3", "cpu": "1"})),
			want: map[string]string{"example.com/vf": "3"}},
		{name: "user's smaller value raised", pod: newPod("apps", networks("vf,vf"), withRes(0, map[string]string{"example.com/vf": "1"}, map[string]string{"example.com/vf": "1"})),
			want: map[string]string{"example.com/vf": "2"}},
		{name: "container annotation", pod: newPod("apps", networks("vf"), containers("sidecar", "app"), annotation(admission.ResourceContainerAnnotation, "app")),
			container: 1, want: map[string]string{"example.com/vf": "1"}},
		// The agent counts the pod's devices: what the other containers
		// request is subtracted, and nothing of theirs is changed.
		{name: "other containers' requests count", pod: newPod("apps", networks("vf,vf"), containers("a", "b"),
			withRes(0, nil, map[string]string{"example.com/vf": "1"}), withRes(1, map[string]string{"example.com/vf": "1"}, map[string]string{"example.com/vf": "1"})),
			want: map[string]string{"example.com/vf": "1"}, others: map[string]string{"example.com/vf": "1"}},
		{name: "other containers' requests not enough", pod: newPod("apps", networks("vf,vf,vf"), containers("a", "b"),
			withRes(1, map[string]string{"example.com/vf": "1"}, map[string]string{"example.com/vf": "1"})),
			want: map[string]string{"example.com/vf": "2"}, others: map[string]string{"example.com/vf": "1"}},
		{name: "other containers' requests suffice", pod: newPod("apps", networks("vf"), containers("a", "b"),
			withRes(1, map[string]string{"example.com/vf": "2"}, map[string]string{"example.com/vf": "2"})),
			want: map[string]string{}, others: map[string]string{"example.com/vf": "2"}},
		{name: "no resourceName", pod: newPod("apps", networks("plain")), want: map[string]string{}},
		{name: "missing NAD warned", pod: newPod("apps", networks("vf,nope")), want: map[string]string{"example.com/vf": "1"},
			warning: "NetworkAttachmentDefinition apps/nope does not exist"},
		{name: "invalid resourceName warned", pod: newPod("apps", networks("badres")), want: map[string]string{},
			warning: `"no-domain" is not an extended resource name`},
		{name: "system namespace left alone", pod: newPod("kube-system", networks("apps/vf")), want: map[string]string{}},
		{name: "mirror pod left alone", pod: newPod("apps", networks("vf"), annotation(source.MirrorPodAnnotation, "uid-of-the-static-pod")), want: map[string]string{}},
		{name: "invalid selection left to validation", pod: newPod("apps", networks("vf@")), want: map[string]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := newHandler(cluster).Mutate(context.Background(), podRequest(t, admissionv1.Create, tt.pod))
			got := mutated(t, tt.pod, resp)
			for i, c := range got.Spec.Containers {
				req, lim := quantities(c.Resources.Requests), quantities(c.Resources.Limits)
				delete(req, "cpu")
				delete(lim, "cpu")
				want := tt.others
				if want == nil {
					want = map[string]string{}
				}
				if i == tt.container {
					want = tt.want
				}
				if fmt.Sprint(req) != fmt.Sprint(want) || fmt.Sprint(lim) != fmt.Sprint(want) {
					t.Errorf("container %s: requests %v, limits %v; want %v", c.Name, req, lim, want)
				}
			}
			if _, ok := tt.pod.Spec.Containers[0].Resources.Limits["cpu"]; ok {
				if got := got.Spec.Containers[0].Resources.Limits["cpu"]; got.String() != "1" {
					t.Errorf("cpu limit %s, want the user's 1", got.String())
				}
			}
			if w := strings.Join(resp.Warnings, "\n"); !strings.Contains(w, tt.warning) || (tt.warning == "" && w != "") {
				t.Errorf("warnings %q, want %q", w, tt.warning)
			}
			// Idempotent, as reinvocation needs.
			if again := newHandler(cluster).Mutate(context.Background(), podRequest(t, admissionv1.Create, got)); len(again.Patch) != 0 {
				t.Errorf("second mutation patches again: %s", again.Patch)
			}
		})
	}
}

func TestMutateRefusals(t *testing.T) {
	t.Parallel()
	h := newHandler(cluster)
	resp := h.Mutate(context.Background(), podRequest(t, admissionv1.Create, newPod("apps", networks("vf"), annotation(admission.ResourceContainerAnnotation, "nope"))))
	if resp.Allowed || !strings.Contains(resp.Result.Message, `names container "nope"`) {
		t.Errorf("unknown resource container: %+v", resp.Result)
	}
	start := time.Now()
	resp = h.Mutate(context.Background(), podRequest(t, admissionv1.Create, newPod("apps", networks("hang"))))
	if resp.Allowed || resp.Result.Code != 503 || time.Since(start) > 2*time.Second {
		t.Errorf("hung NAD look-up: %+v after %s", resp.Result, time.Since(start))
	}
}

func TestMutateDownwardAPI(t *testing.T) {
	mount := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: admission.PodNetInfoVolume})
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: admission.PodNetInfoVolume, MountPath: admission.PodNetInfoPath}}
	}
	for _, tt := range []struct {
		name string
		off  bool
		pod  *corev1.Pod
		// mounted: every container mounts podnetinfo, once, and the pod
		// has that one volume.
		mounted bool
	}{
		{name: "added to every container", pod: newPod("apps", networks("plain"), containers("a", "b")), mounted: true},
		{name: "off", off: true, pod: newPod("apps", networks("plain"))},
		{name: "already there", pod: newPod("apps", networks("plain"), containers("a", "b"), mount), mounted: true},
		{name: "no selection, no mutation", pod: newPod("apps")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHandler(cluster)
			h.DownwardAPI = !tt.off
			got := mutated(t, tt.pod, h.Mutate(context.Background(), podRequest(t, admissionv1.Create, tt.pod)))
			if !tt.mounted {
				if len(got.Spec.Volumes) != 0 || len(got.Spec.Containers[0].VolumeMounts) != 0 {
					t.Errorf("mutated: %+v", got.Spec)
				}
				return
			}
			if len(got.Spec.Volumes) != 1 || got.Spec.Volumes[0].Name != admission.PodNetInfoVolume {
				t.Fatalf("volumes %+v", got.Spec.Volumes)
			}
			if len(tt.pod.Spec.Volumes) == 0 {
				if d := got.Spec.Volumes[0].DownwardAPI; d == nil || len(d.Items) != 1 || d.Items[0].Path != "annotations" || d.Items[0].FieldRef.FieldPath != "metadata.annotations" {
					t.Errorf("volume %+v", got.Spec.Volumes[0])
				}
			}
			for _, c := range got.Spec.Containers {
				n := 0
				for _, m := range c.VolumeMounts {
					if m.MountPath == admission.PodNetInfoPath && m.Name == admission.PodNetInfoVolume {
						n++
					}
				}
				if n != 1 || len(c.VolumeMounts) != 1 {
					t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
				}
			}
		})
	}
}

func TestValidatePod(t *testing.T) {
	ref := selection.PodRef{Namespace: "apps", Name: "p"}
	policy := newHandler(cluster).Policy
	agentError := func(value string) string {
		_, _, err := policy.Networks(ref, value)
		return err.Error()
	}
	for _, tt := range []struct {
		name    string
		pod     *corev1.Pod
		old     *corev1.Pod // an update from old
		strict  bool
		refusal string // "" allowed
		warning string
	}{
		{name: "valid", pod: newPod("apps", networks("vf,shared/vf"))},
		{name: "invalid interface", pod: newPod("apps", networks("vf@")), refusal: agentError("vf@")},
		{name: "malformed JSON", pod: newPod("apps", networks(`[{"name":`)), refusal: agentError(`[{"name":`)},
		{name: "huge annotation", pod: newPod("apps", networks(strings.Repeat("a", selection.MaxAnnotationSize+1))), refusal: "over the 262144 byte limit"},
		{name: "namespace isolation", pod: newPod("apps", networks("other/secret")),
			refusal: "pod apps/p: network selection names NetworkAttachmentDefinition other/secret of another namespace, which namespace isolation forbids (allowed: apps, shared)"},
		{name: "override isolation", pod: newPod("apps", annotation(source.DefaultNetworkAnnotation, "other/secret")),
			refusal: "pod apps/p: " + source.DefaultNetworkAnnotation + " names NetworkAttachmentDefinition other/secret of another namespace"},
		{name: "override of the system namespace", pod: newPod("apps", annotation(source.DefaultNetworkAnnotation, "calico")),
			warning: "NetworkAttachmentDefinition kube-system/calico does not exist"},
		{name: "compatible mode warns", pod: newPod("apps", networks(`[{"name":"vf","interfaceRequest":"eth5"}]`)),
			warning: `pod apps/p: k8s.v1.cni.cncf.io/networks annotation, network apps/vf, field "interfaceRequest": deprecated key read as "interface"`},
		{name: "strict mode refuses", strict: true, pod: newPod("apps", networks(`[{"name":"vf","interfaceRequest":"eth5"}]`)),
			refusal: `pod apps/p: invalid network selection for network "apps/vf", field "interfaceRequest": deprecated key; use "interface"`},
		{name: "missing NAD allowed with a warning", pod: newPod("apps", networks("vf,later")),
			warning: "pod apps/p: NetworkAttachmentDefinition apps/later does not exist; the pod's network setup fails until it is created"},
		{name: "hung look-up allowed with a warning", pod: newPod("apps", networks("hang")), warning: "could not check NetworkAttachmentDefinition apps/hang"},
		{name: "system namespace", pod: newPod("kube-system", networks("vf@"))},
		{name: "update keeping an invalid selection", old: newPod("apps", networks("vf@")), pod: newPod("apps", networks("vf@"), annotation("x", "y"))},
		{name: "update to an invalid selection", old: newPod("apps", networks("vf")), pod: newPod("apps", networks("vf@")), refusal: agentError("vf@")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHandler(cluster)
			if tt.strict {
				h.Policy.Mode = selection.Strict
			}
			req := podRequest(t, admissionv1.Create, tt.pod)
			if tt.old != nil {
				req.Operation, req.OldObject = admissionv1.Update, rawObject(t, tt.old)
			}
			resp := h.Validate(context.Background(), req)
			if tt.refusal == "" {
				if !resp.Allowed {
					t.Fatalf("refused: %s", resp.Result.Message)
				}
			} else if resp.Allowed || !strings.Contains(resp.Result.Message, tt.refusal) {
				t.Fatalf("got %+v, want a refusal %q", resp, tt.refusal)
			}
			if w := strings.Join(resp.Warnings, "\n"); !strings.Contains(w, tt.warning) || (tt.warning == "" && w != "") {
				t.Errorf("warnings %q, want %q", w, tt.warning)
			}
		})
	}
}

func nadRequest(t *testing.T, op admissionv1.Operation, config string, annotations map[string]string) *admissionv1.AdmissionRequest {
	nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "n", Annotations: annotations},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}
	req := &admissionv1.AdmissionRequest{UID: "u", Operation: op, Namespace: "apps", Name: "n",
		Kind: metav1.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"}}
	if op == admissionv1.Delete {
		req.OldObject = rawObject(t, nad)
	} else {
		req.Object = rawObject(t, nad)
	}
	return req
}

func TestValidateNAD(t *testing.T) {
	agentError := func(config string) string {
		_, err := resolve.Parse("apps/n", []byte(config), "n")
		return err.Error()
	}
	for _, tt := range []struct {
		name, config string
		resource     string
		refusal      string
	}{
		{name: "conf", config: `{"cniVersion":"1.0.0","type":"macvlan","master":"eth0"}`},
		{name: "conflist", config: `{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"bridge"},{"type":"tuning"}]}`},
		{name: "on-disk conf by name", config: ""},
		{name: "resource", config: `{"cniVersion":"1.0.0","type":"sriov"}`, resource: "intel.com/sriov"},
		{name: "not JSON", config: `{"cniVersion":`, refusal: agentError(`{"cniVersion":`)},
		{name: "type is a path", config: `{"cniVersion":"1.0.0","type":"/bin/sh"}`,
			refusal: `network apps/n: invalid delegate config, field "plugins[0].type": "/bin/sh" must be a plugin name, not a path`},
		{name: "type in a list is a path", config: `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"../x"}]}`,
			refusal: agentError(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"../x"}]}`)},
		{name: "unknown cniVersion", config: `{"cniVersion":"9.9.9","type":"bridge"}`, refusal: agentError(`{"cniVersion":"9.9.9","type":"bridge"}`)},
		{name: "bad resourceName", config: `{"cniVersion":"1.0.0","type":"sriov"}`, resource: "sriov",
			refusal: `network apps/n: invalid delegate config, field "metadata.annotations.k8s.v1.cni.cncf.io/resourceName": "sriov" is not an extended resource name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ann map[string]string
			if tt.resource != "" {
				ann = map[string]string{source.ResourceNameAnnotation: tt.resource}
			}
			for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
				resp := newHandler(cluster).Validate(context.Background(), nadRequest(t, op, tt.config, ann))
				if tt.refusal == "" && !resp.Allowed {
					t.Errorf("%s refused: %s", op, resp.Result.Message)
				}
				if tt.refusal != "" && (resp.Allowed || !strings.Contains(resp.Result.Message, tt.refusal)) {
					t.Errorf("%s: got %+v, want a refusal %q", op, resp.Result, tt.refusal)
				}
			}
		})
	}
}

func TestDeleteNAD(t *testing.T) {
	pods := []source.Pod{
		{Namespace: "apps", Name: "a", Annotations: map[string]string{source.NetworksAnnotation: "vf,n"}},
		{Namespace: "apps", Name: "b", Annotations: map[string]string{source.NetworksAnnotation: `[{"name":"n","interface":"x1"}]`}},
		{Namespace: "apps", Name: "c", Annotations: map[string]string{source.DefaultNetworkAnnotation: "apps/n"}},
		{Namespace: "apps", Name: "other", Annotations: map[string]string{source.NetworksAnnotation: "vf"}},
		{Namespace: "web", Name: "elsewhere", Annotations: map[string]string{source.NetworksAnnotation: "n"}},
		{Namespace: "apps", Name: "invalid", Annotations: map[string]string{source.NetworksAnnotation: "n@"}},
	}
	for _, tt := range []struct {
		name    string
		cluster *fakeCluster
		warning string
	}{
		{name: "selected", cluster: &fakeCluster{pods: pods}, warning: "NetworkAttachmentDefinition apps/n is still selected by pods apps/a, apps/b, apps/c: their new sandboxes will fail to attach it"},
		{name: "unused", cluster: &fakeCluster{pods: pods[3:]}},
		{name: "many", cluster: &fakeCluster{pods: slices.Repeat(pods[:1], 12)}, warning: "apps/a and 2 more"},
		{name: "list fails", cluster: &fakeCluster{podsErr: fmt.Errorf("forbidden")}, warning: "NetworkAttachmentDefinition apps/n: could not check which pods select it: forbidden"},
		{name: "list hangs", cluster: &fakeCluster{hang: true}, warning: "could not check which pods select it: context deadline exceeded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			resp := newHandler(tt.cluster).Validate(context.Background(), nadRequest(t, admissionv1.Delete, "", nil))
			if !resp.Allowed || time.Since(start) > 2*time.Second {
				t.Fatalf("got %+v after %s", resp, time.Since(start))
			}
			if w := strings.Join(resp.Warnings, "\n"); !strings.Contains(w, tt.warning) || (tt.warning == "" && w != "") {
				t.Errorf("warnings %q, want %q", w, tt.warning)
			}
		})
	}
}
