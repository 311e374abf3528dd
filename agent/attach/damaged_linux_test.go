package attach_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// damage truncates the record of (id, eth0) and returns its bytes.
func (e *env) damage(id string) []byte {
	e.t.Helper()
	path := filepath.Join(e.records.Dir(), id+"_eth0.json")
	data, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)/3], 0o600); err != nil {
		e.t.Fatal(err)
	}
	return data[:len(data)/3]
}

// quarantined returns the damaged records moved aside, by content.
func (e *env) quarantined(id string) []string {
	e.t.Helper()
	paths, err := filepath.Glob(filepath.Join(e.records.Dir(), id+"_eth0.json.damaged-*"))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// I: a truncated record does not wedge the pod. DEL tears down every
// attachment from libcni's cache (links and IPs), moves the damaged file
// aside with its bytes, and succeeds; the next DEL is a plain no-op.
func TestDelDamagedRecord(t *testing.T) {
	e := newEnv(t, "1.1.0")
	e.bridgeNAD("default", "blue", "1.1.0", "10.225.0.0/24")
	e.bridgeNAD("default", "red", "0.4.0", "10.226.0.0/24")
	n := e.addPod("blue,red")
	kept := e.damage("c")

	if _, err := e.do(call{verb: attach.VerbCheck, containerID: "c", netns: n.Path(), pod: "default/p"}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("CHECK with a damaged record: %v, want an error saying so", err)
	}
	e.delPod(n)
	if q := e.quarantined("c"); !slices.Equal(q, []string{string(kept)}) {
		t.Errorf("damaged record moved aside as %q, want its bytes kept once", q)
	}
	e.del("c", n, "default/p")
}

// I: one damaged record does not stop GC. The gone container behind it is
// torn down from libcni's cache and its file moved aside; the readable
// stale record is collected; a live container's damaged record and its
// IPs are left alone.
func TestGCPastDamagedRecord(t *testing.T) {
	e := newEnv(t, "1.1.0")
	e.bridgeNAD("default", "blue", "1.1.0", "10.227.0.0/24")
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue"})
	broken, stale, live := cnitest.NewNS(t), cnitest.NewNS(t), cnitest.NewNS(t)
	e.add("a-broken", broken, "default/p")
	e.add("b-stale", stale, "default/p")
	e.add("c-live", live, "default/p")
	e.damage("a-broken")
	e.damage("c-live")

	valid := []types.GCAttachment{{ContainerID: "c-live", IfName: "eth0"}}
	if _, err := e.do(call{verb: attach.VerbGC, extraConf: map[string]any{"cni.dev/valid-attachments": valid}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	for name, n := range map[string]ns.NetNS{"a-broken": broken, "b-stale": stale} {
		if got := sandboxLinks(t, n); len(got) != 0 {
			t.Errorf("GC left %v in %s", got, name)
		}
	}
	if got := sandboxLinks(t, live); !slices.Equal(got, []string{"eth0", "net1"}) {
		t.Errorf("GC touched the live pod: %v", got)
	}
	if a := e.allocations(); len(a) != 2 {
		t.Errorf("allocations after GC = %v, want the live pod's 2", a)
	}
	if len(e.quarantined("a-broken")) != 1 || len(e.quarantined("c-live")) != 0 {
		t.Errorf("moved aside: gone %d, live %d; want 1, 0", len(e.quarantined("a-broken")), len(e.quarantined("c-live")))
	}
	// The live pod's own DEL later goes through the cache too.
	e.del("c-live", live, "default/p")
	e.assertClean(live)
}
