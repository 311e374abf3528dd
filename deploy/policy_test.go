// Package deploy_test checks what deploy/ grants the agent, against a real
// kube-apiserver: the manifests kustomization.yaml lists, applied as an
// admin would, and the agent authenticated as kubelet would authenticate
// it (a service account token bound to its pod, which names the node).
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/apiservertest"
)

const (
	systemNS     = "plexus-system"
	workNS       = "work"
	nodeClaim    = "authentication.kubernetes.io/node-name"
	statusKey    = source.NetworkStatusAnnotation
	podsPolicy   = "plexus-agent-pods-own-node"
	eventsPolicy = "plexus-agent-events-own-node"
)

// refusal is a denial by one of deploy/'s admission policies.
type refusal struct{ policy, message string }

var (
	otherNode  = refusal{podsPolicy, "plexus-agent may modify only pods bound to its own node"}
	noClaimPod = refusal{podsPolicy, "plexus-agent needs a service account token bound to its pod"}
	notAPod    = refusal{eventsPolicy, "plexus-agent may create only Events about pods"}
	otherHost  = refusal{eventsPolicy, "plexus-agent may create only Events whose source host is its own node"}
	noClaimEv  = refusal{eventsPolicy, "plexus-agent needs a service account token bound to its pod"}
)

// matches reports whether err is this refusal: 403, from this policy, with
// this message. The message is the only place the API names the policy.
func (r refusal) matches(err error) bool {
	if !apierrors.IsForbidden(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "ValidatingAdmissionPolicy '"+r.policy+"'") && strings.Contains(msg, r.message)
}

// An agent writes only for its own node: it patches the pods bound to the
// node its token names and creates Events about pods from that node; a
// token without the node claim writes nothing; other users are unaffected.
// Reads stay cluster-wide (RBAC cannot narrow them; see rbac.yaml).
func TestAgentWritesOnlyForItsNode(t *testing.T) {
	srv := apiservertest.Start(t)
	ctx := t.Context()
	admin := clientset(t, srv.Config(apiservertest.AdminToken))
	applyKustomization(ctx, t, srv, ".")

	for _, n := range []string{"node-a", "node-b"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	agentA := agentClient(ctx, t, srv, admin, "node-a")
	agentB := agentClient(ctx, t, srv, admin, "node-b")
	static := clientset(t, srv.Config(apiservertest.AgentToken))
	createPod(ctx, t, admin, workNS, "on-a", "node-a", "")
	createPod(ctx, t, admin, workNS, "on-b", "node-b", "")
	createPod(ctx, t, admin, workNS, "unscheduled", "", "")

	// Policies take effect some time after they are created; RBAC alone
	// allows these, so until then they succeed.
	waitRefused(ctx, t, otherNode, func() error { return patchStatus(ctx, agentA, "on-b") })
	waitRefused(ctx, t, notAPod, func() error { return createEvent(ctx, agentA, nodeRef("node-b"), "node-a") })

	podRef := func(name string) corev1.ObjectReference {
		return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: workNS, Name: name}
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want *refusal
	}{
		{"A patches its node's pod", func() error { return patchStatus(ctx, agentA, "on-a") }, nil},
		{"B patches its node's pod", func() error { return patchStatus(ctx, agentB, "on-b") }, nil},
		{"A patches B's pod", func() error { return patchStatus(ctx, agentA, "on-b") }, &otherNode},
		{"B patches A's pod", func() error { return patchStatus(ctx, agentB, "on-a") }, &otherNode},
		{"A patches an unscheduled pod", func() error { return patchStatus(ctx, agentA, "unscheduled") }, &otherNode},
		{"token without node claim patches", func() error { return patchStatus(ctx, static, "on-a") }, &noClaimPod},
		{"admin patches any pod", func() error { return patchStatus(ctx, admin, "on-b") }, nil},
		{"A reports on a pod from its node", func() error { return createEvent(ctx, agentA, podRef("on-a"), "node-a") }, nil},
		// The policy cannot see where the pod is, only the Event.
		{"A reports on B's pod from its node", func() error { return createEvent(ctx, agentA, podRef("on-b"), "node-a") }, nil},
		{"A reports from B's node", func() error { return createEvent(ctx, agentA, podRef("on-b"), "node-b") }, &otherHost},
		{"A reports on a node", func() error { return createEvent(ctx, agentA, nodeRef("node-a"), "node-a") }, &notAPod},
		{"token without node claim reports", func() error { return createEvent(ctx, static, podRef("on-a"), "node-a") }, &noClaimEv},
		{"admin reports anything", func() error { return createEvent(ctx, admin, nodeRef("node-b"), "elsewhere") }, nil},
		{"A reads B's pod", func() error {
			_, err := agentA.CoreV1().Pods(workNS).Get(ctx, "on-b", metav1.GetOptions{})
			return err
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.do()
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("refused, want allowed: %v", err)
			case tc.want != nil && err == nil:
				t.Errorf("allowed, want refused by %s: %q", tc.want.policy, tc.want.message)
			case tc.want != nil && !tc.want.matches(err):
				t.Errorf("refused with %v, want 403 from %s: %q", err, tc.want.policy, tc.want.message)
			}
		})
	}
}

