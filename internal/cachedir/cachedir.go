// Package cachedir names the directory where tools/ and the tests keep what
// they build once and reuse: the reference CNI plugins, the cluster
// binaries, the shim. tools/*.sh use the same rule.
package cachedir

import (
	"os"
	"path/filepath"
)

// Dir is $PLEXUS_CACHE, else ~/.cache/plexus.
func Dir() string {
	if d := os.Getenv("PLEXUS_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "plexus")
}
