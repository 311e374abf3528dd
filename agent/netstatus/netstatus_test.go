package netstatus_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types020 "github.com/containernetworking/cni/pkg/types/020"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	current "github.com/containernetworking/cni/pkg/types/100"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/devinfo"
)

func cidr(t testing.TB, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return *n
}

func dst(t testing.TB, s string) net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return *n
}

const sandbox = "/var/run/netns/pod1"

// dualResult is a 1.0.0 result with a host-side veth, one sandbox interface
// (eth0), v4 and v6 addresses, default routes for both families and DNS.
func dualResult(t testing.TB, ifname string) *current.Result {
	return &current.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{
			{Name: "veth1234", Mac: "aa:aa:aa:aa:aa:aa"},
			{Name: ifname, Mac: "02:00:00:00:00:01", Mtu: 1450, Sandbox: sandbox},
		},
		IPs: []*current.IPConfig{
			{Interface: current.Int(1), Address: cidr(t, "10.1.1.5/24"), Gateway: net.ParseIP("10.1.1.1")},
			{Interface: current.Int(1), Address: cidr(t, "fd00::5/64"), Gateway: net.ParseIP("fd00::1")},
			{Interface: current.Int(0), Address: cidr(t, "169.254.1.1/32")},
		},
		Routes: []*types.Route{
			{Dst: dst(t, "0.0.0.0/0"), GW: net.ParseIP("10.1.1.1")},
			{Dst: dst(t, "::/0"), GW: net.ParseIP("fd00::1")},
			{Dst: dst(t, "10.96.0.0/12"), GW: net.ParseIP("10.1.1.254")},
		},
		DNS: types.DNS{Nameservers: []string{"10.96.0.10"}, Domain: "cluster.local", Search: []string{"ns.svc.cluster.local"}},
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	dns := &types.DNS{Nameservers: []string{"10.96.0.10"}, Domain: "cluster.local", Search: []string{"ns.svc.cluster.local"}}
	devInfo := &devinfo.Info{Type: "pci", Version: "1.1.0", PCI: &devinfo.PCI{PCIAddress: "0000:03:00.1", PFPCIAddress: "0000:03:00.0"}}
	twoIfaces := &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{
			{Name: "net1", Mac: "02:00:00:00:00:11", Sandbox: sandbox},
			{Name: "host-side"},
			{Name: "net1-extra", Mac: "02:00:00:00:00:12", Sandbox: sandbox},
		},
		IPs: []*current.IPConfig{
			{Interface: current.Int(2), Address: cidr(t, "192.168.2.2/24")},
			{Interface: current.Int(0), Address: cidr(t, "192.168.1.2/24")},
		},
		Routes: []*types.Route{{Dst: dst(t, "0.0.0.0/0"), GW: net.ParseIP("192.168.1.1")}},
	}
	hostOnly := &current.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "host-veth"}},
		IPs:        []*current.IPConfig{{Address: cidr(t, "10.2.0.7/16")}},
		Routes:     []*types.Route{{Dst: dst(t, "0.0.0.0/0"), GW: net.ParseIP("10.2.0.1")}},
	}
	noIfaces := &current.Result{
		CNIVersion: "1.0.0",
		IPs:        []*current.IPConfig{{Address: cidr(t, "10.3.0.7/16")}, {Address: cidr(t, "fd03::7/64")}},
	}
	tests := []struct {
		name string
		atts []netstatus.Attachment
		want []netstatus.Entry
	}{
		{
			name: "default network with host and sandbox interfaces",
			atts: []netstatus.Attachment{{Name: "cluster", IfName: "eth0", Default: true, Result: dualResult(t, "eth0")}},
			want: []netstatus.Entry{{
				Name: "cluster", Interface: "eth0", IPs: []string{"10.1.1.5", "fd00::5"},
				MAC: "02:00:00:00:00:01", MTU: 1450, Default: true, DNS: dns,
				DefaultRoute: []string{"10.1.1.1", "fd00::1"}, Gateway: []string{"10.1.1.1", "fd00::1"},
			}},
		},
		{
			name: "nil result gives a minimal entry",
			atts: []netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: nil}},
			want: []netstatus.Entry{{Name: "ns1/net1", Interface: "net1"}},
		},
		{
			name: "nil result keeps device info",
			atts: []netstatus.Attachment{{Name: "ns1/sriov", IfName: "net1", DeviceInfo: devInfo}},
			want: []netstatus.Entry{{Name: "ns1/sriov", Interface: "net1", DeviceInfo: devInfo}},
		},
		{
			name: "result without interfaces gives a minimal entry with its IPs",
			atts: []netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: noIfaces}},
			want: []netstatus.Entry{{Name: "ns1/net1", Interface: "net1", IPs: []string{"10.3.0.7", "fd03::7"}}},
		},
		{
			name: "result with only host interfaces gives a minimal entry",
			atts: []netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: hostOnly}},
			want: []netstatus.Entry{{Name: "ns1/net1", Interface: "net1", IPs: []string{"10.2.0.7"}, DefaultRoute: []string{"10.2.0.1"}, Gateway: []string{"10.2.0.1"}}},
		},
		{
			name: "one entry per sandbox interface",
			atts: []netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: twoIfaces, DeviceInfo: devInfo}},
			want: []netstatus.Entry{
				{Name: "ns1/net1", Interface: "net1", IPs: []string{"192.168.1.2"}, MAC: "02:00:00:00:00:11", DefaultRoute: []string{"192.168.1.1"}, Gateway: []string{"192.168.1.1"}, DeviceInfo: devInfo},
				{Name: "ns1/net1", Interface: "net1-extra", IPs: []string{"192.168.2.2"}, MAC: "02:00:00:00:00:12", DeviceInfo: devInfo},
			},
		},
		{
			name: "default attachment with two sandbox interfaces is default once",
			atts: []netstatus.Attachment{
				{Name: "cluster", IfName: "net1", Default: true, Result: twoIfaces},
				{Name: "ns1/other", IfName: "net2"},
			},
			want: []netstatus.Entry{
				{Name: "cluster", Interface: "net1", IPs: []string{"192.168.1.2"}, MAC: "02:00:00:00:00:11", Default: true, DefaultRoute: []string{"192.168.1.1"}, Gateway: []string{"192.168.1.1"}},
				{Name: "cluster", Interface: "net1-extra", IPs: []string{"192.168.2.2"}, MAC: "02:00:00:00:00:12"},
				{Name: "ns1/other", Interface: "net2"},
			},
		},
		{
			name: "default attachment not first",
			atts: []netstatus.Attachment{
				{Name: "ns1/a", IfName: "net1"},
				{Name: "cluster", IfName: "eth0", Default: true},
				{Name: "ns1/b", IfName: "net2"},
			},
			want: []netstatus.Entry{
				{Name: "ns1/a", Interface: "net1"},
				{Name: "cluster", Interface: "eth0", Default: true},
				{Name: "ns1/b", Interface: "net2"},
			},
		},
		{
			name: "only the first attachment marked default gets it",
			atts: []netstatus.Attachment{
				{Name: "cluster", IfName: "eth0", Default: true},
				{Name: "cluster2", IfName: "eth1", Default: true},
			},
			want: []netstatus.Entry{
				{Name: "cluster", Interface: "eth0", Default: true},
				{Name: "cluster2", Interface: "eth1"},
			},
		},
		{
			name: "no attachments",
			atts: nil,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := netstatus.Build(tt.atts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tt.want)
				t.Errorf("Build =\n %s\nwant\n %s", gj, wj)
			}
		})
	}
}

