package attach_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// Each selection key is proven by what the reference plugin did on the
// host or in the pod, not by what reached the plugin's stdin.

// uniqueID is a container ID no other test process on the host uses: the
// chains and ifb devices the meta plugins create are named after it.
func uniqueID(name string) string { return fmt.Sprintf("%s-%d", name, os.Getpid()) }

// addUntilEnd ADDs and makes sure the pod is DELeted when the test ends,
// whatever happens in between (DEL is idempotent, so an explicit DEL in
// the test is fine too).
func (e *env) addUntilEnd(id string, n ns.NetNS, pod string) []byte {
	e.t.Helper()
	e.t.Cleanup(func() {
		e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: pod})
	})
	return e.add(id, n, pod)
}

// attachmentResult returns the delegate result and network name of
// attachment i of the record (id, eth0).
func (e *env) attachmentResult(id string, i int) (*current.Result, string) {
	e.t.Helper()
	rec, err := e.records.Get(id, "eth0")
	if err != nil {
		e.t.Fatal(err)
	}
	var conf struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(rec.Attachments[i].Config, &conf); err != nil {
		e.t.Fatal(err)
	}
	var res current.Result
	if err := json.Unmarshal(rec.Attachments[i].Result, &res); err != nil {
		e.t.Fatalf("result of attachment %d: %v", i, err)
	}
	return &res, conf.Name
}

// hostIface returns the host-side interface of a bridge result.
func hostIface(t *testing.T, res *current.Result) string {
	t.Helper()
	for _, iface := range res.Interfaces {
		if iface.Sandbox == "" && iface.Mac != "" && strings.HasPrefix(iface.Name, "veth") {
			return iface.Name
		}
	}
	t.Fatalf("no host veth in result %+v", res.Interfaces)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// natRules is `iptables -t nat -S [chain]`; a missing chain is "".
func natRules(chain string) string {
	args := []string{"-w", "-t", "nat", "-S"}
	if chain != "" {
		args = append(args, chain)
	}
	out, err := exec.Command("iptables", args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// dnatChain returns the per-container chain portmap created for network
// name and container id, found by the comment of its jump rule.
func dnatChain(name, id string) string {
	comment := fmt.Sprintf(`dnat name: \"%s\" id: \"%s\"`, name, id)
	for _, line := range strings.Split(natRules("CNI-HOSTPORT-DNAT"), "\n") {
		if i := strings.Index(line, " -j CNI-DN-"); i >= 0 && strings.Contains(line, comment) {
			return line[i+len(" -j "):]
		}
	}
	return ""
}

// removeNATChain deletes chain and the jumps to it from the portmap
// plugin's top-level chain, for a test that failed before its DEL.
func removeNATChain(chain string) {
	for _, line := range strings.Split(natRules("CNI-HOSTPORT-DNAT"), "\n") {
		if strings.HasSuffix(line, "-j "+chain) {
			rule := strings.Fields(strings.TrimPrefix(line, "-A "))
			// The comment's quotes were added by -S; exec passes the words as they are.
			for i := range rule {
				rule[i] = strings.Trim(rule[i], `"`)
			}
			exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, rule...)...).Run()
		}
	}
	exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
	exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
}

// A.10 with effect: portMappings reaches the portmap plugin, whose DNAT
// rules for the pod's address exist while the pod lives and are gone
// after DEL.
func TestSelectionPortMappings(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "pm", fmt.Sprintf(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.240.0.0/24","dataDir":%q}},{"type":"portmap","backend":"iptables","snat":false,"capabilities":{"portMappings":true}}]}`,
		e.bridge("pm"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: `[{"name":"pm","portMappings":[{"hostPort":47311,"containerPort":8080,"protocol":"tcp"},{"hostPort":47312,"containerPort":53,"protocol":"udp"}]}]`})
	id := uniqueID("pm")
	n := cnitest.NewNS(t)
	e.addUntilEnd(id, n, "default/p")

	res, netName := e.attachmentResult(id, 1)
	chain := dnatChain(netName, id)
	if chain == "" {
		t.Fatalf("no CNI-DN chain for network %s, container %s:\n%s", netName, id, natRules("CNI-HOSTPORT-DNAT"))
	}
	t.Cleanup(func() { removeNATChain(chain) })
	podIP := strings.Split(addrOf(t, n, "net1")[0], "/")[0]
	if len(res.IPs) != 1 || res.IPs[0].Address.IP.String() != podIP {
		t.Fatalf("result IPs %v, pod has %s", res.IPs, podIP)
	}
	rules := natRules(chain)
	for _, want := range []string{
		"-p tcp -m tcp --dport 47311 -j DNAT --to-destination " + podIP + ":8080",
		"-p udp -m udp --dport 47312 -j DNAT --to-destination " + podIP + ":53",
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("chain %s lacks %q:\n%s", chain, want, rules)
		}
	}
	if top := natRules("CNI-HOSTPORT-DNAT"); !strings.Contains(top, "-j "+chain) {
		t.Errorf("CNI-HOSTPORT-DNAT does not jump to %s:\n%s", chain, top)
	}
	// The cluster network declares portMappings too; the selection's
	// mappings are the secondary's alone.
	_, clusterName := e.attachmentResult(id, 0)
	if c := dnatChain(clusterName, id); c != "" {
		t.Errorf("the cluster network got the selection's port mappings:\n%s", natRules(c))
	}

	e.del(id, n, "default/p")
	if all := natRules(""); strings.Contains(all, chain) || strings.Contains(all, podIP+":8080") {
		t.Errorf("DNAT for the pod left after DEL:\n%s", all)
	}
	e.assertClean(n)
}

