package resolve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/source"
)

var supportedVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// wantConfigErr asserts err is a *resolve.ConfigError for network and field.
func wantConfigErr(t *testing.T, err error, network, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a *resolve.ConfigError with field %q", field)
	}
	var cfgErr *resolve.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("error %v (%T) is not a *resolve.ConfigError", err, err)
	}
	if cfgErr.Field != field {
		t.Errorf("ConfigError.Field = %q, want %q (error: %v)", cfgErr.Field, field, err)
	}
	if cfgErr.Network != network {
		t.Errorf("ConfigError.Network = %q, want %q", cfgErr.Network, network)
	}
	if !strings.Contains(err.Error(), network) {
		t.Errorf("error %q does not name the network %q", err, network)
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Errorf("error %q does not name the field %q", err, field)
	}
}

// pluginTypes returns the type of each plugin of list.
func pluginTypes(list *libcni.NetworkConfigList) []string {
	var out []string
	for _, p := range list.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		data        string
		defaultName string
		wantName    string
		wantVersion string
		wantTypes   []string
	}{
		{"conf", `{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"br0"}`, "",
			"net1", "1.0.0", []string{"bridge"}},
		{"conflist", `{"cniVersion":"0.4.0","name":"net1","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}`, "",
			"net1", "0.4.0", []string{"bridge", "portmap"}},
		// A.3: the NAD name is injected into a config without a name...
		{"conf without name", `{"cniVersion":"1.0.0","type":"macvlan"}`, "nadname",
			"nadname", "1.0.0", []string{"macvlan"}},
		{"conflist without name", `{"cniVersion":"1.0.0","plugins":[{"type":"macvlan"}]}`, "nadname",
			"nadname", "1.0.0", []string{"macvlan"}},
		{"conf with empty name", `{"cniVersion":"1.0.0","name":"","type":"macvlan"}`, "nadname",
			"nadname", "1.0.0", []string{"macvlan"}},
		// ...and a config with a name keeps it.
		{"conf keeps its name", `{"cniVersion":"1.0.0","name":"own","type":"macvlan"}`, "nadname",
			"own", "1.0.0", []string{"macvlan"}},
		{"conflist keeps its name", `{"cniVersion":"1.0.0","name":"own","plugins":[{"type":"macvlan"}]}`, "nadname",
			"own", "1.0.0", []string{"macvlan"}},
		{"whitespace around", " \n{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"type\":\"host-device\"}\n ", "",
			"n", "1.1.0", []string{"host-device"}},
		{"dotted type", `{"cniVersion":"1.1.0","name":"n","type":"my.plugin-v2"}`, "",
			"n", "1.1.0", []string{"my.plugin-v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := resolve.Parse("ns/nadname", []byte(tt.data), tt.defaultName)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if list.Name != tt.wantName {
				t.Errorf("Name = %q, want %q", list.Name, tt.wantName)
			}
			if list.CNIVersion != tt.wantVersion {
				t.Errorf("CNIVersion = %q, want %q", list.CNIVersion, tt.wantVersion)
			}
			if got := pluginTypes(list); fmt.Sprint(got) != fmt.Sprint(tt.wantTypes) {
				t.Errorf("plugin types = %v, want %v", got, tt.wantTypes)
			}
			// The bytes handed to libcni must carry the name too: libcni
			// reads them again when invoking.
			var head struct {
				Name       string `json:"name"`
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(list.Bytes, &head); err != nil {
				t.Fatalf("list.Bytes: %v", err)
			}
			if head.Name != tt.wantName || head.CNIVersion != tt.wantVersion {
				t.Errorf("list.Bytes has name %q cniVersion %q, want %q %q", head.Name, head.CNIVersion, tt.wantName, tt.wantVersion)
			}
		})
	}
}

