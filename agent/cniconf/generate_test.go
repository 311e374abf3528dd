package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/plexus-cni/plexus/internal/shimbin"
)

// plexusOut is the generated configuration as a test reads it back.
type plexusOut struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []struct {
		Type         string          `json:"type"`
		SocketPath   string          `json:"socketPath"`
		Capabilities map[string]bool `json:"capabilities"`
		Primary      string          `json:"plexus.primary"`
	} `json:"plugins"`
}

// parseOut checks data the way the runtime loads it (libcni) and decodes it.
func parseOut(t testing.TB, data []byte) plexusOut {
	t.Helper()
	out, err := decodeOut(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeOut(data []byte) (plexusOut, error) {
	var out plexusOut
	if len(data) == 0 {
		return out, errors.New("plexus configuration is empty")
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return out, fmt.Errorf("libcni rejects the plexus configuration: %w\n%s", err, data)
	}
	if len(list.Plugins) != 1 || list.Plugins[0].Network.Type != PluginType {
		return out, fmt.Errorf("plexus configuration has %d plugins, want one of type %q:\n%s", len(list.Plugins), PluginType, data)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("decode plexus configuration: %w", err)
	}
	return out, nil
}

// conflist returns a configuration list with one plugin per capability set.
func conflist(name, version string, caps ...map[string]bool) []byte {
	plugins := []map[string]any{}
	for i, c := range caps {
		p := map[string]any{"type": []string{"bridge", "portmap", "bandwidth", "tuning"}[i%4]}
		if c != nil {
			p["capabilities"] = c
		}
		plugins = append(plugins, p)
	}
	m := map[string]any{"name": name, "plugins": plugins}
	if version != "" {
		m["cniVersion"] = version
	}
	data, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return data
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	plexusList := []byte(`{"cniVersion":"1.0.0","name":"old","plugins":[{"type":"plexus"}]}`)
	valid := conflist("cluster", "1.0.0", nil)
	tests := []struct {
		name        string
		files       []File
		wantPrimary string // empty: not ready
		wantNetwork string
		wantVersion string
		wantCaps    map[string]bool
		wantSkipped []string
	}{
		{name: "empty directory"},
		{
			name:        "single conflist, capabilities are the union of the plugins' enabled ones",
			files:       []File{{Name: "10-flannel.conflist", Data: conflist("cbr0", "0.3.1", map[string]bool{"portMappings": true}, map[string]bool{"bandwidth": true, "ips": false}, nil)}},
			wantPrimary: "10-flannel.conflist", wantNetwork: "cbr0", wantVersion: "0.3.1",
			wantCaps: map[string]bool{"portMappings": true, "bandwidth": true},
		},
		{
			name:        "single plugin .conf",
			files:       []File{{Name: "10-bridge.conf", Data: []byte(`{"cniVersion":"0.4.0","name":"br","type":"bridge","capabilities":{"ips":true}}`)}},
			wantPrimary: "10-bridge.conf", wantNetwork: "br", wantVersion: "0.4.0", wantCaps: map[string]bool{"ips": true},
		},
		{
			name:        ".json counts as a single plugin configuration",
			files:       []File{{Name: "10-x.json", Data: []byte(`{"cniVersion":"1.0.0","name":"x","type":"ptp"}`)}},
			wantPrimary: "10-x.json", wantNetwork: "x", wantVersion: "1.0.0",
		},
		{
			name: "first by name wins whatever the input order",
			files: []File{
				{Name: "20-b.conflist", Data: conflist("b", "1.0.0", nil)},
				{Name: "10-a.conflist", Data: conflist("a", "1.0.0", nil)},
			},
			wantPrimary: "10-a.conflist", wantNetwork: "a", wantVersion: "1.0.0",
		},
		{
			name:        "our own file is never the primary even when it is not plexus-typed",
			files:       []File{{Name: DefaultFileName, Data: valid}},
			wantSkipped: nil,
		},
		{
			name: "plexus-typed configurations are never the primary",
			files: []File{
				{Name: DefaultFileName, Data: plexusList},
				{Name: "01-stale-plexus.conflist", Data: plexusList},
				{Name: "02-plexus.conf", Data: []byte(`{"cniVersion":"1.0.0","name":"p","type":"plexus"}`)},
				{Name: "03-chained.conflist", Data: []byte(`{"cniVersion":"1.0.0","name":"c","plugins":[{"type":"bridge"},{"type":"plexus"}]}`)},
				{Name: "10-calico.conflist", Data: valid},
			},
			wantPrimary: "10-calico.conflist", wantNetwork: "cluster", wantVersion: "1.0.0",
			wantSkipped: []string{"01-stale-plexus.conflist", "02-plexus.conf", "03-chained.conflist"},
		},
		{
			name: "only plexus configurations: not ready",
			files: []File{
				{Name: "01-stale-plexus.conflist", Data: plexusList},
			},
			wantSkipped: []string{"01-stale-plexus.conflist"},
		},
		{
			name: "invalid files are skipped for the next valid one",
			files: []File{
				{Name: "01-garbage.conflist", Data: []byte(`{"name":`)},
				{Name: "02-empty.conflist", Data: nil},
				{Name: "03-noname.conflist", Data: []byte(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`)},
				{Name: "04-noplugins.conflist", Data: []byte(`{"cniVersion":"1.0.0","name":"n"}`)},
				{Name: "05-emptyplugins.conflist", Data: []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[]}`)},
				{Name: "06-notype.conflist", Data: []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":""}]}`)},
				{Name: "07-notype.conf", Data: []byte(`{"cniVersion":"1.0.0","name":"n"}`)},
				{Name: "08-badversion.conflist", Data: conflist("n", "one", nil)},
				{Name: "09-tooold.conflist", Data: conflist("n", "0.0.9", nil)},
				{Name: "10-badcaps.conflist", Data: []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","capabilities":{"ips":"yes"}}]}`)},
				{Name: "11-array.conf", Data: []byte(`[1,2]`)},
				{Name: "12-unreadable.conf", Err: errors.New("permission denied")},
				{Name: "20-good.conflist", Data: valid},
			},
			wantPrimary: "20-good.conflist", wantNetwork: "cluster", wantVersion: "1.0.0",
			wantSkipped: []string{"01-garbage.conflist", "02-empty.conflist", "03-noname.conflist", "04-noplugins.conflist", "05-emptyplugins.conflist", "06-notype.conflist", "07-notype.conf", "08-badversion.conflist", "09-tooold.conflist", "10-badcaps.conflist", "11-array.conf", "12-unreadable.conf"},
		},
		{
			name: "other extensions are ignored",
			files: []File{
				{Name: "01-readme.txt", Data: valid},
				{Name: "02-backup.conflist.bak", Data: valid},
				{Name: "." + DefaultFileName + ".tmp-123", Data: valid},
			},
		},
		{
			name:        "newer than the shim supports declares 1.1.0",
			files:       []File{{Name: "10-a.conflist", Data: conflist("a", "1.2.0", nil)}},
			wantPrimary: "10-a.conflist", wantNetwork: "a", wantVersion: "1.1.0",
		},
		{
			name:        "an unlisted version declares the newest supported one below it",
			files:       []File{{Name: "10-a.conflist", Data: conflist("a", "0.3.2", nil)}},
			wantPrimary: "10-a.conflist", wantNetwork: "a", wantVersion: "0.3.1",
		},
		{
			name:        "missing cniVersion reads as 0.1.0, as libcni does",
			files:       []File{{Name: "10-a.conflist", Data: conflist("a", "", nil)}},
			wantPrimary: "10-a.conflist", wantNetwork: "a", wantVersion: "0.1.0",
		},
		{
			name:        "cniVersions: the newest counts",
			files:       []File{{Name: "10-a.conflist", Data: []byte(`{"cniVersion":"0.4.0","cniVersions":["1.1.0","1.0.0"],"name":"a","plugins":[{"type":"bridge"}]}`)}},
			wantPrimary: "10-a.conflist", wantNetwork: "a", wantVersion: "1.1.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := Generate(tt.files, Params{SocketPath: "/run/plexus/agent.sock"})
			var skipped []string
			for _, s := range res.Skipped {
				skipped = append(skipped, s.Name)
				if s.Reason == "" {
					t.Errorf("skipped %s without a reason", s.Name)
				}
			}
			if !slices.Equal(skipped, tt.wantSkipped) {
				t.Errorf("skipped %v, want %v", skipped, tt.wantSkipped)
			}
			if tt.wantPrimary == "" {
				if res.Conflist != nil || res.Primary != "" || res.NotReady == "" {
					t.Fatalf("want not ready with a reason, got primary %q, reason %q, conflist %s", res.Primary, res.NotReady, res.Conflist)
				}
				return
			}
			if res.Primary != tt.wantPrimary || res.PrimaryNetwork != tt.wantNetwork || res.NotReady != "" {
				t.Fatalf("primary %q network %q (not ready: %q), want %q network %q", res.Primary, res.PrimaryNetwork, res.NotReady, tt.wantPrimary, tt.wantNetwork)
			}
			out := parseOut(t, res.Conflist)
			if out.CNIVersion != tt.wantVersion || out.Name != NetworkName {
				t.Errorf("cniVersion %q name %q, want %q %q", out.CNIVersion, out.Name, tt.wantVersion, NetworkName)
			}
			p := out.Plugins[0]
			if p.SocketPath != "/run/plexus/agent.sock" || p.Primary != tt.wantPrimary {
				t.Errorf("socketPath %q plexus.primary %q", p.SocketPath, p.Primary)
			}
			if len(p.Capabilities) != len(tt.wantCaps) {
				t.Errorf("capabilities %v, want %v", p.Capabilities, tt.wantCaps)
			}
			for k := range tt.wantCaps {
				if !p.Capabilities[k] {
					t.Errorf("capabilities %v, want %v", p.Capabilities, tt.wantCaps)
				}
			}
		})
	}
}

// TestGenerateExactOutput pins the layout: stable bytes are what lets the
// Generator skip rewrites, and people read this file on nodes.
func TestGenerateExactOutput(t *testing.T) {
	t.Parallel()
	files := []File{{Name: "10-a.conflist", Data: conflist("a", "1.0.0", map[string]bool{"portMappings": true}, map[string]bool{"bandwidth": true})}}
	p := Params{SocketPath: "/run/plexus/agent.sock", ConnectTimeoutSeconds: 2, TimeoutSeconds: 60}
	want := `{
  "cniVersion": "1.0.0",
  "name": "plexus",
  "plugins": [
    {
      "type": "plexus",
      "socketPath": "/run/plexus/agent.sock",
      "connectTimeoutSeconds": 2,
      "timeoutSeconds": 60,
      "capabilities": {
        "bandwidth": true,
        "portMappings": true
      },
      "plexus.primary": "10-a.conflist"
    }
  ]
}
`
	for i := range 20 {
		got := Generate(files, p).Conflist
		if string(got) != want {
			t.Fatalf("run %d: got\n%s\nwant\n%s", i, got, want)
		}
	}
}

// TestSupportedVersionsMatchShim keeps the versions we declare in step with
// what the shim answers to VERSION.
func TestSupportedVersionsMatchShim(t *testing.T) {
	t.Parallel()
	r, err := shimbin.Run(t, map[string]string{"CNI_COMMAND": "VERSION"}, nil)
	if err != nil || r.Exit != 0 {
		t.Fatalf("shim VERSION: %v, exit %d: %s %s", err, r.Exit, r.Stdout, r.Stderr)
	}
	var info struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(r.Stdout, &info); err != nil {
		t.Fatalf("decode shim VERSION answer %q: %v", r.Stdout, err)
	}
	if !slices.Equal(info.SupportedVersions, supportedVersions) {
		t.Fatalf("shim supports %v, cniconf declares from %v", info.SupportedVersions, supportedVersions)
	}
}

func TestReadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-a.conflist", []byte("a"))
	write("20-b.conf", []byte("b"))
	write("notes.txt", []byte("ignored"))
	write("30-huge.json", bytes.Repeat([]byte(" "), maxConfSize+1))
	if err := os.Mkdir(filepath.Join(dir, "40-dir.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("10-a.conflist", filepath.Join(dir, "50-link.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing.conflist", filepath.Join(dir, "60-dangling.conflist")); err != nil {
		t.Fatal(err)
	}

	files, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]File{}
	var names []string
	for _, f := range files {
		got[f.Name] = f
		names = append(names, f.Name)
	}
	if want := []string{"10-a.conflist", "20-b.conf", "30-huge.json", "50-link.conflist"}; !slices.Equal(names, want) {
		t.Fatalf("read %v, want %v", names, want)
	}
	if string(got["10-a.conflist"].Data) != "a" || string(got["50-link.conflist"].Data) != "a" || string(got["20-b.conf"].Data) != "b" {
		t.Errorf("wrong content: %+v", files)
	}
	if got["30-huge.json"].Err == nil || got["30-huge.json"].Data != nil {
		t.Errorf("oversized file read without error")
	}

	if _, err := ReadDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: err %v, want ErrNotExist", err)
	}
}
