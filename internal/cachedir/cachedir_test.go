package cachedir

import (
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	t.Setenv("PLEXUS_CACHE", "/srv/cache")
	if got := Dir(); got != "/srv/cache" {
		t.Errorf("with $PLEXUS_CACHE: %q", got)
	}
	t.Setenv("PLEXUS_CACHE", "")
	t.Setenv("HOME", "/home/dev")
	if got, want := Dir(), filepath.Join("/home/dev", ".cache", "plexus"); got != want {
		t.Errorf("without $PLEXUS_CACHE: %q, want %q", got, want)
	}
}
