package attach_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// warnings is a StatusReporter that keeps what it was told to warn of.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Report(context.Context, *source.Pod, []netstatus.Entry) error  { return nil }
func (w *warnings) Publish(context.Context, *source.Pod, []netstatus.Entry) error { return nil }
func (w *warnings) Event(context.Context, *source.Pod, string, string)            {}
func (w *warnings) Failed(context.Context, *source.Pod, error)                    {}
func (w *warnings) Warn(_ context.Context, pod *source.Pod, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, pod.Namespace+"/"+pod.Name+": "+msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// newModeEnv is newEnv in the given selection mode, with a reporter that
// records warnings.
func newModeEnv(t *testing.T, mode selection.Mode, mutate ...func(*attach.Config)) (*env, *warnings) {
	t.Helper()
	w := &warnings{}
	e := newEnv(t, "1.0.0", func(o *attach.Options) {
		for _, m := range mutate {
			m(&o.Config)
		}
		o.Config.SelectionMode = mode
		o.Reporter = w
	})
	return e, w
}

// hostIP runs ip in the test's (host) namespace.
func hostIP(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func wantWarning(t *testing.T, got []string, parts ...string) {
	t.Helper()
	for _, w := range got {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(w, p) }) {
			return
		}
	}
	t.Errorf("warnings %q: none names all of %q", got, parts)
}