// TestBuildExactlyOneDefault covers A.15 over combinations of attachment
// shapes: whatever the results look like, exactly one entry is default and
// it is the first entry of the default attachment.
func TestBuildExactlyOneDefault(t *testing.T) {
	t.Parallel()
	results := map[string]types.Result{
		"nil":        nil,
		"dual":       dualResult(t, "eth0"),
		"no-ifaces":  &current.Result{CNIVersion: "1.0.0"},
		"host-only":  &current.Result{CNIVersion: "1.0.0", Interfaces: []*current.Interface{{Name: "veth"}}},
		"two-ifaces": &current.Result{CNIVersion: "1.0.0", Interfaces: []*current.Interface{{Name: "a", Sandbox: sandbox}, {Name: "b", Sandbox: sandbox}}},
	}
	var names []string
	for k := range results {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, def := range names {
		for _, other := range names {
			for defPos := 0; defPos < 3; defPos++ {
				var atts []netstatus.Attachment
				for i := 0; i < 3; i++ {
					if i == defPos {
						atts = append(atts, netstatus.Attachment{Name: "cluster", IfName: "eth0", Default: true, Result: results[def]})
					} else {
						atts = append(atts, netstatus.Attachment{Name: "ns/other", IfName: "net1", Result: results[other]})
					}
				}
				entries, err := netstatus.Build(atts)
				if err != nil {
					t.Fatalf("Build(default=%s other=%s pos=%d): %v", def, other, defPos, err)
				}
				var defaults []int
				firstDefault := -1
				for i, e := range entries {
					if e.Default {
						defaults = append(defaults, i)
					}
					if e.Name == "cluster" && firstDefault < 0 {
						firstDefault = i
					}
				}
				if len(defaults) != 1 || defaults[0] != firstDefault {
					t.Errorf("Build(default=%s other=%s pos=%d): default entries at %v, want exactly [%d]", def, other, defPos, defaults, firstDefault)
				}
			}
		}
	}
}

// TestBuildV040 exercises conversion of a 0.4.0 result.
func TestBuildV040(t *testing.T) {
	t.Parallel()
	res := &types040.Result{
		CNIVersion: "0.4.0",
		Interfaces: []*types040.Interface{
			{Name: "vethhost", Mac: "aa:bb:cc:dd:ee:ff"},
			{Name: "net1", Mac: "02:00:00:00:00:02", Sandbox: sandbox},
		},
		IPs: []*types040.IPConfig{
			{Version: "4", Interface: types040.Int(1), Address: cidr(t, "10.5.0.9/24"), Gateway: net.ParseIP("10.5.0.1")},
			{Version: "6", Interface: types040.Int(1), Address: cidr(t, "fd05::9/64")},
		},
		Routes: []*types.Route{{Dst: dst(t, "0.0.0.0/0"), GW: net.ParseIP("10.5.0.1")}},
		DNS:    types.DNS{Nameservers: []string{"1.1.1.1"}},
	}
	got, err := netstatus.Build([]netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: res}})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := []netstatus.Entry{{
		Name: "ns1/net1", Interface: "net1", IPs: []string{"10.5.0.9", "fd05::9"},
		MAC: "02:00:00:00:00:02", DNS: &types.DNS{Nameservers: []string{"1.1.1.1"}},
		DefaultRoute: []string{"10.5.0.1"}, Gateway: []string{"10.5.0.1"},
	}}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Errorf("Build =\n %s\nwant\n %s", gj, wj)
	}
}

