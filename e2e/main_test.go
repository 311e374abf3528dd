//go:build e2e

// Package e2e runs Plexus end to end on a real single-node cluster
// (internal/cluster: etcd, kube-apiserver, controller-manager, scheduler,
// containerd + runc, kubelet), deployed from deploy/ with the images Bazel
// builds. Root only; run by tools/test.sh through tools/e2e.sh:
//
//	sudo tools/e2e.sh [-run TestName]
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	netclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/internal/cluster"
)

// env is the cluster every test uses.
var env struct {
	c    *cluster.Cluster
	cs   *kubernetes.Clientset
	nads *netclient.Clientset
}

// results collects measurements for docs/benchmarks.md; written to
// $PLEXUS_E2E_RESULTS when set.
var results []string

func report(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	results = append(results, line)
	fmt.Fprintln(os.Stderr, "e2e:", line)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: skipped: needs root (kubelet, containerd, network namespaces)")
		return 0
	}
	images := strings.FieldsFunc(os.Getenv("PLEXUS_E2E_IMAGES"), func(r rune) bool { return r == ':' || r == '\n' })
	cfg := cluster.DefaultConfig()
	cfg.StateDir = "/var/lib/plexus-e2e"
	cfg.Images = images
	if missing := cfg.Missing(); len(missing) > 0 || len(images) == 0 {
		fmt.Fprintf(os.Stderr, "e2e: cannot run: missing %v (images: %q); use tools/e2e.sh\n", missing, images)
		return 1
	}
	ctx := context.Background()
	// A crashed earlier run may have left things behind.
	if err := cluster.Open(cfg).Clean(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cleaning an earlier run:", err)
	}
	before, err := hostState()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	beforeChains := kubeletChains()
	c, err := cluster.Up(ctx, cfg)
	code := 1
	if err == nil {
		code = func() int {
			if err := setup(ctx, c); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: setup:", err)
				return 1
			}
			return m.Run()
		}()
	} else {
		fmt.Fprintln(os.Stderr, "e2e: cluster up:", err)
	}
	if code != 0 || err != nil {
		dumpLogs(cfg.StateDir)
	}
	if c == nil {
		c = cluster.Open(cfg)
	}
	if err := c.Down(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: down:", err)
		code = 1
	}
	// The host must be as it was: no links, namespaces, cgroups, files.
	after, err := hostState()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if diff := before.diff(after); diff != "" {
		fmt.Fprintln(os.Stderr, "e2e: the host is not clean after down:\n"+diff)
		code = 1
	}
	if left := leftovers(cfg.StateDir, beforeChains); left != "" {
		fmt.Fprintln(os.Stderr, "e2e: the host is not clean after down:\n"+left)
		code = 1
	}
	if path := os.Getenv("PLEXUS_E2E_RESULTS"); path != "" && len(results) > 0 {
		os.WriteFile(path, []byte(strings.Join(results, "\n")+"\n"), 0o644)
	}
	return code
}

func setup(ctx context.Context, c *cluster.Cluster) error {
	env.c = c
	cfg, err := c.RestConfig()
	if err != nil {
		return err
	}
	if env.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if env.nads, err = netclient.NewForConfig(cfg); err != nil {
		return err
	}
	// The TEST ONLY recorder plugin, next to the reference plugins.
	rec := os.Getenv("PLEXUS_E2E_RECORDER")
	if rec == "" {
		return fmt.Errorf("PLEXUS_E2E_RECORDER (the plexus-test-recorder binary) is not set; use tools/e2e.sh")
	}
	data, err := os.ReadFile(rec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.CNIBinDir(), "plexus-test-recorder"), data, 0o755); err != nil {
		return err
	}
	patches, err := prepareFakeHost(c.StateDir)
	if err != nil {
		return err
	}
	overlay, err := c.WriteOverlay("../deploy", cluster.OverlayOptions{NamespaceIsolation: true, Patches: patches})
	if err != nil {
		return err
	}
	return c.Deploy(ctx, "../deploy", overlay)
}

// kubeletChains lists the iptables and ip6tables chains named KUBE-*.
func kubeletChains() []string {
	var out []string
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		data, _ := exec.Command(tool).Output()
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, ":KUBE-") {
				out = append(out, tool+" "+strings.Fields(l)[0])
			}
		}
	}
	return out
}

// leftovers reports what Clean should have removed and the snapshot does
// not cover: mounts under the state dir, the state dir itself, kubelet's
// iptables chains that were not there before.
func leftovers(state string, chainsBefore []string) string {
	var out []string
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], state) {
			out = append(out, "mount "+f[4])
		}
	}
	if _, err := os.Stat(state); err == nil {
		out = append(out, "state dir "+state)
	}
	had := map[string]bool{}
	for _, c := range chainsBefore {
		had[c] = true
	}
	for _, c := range kubeletChains() {
		if !had[c] {
			out = append(out, "chain "+c)
		}
	}
	return strings.Join(out, "\n")
}

// dumpLogs prints the tail of every component log, for a failed run.
func dumpLogs(state string) {
	logs, _ := filepath.Glob(filepath.Join(state, "logs", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(os.Stderr, "\n==== %s (tail)\n%s\n", l, data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if env.c != nil {
		out, _ := env.c.Kubectl(ctx, nil, "logs", "-n", "plexus-system", "-l", "app.kubernetes.io/name=plexus-agent", "--tail=80")
		fmt.Fprintf(os.Stderr, "\n==== plexus-agent logs (tail)\n%s\n", out)
		out, _ = env.c.Kubectl(ctx, nil, "get", "pods", "-A", "-o", "wide")
		fmt.Fprintf(os.Stderr, "\n==== pods\n%s\n", out)
	}
}
