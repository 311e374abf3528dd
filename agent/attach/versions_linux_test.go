package attach_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// oldSpecVersions are the versions plexus advertises below 0.3.1. The
// reference plugins v1.9.1 bridge, host-local, portmap and tuning accept
// all of them (bandwidth only from 0.3.0).
var oldSpecVersions = []string{"0.1.0", "0.2.0", "0.3.0"}

// macOf returns the MAC address of ifname in n.
func macOf(t *testing.T, n ns.NetNS, ifname string) string {
	t.Helper()
	f := strings.Fields(cnitest.InNS(t, n, "-o", "link", "show", "dev", ifname))
	if i := slices.Index(f, "link/ether"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	t.Fatalf("no MAC for %s", ifname)
	return ""
}

// checkPrintedResult checks the result plexus returned to a runtime that
// speaks cniVersion v, from a cluster network at delegate version dv: the
// version's own shape, and the cluster network's address, gateway, default
// route and (when both versions have them) interfaces as the pod has them.
func checkPrintedResult(t *testing.T, v, dv string, out []byte, n ns.NetNS) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("result %s: %v", out, err)
	}
	if got := strings.Trim(string(raw["cniVersion"]), `"`); got != v {
		t.Errorf("result cniVersion = %q, want the runtime's %q", got, v)
	}
	// 0.3.0 replaced ip4/ip6 with ips and interfaces.
	lists, _ := version.GreaterThanOrEqualTo(v, "0.3.0")
	if _, hasIP4 := raw["ip4"]; hasIP4 == lists {
		t.Errorf("result for %s: ip4 key present = %v, want %v: %s", v, hasIP4, !lists, out)
	}
	if _, hasIPs := raw["ips"]; hasIPs != lists {
		t.Errorf("result for %s: ips key present = %v, want %v: %s", v, hasIPs, lists, out)
	}
	parsed, err := version.NewResult(v, out)
	if err != nil {
		t.Fatalf("runtime at %s cannot parse the result: %v\n%s", v, err, out)
	}
	res, err := current.NewResultFromResult(parsed)
	if err != nil {
		t.Fatal(err)
	}
	eth0 := addrOf(t, n, "eth0")
	if len(res.IPs) != 1 || len(eth0) != 1 || res.IPs[0].Address.String() != eth0[0] {
		t.Fatalf("result IPs %v, pod eth0 has %v", res.IPs, eth0)
	}
	gw := res.IPs[0].Gateway
	routes := strings.TrimSpace(cnitest.InNS(t, n, "-4", "route", "show", "default"))
	if gw == nil || !strings.HasPrefix(routes, "default via "+gw.String()+" dev eth0") {
		t.Errorf("result gateway %v, pod default route %q", gw, routes)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("result routes = %v, want the cluster network's default route", res.Routes)
	}
	// A result from before 0.3.0 has no interfaces to convert.
	if fromLists, _ := version.GreaterThanOrEqualTo(dv, "0.3.0"); lists && fromLists {
		if len(res.Interfaces) == 0 || res.IPs[0].Interface == nil || res.Interfaces[*res.IPs[0].Interface].Name != "eth0" ||
			res.Interfaces[*res.IPs[0].Interface].Mac != macOf(t, n, "eth0") {
			t.Errorf("result interfaces %+v do not describe the pod's eth0", res.Interfaces)
		}
	}
}

