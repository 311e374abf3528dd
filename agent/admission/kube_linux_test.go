package admission_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadtyped "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/typed/k8s.cni.cncf.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/plexus-cni/plexus/agent/admission"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/apiservertest"
)

// warnings collects the API server's Warning headers.
type warnings struct {
	mu   sync.Mutex
	text []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

func (w *warnings) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.Join(w.text, "\n")
	w.text = nil
	return s
}

// selects is the matchCondition both pod webhooks share: only pods that
// carry a selection are sent, so pods without one never depend on the
// webhook.
var selects = []admissionregistrationv1.MatchCondition{{Name: "selects-networks",
	Expression: `has(object.metadata.annotations) && ('` + source.NetworksAnnotation + `' in object.metadata.annotations || '` + source.DefaultNetworkAnnotation + `' in object.metadata.annotations)`}}

// TestKube registers the webhooks with a real kube-apiserver, as
// docs/webhook.md describes, and checks what it stores and refuses.
// startAPI starts a real kube-apiserver with the NAD CRD and the
// namespaces, and returns its admin config and clients made with warn as
// their WarningHandler (nil: client-go's default).
func startAPI(t *testing.T, warn rest.WarningHandler, namespaces ...string) (*apiservertest.Server, *rest.Config, kubernetes.Interface, nadtyped.K8sCniCncfIoV1Interface) {
	t.Helper()
	api := apiservertest.Start(t)
	ctx := context.Background()
	cfg := api.Config(apiservertest.AdminToken)
	if err := apiservertest.ApplyFile(ctx, cfg, "../../deploy/crds/network-attachment-definitions.yaml", false); err != nil {
		t.Fatal(err)
	}
	ccfg := rest.CopyConfig(cfg)
	if warn != nil {
		ccfg.WarningHandler = warn
	}
	kube := kubernetes.NewForConfigOrDie(ccfg)
	for _, ns := range namespaces {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return api, cfg, kube, nadclient.NewForConfigOrDie(ccfg).K8sCniCncfIoV1()
}

func TestKube(t *testing.T) {
	ctx := context.Background()
	seen := &warnings{}
	_, cfg, kube, nads := startAPI(t, seen, "apps", "shared", "other")
	waitFor(t, "the NAD CRD served", func() bool {
		_, err := nads.NetworkAttachmentDefinitions("apps").List(ctx, metav1.ListOptions{})
		return err == nil
	})

	ca := newTestCA(t)
	h := newHandler(nil)
	c := &admission.Cluster{Client: metadata.NewForConfigOrDie(cfg)}
	h.NADs, h.Pods, h.LookupTimeout = c, c, 2*time.Second
	url, srv, stop := startServer(t, h, ca)
	registerWebhooks(t, kube, url, ca.pem)

	nad := func(ns, name, config, resource string) error {
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}
		if resource != "" {
			n.Annotations = map[string]string{source.ResourceNameAnnotation: resource}
		}
		_, err := nads.NetworkAttachmentDefinitions(ns).Create(ctx, n, metav1.CreateOptions{})
		return err
	}
	const good = `{"cniVersion":"1.0.0","type":"macvlan","master":"eth0"}`
	// The webhooks take effect once the API server's informer has them.
	waitFor(t, "the NAD webhook", func() bool {
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "probe"}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: "{"}}
		_, err := nads.NetworkAttachmentDefinitions("apps").Create(ctx, n, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil
	})
	createPod := func(name string, annotations map[string]string) (*corev1.Pod, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		return kube.CoreV1().Pods("apps").Create(ctx, p, metav1.CreateOptions{})
	}
	waitFor(t, "the pod webhook", func() bool {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "probe", Annotations: map[string]string{source.NetworksAnnotation: "plain"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		p, err := kube.CoreV1().Pods("apps").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(p.Spec.Volumes) > 0
	})
	podCalls := func() uint64 {
		families, err := srv.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if f.GetName() == "plexus_admission_duration_seconds" && l.GetName() == "kind" && l.GetValue() == "Pod" {
						n += m.GetHistogram().GetSampleCount()
					}
				}
			}
		}
		return n
	}

	t.Run("NADs", func(t *testing.T) {
		for _, n := range []struct{ ns, name, config, resource string }{
			{"apps", "vf", good, "example.com/vf"}, {"apps", "plain", good, ""}, {"shared", "vf", good, "example.com/shared-vf"}, {"other", "secret", good, ""},
		} {
			if err := nad(n.ns, n.name, n.config, n.resource); err != nil {
				t.Fatalf("good NAD %s/%s refused: %v", n.ns, n.name, err)
			}
		}
		err := nad("apps", "bad", `{"cniVersion":"1.0.0","type":"/bin/sh"}`, "")
		if want := `network apps/bad: invalid delegate config, field "plugins[0].type": "/bin/sh" must be a plugin name, not a path`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NAD with a path type: %v, want %q", err, want)
		}
		if err := nad("apps", "badres", good, "sriov"); err == nil || !strings.Contains(err.Error(), `"sriov" is not an extended resource name`) {
			t.Errorf("NAD with a bad resourceName: %v", err)
		}
	})

	t.Run("mutation", func(t *testing.T) {
		p, err := createPod("injected", map[string]string{source.NetworksAnnotation: "vf,vf,plain,shared/vf"})
		if err != nil {
			t.Fatal(err)
		}
		res := p.Spec.Containers[0].Resources
		for _, r := range []struct {
			name string
			n    int64
		}{{"example.com/vf", 2}, {"example.com/shared-vf", 1}} {
			req, lim := res.Requests[corev1.ResourceName(r.name)], res.Limits[corev1.ResourceName(r.name)]
			if req.Value() != r.n || lim.Value() != r.n {
				t.Errorf("%s: stored requests %v, limits %v; want %d", r.name, res.Requests, res.Limits, r.n)
			}
		}
		if len(p.Spec.Volumes) == 0 || p.Spec.Volumes[0].Name != admission.PodNetInfoVolume || p.Spec.Volumes[0].DownwardAPI == nil {
			t.Errorf("stored volumes %+v", p.Spec.Volumes)
		}
		if m := p.Spec.Containers[0].VolumeMounts; len(m) == 0 || m[0].MountPath != admission.PodNetInfoPath {
			t.Errorf("stored mounts %+v", m)
		}
	})

	t.Run("pods without networks never call it", func(t *testing.T) {
		before := podCalls()
		p, err := createPod("plain", map[string]string{"x": "y"})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.Volumes) != 0 || podCalls() != before {
			t.Errorf("the webhook saw a pod without networks: volumes %+v, calls %d → %d", p.Spec.Volumes, before, podCalls())
		}
	})

	t.Run("validation", func(t *testing.T) {
		for _, tt := range []struct{ name, value string }{{"invalid", "vf@"}, {"forbidden", "other/secret"}} {
			_, err := createPod(tt.name, map[string]string{source.NetworksAnnotation: tt.value})
			_, _, agentErr := h.Policy.Networks(selection.PodRef{Namespace: "apps", Name: tt.name}, tt.value)
			if err == nil || !strings.Contains(err.Error(), agentErr.Error()) {
				t.Errorf("pod selecting %q: %v; want the agent's %q", tt.value, err, agentErr)
			}
		}
		seen.take()
		if _, err := createPod("early", map[string]string{source.NetworksAnnotation: "later"}); err != nil {
			t.Fatalf("pod selecting a NAD not created yet: %v", err)
		}
		if w := seen.take(); !strings.Contains(w, "NetworkAttachmentDefinition apps/later does not exist") {
			t.Errorf("warnings %q", w)
		}
	})

	t.Run("NAD delete warns", func(t *testing.T) {
		seen.take()
		if err := nads.NetworkAttachmentDefinitions("apps").Delete(ctx, "vf", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := seen.take(); !strings.Contains(w, "NetworkAttachmentDefinition apps/vf is still selected by pods apps/injected") {
			t.Errorf("warnings %q", w)
		}
	})

	t.Run("webhook down", func(t *testing.T) {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// Validation fails open: the agent checks again at ADD.
		if err := nad("apps", "unchecked", "{", ""); err != nil {
			t.Errorf("NAD creation with the webhook down: %v", err)
		}
		if _, err := createPod("no-networks", nil); err != nil {
			t.Errorf("pod without networks with the webhook down: %v", err)
		}
		// Injection fails closed, for networked pods only: admitted
		// without their devices they could never attach.
		if _, err := createPod("networked", map[string]string{source.NetworksAnnotation: "plain"}); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("networked pod with the webhook down: %v", err)
		}
	})
}

