package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/plexus-cni/plexus/internal/apiservertest"
)

const webhookUser = "system:serviceaccount:plexus-system:plexus-webhook"

// plexus-webhook as deploy/ ships it, against a real kube-apiserver: its
// ServiceAccount may do what its handlers and webhookcert need and no
// more, and re-applying deploy/ (server-side, forced, as
// applyKustomization does) keeps the caBundle the webhook set.
func TestWebhook(t *testing.T) {
	srv := apiservertest.Start(t)
	ctx := t.Context()
	admin := clientset(t, srv.Config(apiservertest.AdminToken))
	applyKustomization(ctx, t, srv, ".")

	// As webhookcert publishes it: a strategic merge patch by webhook
	// name, as its own field manager.
	ca := []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n")
	reg := admin.AdmissionregistrationV1()
	mutating := []string{"pods.mutate.plexus.io"}
	validating := []string{"pods.validate.plexus.io", "nads.validate.plexus.io"}
	opts := metav1.PatchOptions{FieldManager: "plexus-webhookcert"}
	if _, err := reg.MutatingWebhookConfigurations().Patch(ctx, "plexus-webhook", types.StrategicMergePatchType, caPatch(mutating, ca), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Patch(ctx, "plexus-webhook", types.StrategicMergePatchType, caPatch(validating, ca), opts); err != nil {
		t.Fatal(err)
	}
	applyKustomization(ctx, t, srv, ".")
	mwc, err := reg.MutatingWebhookConfigurations().Get(ctx, "plexus-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := reg.ValidatingWebhookConfigurations().Get(ctx, "plexus-webhook", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, w := range mwc.Webhooks {
		got[w.Name] = w.ClientConfig.CABundle
	}
	for _, w := range vwc.Webhooks {
		got[w.Name] = w.ClientConfig.CABundle
	}
	if len(got) != len(mutating)+len(validating) {
		t.Errorf("webhooks %v, want %v and %v", got, mutating, validating)
	}
	for _, n := range append(mutating, validating...) {
		if !bytes.Equal(got[n], ca) {
			t.Errorf("%s: caBundle %q after re-applying deploy/, want the webhook's %q", n, got[n], ca)
		}
	}

	for _, tc := range []struct {
		verb, group, resource, ns, name string
		allowed                         bool
	}{
		{"get", "k8s.cni.cncf.io", "network-attachment-definitions", "work", "net", true},
		{"list", "k8s.cni.cncf.io", "network-attachment-definitions", "", "", true},
		{"watch", "k8s.cni.cncf.io", "network-attachment-definitions", "", "", true},
		{"list", "", "pods", "", "", true},
		{"get", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "plexus-webhook", true},
		{"patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "plexus-webhook", true},
		{"get", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "plexus-webhook", true},
		{"patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "plexus-webhook", true},
		{"get", "", "secrets", systemNS, "plexus-webhook-tls", true},
		{"update", "", "secrets", systemNS, "plexus-webhook-tls", true},
		{"create", "", "secrets", systemNS, "", true},

		{"create", "k8s.cni.cncf.io", "network-attachment-definitions", "work", "", false},
		{"update", "k8s.cni.cncf.io", "network-attachment-definitions", "work", "net", false},
		{"watch", "", "pods", "", "", false},
		{"get", "", "pods", "work", "p", false},
		{"patch", "", "pods", "work", "p", false},
		{"patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "other", false},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "plexus-webhook", false},
		{"delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "plexus-webhook", false},
		{"list", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", false},
		{"get", "", "secrets", systemNS, "other", false},
		{"list", "", "secrets", systemNS, "", false},
		{"delete", "", "secrets", systemNS, "plexus-webhook-tls", false},
		{"get", "", "secrets", "kube-system", "plexus-webhook-tls", false},
		{"create", "", "secrets", "work", "", false},
	} {
		t.Run(fmt.Sprintf("%s %s %s/%s", tc.verb, tc.resource, tc.ns, tc.name), func(t *testing.T) {
			t.Parallel()
			sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User:   webhookUser,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNS, "system:authenticated"},
				ResourceAttributes: &authzv1.ResourceAttributes{
					Verb: tc.verb, Group: tc.group, Resource: tc.resource, Namespace: tc.ns, Name: tc.name,
				},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allowed {
				t.Errorf("allowed %t, want %t (%s)", sar.Status.Allowed, tc.allowed, sar.Status.Reason)
			}
		})
	}
}

// caPatch sets the caBundle of the named webhooks.
func caPatch(names []string, ca []byte) []byte {
	type clientConfig struct {
		CABundle []byte `json:"caBundle"`
	}
	type webhook struct {
		Name         string       `json:"name"`
		ClientConfig clientConfig `json:"clientConfig"`
	}
	var p struct {
		Webhooks []webhook `json:"webhooks"`
	}
	for _, n := range names {
		p.Webhooks = append(p.Webhooks, webhook{n, clientConfig{ca}})
	}
	data, _ := json.Marshal(p)
	return data
}