// A.10 for bandwidth, with effect: the bandwidth plugin shapes ingress
// with a tbf qdisc on the host veth and egress on its ifb device, at the
// requested rates, while the pod lives; DEL removes the ifb device.
func TestSelectionBandwidth(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "bw", fmt.Sprintf(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.241.0.0/24","dataDir":%q}},{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`,
		e.bridge("bw"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: `[{"name":"bw","bandwidth":{"ingressRate":1000000,"ingressBurst":800000,"egressRate":2000000,"egressBurst":800000}}]`})
	id := uniqueID("bw")
	n := cnitest.NewNS(t)
	e.addUntilEnd(id, n, "default/p")

	res, _ := e.attachmentResult(id, 1)
	veth := hostIface(t, res)
	// Egress is shaped on an ifb device the host veth's ingress is
	// redirected to.
	f := run(t, "tc", "filter", "show", "dev", veth, "parent", "ffff:")
	_, ifb, ok := strings.Cut(f, "Redirect to device ")
	ifb, _, _ = strings.Cut(ifb, ")")
	if !ok || !strings.HasPrefix(ifb, "bwp") {
		t.Fatalf("host veth %s does not redirect its ingress to an ifb device:\n%s", veth, f)
	}
	t.Cleanup(func() { runIP("link", "del", ifb) })
	if q := run(t, "tc", "qdisc", "show", "dev", veth); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 1Mbit") {
		t.Errorf("host veth %s: want a tbf qdisc at the ingress rate 1Mbit:\n%s", veth, q)
	}
	if q := run(t, "tc", "qdisc", "show", "dev", ifb); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 2Mbit") {
		t.Errorf("ifb %s: want a tbf qdisc at the egress rate 2Mbit:\n%s", ifb, q)
	}

	e.del(id, n, "default/p")
	for _, dev := range []string{ifb, veth} {
		if _, err := os.Stat("/sys/class/net/" + dev); err == nil {
			t.Errorf("%s left after DEL", dev)
		}
	}
	e.assertClean(n)
}

