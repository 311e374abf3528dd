//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/internal/cluster"
)

// plexus-webhook (docs/webhook.md) as deployed from deploy/: in front of
// every networked pod of this suite. These tests check what it adds to a
// pod and what it refuses, through the API as kubectl uses it.

// A pod selecting two NADs of the fake VF resource, with no resources
// section: the webhook requests two devices, kubelet allocates them, and
// each interface gets one of them.
func TestAdmissionInjectsDevices(t *testing.T) {
	fakeVFPool(t)
	ns := namespace(t, "e2e-adm-dev")
	vfNAD(t, ns, "vfa", true)
	vfNAD(t, ns, "vfb", false)
	createPod(t, podSpec(ns, "injected", map[string]string{networksAnnot: "vfa,vfb"}))
	waitRunning(t, ns, "injected", runningWithin)
	p, st := waitStatus(t, ns, "injected", 3)

	c := p.Spec.Containers[0]
	for what, list := range map[string]corev1.ResourceList{"request": c.Resources.Requests, "limit": c.Resources.Limits} {
		if q := list[fakeResource]; q.Value() != 2 {
			t.Errorf("container %s: %s of %s %s, want 2 (injected)", c.Name, what, fakeResource, q.String())
		}
	}
	if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "podnetinfo" && v.DownwardAPI != nil }) {
		t.Errorf("no podnetinfo Downward API volume: %+v", p.Spec.Volumes)
	}
	alloc := podResources(t, p)[c.Name]
	devs := strings.Split(containerEnv(t, p, c.Name, fakeEnv), ",")
	if len(alloc) != 2 || !slices.Equal(slices.Sorted(slices.Values(devs)), alloc) {
		t.Fatalf("PodResources says %v, the container's %s is %v", alloc, fakeEnv, devs)
	}
	for i, ifname := range []string{"net1", "net2"} {
		if r := readRecord(t, ifname); r.DeviceID != devs[i] {
			t.Errorf("%s: delegate got deviceID %q, want %q (position %d of %s)", ifname, r.DeviceID, devs[i], i, fakeEnv)
		}
		if e := st[i+1]; e.Interface != ifname || e.DeviceInfo == nil || e.DeviceInfo.Pci == nil || e.DeviceInfo.Pci.PciAddress != devs[i] {
			t.Errorf("%s: network-status %+v, want device-info pci %s", ifname, e, devs[i])
		}
	}
	ifs, _ := podInterfaces(t, p)
	for _, ifname := range []string{"eth0", "net1", "net2"} {
		if _, ok := ifs[ifname]; !ok {
			t.Errorf("no %s in the pod's namespace: %v", ifname, ifs)
		}
	}
	deletePodsAndWait(t, ctxFor(t, time.Minute), ns)
}

// A typo in a pod's networks annotation is refused at create, with the
// message the agent would give at ADD; nothing is created.
func TestAdmissionRefusesBadSelection(t *testing.T) {
	ns := namespace(t, "e2e-adm-pod")
	nad(t, ns, "br", bridgeNAD(cluster.LinkPrefix+"-adm", "10.57.0.0/24", false), nil)
	policy := agentPolicy(t)
	for _, tc := range []struct{ name, networks string }{
		{"json-typo", `[{"name":"br"`},
		{"bad-ifname", "br@net/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The agent's own words for it.
			_, _, want := policy.Networks(selection.PodRef{Namespace: ns, Name: tc.name}, tc.networks)
			if want == nil {
				t.Fatalf("the agent accepts %q", tc.networks)
			}
			manifest := `apiVersion: v1
kind: Pod
metadata:
  name: ` + tc.name + `
  namespace: ` + ns + `
  annotations:
    k8s.v1.cni.cncf.io/networks: '` + tc.networks + `'
spec:
  containers: [{name: app, image: ` + podImage + `, imagePullPolicy: Never}]
`
			stderr := kubectlApplyRefused(t, manifest)
			for _, part := range []string{`admission webhook "pods.validate.plexus.io" denied the request`, want.Error()} {
				if !strings.Contains(stderr, part) {
					t.Errorf("kubectl apply's stderr %q, want it to contain %q", stderr, part)
				}
			}
			if _, err := env.cs.CoreV1().Pods(ns).Get(ctxFor(t, 10*time.Second), tc.name, metav1.GetOptions{}); err == nil {
				t.Errorf("pod %s/%s exists after the refusal", ns, tc.name)
			}
		})
	}
}

