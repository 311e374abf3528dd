package attach_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// specVersions are the delegate and plexus config versions exercised.
var specVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// A.19, A.21, B (versions, result conversion, DEL leaves nothing): every
// pod gets the cluster network first as eth0, then its selected networks
// as net1..N, for every spec version of the delegate configs and of the
// plexus config; DEL removes links, IP allocations and the record.
func TestAddDelEverySpecVersion(t *testing.T) {
	for _, v := range specVersions {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t, v)
			e.bridgeNAD("default", "blue", v, "10.201.0.0/24")
			e.bridgeNAD("default", "red", v, "10.202.0.0/24")
			e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue,default/red"})
			n := cnitest.NewNS(t)

			out, err := e.do(call{verb: attach.VerbAdd, containerID: "c1", netns: n.Path(), pod: "default/p", cniVersion: v})
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			var res struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("result %s: %v", out, err)
			}
			if res.CNIVersion != v {
				t.Errorf("result cniVersion = %q, want the caller's %q", res.CNIVersion, v)
			}
			if len(res.IPs) != 1 || !strings.HasPrefix(res.IPs[0].Address, "10.") {
				t.Errorf("result IPs = %+v, want the cluster network's one address", res.IPs)
			}
			if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0", "net1", "net2"}) {
				t.Fatalf("pod interfaces = %v, want [eth0 net1 net2] in that order", got)
			}
			for ifname, prefix := range map[string]string{"net1": "10.201.0.", "net2": "10.202.0."} {
				if a := addrOf(t, n, ifname); len(a) != 1 || !strings.HasPrefix(a[0], prefix) {
					t.Errorf("%s addresses = %v, want one in %s0/24", ifname, a, prefix)
				}
			}
			if len(e.allocations()) != 3 {
				t.Errorf("allocations = %v, want 3", e.allocations())
			}
			e.del("c1", n, "default/p")
			e.assertClean(n)
		})
	}
}

// A.7: a selection key goes to runtimeConfig, and ADD fails (before any
// delegate runs) when no plugin declares the capability.
func TestCapabilityRouting(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "static", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"capabilities":{"ips":true,"mac":true},"ipam":{"type":"static"}}`, e.bridge("s")))
	e.nad("default", "nocap", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"static","addresses":[{"address":"10.203.0.9/24"}]}}`, e.bridge("n")))
	e.pod("default", "ok", map[string]string{source.NetworksAnnotation: `[{"name":"static","ips":["10.203.1.7/24"],"mac":"02:00:00:aa:bb:cc"}]`})
	e.pod("default", "bad", map[string]string{source.NetworksAnnotation: `[{"name":"nocap","ips":["10.203.0.7/24"]}]`})

	n := cnitest.NewNS(t)
	e.add("ok1", n, "default/ok")
	if a := addrOf(t, n, "net1"); !slices.Equal(a, []string{"10.203.1.7/24"}) {
		t.Errorf("net1 addresses = %v, want exactly the requested 10.203.1.7/24", a)
	}
	if link := cnitest.InNS(t, n, "link", "show", "net1"); !strings.Contains(link, "02:00:00:aa:bb:cc") {
		t.Errorf("net1 does not have the requested MAC:\n%s", link)
	}
	e.del("ok1", n, "default/ok")

	wantRefused(t, e, "default/bad", attach.CodeInvalidSelection, "default/bad", "default/nocap", `"ips"`)
}

// A.8: `interface` sets the delegate's CNI_IFNAME; a duplicate name fails.
func TestInterfaceRequest(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.bridgeNAD("default", "blue", "1.0.0", "10.204.0.0/24")
	e.pod("default", "named", map[string]string{source.NetworksAnnotation: `[{"name":"blue","interface":"fast0"}]`})
	e.pod("default", "dup", map[string]string{source.NetworksAnnotation: `blue@x1,blue@x1`})
	e.pod("default", "eth0", map[string]string{source.NetworksAnnotation: `blue@eth0`})
	n := cnitest.NewNS(t)
	e.add("named", n, "default/named")
	if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0", "fast0"}) {
		t.Errorf("interfaces = %v, want [eth0 fast0]", got)
	}
	e.del("named", n, "default/named")
	for _, pod := range []string{"default/dup", "default/eth0"} {
		wantRefused(t, e, pod, attach.CodeInvalidSelection, `"interface"`)
	}
}