// TestParseConfKeepsKeys: wrapping a single conf keeps the plugin's own keys.
func TestParseConfKeepsKeys(t *testing.T) {
	t.Parallel()
	list, err := resolve.Parse("n", []byte(`{"cniVersion":"1.0.0","type":"bridge","bridge":"br9","ipam":{"type":"host-local"},"capabilities":{"ips":true}}`), "dflt")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(list.Plugins) != 1 {
		t.Fatalf("got %d plugins, want 1", len(list.Plugins))
	}
	var p map[string]any
	if err := json.Unmarshal(list.Plugins[0].Bytes, &p); err != nil {
		t.Fatalf("plugin bytes: %v", err)
	}
	if p["bridge"] != "br9" {
		t.Errorf("plugin bridge = %v, want br9", p["bridge"])
	}
	if ipam, _ := p["ipam"].(map[string]any); ipam["type"] != "host-local" {
		t.Errorf("plugin ipam = %v, want type host-local", p["ipam"])
	}
	if !list.Plugins[0].Network.Capabilities["ips"] {
		t.Errorf("plugin capabilities = %v, want ips", list.Plugins[0].Network.Capabilities)
	}
	if list.Plugins[0].Network.IPAM.Type != "host-local" {
		t.Errorf("IPAM.Type = %q, want host-local", list.Plugins[0].Network.IPAM.Type)
	}
}

func TestParseSupportedVersions(t *testing.T) {
	t.Parallel()
	for _, v := range supportedVersions {
		for _, form := range []string{
			`{"cniVersion":%q,"name":"n","type":"bridge"}`,
			`{"cniVersion":%q,"name":"n","plugins":[{"type":"bridge"}]}`,
		} {
			data := fmt.Sprintf(form, v)
			list, err := resolve.Parse("n", []byte(data), "")
			if err != nil {
				t.Errorf("Parse(%s): %v", data, err)
				continue
			}
			if list.CNIVersion != v {
				t.Errorf("Parse(%s).CNIVersion = %q, want %q", data, list.CNIVersion, v)
			}
		}
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	const nw = "ns/net1"
	tests := []struct {
		name  string
		data  string
		field string
	}{
		{"not JSON", `cniVersion: 1.0.0`, ""},
		{"truncated JSON", `{"cniVersion":"1.0.0","name":"n","type":"bridge"`, ""},
		{"JSON null", `null`, ""},
		{"JSON list", `[{"cniVersion":"1.0.0","name":"n","type":"bridge"}]`, ""},
		{"JSON string", `"bridge"`, ""},
		{"trailing data", `{"cniVersion":"1.0.0","name":"n","type":"bridge"} {}`, ""},
		{"empty", ``, ""},
		{"name not a string", `{"cniVersion":"1.0.0","name":5,"type":"bridge"}`, "name"},
		{"name null", `{"cniVersion":"1.0.0","name":null,"type":"bridge"}`, "name"},
		{"missing cniVersion", `{"name":"n","type":"bridge"}`, "cniVersion"},
		{"empty cniVersion", `{"cniVersion":"","name":"n","type":"bridge"}`, "cniVersion"},
		{"numeric cniVersion", `{"cniVersion":1.0,"name":"n","type":"bridge"}`, "cniVersion"},
		{"unsupported cniVersion 0.5.0", `{"cniVersion":"0.5.0","name":"n","type":"bridge"}`, "cniVersion"},
		{"unsupported cniVersion 1.2.0", `{"cniVersion":"1.2.0","name":"n","type":"bridge"}`, "cniVersion"},
		{"unsupported cniVersion v1.0.0", `{"cniVersion":"v1.0.0","name":"n","type":"bridge"}`, "cniVersion"},
		{"unsupported cniVersion 1.0", `{"cniVersion":"1.0","name":"n","type":"bridge"}`, "cniVersion"},
		{"neither type nor plugins", `{"cniVersion":"1.0.0","name":"n"}`, "plugins"},
		{"empty plugins", `{"cniVersion":"1.0.0","name":"n","plugins":[]}`, "plugins"},
		{"null plugins", `{"cniVersion":"1.0.0","name":"n","plugins":null}`, "plugins"},
		{"plugins an object", `{"cniVersion":"1.0.0","name":"n","plugins":{"type":"bridge"}}`, "plugins"},
		{"plugins a string", `{"cniVersion":"1.0.0","name":"n","plugins":"bridge"}`, "plugins"},
		{"plugin not an object", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},"portmap"]}`, "plugins[1]"},
		{"plugin null", `{"cniVersion":"1.0.0","name":"n","plugins":[null]}`, "plugins[0]"},
		{"libcni rejects disableCheck", `{"cniVersion":"1.0.0","name":"n","disableCheck":"maybe","plugins":[{"type":"bridge"}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := resolve.Parse(nw, []byte(tt.data), "net1")
			if list != nil {
				t.Errorf("Parse returned a list with an error")
			}
			wantConfigErr(t, err, nw, tt.field)
		})
	}
}

