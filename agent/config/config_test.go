package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/podresources"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/devinfo"
)

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		"clusterNetwork: kube-system/cluster\n",
		`{"clusterNetwork": "kube-system/cluster"}`,
		"\n\n  clusterNetwork: kube-system/cluster  \n\n",
	} {
		c, err := config.Parse([]byte(data), "test.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		want := &config.Config{
			Socket:             config.DefaultSocket,
			StateDir:           config.DefaultStateDir,
			CNIConfDir:         config.DefaultCNIConfDir,
			ClusterNetwork:     "kube-system/cluster",
			SystemNamespace:    "kube-system",
			SystemNamespaces:   []string{"kube-system"},
			SelectionMode:      selection.Compatible,
			MaxConcurrent:      64,
			PodResourcesSocket: "/var/lib/kubelet/pod-resources/kubelet.sock",
			DeviceInfoDir:      "/var/run/k8s.cni.cncf.io/devinfo",
			Kubernetes:         config.Kubernetes{QPS: 50, Burst: 100},
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) =\n %+v\nwant\n %+v", data, c, want)
		}
	}
}

func TestParseAllKeys(t *testing.T) {
	t.Parallel()
	data := `
socket: /run/x/agent.sock
stateDir: /var/lib/x
cniConfDir: /etc/x/net.d
binDirs: [/opt/cni/bin, /usr/libexec/cni]
clusterNetwork: /etc/cni/net.d/10-flannel.conflist
defaultNetworks: [ns1/net1, net2]
systemNamespace: sys
systemNamespaces: [kube-system, sys]
namespaceIsolation: true
globalNamespaces: [default, shared]
selectionMode: strict
maxConcurrent: 8
podResourcesSocket: /run/kubelet/pr.sock
deviceInfoDir: /run/devinfo
local:
  manifestsDir: /etc/plexus/manifests
`
	c, err := config.Parse([]byte(data), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &config.Config{
		Socket:             "/run/x/agent.sock",
		StateDir:           "/var/lib/x",
		CNIConfDir:         "/etc/x/net.d",
		BinDirs:            []string{"/opt/cni/bin", "/usr/libexec/cni"},
		ClusterNetwork:     "/etc/cni/net.d/10-flannel.conflist",
		DefaultNetworks:    []string{"ns1/net1", "net2"},
		SystemNamespace:    "sys",
		SystemNamespaces:   []string{"kube-system", "sys"},
		NamespaceIsolation: true,
		GlobalNamespaces:   []string{"default", "shared"},
		SelectionMode:      selection.Strict,
		MaxConcurrent:      8,
		PodResourcesSocket: "/run/kubelet/pr.sock",
		DeviceInfoDir:      "/run/devinfo",
		Kubernetes:         config.Kubernetes{QPS: 50, Burst: 100},
		Local:              &config.Local{ManifestsDir: "/etc/plexus/manifests"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse =\n %+v\nwant\n %+v", c, want)
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	const cn = "clusterNetwork: cluster\n"
	tests := []struct {
		name    string
		data    string
		wantSub string // a substring naming what is wrong
	}{
		{"empty", "", "clusterNetwork"},
		{"clusterNetwork missing", "socket: /run/a.sock\n", "clusterNetwork"},
		{"clusterNetwork empty", `clusterNetwork: ""`, "clusterNetwork"},
		{"unknown key", cn + "bogus: 1\n", "bogus"},
		{"unknown nested key", cn + "local:\n  manifestsDir: /m\n  extra: 1\n", "extra"},
		{"duplicate key", cn + "clusterNetwork: other\n", "clusterNetwork"},
		{"wrong type", cn + "maxConcurrent: many\n", "maxConcurrent"},
		{"not YAML", "clusterNetwork: [unclosed\n", ""},
		{"relative socket", cn + "socket: run/agent.sock\n", "socket"},
		{"relative stateDir", cn + "stateDir: var/lib/plexus\n", "stateDir"},
		{"relative cniConfDir", cn + "cniConfDir: ./net.d\n", "cniConfDir"},
		{"relative podResourcesSocket", cn + "podResourcesSocket: kubelet.sock\n", "podResourcesSocket"},
		{"relative deviceInfoDir", cn + "deviceInfoDir: devinfo\n", "deviceInfoDir"},
		{"relative binDir", cn + "binDirs: [/opt/cni/bin, bin]\n", "binDirs"},
		{"relative manifestsDir", cn + "local:\n  manifestsDir: manifests\n", "local.manifestsDir"},
		{"empty manifestsDir", cn + "local: {}\n", "local.manifestsDir"},
		{"bad systemNamespace", cn + "systemNamespace: Kube_System\n", "Kube_System"},
		{"bad systemNamespaces", cn + "systemNamespaces: [kube-system, -bad]\n", "-bad"},
		{"empty systemNamespaces entry", cn + "systemNamespaces: ['']\n", `""`},
		{"bad globalNamespaces", cn + "globalNamespaces: [UPPER]\n", "UPPER"},
		{"long globalNamespace", cn + "globalNamespaces: [" + strings.Repeat("a", 64) + "]\n", strings.Repeat("a", 64)},
		{"unknown selectionMode", cn + "selectionMode: lenient\n", "selectionMode"},
		{"negative maxConcurrent", cn + "maxConcurrent: -1\n", "maxConcurrent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantParseErr(t, tt.data, tt.wantSub)
		})
	}
}

// wantParseErr asserts Parse refuses data, returning no config and an error
// that names the file and contains each of subs.
func wantParseErr(t *testing.T, data string, subs ...string) {
	t.Helper()
	const file = "/etc/plexus/agent.yaml"
	c, err := config.Parse([]byte(data), file)
	if err == nil {
		t.Fatalf("Parse(%q) = %+v, want an error", data, c)
	}
	if c != nil {
		t.Errorf("Parse returned a config with an error")
	}
	for _, s := range append([]string{file}, subs...) {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte("clusterNetwork: cluster\nmaxConcurrent: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.ClusterNetwork != "cluster" || c.MaxConcurrent != 3 || c.Socket != config.DefaultSocket {
		t.Errorf("Load = %+v", c)
	}
	_, err = config.Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

// The defaults are the paths the packages that use them document.
func TestDefaultsAgree(t *testing.T) {
	t.Parallel()
	if config.DefaultPodResourcesSocket != podresources.DefaultSocket {
		t.Errorf("podResourcesSocket default %s, podresources.DefaultSocket %s", config.DefaultPodResourcesSocket, podresources.DefaultSocket)
	}
	if config.DefaultDeviceInfoDir != devinfo.DefaultRoot {
		t.Errorf("deviceInfoDir default %s, devinfo.DefaultRoot %s", config.DefaultDeviceInfoDir, devinfo.DefaultRoot)
	}
}
