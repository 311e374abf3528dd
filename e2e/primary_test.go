//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/internal/cluster"
)

// waitPrimary waits until the agent's generated conflist names file as the
// primary: from then on new pods get that primary as eth0.
func waitPrimary(t *testing.T, file string, timeout time.Duration) {
	t.Helper()
	generated := filepath.Join(env.c.CNIConfDir(), "00-plexus.conflist")
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(generated)
		if strings.Contains(string(data), `"plexus.primary": "`+file+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the generated conflist does not name %s after %s:\n%s", file, timeout, data)
		}
	}
}

// 11. The node's primary CNI is replaced while pods run (a new conf that
// sorts first, another bridge and subnet): the agent, which names no
// clusterNetwork, gives the next pod eth0 from the new primary; the pod
// attached before keeps its eth0 and is torn down from its record when
// deleted. Nothing is left on the host.
func TestPrimaryCNISwap(t *testing.T) {
	const (
		swapNetwork = cluster.LinkPrefix + "-swap"
		swapBridge  = cluster.LinkPrefix + "-swap0"
		swapSubnet  = "10.57.0.0/24"
		swapFile    = "05-swap.conflist"
	)
	ns := namespace(t, "e2e-primary-swap")
	// The primaries' bridges persist by design (shared by their pods):
	// they exist before the snapshot leaks are measured against. The
	// harness's stays for later tests (the cluster's clean removes it).
	if _, err := netlink.LinkByName(cluster.PrimaryBridge); err != nil {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: cluster.PrimaryBridge}}); err != nil {
			t.Fatalf("bridge %s: %v", cluster.PrimaryBridge, err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: swapBridge}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) })
	waitPrimary(t, "10-primary.conflist", 30*time.Second)
	before, err := hostState()
	if err != nil {
		t.Fatal(err)
	}

	createPod(t, podSpec(ns, "old", nil))
	waitRunning(t, ns, "old", runningWithin)
	oldPod, oldSt := waitStatus(t, ns, "old", 1)
	if oldSt[0].Name != cluster.PrimaryNetwork {
		t.Fatalf("old pod's eth0 is from %s, want %s", oldSt[0].Name, cluster.PrimaryNetwork)
	}

	swap := filepath.Join(env.c.CNIConfDir(), swapFile)
	conf := `{"cniVersion":"1.0.0","name":"` + swapNetwork + `","plugins":[{"type":"bridge","bridge":"` + swapBridge +
		`","isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"` + swapSubnet + `"}]],"routes":[{"dst":"0.0.0.0/0"}]}}]}`
	if err := os.WriteFile(swap, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// Later tests expect the harness's primary back.
	t.Cleanup(func() {
		os.Remove(swap)
		waitPrimary(t, "10-primary.conflist", 30*time.Second)
	})
	waitPrimary(t, swapFile, 30*time.Second)

	createPod(t, podSpec(ns, "new", nil))
	waitRunning(t, ns, "new", runningWithin)
	newPod, newSt := waitStatus(t, ns, "new", 1)
	ifs, _ := podInterfaces(t, newPod)
	if eth0 := ifs["eth0"]; len(eth0.Addrs) != 1 || !inSubnet(eth0.Addrs[0], swapSubnet) {
		t.Errorf("new pod's eth0 %+v, want one address in the new primary's %s", eth0, swapSubnet)
	}
	if newSt[0].Name != swapNetwork || !newSt[0].Default {
		t.Errorf("new pod's status %+v, want the default entry of %s", newSt[0], swapNetwork)
	}
	oldIfs, _ := podInterfaces(t, oldPod)
	if eth0 := oldIfs["eth0"]; len(eth0.Addrs) != 1 || !inSubnet(eth0.Addrs[0], cluster.PrimarySubnet) {
		t.Errorf("old pod's eth0 %+v after the swap, want its address in %s", eth0, cluster.PrimarySubnet)
	}

	for _, name := range []string{"old", "new"} {
		if err := env.cs.CoreV1().Pods(ns).Delete(ctxFor(t, 10*time.Second), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitGone(t, ns, "old", 60*time.Second)
	waitGone(t, ns, "new", 60*time.Second)
	expectNoLeaks(t, before, 60*time.Second)
}
