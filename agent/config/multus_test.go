package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/selection"
)

func TestParseMultusAliases(t *testing.T) {
	t.Parallel()
	// A Multus thick daemon's keys, as a Multus user would paste them.
	data := `{
		"clusterNetwork": "flannel",
		"multusNamespace": "net-system",
		"confDir": "/etc/cni/net.d",
		"cniConfigDir": "/etc/cni/net.d",
		"multusAutoconfigDir": "/etc/cni/net.d",
		"binDir": "/opt/cni/bin",
		"kubeconfig": "/etc/kubernetes/node.kubeconfig",
		"readinessindicatorfile": "/run/flannel/subnet.env",
		"multusConfigFile": "auto",
		"connectionLimit": 16,
		"metricsPort": 9091,
		"namespaceIsolation": true,
		"globalNamespaces": "default, shared"
	}`
	c, err := config.Parse([]byte(data), "daemon.json")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &config.Config{
		Socket:             config.DefaultSocket,
		StateDir:           config.DefaultStateDir,
		CNIConfDir:         "/etc/cni/net.d",
		BinDirs:            []string{"/opt/cni/bin"},
		ClusterNetwork:     "flannel",
		SelectionMode:      selection.Compatible,
		SystemNamespace:    "net-system",
		SystemNamespaces:   []string{"kube-system"},
		NamespaceIsolation: true,
		GlobalNamespaces:   []string{"default", "shared"},
		MaxConcurrent:      16,
		HealthAddress:      ":9091",
		PodResourcesSocket: config.DefaultPodResourcesSocket,
		DeviceInfoDir:      config.DefaultDeviceInfoDir,
		Kubernetes:         config.Kubernetes{Kubeconfig: "/etc/kubernetes/node.kubeconfig", QPS: 50, Burst: 100},
		CNIConf:            &config.CNIConf{ReadinessIndicatorFile: "/run/flannel/subnet.env"},
	}
	warnings := c.Warnings
	c.Warnings = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse =\n %+v\nwant\n %+v", c, want)
	}
	// One warning per alias, naming it and its Plexus key.
	for _, w := range []string{"multusNamespace", "confDir", "cniConfigDir", "multusAutoconfigDir", "binDir",
		"kubeconfig", "readinessindicatorfile", "multusConfigFile", "connectionLimit", "metricsPort", "globalNamespaces"} {
		n := 0
		for _, got := range warnings {
			if strings.HasPrefix(got, w+":") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings for %s in %q, want 1", n, w, warnings)
		}
	}
	if len(warnings) != 11 {
		t.Errorf("warnings %q, want 11", warnings)
	}
}

func TestParseMultusAliasYAML(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("clusterNetwork: c\nmultusNamespace: sys\ncniConf:\n  fileName: 01-x.conflist\nreadinessindicatorfile: /r\n"), "agent.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.SystemNamespace != "sys" || c.CNIConf == nil || c.CNIConf.FileName != "01-x.conflist" || c.CNIConf.ReadinessIndicatorFile != "/r" {
		t.Errorf("Parse = %+v (cniConf %+v)", c, c.CNIConf)
	}
	if len(c.Warnings) != 2 {
		t.Errorf("warnings %q, want 2", c.Warnings)
	}
}

// A file without Multus keys gets no warnings; an alias and its Plexus key
// set alike are accepted.
func TestParseMultusNoWarnings(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		"clusterNetwork: c\nglobalNamespaces: [a, b]\n",
		"clusterNetwork: c\nnamespaceIsolation: true\nsystemNamespaces: [kube-system]\n",
	} {
		c, err := config.Parse([]byte(data), "agent.yaml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		if c.Warnings != nil {
			t.Errorf("Parse(%q) warnings %q", data, c.Warnings)
		}
	}
	c, err := config.Parse([]byte("clusterNetwork: c\nsystemNamespace: sys\nmultusNamespace: sys\n"), "agent.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.SystemNamespace != "sys" || len(c.Warnings) != 1 {
		t.Errorf("Parse = %+v", c)
	}
}

