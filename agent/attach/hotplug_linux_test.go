package attach_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// HotPlug called directly: a pod being deleted or opted out is left
// alone; a delegate failing on one attachment rolls back that one only;
// a record without origins (an older agent's) is refused untouched.
func TestHotPlugCore(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.bridgeNAD("default", "a", "1.0.0", "10.151.0.0/24")
	// One usable address: the second attachment of tiny fails in IPAM,
	// after the bridge plugin made its bridge and veth.
	e.bridgeNAD("default", "tiny", "1.0.0", "10.152.0.0/30")
	e.pod("default", "web", map[string]string{source.NetworksAnnotation: "a"})
	n := cnitest.NewNS(t)
	e.add("hp1", n, "default/web")
	ctx := context.Background()
	pod := func(networks string, mutate ...func(*source.Pod)) *source.Pod {
		p := &source.Pod{Namespace: "default", Name: "web", Annotations: map[string]string{source.NetworksAnnotation: networks}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	hotplug := func(p *source.Pod) []attach.Change {
		t.Helper()
		changes, err := e.mgr.HotPlug(ctx, p)
		if err != nil {
			t.Fatalf("HotPlug: %v", err)
		}
		return changes
	}
	wantLinks := func(what string, want ...string) {
		t.Helper()
		got := sandboxLinks(t, n)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: links %v, want %v", what, got, want)
		}
	}

	if _, err := e.mgr.HotPlug(ctx, &source.Pod{Namespace: "default", Name: "other"}); !errors.Is(err, attach.ErrNotAttached) {
		t.Errorf("HotPlug of a pod without a sandbox: %v, want ErrNotAttached", err)
	}
	for name, p := range map[string]*source.Pod{
		"deleting":  pod("a,tiny", func(p *source.Pod) { p.Deleting = true }),
		"opted out": pod("a,tiny", func(p *source.Pod) { p.Annotations[source.HotPlugAnnotation] = "false" }),
	} {
		if c := hotplug(p); len(c) != 0 {
			t.Errorf("%s: changes %+v, want none", name, c)
		}
		wantLinks(name, "eth0", "net1")
	}

	changes := hotplug(pod("a,tiny,tiny"))
	if len(changes) != 2 || changes[0].Err != nil || changes[0].IfName != "net2" || changes[1].Err == nil || changes[1].IfName != "net3" {
		t.Fatalf("changes %+v, want net2 attached and net3 failed", changes)
	}
	if msg := changes[1].Err.Error(); !strings.Contains(msg, "default/web") || !strings.Contains(msg, "default/tiny") {
		t.Errorf("failure %q does not name the pod and the network", msg)
	}
	wantLinks("one of two failed", "eth0", "net1", "net2")
	rec, err := e.records.Get("hp1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var status []struct{ Interface string }
	if err := json.Unmarshal(rec.Status, &status); err != nil || len(status) != 3 || status[2].Interface != "net2" {
		t.Errorf("recorded network-status %s (%v), want eth0, net1, net2", rec.Status, err)
	}

	// An older agent's record: no origins. Refused, nothing touched.
	path := filepath.Join(e.records.Dir(), "hp1_eth0.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, a := range raw["attachments"].([]any) {
		delete(a.(map[string]any), "origin")
	}
	old, _ := json.Marshal(raw)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.HotPlug(ctx, pod("a")); err == nil || !strings.Contains(err.Error(), "older agent") || !strings.Contains(err.Error(), "default/web") {
		t.Errorf("HotPlug of an older agent's record: %v, want a refusal naming the pod and why", err)
	}
	wantLinks("older record", "eth0", "net1", "net2")

	e.del("hp1", n, "default/web")
	e.assertClean(n)
}