func registerWebhooks(t *testing.T, kube kubernetes.Interface, url string, caBundle []byte) {
	t.Helper()
	ctx := context.Background()
	none := admissionregistrationv1.SideEffectClassNone
	fail, ignore := admissionregistrationv1.Fail, admissionregistrationv1.Ignore
	timeout := int32(10)
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	// Pods of the system namespaces are never sent: the control plane
	// must not depend on the webhook.
	notSystem := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}}
	rule := func(group, resource string, ops ...admissionregistrationv1.OperationType) []admissionregistrationv1.RuleWithOperations {
		return []admissionregistrationv1.RuleWithOperations{{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: []string{resource}}}}
	}
	client := func(path string) admissionregistrationv1.WebhookClientConfig {
		u := url + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: caBundle}
	}
	v1 := []string{"v1"}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "plexus"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "pods.mutate.plexus.io", ClientConfig: client("/mutate"), Rules: rule("", "pods", admissionregistrationv1.Create),
			FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: v1,
			NamespaceSelector: notSystem, MatchConditions: selects, ReinvocationPolicy: &ifNeeded,
		}}}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "plexus"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "pods.validate.plexus.io", ClientConfig: client("/validate"), Rules: rule("", "pods", admissionregistrationv1.Create, admissionregistrationv1.Update),
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: v1,
			NamespaceSelector: notSystem, MatchConditions: selects,
		}, {
			Name: "nads.validate.plexus.io", ClientConfig: client("/validate"),
			Rules:         rule(nadv1.SchemeGroupVersion.Group, "network-attachment-definitions", admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete),
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: v1,
		}}}
	if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The command with --tls-secret, against a real kube-apiserver: its