// A.9: cni-args are merged into every plugin's args.cni, the selection
// winning over the NAD. The static IPAM plugin reads args.cni.ips, so the
// address on the interface proves the delegate received the merged value.
func TestCNIArgsMerge(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "argnet", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"args":{"cni":{"ips":["10.205.0.1/24"],"keep":"nad"}},"ipam":{"type":"static"}}`, e.bridge("a")))
	n := e.addPod(`[{"name":"argnet","cni-args":{"ips":["10.205.0.42/24"],"extra":"sel"}}]`)
	if a := addrOf(t, n, "net1"); !slices.Equal(a, []string{"10.205.0.42/24"}) {
		t.Errorf("net1 addresses = %v, want the selection's 10.205.0.42/24", a)
	}
	rec, err := e.records.Get("c", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Args struct {
				CNI map[string]any `json:"cni"`
			} `json:"args"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(rec.Attachments[1].Config, &conf); err != nil {
		t.Fatal(err)
	}
	got := conf.Plugins[0].Args.CNI
	if got["keep"] != "nad" || got["extra"] != "sel" {
		t.Errorf("args.cni = %v, want the NAD's keep=nad and the selection's extra=sel", got)
	}
	e.delPod(n)
}

// A.11: default-route on a secondary makes its gateway the pod's only
// IPv4 default route; the status and the returned result agree; two
// elements claiming it are invalid.
func TestDefaultRoute(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "gw", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.206.0.0/24","gateway":"10.206.0.1","dataDir":%q}}`, e.bridge("g"), e.ipamDir))
	e.bridgeNAD("default", "other", "1.0.0", "10.207.0.0/24")
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: `[{"name":"gw","default-route":["10.206.0.1"]}]`})
	e.pod("default", "two", map[string]string{source.NetworksAnnotation: `[{"name":"gw","default-route":["10.206.0.1"]},{"name":"other","default-route":["10.207.0.1"]}]`})
	n := cnitest.NewNS(t)
	out := e.add("c", n, "default/p")
	routes := strings.TrimSpace(cnitest.InNS(t, n, "-4", "route", "show", "default"))
	if routes != "default via 10.206.0.1 dev net1" {
		t.Errorf("default routes in pod:\n%s\nwant only: default via 10.206.0.1 dev net1", routes)
	}
	if strings.Contains(string(out), `"0.0.0.0/0"`) {
		t.Errorf("cluster network result still has a default route: %s", out)
	}
	status := recordStatus(t, e, "c")
	if len(status) != 2 || len(status[0].DefaultRoute) != 0 || !slices.Equal(status[1].DefaultRoute, []string{"10.206.0.1"}) {
		t.Errorf("status default-route = %+v, want only net1 with 10.206.0.1", status)
	}
	e.del("c", n, "default/p")
	wantRefused(t, e, "default/two", attach.CodeInvalidSelection, "default-route")
}