func TestParseMissingNameWithoutDefault(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		`{"cniVersion":"1.0.0","type":"bridge"}`,
		`{"cniVersion":"1.0.0","name":"","plugins":[{"type":"bridge"}]}`,
	} {
		_, err := resolve.Parse("/etc/cni/net.d/x.conf", []byte(data), "")
		wantConfigErr(t, err, "/etc/cni/net.d/x.conf", "name")
	}
}

// TestParsePluginType: a plugin type must be a bare binary name; a path could
// run any binary on the host.
func TestParsePluginType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  any // JSON value of the second plugin's type; nil = key absent
	}{
		{"missing", nil},
		{"empty", ""},
		{"number", 5},
		{"object", map[string]any{"x": 1}},
		{"absolute path", "/usr/bin/evil"},
		{"relative path", "bin/evil"},
		{"parent path", "../evil"},
		{"dot", "."},
		{"dotdot", ".."},
		{"backslash", `..\evil`},
		{"trailing slash", "bridge/"},
		{"space", "bri dge"},
		{"tab", "bridge\t"},
		{"newline", "bridge\n"},
		{"NUL", "bridge\x00"},
		// Other whitespace and control characters.
		{"carriage return", "bridge\r"},
		{"vertical tab", "bridge\v"},
		{"form feed", "bridge\f"},
		{"control char", "bri\x01dge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			second := map[string]any{"bridge": "br0"}
			if tt.typ != nil {
				second["type"] = tt.typ
			}
			data, err := json.Marshal(map[string]any{
				"cniVersion": "1.0.0", "name": "n",
				"plugins": []any{map[string]any{"type": "bridge"}, second},
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = resolve.Parse("ns/n", data, "")
			wantConfigErr(t, err, "ns/n", "plugins[1].type")

			// The same type in a single conf is plugins[0].
			conf := map[string]any{"cniVersion": "1.0.0", "name": "n"}
			if tt.typ != nil {
				conf["type"] = tt.typ
				data, err := json.Marshal(conf)
				if err != nil {
					t.Fatal(err)
				}
				_, err = resolve.Parse("ns/n", data, "")
				wantConfigErr(t, err, "ns/n", "plugins[0].type")
			}
		})
	}
}

// TestParseCNIVersionsKey: libcni lets a "cniVersions" list override
// cniVersion. Whatever version Parse returns must be one it validated as
// supported.
func TestParseCNIVersionsKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
	}{
		{"unsupported version in cniVersions", `{"cniVersion":"1.0.0","cniVersions":["1.0.5"],"name":"n","plugins":[{"type":"bridge"}]}`},
		{"unsupported old version in cniVersions", `{"cniVersion":"0.1.0","cniVersions":["0.9.0"],"name":"n","plugins":[{"type":"bridge"}]}`},
		{"unsupported version in conf cniVersions", `{"cniVersion":"0.3.1","cniVersions":["0.3.5"],"name":"n","type":"bridge"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			list, err := resolve.Parse("ns/n", []byte(tt.data), "")
			if err != nil {
				var cfgErr *resolve.ConfigError
				if !errors.As(err, &cfgErr) {
					t.Fatalf("error %v is not a *resolve.ConfigError", err)
				}
				return
			}
			if !isSupported(list.CNIVersion) {
				t.Errorf("Parse(%s) succeeded with cniVersion %q, which is not a supported version", tt.data, list.CNIVersion)
			}
		})
	}
}

func isSupported(v string) bool {
	for _, s := range supportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

func TestParseOversized(t *testing.T) {
	t.Parallel()
	head := `{"cniVersion":"1.0.0","name":"n","type":"bridge","pad":"`
	tail := `"}`
	pad := strings.Repeat("x", resolve.MaxConfigSize-len(head)-len(tail))
	atLimit := head + pad + tail
	if len(atLimit) != resolve.MaxConfigSize {
		t.Fatalf("test config is %d bytes, want %d", len(atLimit), resolve.MaxConfigSize)
	}
	if _, err := resolve.Parse("n", []byte(atLimit), ""); err != nil {
		t.Errorf("Parse of a config of exactly MaxConfigSize: %v", err)
	}
	over := head + pad + "x" + tail
	_, err := resolve.Parse("n", []byte(over), "")
	wantConfigErr(t, err, "n", "")
}

// fakeNADs is an in-memory NADGetter keyed by "ns/name".
type fakeNADs map[string]*nadv1.NetworkAttachmentDefinition

func (f fakeNADs) GetNAD(_ context.Context, namespace, name string) (*nadv1.NetworkAttachmentDefinition, error) {
	nad, ok := f[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s: %w", namespace, name, source.ErrNotFound)
	}
	return nad, nil
}

func nad(namespace, name, config string, annotations map[string]string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: annotations},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: config},
	}
}

