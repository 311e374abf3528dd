package migrate_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/migrate"
	"github.com/plexus-cni/plexus/agent/selection"
)

func defaults(c config.Config) *config.Config {
	c.SelectionMode = selection.Compatible
	c.Socket = config.DefaultSocket
	c.StateDir = config.DefaultStateDir
	if c.CNIConfDir == "" {
		c.CNIConfDir = config.DefaultCNIConfDir
	}
	if c.SystemNamespace == "" {
		c.SystemNamespace = "kube-system"
	}
	if c.SystemNamespaces == nil {
		c.SystemNamespaces = []string{"kube-system"}
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 64
	}
	c.PodResourcesSocket = config.DefaultPodResourcesSocket
	c.DeviceInfoDir = config.DefaultDeviceInfoDir
	c.Kubernetes.QPS, c.Kubernetes.Burst = 50, 100
	return &c
}

// Each sample migrates to an agent.yaml that config.Parse takes, without
// Multus aliases left in it, and every key it could not carry is named.
func TestFromMultus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file       string
		want       *config.Config
		notCarried []string
	}{
		{
			file: "daemon-config.json", // the thick plugin's daemon config
			want: defaults(config.Config{
				CNIConfDir:         "/etc/cni/net.d",
				BinDirs:            []string{"/opt/cni/bin"},
				ClusterNetwork:     "/etc/cni/net.d/10-flannel.conflist",
				SystemNamespace:    "kube-system",
				SystemNamespaces:   []string{"kube-system", "openshift-sdn"},
				NamespaceIsolation: true,
				GlobalNamespaces:   []string{"default"},
				MaxConcurrent:      32,
				HealthAddress:      ":9091",
				CNIConf:            &config.CNIConf{ReadinessIndicatorFile: "/run/flannel/subnet.env"},
			}),
			notCarried: []string{"chrootDir", "cniVersion", "logLevel", "logToStderr", "logFile", "cniDir", "socketDir", "perNodeCertificate"},
		},
		{
			file: "00-multus.conf", // written by the thin plugin's entrypoint
			want: defaults(config.Config{
				BinDirs:            []string{"/opt/cni/bin"},
				ClusterNetwork:     "cbr0",
				NamespaceIsolation: true,
				GlobalNamespaces:   []string{"default", "shared-nets"},
				CNIConf:            &config.CNIConf{ReadinessIndicatorFile: "/run/flannel/subnet.env"},
			}),
			notCarried: []string{"cniVersion", "name", "type", "capabilities", "logLevel", "logFile", "kubeconfig"},
		},
		{
			file: "00-multus.conflist",
			want: defaults(config.Config{
				ClusterNetwork: "k8s-pod-network",
				CNIConf:        &config.CNIConf{},
			}),
			notCarried: []string{"cniVersion", "name", "type", "capabilities", "logToStderr", "kubeconfig"},
		},
		{
			file: "handwritten-multus.conf", // docs/configuration.md's example
			want: defaults(config.Config{
				BinDirs:               []string{"/opt/cni/bin"},
				ClusterNetwork:        "/etc/cni/net.d/99-flannel.conf",
				AuxiliaryCNIChainName: "cni-chain-config",
				DefaultNetworks:       []string{"sidecarCRD", "exampleNetwork"},
				SystemNamespaces:      []string{"kube-system", "admin"},
				Kubernetes:            config.Kubernetes{Kubeconfig: "/etc/kubernetes/node-kubeconfig.yaml"},
				CNIConf:               &config.CNIConf{},
			}),
			notCarried: []string{"confDir", "cniDir", "logFile", "logLevel", "logOptions", "capabilities",
				"retryDeleteOnError", "delegates[0]", "name", "type", "cniVersion", "allowTryDeleteOnErr"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			res, err := migrate.FromMultus(data, tt.file)
			if err != nil {
				t.Fatalf("FromMultus: %v", err)
			}
			c, err := config.Parse(res.YAML, "migrated.yaml")
			if err != nil {
				t.Fatalf("config.Parse of the output: %v\n%s", err, res.YAML)
			}
			if c.Warnings != nil {
				t.Errorf("output still uses Multus keys: %q\n%s", c.Warnings, res.YAML)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("migrated config\n %+v\nwant\n %+v\n%s", c, tt.want, res.YAML)
			}
			got := map[string]bool{}
			for _, n := range res.Notes {
				if !n.Carried {
					got[n.Key] = true
				}
				if n.Msg == "" {
					t.Errorf("note for %s without a reason", n.Key)
				}
			}
			for _, k := range tt.notCarried {
				if !got[k] {
					t.Errorf("%s not reported as not carried; notes: %v", k, res.Notes)
				}
			}
			if len(got) != len(tt.notCarried) {
				t.Errorf("not carried %v, want %v", got, tt.notCarried)
			}
		})
	}
}