// A NAD the agent would not parse is refused at create.
func TestAdmissionRefusesBadNAD(t *testing.T) {
	ns := namespace(t, "e2e-adm-nad")
	manifest := `apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: bad
  namespace: ` + ns + `
spec:
  config: '{"cniVersion":"1.0.0","name":"bad","type":"/bin/sh"}'
`
	stderr := kubectlApplyRefused(t, manifest)
	for _, part := range []string{`admission webhook "nads.validate.plexus.io" denied the request`,
		`network ` + ns + `/bad: invalid delegate config`, `"/bin/sh" must be a plugin name, not a path`} {
		if !strings.Contains(stderr, part) {
			t.Errorf("kubectl apply's stderr %q, want it to contain %q", stderr, part)
		}
	}
	if _, err := env.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Get(ctxFor(t, 10*time.Second), "bad", metav1.GetOptions{}); err == nil {
		t.Errorf("NAD %s/bad exists after the refusal", ns)
	}
}

// kubectlApplyRefused runs `kubectl apply -f -` with manifest, as a user
// would, wants it to fail, and returns its stderr.
func kubectlApplyRefused(t *testing.T, manifest string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.c.K8sBinDir, "kubectl"), "--kubeconfig", env.c.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("kubectl apply succeeded, want a refusal: %s", stdout.String())
	}
	return stderr.String()
}

// agentPolicy is the selection policy of the agent's configuration as
// deployed (the ConfigMap the agent and the webhook both read).
func agentPolicy(t *testing.T) selection.Policy {
	t.Helper()
	cm, err := env.cs.CoreV1().ConfigMaps("plexus-system").Get(ctxFor(t, 10*time.Second), "plexus-agent-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(cm.Data["agent.yaml"]), "agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.SelectionPolicy()
}

// withoutPodValidation switches plexus-webhook's pod validation off until
// the test ends (its matchCondition made false), for a test of what the
// agent does with a pod the webhook would refuse, and waits until the API
// server admits probe (a dry run), then, at cleanup, until it refuses it
// again.
func withoutPodValidation(t *testing.T, probe *corev1.Pod) {
	t.Helper()
	const webhook = "pods.validate.plexus.io"
	setExpression := func(expr func(old string) string) string {
		var was string
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ctx := ctxFor(t, 10*time.Second)
			cfgs := env.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
			vwc, err := cfgs.Get(ctx, "plexus-webhook", metav1.GetOptions{})
			if err != nil {
				return err
			}
			i := slices.IndexFunc(vwc.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool { return w.Name == webhook })
			if i < 0 || len(vwc.Webhooks[i].MatchConditions) != 1 {
				t.Fatalf("ValidatingWebhookConfiguration plexus-webhook: no %s with one matchCondition", webhook)
			}
			mc := &vwc.Webhooks[i].MatchConditions[0]
			was, mc.Expression = mc.Expression, expr(mc.Expression)
			_, err = cfgs.Update(ctx, vwc, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return was
	}
	// Another name: a dry run of a pod that exists fails whatever the
	// webhook says.
	probe = probe.DeepCopy()
	probe.Name += "-dry-run"
	admitted := func() bool {
		_, err := env.cs.CoreV1().Pods(probe.Namespace).Create(ctxFor(t, 10*time.Second), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil
	}
	waitAdmitted := func(want bool) {
		deadline := time.Now().Add(30 * time.Second)
		for admitted() != want {
			if time.Now().After(deadline) {
				t.Fatalf("pod validation switched (admitted %t) not in effect after 30 s", want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	orig := setExpression(func(string) string { return "false" })
	t.Cleanup(func() {
		setExpression(func(string) string { return orig })
		waitAdmitted(false)
	})
	waitAdmitted(true)
}