// writeConfDir writes files (name -> content) into a new temp dir.
func writeConfDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func conflist(name, typ string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":%q}]}`, name, typ)
}

func conf(name, typ string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"type":%q}`, name, typ)
}

// TestResolverNAD covers A.2 (spec.config, then a .conflist whose name
// matches, then a .conf), A.3 and A.16 (the status name is "ns/name").
func TestResolverNAD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		nad       *nadv1.NetworkAttachmentDefinition
		files     map[string]string
		wantName  string // list name
		wantTypes []string
		wantRes   string
	}{
		{
			name: "spec.config wins over files",
			nad:  nad("ns1", "net1", conflist("net1", "from-spec"), nil),
			files: map[string]string{
				"00-net1.conflist": conflist("net1", "from-conflist"),
				"00-net1.conf":     conf("net1", "from-conf"),
			},
			wantName: "net1", wantTypes: []string{"from-spec"},
		},
		{
			name:     "spec.config without a name gets the NAD name",
			nad:      nad("ns1", "net1", `{"cniVersion":"1.0.0","type":"macvlan"}`, nil),
			wantName: "net1", wantTypes: []string{"macvlan"},
		},
		{
			name:     "spec.config with its own name keeps it",
			nad:      nad("ns1", "net1", conf("other-name", "macvlan"), nil),
			wantName: "other-name", wantTypes: []string{"macvlan"},
		},
		{
			name: "empty spec.config: conflist beats a conf of the same name",
			nad:  nad("ns1", "net1", "", nil),
			files: map[string]string{
				// The .conf sorts first; the conflist still wins.
				"00-net1.conf":     conf("net1", "from-conf"),
				"99-net1.conflist": conflist("net1", "from-conflist"),
			},
			wantName: "net1", wantTypes: []string{"from-conflist"},
		},
		{
			name: "blank spec.config counts as empty",
			nad:  nad("ns1", "net1", " \n\t", nil),
			files: map[string]string{
				"10-net1.conflist": conflist("net1", "from-conflist"),
			},
			wantName: "net1", wantTypes: []string{"from-conflist"},
		},
		{
			name: "conf used when no conflist matches",
			nad:  nad("ns1", "net1", "", nil),
			files: map[string]string{
				"00-other.conflist": conflist("other", "from-other"),
				"50-net1.conf":      conf("net1", "from-conf"),
			},
			wantName: "net1", wantTypes: []string{"from-conf"},
		},
		{
			name: "json file counts as a conf",
			nad:  nad("ns1", "net1", "", nil),
			files: map[string]string{
				"50-net1.json": conf("net1", "from-json"),
			},
			wantName: "net1", wantTypes: []string{"from-json"},
		},
		{
			name: "match is by name, not file name",
			nad:  nad("ns1", "net1", "", nil),
			files: map[string]string{
				"net1.conflist":  conflist("not-net1", "wrong"),
				"other.conflist": conflist("net1", "right"),
			},
			wantName: "net1", wantTypes: []string{"right"},
		},
		{
			name: "unparsable unrelated files do not break resolution",
			nad:  nad("ns1", "net1", "", nil),
			files: map[string]string{
				"00-broken.conflist": `{"name":`,
				"01-broken.conf":     `not json at all`,
				"02-wrongtype.conf":  `{"name":5}`,
				"50-net1.conf":       conf("net1", "from-conf"),
				"README":             "not a config",
			},
			wantName: "net1", wantTypes: []string{"from-conf"},
		},
		{
			name:     "resource name from the NAD annotation",
			nad:      nad("ns1", "net1", conf("net1", "sriov"), map[string]string{source.ResourceNameAnnotation: "intel.com/sriov_net"}),
			wantName: "net1", wantTypes: []string{"sriov"}, wantRes: "intel.com/sriov_net",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &resolve.Resolver{
				NADs:    fakeNADs{tt.nad.Namespace + "/" + tt.nad.Name: tt.nad},
				ConfDir: writeConfDir(t, tt.files),
			}
			got, err := r.NAD(context.Background(), tt.nad.Namespace, tt.nad.Name)
			if err != nil {
				t.Fatalf("NAD: %v", err)
			}
			if want := tt.nad.Namespace + "/" + tt.nad.Name; got.Name != want {
				t.Errorf("Network.Name = %q, want %q", got.Name, want)
			}
			if got.Config == nil {
				t.Fatal("Network.Config is nil")
			}
			if got.Config.Name != tt.wantName {
				t.Errorf("Config.Name = %q, want %q", got.Config.Name, tt.wantName)
			}
			if types := pluginTypes(got.Config); fmt.Sprint(types) != fmt.Sprint(tt.wantTypes) {
				t.Errorf("plugin types = %v, want %v", types, tt.wantTypes)
			}
			if got.ResourceName != tt.wantRes {
				t.Errorf("ResourceName = %q, want %q", got.ResourceName, tt.wantRes)
			}
		})
	}
}

func TestResolverNADErrors(t *testing.T) {
	t.Parallel()
	t.Run("nothing matches", func(t *testing.T) {
		t.Parallel()
		r := &resolve.Resolver{
			NADs: fakeNADs{"ns1/net1": nad("ns1", "net1", "", nil)},
			ConfDir: writeConfDir(t, map[string]string{
				"00-other.conflist": conflist("other", "bridge"),
				"01-broken.conf":    `{`,
			}),
		}
		_, err := r.NAD(context.Background(), "ns1", "net1")
		if !errors.Is(err, source.ErrNotFound) {
			t.Fatalf("error %v does not wrap source.ErrNotFound", err)
		}
		for _, want := range []string{"ns1/net1", "01-broken.conf"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
	t.Run("no conf dir", func(t *testing.T) {
		t.Parallel()
		r := &resolve.Resolver{NADs: fakeNADs{"ns1/net1": nad("ns1", "net1", "", nil)}}
		_, err := r.NAD(context.Background(), "ns1", "net1")
		if !errors.Is(err, source.ErrNotFound) {
			t.Fatalf("error %v does not wrap source.ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "ns1/net1") {
			t.Errorf("error %q does not name the NAD", err)
		}
	})
	t.Run("conf dir does not exist", func(t *testing.T) {
		t.Parallel()
		r := &resolve.Resolver{
			NADs:    fakeNADs{"ns1/net1": nad("ns1", "net1", "", nil)},
			ConfDir: filepath.Join(t.TempDir(), "missing"),
		}
		_, err := r.NAD(context.Background(), "ns1", "net1")
		if !errors.Is(err, source.ErrNotFound) {
			t.Fatalf("error %v does not wrap source.ErrNotFound", err)
		}
	})
	t.Run("missing NAD", func(t *testing.T) {
		t.Parallel()
		r := &resolve.Resolver{NADs: fakeNADs{}, ConfDir: t.TempDir()}
		_, err := r.NAD(context.Background(), "ns1", "absent")
		if !errors.Is(err, source.ErrNotFound) {
			t.Fatalf("error %v does not wrap source.ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "ns1/absent") {
			t.Errorf("error %q does not name the NAD", err)
		}
	})
	t.Run("invalid spec.config", func(t *testing.T) {
		t.Parallel()
		r := &resolve.Resolver{NADs: fakeNADs{"ns1/net1": nad("ns1", "net1", `{"cniVersion":"1.0.0","type":"/bin/sh"}`, nil)}}
		_, err := r.NAD(context.Background(), "ns1", "net1")
		wantConfigErr(t, err, "ns1/net1", "plugins[0].type")
	})
	t.Run("matching file is invalid", func(t *testing.T) {
		t.Parallel()
		dir := writeConfDir(t, map[string]string{"10-net1.conflist": conflist("net1", "../evil")})
		r := &resolve.Resolver{NADs: fakeNADs{"ns1/net1": nad("ns1", "net1", "", nil)}, ConfDir: dir}
		_, err := r.NAD(context.Background(), "ns1", "net1")
		wantConfigErr(t, err, filepath.Join(dir, "10-net1.conflist"), "plugins[0].type")
	})
	t.Run("oversized unrelated file is skipped", func(t *testing.T) {
		t.Parallel()
		dir := writeConfDir(t, map[string]string{
			"00-huge.conflist": `{"name":"` + strings.Repeat("x", resolve.MaxConfigSize) + `"}`,
			"10-net1.conf":     conf("net1", "bridge"),
		})
		r := &resolve.Resolver{NADs: fakeNADs{"ns1/net1": nad("ns1", "net1", "", nil)}, ConfDir: dir}
		got, err := r.NAD(context.Background(), "ns1", "net1")
		if err != nil {
			t.Fatalf("NAD: %v", err)
		}
		if types := pluginTypes(got.Config); len(types) != 1 || types[0] != "bridge" {
			t.Errorf("plugin types = %v, want [bridge]", types)
		}
	})
}

func TestResolverConfNameAndFile(t *testing.T) {
	t.Parallel()
	dir := writeConfDir(t, map[string]string{
		"10-cluster.conflist": conflist("cluster", "flannel"),
		"20-single.conf":      conf("single", "bridge"),
		"30-noname.conf":      `{"cniVersion":"1.0.0","type":"bridge"}`,
	})
	r := &resolve.Resolver{ConfDir: dir}

	got, err := r.ConfName("cluster")
	if err != nil {
		t.Fatalf("ConfName(cluster): %v", err)
	}
	if got.Name != "cluster" || got.Config.Name != "cluster" {
		t.Errorf("ConfName(cluster) = name %q config %q, want cluster", got.Name, got.Config.Name)
	}
	if _, err := r.ConfName("absent"); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("ConfName(absent) error %v does not wrap source.ErrNotFound", err)
	}

	got, err = r.ConfFile(filepath.Join(dir, "20-single.conf"))
	if err != nil {
		t.Fatalf("ConfFile: %v", err)
	}
	if got.Name != "single" {
		t.Errorf("ConfFile name = %q, want single", got.Name)
	}
	p := filepath.Join(dir, "30-noname.conf")
	_, err = r.ConfFile(p)
	wantConfigErr(t, err, p, "name")
	if _, err := r.ConfFile(filepath.Join(dir, "absent.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ConfFile(absent) error %v does not wrap os.ErrNotExist", err)
	}
}

func TestConfigErrorMessage(t *testing.T) {
	t.Parallel()
	withField := (&resolve.ConfigError{Network: "ns/n", Field: "plugins[1].type", Reason: "bad"}).Error()
	for _, want := range []string{"ns/n", `"plugins[1].type"`, "bad"} {
		if !strings.Contains(withField, want) {
			t.Errorf("%q does not contain %q", withField, want)
		}
	}
	noField := (&resolve.ConfigError{Network: "ns/n", Reason: "bad"}).Error()
	if strings.Contains(noField, "field") {
		t.Errorf("%q mentions a field", noField)
	}
}

func TestResourceName(t *testing.T) {
	for _, tt := range []struct {
		value, want string
		bad         bool
	}{
		{value: "intel.com/sriov_net", want: "intel.com/sriov_net"},
		{value: "example.com/vf-1", want: "example.com/vf-1"},
		{value: "sriov", bad: true},
		{value: "intel.com/", bad: true},
		{value: "/sriov", bad: true},
		{value: "intel.com/sriov net", bad: true},
		{value: "a/b/c", bad: true},
		{value: "", bad: true},
	} {
		n := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "n",
			Annotations: map[string]string{source.ResourceNameAnnotation: tt.value}}}
		got, err := resolve.ResourceName(n)
		var ce *resolve.ConfigError
		if tt.bad != errors.As(err, &ce) || got != tt.want {
			t.Errorf("ResourceName(%q) = %q, %v; want %q, error %v", tt.value, got, err, tt.want, tt.bad)
		}
	}
	if got, err := resolve.ResourceName(&nadv1.NetworkAttachmentDefinition{}); got != "" || err != nil {
		t.Errorf("no annotation: %q, %v", got, err)
	}
}
