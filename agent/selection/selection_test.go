package selection_test

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

var pod = selection.PodRef{Namespace: "podns", Name: "mypod"}

// wantSelErr asserts err is a *selection.Error for pod with the given field
// and network, and that its message names the pod, the network and the field
// (A.6).
func wantSelErr(t *testing.T, err error, network, field string) *selection.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want a *selection.Error with field %q", field)
	}
	var selErr *selection.Error
	if !errors.As(err, &selErr) {
		t.Fatalf("error %v (%T) is not a *selection.Error", err, err)
	}
	if selErr.Pod != pod {
		t.Errorf("Error.Pod = %v, want %v", selErr.Pod, pod)
	}
	if selErr.Field != field {
		t.Errorf("Error.Field = %q, want %q (error: %v)", selErr.Field, field, err)
	}
	if network != "" && selErr.Network != network {
		t.Errorf("Error.Network = %q, want %q (error: %v)", selErr.Network, network, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, pod.String()) {
		t.Errorf("error %q does not name the pod %q", msg, pod.String())
	}
	if network != "" && !strings.Contains(msg, network) {
		t.Errorf("error %q does not name the network %q", msg, network)
	}
	if field != "" && !strings.Contains(msg, field) {
		t.Errorf("error %q does not name the field %q", msg, field)
	}
	return selErr
}

// wantParseErr asserts Parse refuses value with no elements and a
// *selection.Error for network and field (see wantSelErr).
func wantParseErr(t *testing.T, value, network, field string) {
	t.Helper()
	got, err := selection.Parse(pod, value)
	if got != nil {
		t.Errorf("Parse(%q) returned elements %+v with an error", value, got)
	}
	wantSelErr(t, err, network, field)
}

// parseErrCase is an annotation Parse refuses, naming network and field.
type parseErrCase struct{ name, value, network, field string }

func testParseErrs(t *testing.T, tests []parseErrCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantParseErr(t, tt.value, tt.network, tt.field)
		})
	}
}

// parseCase is an annotation and the elements Parse returns for it.
type parseCase struct {
	name  string
	value string
	want  []selection.Element
}

func testParse(t *testing.T, tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := selection.Parse(pod, tt.value)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.value, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) =\n %#v\nwant\n %#v", tt.value, got, tt.want)
			}
			for i := range got {
				if k, w := got[i].Key(), tt.want[i].Namespace+"/"+tt.want[i].Name; k != w {
					t.Errorf("element %d Key() = %q, want %q", i, k, w)
				}
			}
		})
	}
}

func TestIsDNS1123Label(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"net1", true},
		{"my-net", true},
		{"0abc", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Net1", false},
		{"my_net", false},
		{"-net", false},
		{"net-", false},
		{"my.net", false},
		{"my net", false},
		{"nét", false},
	}
	for _, tt := range tests {
		if got := selection.IsDNS1123Label(tt.in); got != tt.want {
			t.Errorf("IsDNS1123Label(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidIfName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		valid bool
	}{
		{"eth0", true},
		{"net1", true},
		{strings.Repeat("a", 15), true},
		{"a-b_c.d", true},
		{"", false},
		{strings.Repeat("a", 16), false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
		{"a\tb", false},
		{"a\x00b", false},
		{"eth\x7f", false},
		{"ethé", false},
	}
	for _, tt := range tests {
		why := selection.ValidIfName(tt.in)
		if (why == "") != tt.valid {
			t.Errorf("ValidIfName(%q) = %q, want valid=%v", tt.in, why, tt.valid)
		}
	}
}

// TestParseEmpty: an empty or blank annotation is an empty selection.
func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"", " ", "\n\t  "} {
		got, err := selection.Parse(pod, v)
		if err != nil || got != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", v, got, err)
		}
	}
}

