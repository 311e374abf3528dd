package inuse_test

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/plexus-cni/plexus/agent/podresources/podresourcestest"
	"github.com/plexus-cni/plexus/deviceplugin/inuse"
	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
)

func held(t *testing.T, tr *inuse.Tracker, resource string, wantKnown bool) []string {
	t.Helper()
	ids, known := tr.Held(resource)
	if known != wantKnown {
		t.Fatalf("Held(%s): known = %v, want %v", resource, known, wantKnown)
	}
	return slices.Sorted(maps.Keys(ids))
}

func refresh(t *testing.T, tr *inuse.Tracker, wantReleased bool) {
	t.Helper()
	released, err := tr.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if released != wantReleased {
		t.Errorf("Refresh: released = %v, want %v", released, wantReleased)
	}
}

func TestTracker(t *testing.T) {
	t.Parallel()
	const res = "plexus.io/net"
	sock := filepath.Join(kubelettest.ShortDir(t), "kubelet.sock")
	kubelet := podresourcestest.Start(t, sock)
	tr := inuse.New(sock, 0)

	if got := held(t, tr, res, false); len(got) != 0 {
		t.Errorf("before any List: %v", got)
	}
	kubelet.SetPod("default", "a", podresourcestest.Container("c", map[string][]string{
		res:                 {"0000:3b:02.0"},
		"other.example/gpu": {"gpu0"},
	}, "0000:3b:02.0"))
	refresh(t, tr, true) // now known
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0"}) {
		t.Errorf("listed: %v", got)
	}

	// Allocated but not (yet) listed: held until two Lists begun after
	// the allocation miss it.
	tr.Allocated(res, []string{"0000:3b:02.1"})
	refresh(t, tr, false)
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0", "0000:3b:02.1"}) {
		t.Errorf("after one miss: %v", got)
	}
	refresh(t, tr, true)
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0"}) {
		t.Errorf("after two misses: %v", got)
	}

	// An allocation kubelet then lists stays held as long as it is listed.
	tr.Allocated(res, []string{"0000:3b:02.2"})
	kubelet.SetPod("default", "b", podresourcestest.Container("c", map[string][]string{res: {"0000:3b:02.2"}}))
	refresh(t, tr, false)
	refresh(t, tr, false)
	refresh(t, tr, false)
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0", "0000:3b:02.2"}) {
		t.Errorf("allocated and listed: %v", got)
	}

	// Pod gone: released at once.
	kubelet.SetPod("default", "b")
	refresh(t, tr, true)
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0"}) {
		t.Errorf("after pod b went: %v", got)
	}

	// Kubelet unreachable: not known; back: known again, and that counts
	// as a possible release.
	kubelet.Stop()
	if _, err := tr.Refresh(context.Background()); err == nil {
		t.Error("Refresh with kubelet gone succeeded")
	}
	held(t, tr, res, false)
	kubelet.Restart(t)
	refresh(t, tr, true)
	if got := held(t, tr, res, true); !slices.Equal(got, []string{"0000:3b:02.0"}) {
		t.Errorf("after kubelet restart: %v", got)
	}
}