func TestFromMultusEdges(t *testing.T) {
	t.Parallel()
	// No cluster network named anywhere, the conflist generated: eth0
	// follows the primary, as in Multus' auto mode.
	res, err := migrate.FromMultus([]byte(`{"cniVersion": "0.3.1", "multusConfigFile": "auto", "cniConfigDir": "/host/etc/cni/net.d"}`), "d.json")
	if err != nil {
		t.Fatalf("FromMultus: %v", err)
	}
	if !hasNote(res, "clusterNetwork", true) {
		t.Errorf("no note on following the primary: %v", res.Notes)
	}
	if c, err := config.Parse(res.YAML, "out.yaml"); err != nil || c.ClusterNetwork != "" {
		t.Errorf("Parse of an output following the primary: %+v, %v", c, err)
	}
	// Nothing generated either: output the gap, fail nothing.
	res, err = migrate.FromMultus([]byte(`{"cniVersion": "0.3.1", "multusConfigFile": "/etc/cni/multus/00-multus.conf"}`), "d.json")
	if err != nil {
		t.Fatalf("FromMultus: %v", err)
	}
	if !hasNote(res, "clusterNetwork", false) {
		t.Errorf("no note on the missing clusterNetwork: %v", res.Notes)
	}
	if _, err := config.Parse(res.YAML, "out.yaml"); err == nil || !strings.Contains(err.Error(), "clusterNetwork") {
		t.Errorf("Parse of an output without a cluster network: %v", err)
	}
	// A user-provided conf: nothing to generate from, said so.
	res, err = migrate.FromMultus([]byte(`{"clusterNetwork": "c", "multusConfigFile": "/etc/multus/00-multus.conf"}`), "d.json")
	if err != nil {
		t.Fatalf("FromMultus: %v", err)
	}
	if !hasNote(res, "multusConfigFile", false) {
		t.Errorf("user-provided conf not reported: %v", res.Notes)
	}
	if c, err := config.Parse(res.YAML, "out.yaml"); err != nil || c.CNIConf != nil {
		t.Errorf("Parse = %+v, %v; want no cniConf", c, err)
	}
	// Two aliases for one key that disagree: the first kept, the other named.
	res, err = migrate.FromMultus([]byte(`{"clusterNetwork": "c", "cniConfigDir": "/etc/cni/net.d", "multusAutoconfigDir": "/etc/cni/other"}`), "d.json")
	if err != nil {
		t.Fatalf("FromMultus: %v", err)
	}
	if c, err := config.Parse(res.YAML, "out.yaml"); err != nil || c.CNIConfDir != "/etc/cni/net.d" || !hasNote(res, "multusAutoconfigDir", false) {
		t.Errorf("Parse = %+v, %v; notes %v", c, err, res.Notes)
	}
	// Extra inline delegates: named, not carried.
	res, err = migrate.FromMultus([]byte(`{"type": "multus", "delegates": [{"name": "cbr0", "type": "flannel"}, {"name": "side", "type": "macvlan"}]}`), "m.conf")
	if err != nil {
		t.Fatalf("FromMultus: %v", err)
	}
	if c, err := config.Parse(res.YAML, "out.yaml"); err != nil || c.ClusterNetwork != "cbr0" || !hasNote(res, "delegates[1]", false) {
		t.Errorf("Parse = %+v, %v; notes %v", c, err, res.Notes)
	}
	for _, bad := range []string{"", "{bad", "[]", `{"a": 1} {}`, `{"plugins": [{"type": "bridge"}]}`} {
		if _, err := migrate.FromMultus([]byte(bad), "bad.json"); err == nil || !strings.Contains(err.Error(), "bad.json") {
			t.Errorf("FromMultus(%q) = %v, want an error naming the file", bad, err)
		}
	}
}

func hasNote(res *migrate.Result, key string, carried bool) bool {
	for _, n := range res.Notes {
		if n.Key == key && n.Carried == carried {
			return true
		}
	}
	return false
}

func TestCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := migrate.Command([]string{"--from-multus", filepath.Join("testdata", "handwritten-multus.conf")}, &stdout, &stderr); err != nil {
		t.Fatalf("Command: %v", err)
	}
	if _, err := config.Parse(stdout.Bytes(), "stdout"); err != nil {
		t.Errorf("stdout does not parse: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"allowTryDeleteOnErr", "logOptions"} {
		if !strings.Contains(stderr.String(), "not carried "+k+":") {
			t.Errorf("stderr does not name %s:\n%s", k, stderr.String())
		}
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--from-multus", filepath.Join(dir, "missing.json")}, {"--from-multus", bad}, {}, {"--from-multus", bad, "extra"}} {
		stdout.Reset()
		if err := migrate.Command(args, &stdout, &stderr); err == nil {
			t.Errorf("Command(%q) succeeded", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("Command(%q) wrote %q to stdout", args, stdout.String())
		}
	}
	err := migrate.Command([]string{"--from-multus", filepath.Join(dir, "missing.json")}, &stdout, &stderr)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}