// TestParseCommaForm covers A.4 for the comma form: [namespace/]name[@ifname].
func TestParseCommaForm(t *testing.T) {
	t.Parallel()
	testParse(t, []parseCase{
		{"bare name gets pod namespace", "net1",
			[]selection.Element{{Name: "net1", Namespace: "podns"}}},
		{"explicit namespace", "other/net1",
			[]selection.Element{{Name: "net1", Namespace: "other"}}},
		{"interface", "net1@eth5",
			[]selection.Element{{Name: "net1", Namespace: "podns", Interface: "eth5"}}},
		{"namespace and interface", "other/net1@eth5",
			[]selection.Element{{Name: "net1", Namespace: "other", Interface: "eth5"}}},
		{"list with spaces", " net1 , other/net2@n2,net1 ",
			[]selection.Element{
				{Name: "net1", Namespace: "podns"},
				{Name: "net2", Namespace: "other", Interface: "n2"},
				{Name: "net1", Namespace: "podns"},
			}},
		{"max length name", strings.Repeat("n", 63),
			[]selection.Element{{Name: strings.Repeat("n", 63), Namespace: "podns"}}},
	})
}

// TestParseCommaFormInvalid covers A.1 for the comma form, plus malformed entries.
func TestParseCommaFormInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	testParseErrs(t, []parseErrCase{
		{"uppercase name", "Net1", "Net1", "name"},
		{"underscore name", "my_net", "my_net", "name"},
		{"long name", long, long, "name"},
		{"leading dash name", "-net", "-net", "name"},
		{"trailing dash name", "net-", "net-", "name"},
		{"dot in name", "my.net", "my.net", "name"},
		{"empty name with namespace", "ns1/", "ns1/", "name"},
		{"empty name with interface", "@eth1", "", "name"},
		{"uppercase namespace", "NS/net1", "NS/net1", "namespace"},
		{"underscore namespace", "my_ns/net1", "my_ns/net1", "namespace"},
		{"long namespace", long + "/net1", long + "/net1", "namespace"},
		{"leading dash namespace", "-ns/net1", "-ns/net1", "namespace"},
		{"trailing dash namespace", "ns-/net1", "ns-/net1", "namespace"},
		{"empty namespace", "/net1", "/net1", "namespace"},
		{"too many slashes", "a/b/c", "a/b/c", ""},
		{"empty interface", "net1@", "net1", "interface"},
		{"long interface", "net1@" + strings.Repeat("e", 16), "net1", "interface"},
		{"interface with slash", "net1@a/b", "net1", "interface"},
		{"interface with colon", "net1@eth0:1", "net1", "interface"},
		{"interface dot", "net1@.", "net1", "interface"},
		{"empty entry", "net1,,net2", "", ""},
		{"trailing comma", "net1,", "", ""},
		{"bad second entry", "net1,Net2", "Net2", "name"},
	})
}