// TestBuildJSON covers A.16 and A.17: the marshalled keys.
func TestBuildJSON(t *testing.T) {
	t.Parallel()
	devInfo := &devinfo.Info{Type: "pci", Version: "1.1.0", PCI: &devinfo.PCI{PCIAddress: "0000:03:00.1"}}
	nonDefaultRoutes := &current.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "net2", Sandbox: sandbox}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: cidr(t, "10.9.0.2/24")}},
		Routes: []*types.Route{
			{Dst: dst(t, "10.0.0.0/8"), GW: net.ParseIP("10.9.0.1")},
			{Dst: dst(t, "0.0.0.0/0")}, // default route without any gateway to go via
		},
	}
	atts := []netstatus.Attachment{
		{Name: "kube-system/cluster", IfName: "eth0", Default: true, Result: dualResult(t, "eth0")},
		{Name: "ns1/net2", IfName: "net2", Result: nonDefaultRoutes, DeviceInfo: devInfo},
		{Name: "ns1/net3", IfName: "net3"},
	}
	entries, err := netstatus.Build(atts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	data, err := json.Marshal(entries)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var got []map[string]json.RawMessage
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("Unmarshal %s: %v", data, err)
	}
	wantKeys := [][]string{
		{"default", "default-route", "dns", "gateway", "interface", "ips", "mac", "mtu", "name"},
		{"device-info", "interface", "ips", "name"},
		{"interface", "name"},
	}
	if len(got) != len(wantKeys) {
		t.Fatalf("got %d entries, want %d: %s", len(got), len(wantKeys), data)
	}
	for i, want := range wantKeys {
		var keys []string
		for k := range got[i] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, want) {
			t.Errorf("entry %d keys = %v, want %v", i, keys, want)
		}
		if string(got[i]["gateway"]) != string(got[i]["default-route"]) {
			t.Errorf("entry %d: gateway %s differs from default-route %s", i, got[i]["gateway"], got[i]["default-route"])
		}
	}

	// The values, as another component would read them.
	var first struct {
		Name         string   `json:"name"`
		Interface    string   `json:"interface"`
		IPs          []string `json:"ips"`
		MAC          string   `json:"mac"`
		MTU          int      `json:"mtu"`
		Default      bool     `json:"default"`
		DefaultRoute []string `json:"default-route"`
		DNS          struct {
			Nameservers []string `json:"nameservers"`
			Domain      string   `json:"domain"`
			Search      []string `json:"search"`
		} `json:"dns"`
	}
	raw, _ := json.Marshal(got[0])
	if err := json.Unmarshal(raw, &first); err != nil {
		t.Fatal(err)
	}
	if first.Name != "kube-system/cluster" || first.Interface != "eth0" || first.MAC != "02:00:00:00:00:01" ||
		first.MTU != 1450 || !first.Default ||
		!reflect.DeepEqual(first.IPs, []string{"10.1.1.5", "fd00::5"}) ||
		!reflect.DeepEqual(first.DefaultRoute, []string{"10.1.1.1", "fd00::1"}) ||
		!reflect.DeepEqual(first.DNS.Nameservers, []string{"10.96.0.10"}) || first.DNS.Domain != "cluster.local" {
		t.Errorf("first entry = %+v", first)
	}
	var second struct {
		Name       string `json:"name"`
		DeviceInfo struct {
			Type    string `json:"type"`
			Version string `json:"version"`
			PCI     struct {
				PCIAddress string `json:"pci-address"`
			} `json:"pci"`
		} `json:"device-info"`
	}
	raw, _ = json.Marshal(got[1])
	if err := json.Unmarshal(raw, &second); err != nil {
		t.Fatal(err)
	}
	if second.Name != "ns1/net2" || second.DeviceInfo.Type != "pci" || second.DeviceInfo.Version != "1.1.0" || second.DeviceInfo.PCI.PCIAddress != "0000:03:00.1" {
		t.Errorf("second entry = %+v", second)
	}
}

