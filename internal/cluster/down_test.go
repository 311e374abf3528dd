package cluster

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`INPUT -j KUBE-FIREWALL`, []string{"INPUT", "-j", "KUBE-FIREWALL"}},
		{`KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
			[]string{"KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-m", "comment", "--comment", "block incoming localnet connections",
				"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"}},
		{`OUTPUT -m comment --comment "a \"quoted\" word" -j KUBE-FIREWALL`, []string{"OUTPUT", "-m", "comment", "--comment", `a "quoted" word`, "-j", "KUBE-FIREWALL"}},
		{`X --comment ""`, []string{"X", "--comment", ""}},
	} {
		if got := splitRule(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/plexus-e2e/kubelet`: "/var/lib/plexus-e2e/kubelet",
		`/run/a\040b`:                 "/run/a b",
		`/x\011tab\134back`:           "/x\ttab\\back",
		`/trailing\04`:                `/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// The API server's guard, in a network namespace of the test's own (its
// iptables are that namespace's): installed once however often Up runs,
// removed by Clean's iptables step, in iptables and ip6tables.
func TestGuardAPIServer(t *testing.T) {
	_, err4 := exec.LookPath("iptables")
	_, err6 := exec.LookPath("ip6tables")
	if os.Geteuid() != 0 || err4 != nil || err6 != nil {
		msg := "needs root (a network namespace) and iptables, ip6tables on PATH"
		if os.Getenv("PLEXUS_REQUIRE_ROOT_TESTS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	runtime.LockOSThread()
	// The thread ends with the test instead of returning to the host's
	// namespace: it is never unlocked.
	if _, err := netns.New(); err != nil {
		t.Fatal(err)
	}
	save := func(tool string) string {
		out, err := exec.Command(tool+"-save", "-t", "filter").Output()
		if err != nil {
			t.Fatalf("%s-save: %v", tool, err)
		}
		var rules []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, apiServerChain) {
				rules = append(rules, l)
			}
		}
		return strings.Join(rules, "\n")
	}
	want := `:PLEXUS-CLUSTER-APISERVER - [0:0]
-A INPUT -p tcp -m tcp --dport 16443 -j PLEXUS-CLUSTER-APISERVER
-A PLEXUS-CLUSTER-APISERVER -i lo -j RETURN
-A PLEXUS-CLUSTER-APISERVER -i pxc+ -j RETURN
-A PLEXUS-CLUSTER-APISERVER -j DROP`
	for range 2 {
		if err := guardAPIServer(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if got := save(tool); got != want {
			t.Errorf("%s after guardAPIServer twice:\n%s\nwant:\n%s", tool, got, want)
		}
	}
	if err := cleanIptables(); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if got := save(tool); got != "" {
			t.Errorf("%s after cleanIptables:\n%s", tool, got)
		}
	}
}
