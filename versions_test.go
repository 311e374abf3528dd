package plexus

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The shell and Go read versions.env each its own way: they must agree.
func TestVersionsEnvAsTheShellReadsIt(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("versions.env"); err != nil {
		t.Fatalf("versions.env is not beside the test (Bazel: a data dependency): %v", err)
	}
	out, err := exec.Command("bash", "-c", `set -eu; . ./versions.env; printf '%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$CONTAINERD_VERSION"`).Output()
	if err != nil {
		t.Fatalf("source versions.env: %v", err)
	}
	got := strings.Fields(string(out))
	want := []string{K8sVersion, EtcdVersion, ContainerdVersion}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("bash reads %q, Go reads %q", got, want)
	}
}

// tools/cni-plugins.sh asks the go command; Go parses go.mod itself.
func TestCNIPluginsVersionAsGoListReadsIt(t *testing.T) {
	t.Parallel()
	if os.Getenv("TEST_SRCDIR") != "" {
		// Bazel's sandbox has neither the module nor a usable go command;
		// tools/test.sh runs this test under go test, where both must be.
		t.Skip("under Bazel: runs under go test (tools/test.sh)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go command: %v", err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/containernetworking/plugins").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != CNIPluginsVersion {
		t.Errorf("go list reads %q, Go reads %q", got, CNIPluginsVersion)
	}
}

func TestLookups(t *testing.T) {
	t.Parallel()
	env := "# K8S_VERSION=v0.0.0\n\nK8S_VERSION=v1.2.3\nETCD_VERSION=\n"
	mod := "module x\n\nrequire a.example/b v1.0.0\n\nrequire (\n\tc.example/d v2.1.0 // indirect\n)\n"
	tests := []struct {
		name   string
		lookup func(text, key string) (string, bool)
		text   string
		key    string
		want   string
		wantOK bool
	}{
		{"env value after a commented one", envValue, env, "K8S_VERSION", "v1.2.3", true},
		{"env empty value", envValue, env, "ETCD_VERSION", "", true},
		{"env missing", envValue, env, "CONTAINERD_VERSION", "", false},
		{"one-line require", requiredVersion, mod, "a.example/b", "v1.0.0", true},
		{"require block", requiredVersion, mod, "c.example/d", "v2.1.0", true},
		{"module prefix is not the module", requiredVersion, mod, "a.example", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := tt.lookup(tt.text, tt.key)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("lookup(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