func TestParseMultusRefused(t *testing.T) {
	t.Parallel()
	const cn = "clusterNetwork: cluster\n"
	tests := []struct {
		name string
		data string
		want []string // substrings the error must contain
	}{
		{"alias and Plexus key differ", cn + "systemNamespace: a\nmultusNamespace: b\n", []string{"multusNamespace", "systemNamespace"}},
		{"two aliases differ", cn + "cniConfigDir: /etc/cni/net.d\nconfDir: /etc/cni/multus/net.d\n", []string{"confDir", "cniConfigDir"}},
		{"nested alias differs", cn + "cniConf: {readinessIndicatorFile: /a}\nreadinessindicatorfile: /b\n", []string{"readinessindicatorfile", "cniConf.readinessIndicatorFile"}},
		{"kubeconfig differs", cn + "kubernetes: {kubeconfig: /a}\nkubeconfig: /b\n", []string{"kubeconfig", "kubernetes.kubeconfig"}},
		{"binDir and binDirs", cn + "binDirs: [/opt/cni/bin]\nbinDir: /usr/lib/cni\n", []string{"binDir", "binDirs"}},
		{"metricsPort and healthAddress", cn + "healthAddress: 127.0.0.1:9091\nmetricsPort: 9091\n", []string{"metricsPort", "healthAddress"}},
		{"user-provided multus conf", cn + "multusConfigFile: /tmp/00-multus.conf\n", []string{"multusConfigFile", "auto"}},
		{"bad connectionLimit", cn + "connectionLimit: 0\n", []string{"connectionLimit", "positive"}},
		{"connectionLimit not a number", cn + "connectionLimit: many\n", []string{"connectionLimit", "number"}},
		{"bad metricsPort", cn + "metricsPort: 70000\n", []string{"metricsPort", "port"}},
		{"logLevel", cn + "logLevel: debug\n", []string{"logLevel", "-v"}},
		{"every refused key named", cn + "logFile: /var/log/multus.log\nsocketDir: /run/multus\nchrootDir: /hostroot\nenablePprof: true\n",
			[]string{"logFile", "socketDir", "chrootDir", "enablePprof"}},
		{"delegates", cn + `delegates: [{"type": "flannel"}]` + "\n", []string{"delegates", "clusterNetwork"}},
		{"cniVersion", cn + "cniVersion: 0.3.1\n", []string{"cniVersion", "primary"}},
		{"perNodeCertificate", cn + "perNodeCertificate: {enabled: true}\n", []string{"perNodeCertificate", "ServiceAccount"}},
		// Converted aliases are still validated as Plexus keys.
		{"relative confDir", cn + "confDir: net.d\n", []string{"cniConfDir"}},
		{"bad multusNamespace", cn + "multusNamespace: Kube_System\n", []string{"Kube_System"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantParseErr(t, tt.data, tt.want...)
		})
	}
}

// Every table entry is either refused with a reason or names a Plexus key
// that the configuration accepts.
func TestMultusKeysTable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range config.MultusKeys {
		if seen[k.Key] {
			t.Errorf("%s: listed twice", k.Key)
		}
		seen[k.Key] = true
		if k.Refused() {
			if k.Note == "" {
				t.Errorf("%s: refused without a reason", k.Key)
			}
			continue
		}
		if !k.Same() && k.Note == "" && k.Convert != nil {
			t.Errorf("%s: converted without a note", k.Key)
		}
	}
	for _, k := range []string{"connectionLimit", "multusNamespace", "confDir", "binDir", "cniConfigDir", "readinessindicatorfile",
		"namespaceIsolation", "globalNamespaces", "clusterNetwork", "defaultNetworks", "systemNamespaces", "socketDir", "logLevel",
		"logFile", "logToStderr", "cniVersion", "multusConfigFile", "multusAutoconfigDir", "multusMasterCNI", "kubeconfig",
		"auxiliaryCNIChainName", "daemonSocketDir", "metricsPort", "perNodeCertificate", "chrootDir", "cniDir", "logOptions",
		"enablePprof", "retryDeleteOnError", "delegates", "capabilities", "forceCNIVersion", "overrideNetworkName"} {
		if !seen[k] {
			t.Errorf("Multus key %s missing from the table", k)
		}
	}
}