// badResult is a result no converter knows.
type badResult struct{}

func (badResult) Version() string                           { return "9.9.9" }
func (badResult) GetAsVersion(string) (types.Result, error) { return nil, errors.New("no") }
func (badResult) Print() error                              { return nil }
func (badResult) PrintTo(io.Writer) error                   { return nil }

func TestBuildUnconvertibleResult(t *testing.T) {
	t.Parallel()
	got, err := netstatus.Build([]netstatus.Attachment{
		{Name: "cluster", IfName: "eth0", Default: true},
		{Name: "ns1/bad", IfName: "net1", Result: badResult{}},
	})
	if err == nil {
		t.Fatalf("Build = %+v, want an error", got)
	}
	if got != nil {
		t.Errorf("Build returned entries with an error: %+v", got)
	}
	for _, want := range []string{"ns1/bad", "net1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// TestBuildDefaultRouteGateway: default-route (and gateway, its Multus
// name) lists the gateway of each default route; a default route without
// one goes via the result's IP
// gateway of the same family; non-default routes are not listed.
func TestBuildDefaultRouteGateway(t *testing.T) {
	t.Parallel()
	ips := []*current.IPConfig{
		{Interface: current.Int(0), Address: cidr(t, "fd00::5/64"), Gateway: net.ParseIP("fd00::1")},
		{Interface: current.Int(0), Address: cidr(t, "10.1.1.5/24"), Gateway: net.ParseIP("10.1.1.1")},
	}
	noGW := []*current.IPConfig{{Interface: current.Int(0), Address: cidr(t, "10.1.1.5/24")}}
	tests := []struct {
		name   string
		ips    []*current.IPConfig
		routes []*types.Route
		want   []string
	}{
		{"explicit gateways", ips, []*types.Route{
			{Dst: dst(t, "0.0.0.0/0"), GW: net.ParseIP("10.1.1.254")},
			{Dst: dst(t, "::/0"), GW: net.ParseIP("fd00::fe")},
		}, []string{"10.1.1.254", "fd00::fe"}},
		{"v4 default via IP gateway", ips, []*types.Route{{Dst: dst(t, "0.0.0.0/0")}}, []string{"10.1.1.1"}},
		{"v6 default via IP gateway", ips, []*types.Route{{Dst: dst(t, "::/0")}}, []string{"fd00::1"}},
		{"no gateway anywhere", noGW, []*types.Route{{Dst: dst(t, "0.0.0.0/0")}, {Dst: dst(t, "::/0")}}, nil},
		{"non-default routes", ips, []*types.Route{
			{Dst: dst(t, "10.0.0.0/8"), GW: net.ParseIP("10.1.1.1")},
			{Dst: dst(t, "0.0.0.0/1"), GW: net.ParseIP("10.1.1.1")},
			{Dst: dst(t, "fd00::/8"), GW: net.ParseIP("fd00::1")},
		}, nil},
		{"no routes", ips, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := &current.Result{
				CNIVersion: "1.0.0",
				Interfaces: []*current.Interface{{Name: "net1", Sandbox: sandbox}},
				IPs:        tt.ips,
				Routes:     tt.routes,
			}
			got, err := netstatus.Build([]netstatus.Attachment{{Name: "ns1/net1", IfName: "net1", Result: res}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("Build returned %d entries, want 1", len(got))
			}
			if !reflect.DeepEqual(got[0].DefaultRoute, tt.want) || !reflect.DeepEqual(got[0].Gateway, tt.want) {
				t.Errorf("DefaultRoute = %q, Gateway = %q, want both %q", got[0].DefaultRoute, got[0].Gateway, tt.want)
			}
			data, err := json.Marshal(got[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{`"default-route"`, `"gateway"`} {
				if has := strings.Contains(string(data), key); has != (tt.want != nil) {
					t.Errorf("JSON %s: %s present = %v, want %v", data, key, has, tt.want != nil)
				}
			}
		})
	}
}

// TestBuildReadByNADClient: tools that read network-status with the NAD
// client's NetworkStatus type (as they read Multus's) get every field,
// the default gateways under "gateway" and the result's DNS included.
func TestBuildReadByNADClient(t *testing.T) {
	t.Parallel()
	res := dualResult(t, "eth0")
	res.DNS.Options = []string{"ndots:5"}
	devInfo := &devinfo.Info{Type: "pci", Version: "1.1.0", PCI: &devinfo.PCI{PCIAddress: "0000:03:00.1", PFPCIAddress: "0000:03:00.0"}}
	secondary := &current.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "net1", Mac: "02:00:00:00:00:21", Sandbox: sandbox}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: cidr(t, "10.9.0.2/24"), Gateway: net.ParseIP("10.9.0.1")}},
		Routes:     []*types.Route{{Dst: dst(t, "0.0.0.0/0")}},
	}
	entries, err := netstatus.Build([]netstatus.Attachment{
		{Name: "kube-system/cluster", IfName: "eth0", Default: true, Result: res},
		{Name: "ns1/sriov", IfName: "net1", Result: secondary, DeviceInfo: devInfo},
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	data, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	var got []nadv1.NetworkStatus
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("decode %s as the NAD client's NetworkStatus: %v", data, err)
	}
	want := []nadv1.NetworkStatus{
		{
			Name: "kube-system/cluster", Interface: "eth0", IPs: []string{"10.1.1.5", "fd00::5"},
			Mac: "02:00:00:00:00:01", Mtu: 1450, Default: true,
			DNS:     nadv1.DNS{Nameservers: []string{"10.96.0.10"}, Domain: "cluster.local", Search: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}},
			Gateway: []string{"10.1.1.1", "fd00::1"},
		},
		{
			Name: "ns1/sriov", Interface: "net1", IPs: []string{"10.9.0.2"}, Mac: "02:00:00:00:00:21",
			DeviceInfo: &nadv1.DeviceInfo{Type: "pci", Version: "1.1.0", Pci: &nadv1.PciDevice{PciAddress: "0000:03:00.1", PfPciAddress: "0000:03:00.0"}},
			Gateway:    []string{"10.9.0.1"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NAD client reads\n %+v\nwant\n %+v\nfrom %s", got, want, data)
	}
}

// TestBuildV020 covers old-format results (0.1.0 and 0.2.0: ip4/ip6
// objects, no interfaces), as libcni returns them from such delegates:
// one entry for the attachment with every address, its default gateway
// and DNS.
func TestBuildV020(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0.1.0", "0.2.0"} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			res := &types020.Result{
				CNIVersion: v,
				IP4: &types020.IPConfig{
					IP: cidr(t, "10.7.0.9/24"), Gateway: net.ParseIP("10.7.0.1"),
					Routes: []types.Route{{Dst: dst(t, "0.0.0.0/0")}, {Dst: dst(t, "10.96.0.0/12"), GW: net.ParseIP("10.7.0.254")}},
				},
				IP6: &types020.IPConfig{IP: cidr(t, "fd07::9/64"), Gateway: net.ParseIP("fd07::1")},
				DNS: types.DNS{Nameservers: []string{"10.96.0.10"}, Search: []string{"svc.cluster.local"}},
			}
			got, err := netstatus.Build([]netstatus.Attachment{{Name: "ns1/old", IfName: "net1", Result: res}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			want := []netstatus.Entry{{
				Name: "ns1/old", Interface: "net1", IPs: []string{"10.7.0.9", "fd07::9"},
				DNS:          &types.DNS{Nameservers: []string{"10.96.0.10"}, Search: []string{"svc.cluster.local"}},
				DefaultRoute: []string{"10.7.0.1"}, Gateway: []string{"10.7.0.1"},
			}}
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Errorf("Build =\n %s\nwant\n %s", gj, wj)
			}
		})
	}
}
