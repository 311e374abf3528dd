package cluster

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The overlay renders with kubectl's kustomize: deploy/'s agent config
// with the cluster's network and isolation, the runtime's directories in
// the state dir, everything else as shipped.
func TestWriteOverlay(t *testing.T) {
	kubectl := filepath.Join(DefaultConfig().K8sBinDir, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		msg := "kubectl not built; run tools/cluster/build-binaries.sh kubectl"
		if os.Getenv("PLEXUS_REQUIRE_ROOT_TESTS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := Open(Config{StateDir: t.TempDir()})
	dir, err := c.WriteOverlay(copyTree(t, "../../deploy"), OverlayOptions{NamespaceIsolation: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	var agentYAML string
	var ds *appsv1.DaemonSet
	var webhook *appsv1.Deployment
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var head struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		switch {
		case head.Kind == "ConfigMap" && head.Metadata.Name == "plexus-agent-config":
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			agentYAML = cm.Data["agent.yaml"]
		case head.Kind == "Deployment" && head.Metadata.Name == "plexus-webhook":
			webhook = &appsv1.Deployment{}
			if err := yaml.Unmarshal([]byte(doc), webhook); err != nil {
				t.Fatal(err)
			}
		case head.Kind == "DaemonSet" && head.Metadata.Name == "plexus-agent":
			ds = &appsv1.DaemonSet{}
			if err := yaml.Unmarshal([]byte(doc), ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(agentYAML), &cfg); err != nil || ds == nil {
		t.Fatalf("agent.yaml %q (%v), DaemonSet found: %t", agentYAML, err, ds != nil)
	}
	if _, set := cfg["clusterNetwork"]; set || cfg["namespaceIsolation"] != true || cfg["socket"] != "/run/plexus/agent.sock" {
		t.Errorf("agent.yaml: %v", cfg)
	}
	paths := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			paths[v.Name] = v.HostPath.Path
		}
	}
	for name, want := range map[string]string{"cni-conf": c.CNIConfDir(), "cni-bin": c.CNIBinDir(),
		"pod-resources": filepath.Join(c.KubeletRootDir(), "pod-resources"), "run": "/run/plexus", "netns": "/var/run/netns"} {
		if paths[name] != want {
			t.Errorf("volume %s: hostPath %q, want %q", name, paths[name], want)
		}
	}
	env := map[string]string{}
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != "127.0.0.1" || env["KUBERNETES_SERVICE_PORT"] != "16443" || env["NODE_NAME"] != "" {
		t.Errorf("env %v", env)
	}
	// The webhook, in the pod network, reaches the API server at the
	// bridge's address under a name of its certificate.
	if webhook == nil {
		t.Fatal("no plexus-webhook Deployment")
	}
	spec := webhook.Spec.Template.Spec
	env = map[string]string{}
	for _, e := range spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["KUBERNETES_SERVICE_HOST"] != "kubernetes.default.svc" || env["KUBERNETES_SERVICE_PORT"] != "16443" ||
		len(spec.HostAliases) != 1 || spec.HostAliases[0].IP != PrimaryGateway || spec.Volumes[0].ConfigMap.Name != "plexus-agent-config" {
		t.Errorf("webhook env %v, host aliases %+v", env, spec.HostAliases)
	}
}

// copyTree copies the files under src into a temp dir, following symlinks:
// kustomize does not load a base whose files are links, as Bazel's
// runfiles are.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