// certificate manager creates the CA and serving certificate and fills
// the caBundle the webhooks were registered without, after which the API
// server calls it over TLS (a pod's device resources injected); the
// command stops with its context.
func TestRunManagedTLS(t *testing.T) {
	ctx := context.Background()
	api, _, kube, nads := startAPI(t, nil, "apps", "plexus-system")
	const res = "example.com/vf"
	waitFor(t, "the NAD CRD served", func() bool {
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "vf", Annotations: map[string]string{source.ResourceNameAnnotation: res}},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"1.0.0","type":"sriov"}`}}
		_, err := nads.NetworkAttachmentDefinitions("apps").Create(ctx, n, metav1.CreateOptions{})
		return err == nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	registerWebhooks(t, kube, "https://"+addr, nil)

	dir := t.TempDir()
	agentYAML := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(agentYAML, []byte("clusterNetwork: cluster\nkubernetes: {kubeconfig: "+api.Kubeconfig(t, apiservertest.AdminToken)+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- admission.Run(runCtx, []string{"--config", agentYAML, "--listen", addr, "--tls-secret", "plexus-webhook-tls",
			"--namespace", "plexus-system", "--webhook-configuration", "plexus", "--tls-extra-sans", "127.0.0.1"}, os.Stderr, os.Stderr)
	}()
	waitFor(t, "a pod's resources injected through the managed certificate", func() bool {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", Annotations: map[string]string{source.NetworksAnnotation: "vf,vf"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		p, err := kube.CoreV1().Pods("apps").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false
		}
		q := p.Spec.Containers[0].Resources.Limits[corev1.ResourceName(res)]
		return q.Value() == 2
	})
	secret, err := kube.CoreV1().Secrets("plexus-system").Get(ctx, "plexus-webhook-tls", metav1.GetOptions{})
	if err != nil || len(secret.Data[corev1.TLSCertKey]) == 0 {
		t.Errorf("the managed Secret: %v, %d bytes of certificate", err, len(secret.Data[corev1.TLSCertKey]))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("Run did not return within 15 s of its context ending")
	}
}

// With CacheNADs, GetNAD answers from the informer's cache once it has a
// NAD (so with the API server stopped, too), with its resourceName, and
// still finds a NAD the cache has not seen yet, live.
func TestCachedNADs(t *testing.T) {
	ctx := context.Background()
	api, cfg, _, nads := startAPI(t, nil, "apps")
	create := func(name string) {
		t.Helper()
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name, Annotations: map[string]string{source.ResourceNameAnnotation: "example.com/vf"}},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"1.0.0","type":"sriov"}`}}
		waitFor(t, "NAD "+name+" created", func() bool {
			_, err := nads.NetworkAttachmentDefinitions("apps").Create(ctx, n, metav1.CreateOptions{})
			return err == nil
		})
	}
	create("early")
	c := &admission.Cluster{Client: metadata.NewForConfigOrDie(cfg)}
	run, err := c.CacheNADs()
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Created after the informer started: found whether or not the
	// cache has it yet.
	create("late")
	if n, err := c.GetNAD(ctx, "apps", "late"); err != nil || n.Annotations[source.ResourceNameAnnotation] != "example.com/vf" {
		t.Fatalf("GetNAD of a NAD just created: %+v, %v", n, err)
	}
	// Once synced the cache has "early": with the API server stopped
	// only a cached NAD is found.
	waitFor(t, "the NAD cache synced", c.NADsSynced)
	api.StopAPIServer()
	if n, err := c.GetNAD(ctx, "apps", "early"); err != nil || n.Annotations[source.ResourceNameAnnotation] != "example.com/vf" {
		t.Errorf("GetNAD of a cached NAD with the API server stopped: %+v, %v", n, err)
	}
	getCtx, cancelGet := context.WithTimeout(ctx, 2*time.Second)
	defer cancelGet()
	if _, err := c.GetNAD(getCtx, "apps", "never"); err == nil || errors.Is(err, source.ErrNotFound) {
		t.Errorf("GetNAD of an uncached NAD with the API server stopped: %v, want a look-up error (not 'not found')", err)
	}
}