func recordStatus(t *testing.T, e *env, id string) []netstatus.Entry {
	t.Helper()
	rec, err := e.records.Get(id, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var status []netstatus.Entry
	if err := json.Unmarshal(rec.Status, &status); err != nil {
		t.Fatal(err)
	}
	return status
}

// A.13: the same network twice gives two attachments, net1 and net2, each
// with its own address, and DEL removes both.
func TestSameNetworkTwice(t *testing.T) {
	e := newEnv(t, "1.1.0")
	e.bridgeNAD("default", "blue", "1.1.0", "10.208.0.0/24")
	n := e.addPod("blue,blue")
	a1, a2 := addrOf(t, n, "net1"), addrOf(t, n, "net2")
	if len(a1) != 1 || len(a2) != 1 || a1[0] == a2[0] {
		t.Errorf("net1 %v and net2 %v should each have one distinct address", a1, a2)
	}
	status := recordStatus(t, e, "c")
	if len(status) != 3 || status[1].Name != "default/blue" || status[2].Name != "default/blue" || status[1].Interface != "net1" || status[2].Interface != "net2" {
		t.Errorf("status = %+v", status)
	}
	e.delPod(n)
}

// A.22: a failing delegate aborts ADD, and the attachments already made
// (and the failed one) are torn down before ADD returns. The failing
// delegate is a macvlan whose master does not exist: it allocates an IP
// from host-local first, so a leak would show.
func TestAddRollback(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.bridgeNAD("default", "blue", "1.0.0", "10.209.0.0/24")
	e.nad("default", "broken", fmt.Sprintf(`{"cniVersion":"1.0.0","type":"macvlan","master":"pxnomaster0","ipam":{"type":"host-local","subnet":"10.209.1.0/24","dataDir":%q}}`, e.ipamDir))
	e.nad("default", "noplugin", `{"cniVersion":"1.0.0","type":"no-such-plugin"}`)
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue,broken"})
	e.pod("default", "q", map[string]string{source.NetworksAnnotation: "blue,noplugin"})
	n := cnitest.NewNS(t)
	// A plugin binary that does not exist is found before anything is added.
	_, err := e.do(call{verb: attach.VerbAdd, containerID: "q", netns: n.Path(), pod: "default/q"})
	if err == nil || !strings.Contains(err.Error(), "no-such-plugin") || !strings.Contains(err.Error(), "default/noplugin") {
		t.Errorf("missing plugin binary: err = %v", err)
	}
	e.assertClean(n)
	_, err = e.do(call{verb: attach.VerbAdd, containerID: "c", netns: n.Path(), pod: "default/p"})
	if err == nil {
		t.Fatal("ADD with a failing delegate succeeded")
	}
	for _, want := range []string{"default/p", "default/broken", "net2", "macvlan"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	e.assertClean(n)
}

// A.23: DEL tears down every attachment even when one fails, returns the
// joined error, keeps the record for the runtime's retry, and a retry
// after the cause is fixed finishes the job.
func TestDelContinuesPastFailure(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.bridgeNAD("default", "blue", "1.0.0", "10.210.0.0/24")
	e.bridgeNAD("default", "red", "1.0.0", "10.211.0.0/24")
	n := e.addPod("blue,red")

	// Make net1's DEL fail: its stored delegate names a plugin that is gone.
	rec, err := e.records.Get("c", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	good := rec.Attachments[1].Config
	rec.Attachments[1].Config = json.RawMessage(strings.Replace(string(good), `"type":"bridge"`, `"type":"gone-plugin"`, 1))
	if err := e.records.Put(rec); err != nil {
		t.Fatal(err)
	}
	_, err = e.do(call{verb: attach.VerbDel, containerID: "c", netns: n.Path(), pod: "default/p"})
	if err == nil || !strings.Contains(err.Error(), "default/blue") {
		t.Fatalf("DEL err = %v, want one naming default/blue", err)
	}
	if got := sandboxLinks(t, n); !slices.Equal(got, []string{"net1"}) {
		t.Errorf("after partial DEL the pod has %v, want only the failed net1 left", got)
	}
	if _, err := e.records.Get("c", "eth0"); err != nil {
		t.Errorf("record dropped after a failed DEL: %v", err)
	}
	rec.Attachments[1].Config = good
	if err := e.records.Put(rec); err != nil {
		t.Fatal(err)
	}
	e.delPod(n)
}

// A.24: attachments are made one after another in selection order; the
// kernel's interface indexes in the pod show the creation order.
func TestAttachmentOrder(t *testing.T) {
	e := newEnv(t, "1.0.0")
	for i, name := range []string{"aa", "bb", "cc", "dd"} {
		e.bridgeNAD("default", name, "1.0.0", fmt.Sprintf("10.%d.0.0/24", 212+i))
	}
	n := e.addPod("dd@if-d,bb@if-b,cc@if-c,aa@if-a")
	if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0", "if-d", "if-b", "if-c", "if-a"}) {
		t.Errorf("interfaces by index = %v, want selection order", got)
	}
	e.delPod(n)
}

// A.26: runtimeConfig from the runtime (port mappings of the pod spec)
// goes to the cluster default network only, never to a secondary, even
// one that declares the capability.
func TestRuntimeConfigStaysOnDefaultNetwork(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "pm", fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pm","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":"10.216.0.0/24","dataDir":%q}},{"type":"tuning","capabilities":{"portMappings":true}}]}`, e.bridge("p"), e.ipamDir))
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "pm"})
	n := cnitest.NewNS(t)
	rc := map[string]any{"portMappings": []map[string]any{{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}}}
	if _, err := e.do(call{verb: attach.VerbAdd, containerID: "c", netns: n.Path(), pod: "default/p", extraConf: map[string]any{"runtimeConfig": rc}}); err != nil {
		t.Fatal(err)
	}
	rec, err := e.records.Get("c", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.Attachments[0].CapabilityArgs["portMappings"]; !ok {
		t.Errorf("cluster network did not get the runtime's portMappings: %v", rec.Attachments[0].CapabilityArgs)
	}
	if len(rec.Attachments[1].CapabilityArgs) != 0 {
		t.Errorf("secondary got runtimeConfig %v, want none", rec.Attachments[1].CapabilityArgs)
	}
	e.delPod(n)
}

// B: DEL is idempotent: without a record, twice, and after the runtime
// removed the network namespace (IP allocations are still released).
func TestDelIdempotent(t *testing.T) {
	e := newEnv(t, "1.1.0")
	e.bridgeNAD("default", "blue", "1.1.0", "10.217.0.0/24")
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue"})
	if _, err := e.do(call{verb: attach.VerbDel, containerID: "never", netns: "", pod: "default/p"}); err != nil {
		t.Errorf("DEL of an unknown container: %v", err)
	}
	n := cnitest.NewNS(t)
	e.add("c", n, "default/p")
	path := n.Path()
	n.Close()
	if err := unmountNS(path); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := e.do(call{verb: attach.VerbDel, containerID: "c", netns: path, pod: "default/p"}); err != nil {
			t.Fatalf("DEL #%d with the namespace gone: %v", i+1, err)
		}
	}
	e.assertClean(nil)
}