// Multus compatibility, its default-route e2e shape: a static IPAM NAD without
// capabilities and ips (and mac) in the selection. Compatible mode passes
// them as CNI_ARGS IP= and MAC=, which static IPAM and bridge read, and
// warns naming the NAD, the key and the fix; strict mode refuses.
func TestCompatibleIPsMACWithoutCapability(t *testing.T) {
	const sel = `[{"name":"nocap","ips":["10.240.0.7/24","10.240.1.7/24"],"mac":"02:00:00:12:34:56"}]`
	setup := func(e *env) {
		e.nad("default", "nocap", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"static"}}`, e.bridge("s")))
		e.pod("default", "p", map[string]string{source.NetworksAnnotation: sel})
	}
	t.Run("compatible", func(t *testing.T) {
		e, w := newModeEnv(t, selection.Compatible)
		setup(e)
		n := cnitest.NewNS(t)
		e.add("c", n, "default/p")
		if a := addrOf(t, n, "net1"); !slices.Equal(a, []string{"10.240.0.7/24", "10.240.1.7/24"}) {
			t.Errorf("net1 addresses = %v, want the selection's 10.240.0.7/24 and 10.240.1.7/24", a)
		}
		if link := cnitest.InNS(t, n, "link", "show", "net1"); !strings.Contains(link, "02:00:00:12:34:56") {
			t.Errorf("net1 does not have the selection's MAC:\n%s", link)
		}
		got := w.take()
		wantWarning(t, got, "default/p", "default/nocap", `"ips"`, "IP=10.240.0.7/24,10.240.1.7/24", "capabilities")
		wantWarning(t, got, "default/p", "default/nocap", `"mac"`, "MAC=02:00:00:12:34:56", "capabilities")
		e.del("c", n, "default/p")
		e.assertClean(n)
	})
	t.Run("strict", func(t *testing.T) {
		e, w := newModeEnv(t, selection.Strict)
		setup(e)
		wantRefused(t, e, "default/p", attach.CodeInvalidSelection, "default/p", "default/nocap", `"ips"`)
		if got := w.take(); len(got) != 0 {
			t.Errorf("strict mode warned: %q", got)
		}
	})
}

// Multus compatibility: the deprecated interfaceRequest key and unknown keys without
// a dot: compatible honours the first as interface and ignores the
// second, warning of both; strict refuses both.
func TestCompatibleSelectionKeys(t *testing.T) {
	tests := []struct {
		name, sel, field string
		links            []string
	}{
		{"interfaceRequest", `[{"name":"blue","interfaceRequest":"fast0"}]`, "interfaceRequest", []string{"eth0", "fast0"}},
		{"unknown key", `[{"name":"blue","colour":"red"}]`, "colour", []string{"eth0", "net1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup := func(e *env) {
				e.bridgeNAD("default", "blue", "1.0.0", "10.241.0.0/24")
				e.pod("default", "p", map[string]string{source.NetworksAnnotation: tt.sel})
			}
			e, w := newModeEnv(t, selection.Compatible)
			setup(e)
			n := cnitest.NewNS(t)
			e.add("c", n, "default/p")
			if got := sandboxLinks(t, n); !slices.Equal(got, tt.links) {
				t.Errorf("compatible: interfaces = %v, want %v", got, tt.links)
			}
			wantWarning(t, w.take(), "default/p", "default/blue", `"`+tt.field+`"`)
			e.del("c", n, "default/p")
			e.assertClean(n)

			s, _ := newModeEnv(t, selection.Strict)
			setup(s)
			wantRefused(t, s, "default/p", attach.CodeInvalidSelection, "default/p", "default/blue", `"`+tt.field+`"`)
		})
	}
}

// Multus compatibility: the v1.multus-cni.io/default-network override replaces the
// cluster network as eth0, in both modes; a bare name is the system
// namespace's (as Multus resolves it in its multusNamespace), and with
// namespace isolation on the system namespace's networks stay allowed
// while another namespace's are refused.
func TestDefaultNetworkOverride(t *testing.T) {
	for _, mode := range []selection.Mode{selection.Compatible, selection.Strict} {
		t.Run(string(mode), func(t *testing.T) {
			e, _ := newModeEnv(t, mode, func(c *attach.Config) { c.NamespaceIsolation = true })
			e.bridgeNAD("kube-system", "alt", "1.0.0", "10.242.0.0/24")
			e.bridgeNAD("apps", "own", "1.0.0", "10.243.0.0/24")
			e.bridgeNAD("other", "foreign", "1.0.0", "10.244.0.0/24")
			e.pod("apps", "bare", map[string]string{source.DefaultNetworkAnnotation: "alt"})
			e.pod("apps", "own", map[string]string{source.DefaultNetworkAnnotation: "apps/own"})
			e.pod("apps", "thief", map[string]string{source.DefaultNetworkAnnotation: "other/foreign"})
			for pod, want := range map[string]struct{ prefix, bridge, name string }{
				"bare": {"10.242.0.", e.bridge("alt"), "kube-system/alt"},
				"own":  {"10.243.0.", e.bridge("own"), "apps/own"},
			} {
				n := cnitest.NewNS(t)
				e.add(pod, n, "apps/"+pod)
				if a := addrOf(t, n, "eth0"); len(a) != 1 || !strings.HasPrefix(a[0], want.prefix) {
					t.Errorf("pod %s: eth0 addresses = %v, want one in %s0/24", pod, a, want.prefix)
				}
				if links := sandboxLinks(t, n); !slices.Equal(links, []string{"eth0"}) {
					t.Errorf("pod %s: interfaces = %v, want only eth0", pod, links)
				}
				// The host end of eth0 is a port of the override's bridge.
				if ports := strings.TrimSpace(hostIP(t, "-o", "link", "show", "master", want.bridge)); strings.Count(ports, "\n") != 0 || ports == "" {
					t.Errorf("pod %s: ports of %s = %q, want eth0's veth alone", pod, want.bridge, ports)
				}
				if st := recordStatus(t, e, pod); len(st) != 1 || st[0].Name != want.name || !st[0].Default {
					t.Errorf("pod %s: status = %+v, want one default entry %s", pod, st, want.name)
				}
				e.del(pod, n, "apps/"+pod)
				e.assertClean(n)
			}
			wantRefused(t, e, "apps/thief", attach.CodeForbidden, "apps/thief", "other/foreign")
		})
	}
}

// Multus compatibility: defaultNetworks are the admin's: with namespace isolation on
// they are attached to every pod outside the system namespaces, whatever
// their namespace, after the cluster network and before the pod's own
// selection, names continuing net1..N; pods in systemNamespaces get the
// cluster network only, even with a selection.
func TestDefaultNetworks(t *testing.T) {
	e, _ := newModeEnv(t, selection.Compatible, func(c *attach.Config) {
		c.NamespaceIsolation = true
		c.DefaultNetworks = []string{"dfa", "other/dfb"}
		c.SystemNamespaces = []string{"kube-system", "infra"}
	})
	e.bridgeNAD("kube-system", "dfa", "1.0.0", "10.245.0.0/24")
	e.bridgeNAD("other", "dfb", "1.0.0", "10.246.0.0/24")
	e.bridgeNAD("apps", "side", "1.0.0", "10.247.0.0/24")
	e.bridgeNAD("infra", "side", "1.0.0", "10.248.0.0/24")
	e.pod("apps", "p", map[string]string{source.NetworksAnnotation: "side"})
	e.pod("infra", "sys", map[string]string{source.NetworksAnnotation: "side"})

	n := cnitest.NewNS(t)
	e.add("p", n, "apps/p")
	if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0", "net1", "net2", "net3"}) {
		t.Fatalf("interfaces = %v, want [eth0 net1 net2 net3]", got)
	}
	for ifname, prefix := range map[string]string{"net1": "10.245.0.", "net2": "10.246.0.", "net3": "10.247.0."} {
		if a := addrOf(t, n, ifname); len(a) != 1 || !strings.HasPrefix(a[0], prefix) {
			t.Errorf("%s addresses = %v, want one in %s0/24", ifname, a, prefix)
		}
	}
	var names []string
	for _, s := range recordStatus(t, e, "p") {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"cluster", "kube-system/dfa", "other/dfb", "apps/side"}) {
		t.Errorf("status order = %v", names)
	}
	e.del("p", n, "apps/p")
	e.assertClean(n)

	n2 := cnitest.NewNS(t)
	e.add("sys", n2, "infra/sys")
	if got := sandboxLinks(t, n2); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("system namespace pod: interfaces = %v, want only eth0", got)
	}
	e.del("sys", n2, "infra/sys")
	e.assertClean(n2)
}