// applyKustomization server-side applies the files kustomization.yaml in
// dir lists, in its order, each with a server-side dry run first (as
// internal/cluster deploys). Without controllers the DaemonSets start no
// pods.
func applyKustomization(ctx context.Context, t *testing.T, srv *apiservertest.Server, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	cfg := srv.Config(apiservertest.AdminToken)
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		if err := apiservertest.ApplyFile(ctx, cfg, path, true); err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if err := apiservertest.ApplyFile(ctx, cfg, path, false); err != nil {
			t.Fatal(err)
		}
	}
}

// agentClient runs an agent pod on node (created directly: no kubelet, no
// controllers) and returns a client authenticated with a token bound to
// it, as the one kubelet projects into the agent's container.
func agentClient(ctx context.Context, t *testing.T, srv *apiservertest.Server, admin kubernetes.Interface, node string) kubernetes.Interface {
	t.Helper()
	pod := createPod(ctx, t, admin, systemNS, "plexus-agent-"+node, node, "plexus-agent")
	tr, err := admin.CoreV1().ServiceAccounts(systemNS).CreateToken(ctx, "plexus-agent", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{BoundObjectRef: &authnv1.BoundObjectReference{
			APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", pod.Name, err)
	}
	cs := clientset(t, srv.Config(tr.Status.Token))
	// The policy keys on this claim; without it every case below would
	// say only that the claim is missing.
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review for %s's token: %v", pod.Name, err)
	}
	u := review.Status.UserInfo
	if u.Username != apiservertest.AgentUser || !slices.Equal(u.Extra[nodeClaim], authnv1.ExtraValue{node}) {
		t.Fatalf("token bound to %s: user %q, %s %q; want %q, [%s]", pod.Name, u.Username, nodeClaim, u.Extra[nodeClaim], apiservertest.AgentUser, node)
	}
	return cs
}

func createPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name, node, sa string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "c", Image: "pause"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// patchStatus writes the network-status annotation as the agent does: a
// merge patch of the pod's metadata.
func patchStatus(ctx context.Context, cs kubernetes.Interface, pod string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		statusKey: fmt.Sprintf(`[{"name":"test","time":%q}]`, time.Now().Format(time.RFC3339Nano)),
	}}})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(workNS).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "plexus-agent"})
	return err
}

// createEvent creates an Event shaped like the agent's (agent/kube), in
// the namespace of what it is about (API validation wants "default" for a
// cluster-scoped object).
func createEvent(ctx context.Context, cs kubernetes.Interface, about corev1.ObjectReference, host string) error {
	ns := about.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := metav1.Now()
	_, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "test.", Namespace: ns},
		InvolvedObject: about,
		Reason:         "AddedInterface",
		Message:        "test",
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "plexus-agent", Host: host},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}, metav1.CreateOptions{})
	return err
}

func nodeRef(name string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: name}
}

// waitRefused retries do until it fails with want, to a deadline.
func waitRefused(ctx context.Context, t *testing.T, want refusal, do func() error) {
	t.Helper()
	const timeout = 60 * time.Second
	deadline := time.Now().Add(timeout)
	for {
		err := do()
		if want.matches(err) {
			return
		}
		if time.Now().After(deadline) {
			result := "allowed"
			if err != nil {
				result = err.Error()
			}
			t.Fatalf("policy %s not enforced after %s (is it in deploy/kustomization.yaml?): last result %s", want.policy, timeout, result)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