// B: ADD after ADD of the same (container, ifname) is an error and leaves
// the first attachment intact.
func TestAddAfterAdd(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.pod("default", "p", nil)
	n := cnitest.NewNS(t)
	e.add("c", n, "default/p")
	_, err := e.do(call{verb: attach.VerbAdd, containerID: "c", netns: n.Path(), pod: "default/p"})
	if err == nil || cniCode(err) != attach.CodeAlreadyAttached {
		t.Fatalf("second ADD: err = %v, want code %d", err, attach.CodeAlreadyAttached)
	}
	if got := sandboxLinks(t, n); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("interfaces after the refused ADD = %v, want [eth0]", got)
	}
	e.delPod(n)
}

// B: CHECK passes on a healthy pod and fails once an interface is gone.
func TestCheck(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.bridgeNAD("default", "blue", "1.0.0", "10.218.0.0/24")
	n := e.addPod("blue")
	if _, err := e.do(call{verb: attach.VerbCheck, containerID: "c", netns: n.Path(), pod: "default/p"}); err != nil {
		t.Fatalf("CHECK of a healthy pod: %v", err)
	}
	cnitest.InNS(t, n, "link", "del", "net1")
	_, err := e.do(call{verb: attach.VerbCheck, containerID: "c", netns: n.Path(), pod: "default/p"})
	if err == nil || !strings.Contains(err.Error(), "default/blue") {
		t.Errorf("CHECK with net1 deleted: err = %v, want a failure naming default/blue", err)
	}
	if _, err := e.do(call{verb: attach.VerbCheck, containerID: "c", netns: n.Path(), cniVersion: "0.3.1"}); err == nil || cniCode(err) != attach.CodeIncompatibleVersion {
		t.Errorf("CHECK with a 0.3.1 config: err = %v, want code %d", err, attach.CodeIncompatibleVersion)
	}
	e.delPod(n)
}