// TestParseJSONForm covers A.4 and A.5: every known key is decoded, the
// namespace defaults to the pod's, dotted keys are ignored.
func TestParseJSONForm(t *testing.T) {
	t.Parallel()
	testParse(t, []parseCase{
		{"name only, pod namespace", `[{"name":"net1"}]`,
			[]selection.Element{{Name: "net1", Namespace: "podns"}}},
		{"explicit namespace", `[{"name":"net1","namespace":"other"}]`,
			[]selection.Element{{Name: "net1", Namespace: "other"}}},
		{"null namespace counts as absent", `[{"name":"net1","namespace":null}]`,
			[]selection.Element{{Name: "net1", Namespace: "podns"}}},
		{"empty list", `[]`, []selection.Element{}},
		{"surrounding whitespace", "\n  [ {\"name\" : \"net1\"} ]  \n",
			[]selection.Element{{Name: "net1", Namespace: "podns"}}},
		{"dotted vendor keys ignored", `[{"name":"net1","example.com/foo":{"x":1},"a.b":"c"}]`,
			[]selection.Element{{Name: "net1", Namespace: "podns"}}},
		{"every key", `[{
			"name": "net1",
			"namespace": "other",
			"interface": "eth9",
			"ips": ["10.1.1.5/24", "fd00::5/64"],
			"mac": "02:00:00:00:00:01",
			"portMappings": [
				{"hostPort": 8080, "containerPort": 80},
				{"hostPort": 1, "containerPort": 65535, "protocol": "UDP", "hostIP": "192.0.2.1"},
				{"hostPort": 65535, "containerPort": 1, "protocol": "Sctp"}
			],
			"bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 3000, "egressBurst": 4000},
			"infiniband-guid": "00:11:22:33:44:55:66:77",
			"cni-args": {"foo": "bar", "n": 1},
			"default-route": ["10.1.1.1", "fd00::1"],
			"ipam-claim-reference": "",
			"deviceID": "0000:03:00.1"
		}, {"name": "net2", "ipam-claim-reference": "claim-1"}]`,
			[]selection.Element{{
				Name:      "net1",
				Namespace: "other",
				Interface: "eth9",
				IPs:       []string{"10.1.1.5/24", "fd00::5/64"},
				MAC:       "02:00:00:00:00:01",
				PortMappings: []selection.PortMapping{
					{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
					{HostPort: 1, ContainerPort: 65535, Protocol: "udp", HostIP: "192.0.2.1"},
					{HostPort: 65535, ContainerPort: 1, Protocol: "sctp"},
				},
				Bandwidth:      &selection.Bandwidth{IngressRate: 1000, IngressBurst: 2000, EgressRate: 3000, EgressBurst: 4000},
				InfinibandGUID: "00:11:22:33:44:55:66:77",
				CNIArgs:        map[string]any{"foo": "bar", "n": float64(1)},
				DefaultRoute:   []net.IP{net.ParseIP("10.1.1.1"), net.ParseIP("fd00::1")},
				DeviceID:       "0000:03:00.1",
			}, {
				Name: "net2", Namespace: "podns", IPAMClaimReference: "claim-1",
			}}},
	})
}

// TestParseJSONPortMappings covers A.10: port ranges and protocols.
func TestParseJSONPortMappings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mapping   string
		wantProto string // "" means invalid
	}{
		{"default protocol tcp", `{"hostPort":80,"containerPort":80}`, "tcp"},
		{"empty protocol tcp", `{"hostPort":80,"containerPort":80,"protocol":""}`, "tcp"},
		{"TCP", `{"hostPort":80,"containerPort":80,"protocol":"TCP"}`, "tcp"},
		{"tcp", `{"hostPort":80,"containerPort":80,"protocol":"tcp"}`, "tcp"},
		{"UDP", `{"hostPort":80,"containerPort":80,"protocol":"UDP"}`, "udp"},
		{"uDp", `{"hostPort":80,"containerPort":80,"protocol":"uDp"}`, "udp"},
		{"SCTP", `{"hostPort":80,"containerPort":80,"protocol":"SCTP"}`, "sctp"},
		{"sctp", `{"hostPort":80,"containerPort":80,"protocol":"sctp"}`, "sctp"},
		{"min ports", `{"hostPort":1,"containerPort":1}`, "tcp"},
		{"max ports", `{"hostPort":65535,"containerPort":65535}`, "tcp"},
		{"ipv6 hostIP", `{"hostPort":1,"containerPort":1,"hostIP":"::1"}`, "tcp"},
		{"hostPort 0", `{"hostPort":0,"containerPort":80}`, ""},
		{"hostPort missing", `{"containerPort":80}`, ""},
		{"hostPort 65536", `{"hostPort":65536,"containerPort":80}`, ""},
		{"hostPort negative", `{"hostPort":-1,"containerPort":80}`, ""},
		{"containerPort 0", `{"hostPort":80,"containerPort":0}`, ""},
		{"containerPort missing", `{"hostPort":80}`, ""},
		{"containerPort 65536", `{"hostPort":80,"containerPort":65536}`, ""},
		{"containerPort negative", `{"hostPort":80,"containerPort":-80}`, ""},
		{"port not integer", `{"hostPort":80.5,"containerPort":80}`, ""},
		{"port a string", `{"hostPort":"80","containerPort":80}`, ""},
		{"protocol icmp", `{"hostPort":80,"containerPort":80,"protocol":"icmp"}`, ""},
		{"protocol tcp6", `{"hostPort":80,"containerPort":80,"protocol":"tcp6"}`, ""},
		{"bad hostIP", `{"hostPort":80,"containerPort":80,"hostIP":"1.2.3"}`, ""},
		{"unknown key in mapping", `{"hostPort":80,"containerPort":80,"extra":1}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			value := `[{"name":"net1","portMappings":[` + tt.mapping + `]}]`
			if tt.wantProto == "" {
				wantParseErr(t, value, "podns/net1", "portMappings")
				return
			}
			got, err := selection.Parse(pod, value)
			if err != nil {
				t.Fatalf("Parse(%s): %v", value, err)
			}
			if len(got) != 1 || len(got[0].PortMappings) != 1 {
				t.Fatalf("Parse(%s) = %+v, want one element with one port mapping", value, got)
			}
			if p := got[0].PortMappings[0].Protocol; p != tt.wantProto {
				t.Errorf("protocol = %q, want %q", p, tt.wantProto)
			}
		})
	}
}

// TestParseJSONInvalid covers A.1 (names and namespaces in the JSON form),
// A.5 (unknown keys), A.6 (invalid ips, mac, interface, portMappings,
// bandwidth, infiniband-guid), A.11 and A.12: each is a *selection.Error
// naming the pod, the network and the field.
func TestParseJSONInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	const nw = "podns/net1"
	el := func(extra string) string { return `[{"name":"net1",` + extra + `}]` }
	testParseErrs(t, []parseErrCase{
		// A.1: names.
		{"uppercase name", `[{"name":"Net1"}]`, "Net1", "name"},
		{"underscore name", `[{"name":"my_net"}]`, "my_net", "name"},
		{"long name", `[{"name":"` + long + `"}]`, long, "name"},
		{"leading dash name", `[{"name":"-net"}]`, "-net", "name"},
		{"trailing dash name", `[{"name":"net-"}]`, "net-", "name"},
		{"empty name", `[{"name":""}]`, "#0", "name"},
		{"missing name", `[{"namespace":"ns1"}]`, "#0", "name"},
		{"null name", `[{"name":null}]`, "#0", "name"},
		{"name not a string", `[{"name":5}]`, "#0", "name"},
		{"slash in name", `[{"name":"ns/net1"}]`, "ns/net1", "name"},
		{"second element bad", `[{"name":"net1"},{"name":"Bad"}]`, "Bad", "name"},
		// A.1: namespaces.
		{"uppercase namespace", el(`"namespace":"NS"`), "net1", "namespace"},
		{"underscore namespace", el(`"namespace":"my_ns"`), "net1", "namespace"},
		{"long namespace", el(`"namespace":"` + long + `"`), "net1", "namespace"},
		{"leading dash namespace", el(`"namespace":"-ns"`), "net1", "namespace"},
		{"trailing dash namespace", el(`"namespace":"ns-"`), "net1", "namespace"},
		{"empty namespace", el(`"namespace":""`), "net1", "namespace"},
		{"namespace not a string", el(`"namespace":1`), "net1", "namespace"},
		// A.5: reserved keys.
		{"unknown key", el(`"foo":1`), nw, "foo"},
		{"misspelled key", el(`"portmappings":[]`), nw, "portmappings"},
		{"wrong case key", el(`"Interface":"eth1"`), nw, "Interface"},
		{"camel case infiniband", el(`"infinibandGUID":"00:11:22:33:44:55:66:77"`), nw, "infinibandGUID"},
		// A.6: ips.
		{"ip without prefix", el(`"ips":["10.1.1.5"]`), nw, "ips"},
		{"ip garbage", el(`"ips":["garbage"]`), nw, "ips"},
		{"ip bad prefix", el(`"ips":["10.1.1.5/33"]`), nw, "ips"},
		{"second ip bad", el(`"ips":["10.1.1.5/24","fd00::1"]`), nw, "ips"},
		{"ips not a list", el(`"ips":"10.1.1.5/24"`), nw, "ips"},
		{"ips not strings", el(`"ips":[1]`), nw, "ips"},
		// A.6: mac.
		{"mac 64-bit", el(`"mac":"00:11:22:33:44:55:66:77"`), nw, "mac"},
		{"mac short", el(`"mac":"00:11:22:33:44"`), nw, "mac"},
		{"mac garbage", el(`"mac":"zz:11:22:33:44:55"`), nw, "mac"},
		{"mac empty", el(`"mac":""`), nw, "mac"},
		{"mac not a string", el(`"mac":12`), nw, "mac"},
		// A.6: interface.
		{"interface too long", el(`"interface":"abcdefghijklmnop"`), nw, "interface"},
		{"interface slash", el(`"interface":"a/b"`), nw, "interface"},
		{"interface colon", el(`"interface":"eth0:1"`), nw, "interface"},
		{"interface space", el(`"interface":"eth 0"`), nw, "interface"},
		{"interface dot", el(`"interface":"."`), nw, "interface"},
		{"interface dotdot", el(`"interface":".."`), nw, "interface"},
		{"interface empty", el(`"interface":""`), nw, "interface"},
		{"interface not a string", el(`"interface":0`), nw, "interface"},
		// A.6, A.10: portMappings.
		{"portMappings not a list", el(`"portMappings":{"hostPort":1,"containerPort":1}`), nw, "portMappings"},
		{"portMappings bad port", el(`"portMappings":[{"hostPort":70000,"containerPort":1}]`), nw, "portMappings"},
		{"portMappings bad protocol", el(`"portMappings":[{"hostPort":1,"containerPort":1,"protocol":"icmp"}]`), nw, "portMappings"},
		// A.6: bandwidth.
		{"bandwidth negative ingress rate", el(`"bandwidth":{"ingressRate":-1,"ingressBurst":1}`), nw, "bandwidth"},
		{"bandwidth negative ingress burst", el(`"bandwidth":{"ingressRate":1,"ingressBurst":-1}`), nw, "bandwidth"},
		{"bandwidth negative egress rate", el(`"bandwidth":{"egressRate":-1,"egressBurst":1}`), nw, "bandwidth"},
		{"bandwidth negative egress burst", el(`"bandwidth":{"egressRate":1,"egressBurst":-5}`), nw, "bandwidth"},
		{"bandwidth ingress rate without burst", el(`"bandwidth":{"ingressRate":1000}`), nw, "bandwidth"},
		{"bandwidth ingress burst without rate", el(`"bandwidth":{"ingressBurst":1000}`), nw, "bandwidth"},
		{"bandwidth egress rate without burst", el(`"bandwidth":{"egressRate":1000}`), nw, "bandwidth"},
		{"bandwidth egress burst without rate", el(`"bandwidth":{"egressBurst":1000}`), nw, "bandwidth"},
		{"bandwidth unknown key", el(`"bandwidth":{"rate":1}`), nw, "bandwidth"},
		{"bandwidth not an object", el(`"bandwidth":5`), nw, "bandwidth"},
		// A.6: infiniband-guid.
		{"guid 6 bytes", el(`"infiniband-guid":"00:11:22:33:44:55"`), nw, "infiniband-guid"},
		{"guid 20 bytes", el(`"infiniband-guid":"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"`), nw, "infiniband-guid"},
		{"guid garbage", el(`"infiniband-guid":"guid"`), nw, "infiniband-guid"},
		{"guid empty", el(`"infiniband-guid":""`), nw, "infiniband-guid"},
		// Other keys' types.
		{"cni-args not an object", el(`"cni-args":["a"]`), nw, "cni-args"},
		{"deviceID not a string", el(`"deviceID":1`), nw, "deviceID"},
		{"ipam-claim-reference not a string", el(`"ipam-claim-reference":1`), nw, "ipam-claim-reference"},
		// A.11: default-route.
		{"two v4 gateways", el(`"default-route":["10.0.0.1","10.0.0.2"]`), nw, "default-route"},
		{"two v6 gateways", el(`"default-route":["fd00::1","fd00::2"]`), nw, "default-route"},
		{"two v4 one v6", el(`"default-route":["10.0.0.1","fd00::1","10.0.0.2"]`), nw, "default-route"},
		{"gateway garbage", el(`"default-route":["gw"]`), nw, "default-route"},
		{"gateway with prefix", el(`"default-route":["10.0.0.1/24"]`), nw, "default-route"},
		{"default-route not a list", el(`"default-route":"10.0.0.1"`), nw, "default-route"},
		// A.12.
		{"claim with ips", el(`"ips":["10.1.1.5/24"],"ipam-claim-reference":"claim-1"`), nw, "ipam-claim-reference"},
	})
}

// TestParseDefaultRouteFamilies covers the valid side of A.11: one gateway
// per family in one element.
func TestParseDefaultRouteFamilies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		routes string
		want   []net.IP
	}{
		{`["10.0.0.1"]`, []net.IP{net.ParseIP("10.0.0.1")}},
		{`["fd00::1"]`, []net.IP{net.ParseIP("fd00::1")}},
		{`["10.0.0.1","fd00::1"]`, []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("fd00::1")}},
		{`["fd00::1","10.0.0.1"]`, []net.IP{net.ParseIP("fd00::1"), net.ParseIP("10.0.0.1")}},
		{`[]`, nil},
	}
	for _, tt := range tests {
		got, err := selection.Parse(pod, `[{"name":"net1","default-route":`+tt.routes+`}]`)
		if err != nil {
			t.Errorf("default-route %s: %v", tt.routes, err)
			continue
		}
		if len(got) != 1 {
			t.Fatalf("default-route %s: got %d elements, want 1", tt.routes, len(got))
		}
		if len(got[0].DefaultRoute) != len(tt.want) {
			t.Errorf("default-route %s: got %v, want %v", tt.routes, got[0].DefaultRoute, tt.want)
			continue
		}
		for i := range tt.want {
			if !got[0].DefaultRoute[i].Equal(tt.want[i]) {
				t.Errorf("default-route %s: [%d] = %v, want %v", tt.routes, i, got[0].DefaultRoute[i], tt.want[i])
			}
		}
	}
}

// TestParseMalformed: a malformed annotation as a whole is a *selection.Error
// with no field.
func TestParseMalformed(t *testing.T) {
	t.Parallel()
	testParseErrs(t, []parseErrCase{
		{"bad JSON", `[{"name":"net1"`, "", ""},
		{"bad JSON token", `[{"name":net1}]`, "", ""},
		{"object instead of list", `{"name":"net1"}`, "", ""},
		{"list of strings", `["net1"]`, "", ""},
		{"list of lists", `[["net1"]]`, "", ""},
		{"trailing object", `[{"name":"net1"}] {"name":"net2"}`, "", ""},
		{"trailing list", `[{"name":"net1"}][]`, "", ""},
		{"trailing garbage", `[{"name":"net1"}] x`, "", ""},
		{"trailing bracket", `[{"name":"net1"}]]`, "", ""},
		{"trailing brace", `[{"name":"net1"}]}`, "", ""},
	})
}

func TestParseNullElement(t *testing.T) {
	t.Parallel()
	wantParseErr(t, `[{"name":"net1"}, null]`, "#1", "")
}

func TestParseOversized(t *testing.T) {
	t.Parallel()
	// A valid comma list just over the limit is still rejected.
	item := "net1,"
	value := strings.Repeat(item, selection.MaxAnnotationSize/len(item)+1) + "net1"
	if len(value) <= selection.MaxAnnotationSize {
		t.Fatalf("test value is %d bytes, not over the limit", len(value))
	}
	got, err := selection.Parse(pod, value)
	if got != nil {
		t.Errorf("got %d elements, want nil", len(got))
	}
	wantSelErr(t, err, "", "")

	// Whitespace counts too: the limit is on the raw annotation.
	padded := `[{"name":"net1"}]` + strings.Repeat(" ", selection.MaxAnnotationSize)
	if _, err := selection.Parse(pod, padded); err == nil {
		t.Errorf("Parse of a %d byte annotation succeeded, want an error", len(padded))
	}

	// Exactly at the limit is accepted.
	atLimit := `[{"name":"net1"}]`
	atLimit += strings.Repeat(" ", selection.MaxAnnotationSize-len(atLimit))
	got, err = selection.Parse(pod, atLimit)
	if err != nil {
		t.Fatalf("Parse of a %d byte annotation: %v", len(atLimit), err)
	}
	if len(got) != 1 || got[0].Name != "net1" {
		t.Errorf("got %+v, want net1", got)
	}
}

func TestParseDefaultNetwork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   string
		want    *selection.Element
		wantErr string // expected Field, with isErr
		isErr   bool
	}{
		{name: "empty", value: "", want: nil},
		{name: "blank", value: "  ", want: nil},
		{name: "bare name", value: "net1", want: &selection.Element{Name: "net1", Namespace: "podns"}},
		{name: "namespaced", value: " kube-system/net1 ", want: &selection.Element{Name: "net1", Namespace: "kube-system"}},
		{name: "json", value: `[{"name":"net1","namespace":"other"}]`, want: &selection.Element{Name: "net1", Namespace: "other"}},
		{name: "two networks", value: "net1,net2", isErr: true, wantErr: source.DefaultNetworkAnnotation},
		{name: "empty json list", value: "[]", isErr: true, wantErr: source.DefaultNetworkAnnotation},
		{name: "invalid name", value: "Net1", isErr: true, wantErr: "name"},
		{name: "invalid namespace", value: "NS/net1", isErr: true, wantErr: "namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := selection.ParseDefaultNetwork(pod, tt.value)
			if tt.isErr {
				if got != nil {
					t.Errorf("got %+v with an error", got)
				}
				wantSelErr(t, err, "", tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseDefaultNetwork(%q): %v", tt.value, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseDefaultNetwork(%q) = %+v, want %+v", tt.value, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *selection.Error
		want []string
		not  []string
	}{
		{&selection.Error{Pod: pod, Network: "ns/n", Field: "mac", Reason: "bad"},
			[]string{"podns/mypod", `"ns/n"`, `"mac"`, "bad"}, nil},
		{&selection.Error{Pod: pod, Reason: "malformed"},
			[]string{"podns/mypod", "malformed"}, []string{"for network", "field"}},
	}
	for _, tt := range tests {
		msg := tt.err.Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q does not contain %q", msg, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(msg, n) {
				t.Errorf("%q contains %q", msg, n)
			}
		}
	}
}

// TestParseJSONNullIsAbsent: the package treats a JSON null value as an
// absent key (decodeField); every optional key must then behave the same
// whether it is null or missing. In particular a null bandwidth must not
// become a zero Bandwidth, which would request the bandwidth capability
// (A.7) the user never asked for.
func TestParseJSONNullIsAbsent(t *testing.T) {
	t.Parallel()
	want := []selection.Element{{Name: "net1", Namespace: "podns"}}
	for _, key := range []string{
		"namespace", "ips", "mac", "interface", "portMappings", "bandwidth",
		"infiniband-guid", "cni-args", "default-route", "ipam-claim-reference", "deviceID",
	} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			value := `[{"name":"net1","` + key + `":null}]`
			got, err := selection.Parse(pod, value)
			if err != nil {
				t.Fatalf("Parse(%s): %v", value, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(%s) = %+v, want %+v (as if %q were absent)", value, got, want, key)
			}
		})
	}
}
