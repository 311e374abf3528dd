// Package plexus holds the versions of the outside software the tests and
// the cluster harness build against, read from the files that are their one
// source: versions.env (also sourced by tools/cluster/build-binaries.sh) and
// go.mod (also read by tools/cni-plugins.sh with `go list -m`). Embedding
// them works the same under go test and Bazel, with no runfiles to find.
package plexus

import (
	_ "embed"
	"fmt"
	"strings"
)

var (
	//go:embed versions.env
	versionsEnv string
	//go:embed go.mod
	goMod string
)

// Versions of the cluster binaries (versions.env) and of the reference CNI
// plugins (go.mod).
var (
	K8sVersion        = mustLookup(envValue, versionsEnv, "K8S_VERSION")
	EtcdVersion       = mustLookup(envValue, versionsEnv, "ETCD_VERSION")
	ContainerdVersion = mustLookup(envValue, versionsEnv, "CONTAINERD_VERSION")
	CNIPluginsVersion = mustLookup(requiredVersion, goMod, "github.com/containernetworking/plugins")
)

// mustLookup panics because the files are embedded at build time: a missing
// entry is a broken build, which versions_test.go catches.
func mustLookup(lookup func(text, key string) (string, bool), text, key string) string {
	v, ok := lookup(text, key)
	if !ok || v == "" {
		panic(fmt.Sprintf("plexus: no version for %s in the embedded files", key))
	}
	return v
}

// envValue returns the value of a NAME=value line; comments and blank lines
// are skipped, as the shell does when sourcing the file.
func envValue(text, name string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && k == name {
			return v, true
		}
	}
	return "", false
}

// requiredVersion returns the version go.mod requires of module, from a
// `require module version` line or a line of a require block.
func requiredVersion(text, module string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == module {
			return f[1], true
		}
	}
	return "", false
}
