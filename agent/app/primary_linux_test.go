package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/internal/cnitest"
)

// autoRig is a rig whose agent has no clusterNetwork: it generates the
// runtime's conflist and takes the cluster network from the primary it
// follows. extra is appended to the agent's config.
func autoRig(t *testing.T, extra string) *rig {
	t.Helper()
	r := newRig(t, 2)
	cfgPath := filepath.Join(r.dir, "agent.yaml")
	old, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(old), "clusterNetwork: cluster\n", "cniConf: {}\n", 1)
	if cfg == string(old) {
		t.Fatal("rig config has no clusterNetwork line to drop")
	}
	write(t, cfgPath, cfg+extra)
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/class/net/pxapp2"); err == nil {
			exec(t, "ip", "link", "del", "pxapp2")
		}
	})
	return r
}

// waitGenerated waits until the generated conflist names primary (the
// agent takes the primary for pods before it writes the file).
func (r *rig) waitGenerated(t *testing.T, primary string) {
	t.Helper()
	generated := filepath.Join(r.dir, "net.d", "00-plexus.conflist")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(generated)
		if strings.Contains(string(data), `"plexus.primary": "`+primary+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("generated conflist does not name %s:\n%s", primary, data)
		}
	}
}

// allocations lists host-local's allocations (files named by IP) of
// network.
func (r *rig) allocations(t *testing.T, network string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(r.dir, "ipam", network))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); n != "lock" && !strings.HasPrefix(n, "last_reserved_ip") {
			out = append(out, n)
		}
	}
	return out
}

// Without clusterNetwork, eth0 follows the node's primary CNI: replaced
// while the agent runs, the next pod's eth0 comes from the new primary,
// and the pod attached before tears down from its record (the old
// bridge's address released, no interface left).
func TestClusterNetworkFollowsPrimary(t *testing.T) {
	r := autoRig(t, "")
	r.start(t)
	r.waitGenerated(t, "10-cluster.conflist")
	ctx := context.Background()
	old := cnitest.NewNS(t)
	if _, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("old", old.Path())); err != nil {
		t.Fatalf("ADD before the swap: %v", err)
	}
	if out := cnitest.InNS(t, old, "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.230.0.") {
		t.Errorf("eth0 before the swap is not on the primary's subnet 10.230.0.0/24:\n%s", out)
	}

	// The node's CNI is replaced: a new primary file, the old one gone.
	ipam := filepath.Join(r.dir, "ipam")
	write(t, filepath.Join(r.dir, "net.d", "20-new.conflist"),
		`{"cniVersion":"1.0.0","name":"cluster-new","plugins":[{"type":"bridge","bridge":"pxapp2","isGateway":true,"ipam":{"type":"host-local","subnet":"10.232.0.0/24","dataDir":"`+ipam+`"}}]}`)
	if err := os.Remove(filepath.Join(r.dir, "net.d", "10-cluster.conflist")); err != nil {
		t.Fatal(err)
	}
	r.waitGenerated(t, "20-new.conflist")

	fresh := cnitest.NewNS(t)
	if _, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("new", fresh.Path())); err != nil {
		t.Fatalf("ADD after the swap: %v", err)
	}
	if out := cnitest.InNS(t, fresh, "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.232.0.") {
		t.Errorf("eth0 after the swap is not on the new primary's subnet 10.232.0.0/24:\n%s", out)
	}
	if got := r.allocations(t, "cluster-new"); len(got) != 1 {
		t.Errorf("new primary's allocations %v, want one", got)
	}

	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("old", old.Path())); err != nil {
		t.Fatalf("DEL of the pod attached before the swap: %v", err)
	}
	if out := cnitest.InNS(t, old, "-o", "link"); strings.Contains(out, "eth0") || strings.Contains(out, "net1") {
		t.Errorf("links left after DEL:\n%s", out)
	}
	if got := r.allocations(t, "cluster"); len(got) != 0 {
		t.Errorf("old primary's allocations left after DEL: %v", got)
	}
	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("new", fresh.Path())); err != nil {
		t.Fatalf("DEL after the swap: %v", err)
	}
	if got := r.allocations(t, "cluster-new"); len(got) != 0 {
		t.Errorf("new primary's allocations left after DEL: %v", got)
	}
}