// B for the old versions: delegates (the cluster network's bridge →
// portmap conflist, a secondary bridge conf and a bridge → tuning
// conflist) at 0.1.0, 0.2.0 and 0.3.0, for a runtime at each of those
// versions, 0.3.1 and 1.1.0. ADD attaches every network and returns the
// result in the runtime's version; network-status is built from the
// old-format results (no interfaces before 0.3.0: one entry per
// attachment with its address); DEL leaves nothing.
func TestOldSpecVersions(t *testing.T) {
	for _, dv := range oldSpecVersions {
		for _, rv := range append(slices.Clone(oldSpecVersions), "0.3.1", "1.1.0") {
			t.Run("delegates-"+dv+"/runtime-"+rv, func(t *testing.T) {
				e := newEnv(t, dv)
				e.bridgeNAD("default", "blue", dv, "10.244.0.0/24")
				e.nad("default", "chain", fmt.Sprintf(`{"cniVersion":%q,"plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.245.0.0/24","dataDir":%q}},{"type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.arp_ignore":"2"}}]}`,
					dv, e.bridge("ch"), e.ipamDir))
				e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue,chain"})
				n := cnitest.NewNS(t)
				id := uniqueID("v")
				t.Cleanup(func() {
					e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: "default/p", cniVersion: rv})
				})
				out, err := e.do(call{verb: attach.VerbAdd, containerID: id, netns: n.Path(), pod: "default/p", cniVersion: rv})
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0", "net1", "net2"}) {
					t.Fatalf("pod interfaces = %v, want [eth0 net1 net2]", got)
				}
				checkPrintedResult(t, rv, dv, out, n)
				if got := strings.TrimSpace(run(t, "nsenter", "--net="+n.Path(), "cat", "/proc/sys/net/ipv4/conf/net2/arp_ignore")); got != "2" {
					t.Errorf("net2 arp_ignore = %s, want 2: tuning, chained at %s, did not run", got, dv)
				}

				status := recordStatus(t, e, id)
				if len(status) != 3 {
					t.Fatalf("status = %+v, want 3 entries", status)
				}
				withMAC, _ := version.GreaterThanOrEqualTo(dv, "0.3.0")
				for i, w := range []struct{ name, ifname string }{{"cluster", "eth0"}, {"default/blue", "net1"}, {"default/chain", "net2"}} {
					s := status[i]
					addr := addrOf(t, n, w.ifname)
					if s.Name != w.name || s.Interface != w.ifname || s.Default != (i == 0) || len(addr) != 1 || !slices.Equal(s.IPs, []string{strings.Split(addr[0], "/")[0]}) {
						t.Errorf("status entry %d = %+v, want %s on %s with the pod's address %v, default=%v", i, s, w.name, w.ifname, addr, i == 0)
					}
					if want := ""; withMAC {
						if want = macOf(t, n, w.ifname); s.MAC != want {
							t.Errorf("status entry %d MAC = %q, want %s's %q", i, s.MAC, w.ifname, want)
						}
					} else if s.MAC != want {
						t.Errorf("status entry %d MAC = %q from a %s result, which has none", i, s.MAC, dv)
					}
				}
				if route := strings.Fields(cnitest.InNS(t, n, "-4", "route", "show", "default")); len(route) < 3 ||
					!slices.Equal(status[0].Gateway, route[2:3]) || !slices.Equal(status[0].DefaultRoute, route[2:3]) {
					t.Errorf("cluster status gateway %v, default-route %v; pod's default route %v", status[0].Gateway, status[0].DefaultRoute, route)
				}

				if _, err := e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: "default/p", cniVersion: rv}); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				e.assertClean(n)
			})
		}
	}
}

// A delegate whose plugin does not speak the NAD's cniVersion is refused
// before anything is attached, naming the NAD, the version and the
// plugin: bandwidth v1.9.1 supports 0.3.0 and later only. (Found at ADD
// time instead, the rollback's DEL fails at the same plugin and the links
// and addresses of the plugins before it stay.)
func TestDelegateVersionRefused(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "oldbw", fmt.Sprintf(`{"cniVersion":"0.2.0","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.246.0.0/24","dataDir":%q}},{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`,
		e.bridge("ob"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: `[{"name":"oldbw","bandwidth":{"ingressRate":1000000,"ingressBurst":800000}}]`})
	n := cnitest.NewNS(t)
	id := uniqueID("ob")
	t.Cleanup(func() { e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: "default/p"}) })
	_, err := e.do(call{verb: attach.VerbAdd, containerID: id, netns: n.Path(), pod: "default/p"})
	if err == nil {
		t.Fatal("ADD with a 0.2.0 bandwidth delegate succeeded")
	}
	if code := cniCode(err); code != attach.CodeIncompatibleVersion {
		t.Errorf("code = %d, want %d", code, attach.CodeIncompatibleVersion)
	}
	for _, want := range []string{"default/oldbw", `"0.2.0"`, `"bandwidth"`, "0.3.0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	e.assertClean(n)
}
