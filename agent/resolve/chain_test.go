package resolve

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pluginTypes(t *testing.T, n *Network) []string {
	t.Helper()
	var out []string
	for _, p := range n.Config.Plugins {
		out = append(out, p.Network.Type)
	}
	// The stored bytes, which DEL reads back, hold the same chain.
	var raw struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(n.Config.Bytes, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Plugins) != len(out) {
		t.Errorf("Bytes hold %d plugins, the parsed list %d", len(raw.Plugins), len(out))
	}
	return out
}

// A .conflist's subdirectory chain (<dir>/<network name>/*.conf, by name)
// is appended after its own plugins, as libcni and Multus load it; a .conf
// and a list with loadOnlyInlinedPlugins get none.
func TestConfBytesSubdirectoryChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cluster", "20-tuning.conf"), `{"type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.arp_filter":"1"}}`)
	writeFile(t, filepath.Join(dir, "cluster", "10-portmap.conf"), `{"type":"portmap","capabilities":{"portMappings":true}}`)
	writeFile(t, filepath.Join(dir, "cluster", "ignored.json"), `{"type":"nope"}`)
	r := &Resolver{ConfDir: dir}
	tests := []struct {
		name, file, data string
		want             []string
	}{
		{"conflist", "10-cluster.conflist", `{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge"}]}`, []string{"bridge", "portmap", "tuning"}},
		{"inlined only", "10-cluster.conflist", `{"cniVersion":"1.0.0","name":"cluster","loadOnlyInlinedPlugins":true,"plugins":[{"type":"bridge"}]}`, []string{"bridge"}},
		{"conf", "10-cluster.conf", `{"cniVersion":"1.0.0","name":"cluster","type":"bridge"}`, []string{"bridge"}},
		{"no subdirectory", "10-other.conflist", `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}`, []string{"bridge"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := r.ConfBytes(filepath.Join(dir, tt.file), []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if got := pluginTypes(t, n); !slices.Equal(got, tt.want) {
				t.Errorf("plugins %v, want %v", got, tt.want)
			}
		})
	}
}

// A broken chained plugin fails the network instead of being dropped; a
// network name that is not a plain name never becomes a path.
func TestConfBytesBadChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cluster", "10-bad.conf"), `{"type":"../../bin/sh"}`)
	r := &Resolver{ConfDir: dir}
	var cerr *ConfigError
	if _, err := r.ConfBytes(filepath.Join(dir, "10-cluster.conflist"), []byte(`{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge"}]}`)); !errors.As(err, &cerr) {
		t.Errorf("chain with a path as type: %v, want a ConfigError", err)
	}
	if _, err := ChainPlugins(dir, "../etc"); !errors.As(err, &cerr) {
		t.Errorf("chain name ../etc: %v, want a ConfigError", err)
	}
}