// A primary that turns invalid (here: truncated, as a non-atomic installer
// leaves it mid-write) does not reach pods: the next pod gets the last
// good one, and /metrics says so. Once there is none at all (the file
// removed) /readyz is not ready.
func TestClusterNetworkKeepsLastGoodPrimary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := autoRig(t, "healthAddress: "+addr+"\n")
	r.start(t)
	r.waitGenerated(t, "10-cluster.conflist")
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitBody := func(path string, wantCode int, want ...string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			code, body := get(path)
			ok := code == wantCode
			for _, w := range want {
				ok = ok && strings.Contains(body, w)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d, want %d with %q:\n%s", path, code, wantCode, want, body)
			}
		}
	}
	primary := filepath.Join(r.dir, "net.d", "10-cluster.conflist")
	write(t, primary, `{"cniVersion":"1.1.0","name":"clu`)
	waitBody("/metrics", http.StatusOK, "plexus_primary_cni_conf_stale 1", "plexus_primary_cni_conf_rejected_total 1")
	waitBody("/readyz", http.StatusOK)

	ctx := context.Background()
	n := cnitest.NewNS(t)
	if _, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("ADD with the primary truncated: %v", err)
	}
	if out := cnitest.InNS(t, n, "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.230.0.") {
		t.Errorf("eth0 is not from the last good primary:\n%s", out)
	}
	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if err := os.Remove(primary); err != nil {
		t.Fatal(err)
	}
	waitBody("/readyz", http.StatusServiceUnavailable)
}

// Multus' two chains run after the cluster network on eth0: the .conf
// plugins of net.d/<cluster network name>/ inside its own list, and those
// of net.d/<auxiliaryCNIChainName>/ as a list of their own. Each sets a
// sysctl in the pod (and an MTU or promisc, so that tuning keeps a backup
// to restore); DEL runs both: tuning restores and removes its backup.
func TestClusterNetworkChains(t *testing.T) {
	r := autoRig(t, "auxiliaryCNIChainName: extra\n")
	sub, aux := filepath.Join(r.dir, "tuning-sub"), filepath.Join(r.dir, "tuning-aux")
	write2 := func(path, content string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, path, content)
	}
	write2(filepath.Join(r.dir, "net.d", "cluster", "10-tuning.conf"),
		`{"type":"tuning","dataDir":"`+sub+`","mtu":1400,"sysctl":{"net.ipv4.conf.IFNAME.arp_filter":"1"}}`)
	write2(filepath.Join(r.dir, "net.d", "extra", "10-tuning.conf"),
		`{"type":"tuning","dataDir":"`+aux+`","promisc":true,"sysctl":{"net.ipv4.conf.IFNAME.arp_ignore":"2"}}`)
	r.start(t)
	r.waitGenerated(t, "10-cluster.conflist")
	ctx := context.Background()
	n := cnitest.NewNS(t)
	if _, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	for key, want := range map[string]string{"arp_filter": "1", "arp_ignore": "2"} {
		out, err := osexec.Command("nsenter", "--net="+n.Path(), "cat", "/proc/sys/net/ipv4/conf/eth0/"+key).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("eth0 %s in the pod = %q (%v), want %s", key, out, err, want)
		}
	}
	for _, d := range []string{sub, aux} {
		if entries, _ := os.ReadDir(d); len(entries) == 0 {
			t.Errorf("tuning left no backup in %s: it did not run", d)
		}
	}
	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	for _, d := range []string{sub, aux} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("tuning backup left in %s after DEL: its DEL did not run", d)
		}
	}
	if got := r.allocations(t, "cluster"); len(got) != 0 {
		t.Errorf("allocations left after DEL: %v", got)
	}
}