// B: GC removes every attachment not in cni.dev/valid-attachments and
// keeps the valid ones.
func TestGC(t *testing.T) {
	e := newEnv(t, "1.1.0")
	e.bridgeNAD("default", "blue", "1.1.0", "10.219.0.0/24")
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: "blue"})
	keep, gone := cnitest.NewNS(t), cnitest.NewNS(t)
	e.add("keep", keep, "default/p")
	e.add("gone", gone, "default/p")
	valid := []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}
	if _, err := e.do(call{verb: attach.VerbGC, extraConf: map[string]any{"cni.dev/valid-attachments": valid}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := sandboxLinks(t, gone); len(got) != 0 {
		t.Errorf("GC left %v in the collected pod", got)
	}
	if got := sandboxLinks(t, keep); !slices.Equal(got, []string{"eth0", "net1"}) {
		t.Errorf("GC touched the valid pod: %v", got)
	}
	if _, err := e.records.Get("gone", "eth0"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("record of the collected pod: %v", err)
	}
	if a := e.allocations(); len(a) != 2 {
		t.Errorf("allocations after GC = %v, want the valid pod's 2", a)
	}
	e.del("keep", keep, "default/p")
	e.assertClean(keep)
}

// B: STATUS succeeds while the cluster network is usable and answers 50
// when it is not.
func TestStatus(t *testing.T) {
	e := newEnv(t, "1.1.0")
	if _, err := e.do(call{verb: attach.VerbStatus}); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	os.Remove(e.confDir + "/10-cluster.conflist")
	_, err := e.do(call{verb: attach.VerbStatus})
	if err == nil || cniCode(err) != attach.CodeNotAvailable {
		t.Errorf("STATUS without the cluster network: err = %v, want code 50", err)
	}
}

// Bad input: each fails with a code and a message naming the pod, the
// network and the field, attaches nothing, and the core keeps serving.
func TestBadInput(t *testing.T) {
	e := newEnv(t, "1.0.0")
	e.nad("default", "pathtype", `{"cniVersion":"1.0.0","type":"../../bin/sh"}`)
	e.nad("default", "notjson", `{"cniVersion":`)
	e.nad("default", "oldver", `{"cniVersion":"9.9.9","type":"bridge"}`)
	cases := []struct {
		pod, annotation string
		code            uint
		mention         []string
	}{
		{"badjson", `[{"name":"x"`, attach.CodeInvalidSelection, []string{"default/badjson"}},
		{"badname", `Not_A_Label`, attach.CodeInvalidSelection, []string{"default/badname", "Not_A_Label", `"name"`}},
		{"badip", `[{"name":"x","ips":["10.0.0.1"]}]`, attach.CodeInvalidSelection, []string{"default/badip", "default/x", `"ips"`}},
		{"missing", `nosuchnet`, attach.CodeNotFound, []string{"default/missing", "default/nosuchnet"}},
		{"pathtype", `pathtype`, attach.CodeInvalidConfig, []string{"default/pathtype", "plugins[0].type"}},
		{"notjson", `notjson`, attach.CodeInvalidConfig, []string{"default/notjson"}},
		{"oldver", `oldver`, attach.CodeInvalidConfig, []string{"default/oldver", "cniVersion"}},
		{"huge", strings.Repeat("a,", 200<<10), attach.CodeInvalidSelection, []string{"default/huge"}},
	}
	for _, c := range cases {
		e.pod("default", c.pod, map[string]string{source.NetworksAnnotation: c.annotation})
	}
	for _, c := range cases {
		t.Run(c.pod, func(t *testing.T) {
			wantRefused(t, e, "default/"+c.pod, c.code, c.mention...)
		})
	}
	// Pod not found and invalid environment.
	n := cnitest.NewNS(t)
	if _, err := e.do(call{verb: attach.VerbAdd, containerID: "x", netns: n.Path(), pod: "default/ghost"}); err == nil || cniCode(err) != attach.CodeNotFound || !strings.Contains(err.Error(), "default/ghost") {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := e.do(call{verb: attach.VerbAdd, containerID: "../etc", netns: n.Path(), pod: "default/p"}); err == nil || cniCode(err) != attach.CodeInvalidEnv {
		t.Errorf("bad container ID: %v", err)
	}
	// Still serving.
	e.pod("default", "fine", nil)
	e.add("fine", n, "default/fine")
	e.del("fine", n, "default/fine")
	e.assertClean(n)
}

var _ = libcni.CNIConfig{}
