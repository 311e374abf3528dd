package resolve_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/resolve"
)

// FuzzParse checks that the delegate config parser never panics and that
// whatever it accepts is usable: a name (A.3), a supported cniVersion, at
// least one plugin, and every plugin type a bare binary name. The seed
// corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, defaultName string) {
		list, err := resolve.Parse("ns/fuzz", data, defaultName)
		if err != nil {
			var cfgErr *resolve.ConfigError
			if !errors.As(err, &cfgErr) {
				t.Fatalf("error %v is a %T, not a *resolve.ConfigError", err, err)
			}
			if list != nil {
				t.Fatalf("Parse returned a list with error %v", err)
			}
			return
		}
		if list == nil {
			t.Fatal("Parse returned neither a list nor an error")
		}
		if list.Name == "" {
			t.Errorf("Parse(%q, %q) returned a list without a name", data, defaultName)
		}
		if !isSupported(list.CNIVersion) {
			t.Errorf("Parse(%q) returned unsupported cniVersion %q", data, list.CNIVersion)
		}
		if len(list.Plugins) == 0 {
			t.Errorf("Parse(%q) returned no plugins", data)
		}
		for i, p := range list.Plugins {
			if p == nil || p.Network == nil {
				t.Fatalf("Parse(%q) plugin %d is nil", data, i)
			}
			typ := p.Network.Type
			if typ == "" || typ == "." || typ == ".." || strings.ContainsAny(typ, "/\\\x00\n\t ") {
				t.Errorf("Parse(%q) plugin %d type %q is not a bare name", data, i, typ)
			}
		}
	})
}