// A.11 for IPv6 in a real namespace: of two IPv6 networks that both
// install a default route, the one whose gateway the selection names is
// the pod's only ::/0 route, and the status says so.
func TestDefaultRouteIPv6(t *testing.T) {
	e := newEnv(t, "1.0.0")
	for _, x := range []string{"a", "b"} {
		e.nad("default", "v6"+x, fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"host-local","ranges":[[{"subnet":"fc00:24%s::/64","gateway":"fc00:24%s::1"}]],"routes":[{"dst":"::/0"}],"dataDir":%q}}`,
			e.bridge("6"+x), x, x, e.ipamDir))
	}
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: `[{"name":"v6a"},{"name":"v6b","default-route":["fc00:24b::1"]}]`})
	id := uniqueID("v6")
	n := cnitest.NewNS(t)
	out := e.addUntilEnd(id, n, "default/p")

	var routes []string
	for _, line := range strings.Split(strings.TrimSpace(cnitest.InNS(t, n, "-6", "route", "show", "default")), "\n") {
		if f := strings.Fields(line); len(f) >= 5 {
			routes = append(routes, strings.Join(f[:5], " "))
		} else if line != "" {
			routes = append(routes, line)
		}
	}
	if want := []string{"default via fc00:24b::1 dev net2"}; !slices.Equal(routes, want) {
		t.Errorf("IPv6 default routes in the pod = %q, want only %q", routes, want)
	}
	if v4 := strings.TrimSpace(cnitest.InNS(t, n, "-4", "route", "show", "default")); !strings.Contains(v4, "dev eth0") {
		t.Errorf("the IPv4 default route should stay on the cluster network:\n%s", v4)
	}
	status := recordStatus(t, e, id)
	if len(status) != 3 || len(status[1].DefaultRoute) != 0 || !slices.Equal(status[2].DefaultRoute, []string{"fc00:24b::1"}) || !slices.Equal(status[2].Gateway, []string{"fc00:24b::1"}) {
		t.Errorf("status = %+v, want the default route on net2 only, via fc00:24b::1", status)
	}
	if !strings.Contains(string(out), `"0.0.0.0/0"`) {
		t.Errorf("the cluster network's IPv4 default route was dropped from the result: %s", out)
	}
	e.del(id, n, "default/p")
	e.assertClean(n)
}

// A.21 with effect: every plugin of a NAD's conflist runs in order on the
// attachment's interface; tuning, chained after bridge, sets a sysctl and
// the MTU of net1 inside the pod.
func TestChainedPluginEffect(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "tuned", fmt.Sprintf(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.242.0.0/24","dataDir":%q}},{"type":"tuning","mtu":1280,"sysctl":{"net.ipv4.conf.IFNAME.arp_ignore":"2","net.ipv6.conf.IFNAME.hop_limit":"33"}}]}`,
		e.bridge("tu"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "tuned"})
	id := uniqueID("tu")
	n := cnitest.NewNS(t)
	e.addUntilEnd(id, n, "default/p")

	sysctl := func(ifname, path string) string {
		return strings.TrimSpace(run(t, "nsenter", "--net="+n.Path(), "cat", "/proc/sys/net/"+strings.ReplaceAll(path, "IFNAME", ifname)))
	}
	for path, want := range map[string]string{"ipv4/conf/IFNAME/arp_ignore": "2", "ipv6/conf/IFNAME/hop_limit": "33"} {
		if got := sysctl("net1", path); got != want {
			t.Errorf("net1 %s = %s, want %s (set by tuning)", path, got, want)
		}
		// The cluster network's eth0 is untouched: the chain is net1's.
		if got := sysctl("eth0", path); got == want {
			t.Errorf("eth0 %s = %s: tuning ran on the wrong interface", path, got)
		}
	}
	if link := cnitest.InNS(t, n, "link", "show", "net1"); !strings.Contains(link, "mtu 1280 ") {
		t.Errorf("net1 MTU not set by tuning:\n%s", link)
	}
	e.del(id, n, "default/p")
	e.assertClean(n)
}

// A.26 with effect: the runtime's own port mappings (runtimeConfig of the
// plexus config, from the pod spec) are DNATed to the cluster network's
// address only, never to a secondary that declares portMappings too.
func TestRuntimePortMappingsEffect(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "pm", fmt.Sprintf(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.247.0.0/24","dataDir":%q}},{"type":"portmap","backend":"iptables","snat":false,"capabilities":{"portMappings":true}}]}`,
		e.bridge("rp"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "pm"})
	id := uniqueID("rp")
	n := cnitest.NewNS(t)
	rc := map[string]any{"portMappings": []map[string]any{{"hostPort": 47313, "containerPort": 80, "protocol": "tcp"}}}
	t.Cleanup(func() { e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: "default/p"}) })
	if _, err := e.do(call{verb: attach.VerbAdd, containerID: id, netns: n.Path(), pod: "default/p", extraConf: map[string]any{"runtimeConfig": rc}}); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	_, clusterName := e.attachmentResult(id, 0)
	_, secondaryName := e.attachmentResult(id, 1)
	chain := dnatChain(clusterName, id)
	if chain == "" {
		t.Fatalf("no CNI-DN chain for the cluster network %s:\n%s", clusterName, natRules("CNI-HOSTPORT-DNAT"))
	}
	t.Cleanup(func() { removeNATChain(chain) })
	eth0 := strings.Split(addrOf(t, n, "eth0")[0], "/")[0]
	if rules, want := natRules(chain), "--dport 47313 -j DNAT --to-destination "+eth0+":80"; !strings.Contains(rules, want) {
		t.Errorf("cluster network chain %s lacks %q:\n%s", chain, want, rules)
	}
	if c := dnatChain(secondaryName, id); c != "" {
		removeNATChain(c)
		t.Errorf("the secondary %s got the runtime's port mappings", secondaryName)
	}
	e.del(id, n, "default/p")
	if all := natRules(""); strings.Contains(all, chain) || strings.Contains(all, "47313") {
		t.Errorf("DNAT for the pod left after DEL:\n%s", all)
	}
	e.assertClean(n)
}
