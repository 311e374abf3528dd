package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LinkPrefix names every host link the cluster and its tests create
// (the primary bridge, test NAD bridges and uplinks); Clean removes them.
const LinkPrefix = "pxc"

// Down stops the cluster gracefully and cleans the host: workload pods
// are deleted first while the network plugins still run (so their CNI DEL
// releases addresses and links), then the system pods, then kubelet,
// containerd and the control plane. Clean runs last in any case.
func (c *Cluster) Down(ctx context.Context) error {
	if c.pid("kube-apiserver") > 0 && c.pid("kubelet") > 0 {
		if cs, err := c.Clientset(); err == nil {
			c.drain(ctx, cs)
		}
	}
	for i := len(startOrder) - 1; i >= 0; i-- {
		c.StopComponent(startOrder[i], 15*time.Second)
	}
	return c.Clean()
}

// drain deletes pods outside kube-system and plexus-system, waits for
// them to go, then deletes the rest (DaemonSets and Deployments first so
// they are not recreated). Best effort and bounded: Clean removes what remains.
func (c *Cluster) drain(ctx context.Context, cs *kubernetes.Clientset) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	system := map[string]bool{"kube-system": true, "plexus-system": true}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		c.progress("drain: %v", err)
		return
	}
	deleteAll := func(keep func(ns string) bool) {
		for _, ns := range nss.Items {
			if keep(ns.Name) {
				continue
			}
			if err := cs.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
				c.progress("drain: pods in %s: %v", ns.Name, err)
			}
		}
	}
	remaining := func(keep func(ns string) bool) (int, error) {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		n := 0
		for _, p := range pods.Items {
			if !keep(p.Namespace) {
				n++
			}
		}
		return n, nil
	}
	wait := func(what string, keep func(ns string) bool) {
		err := c.waitFor(ctx, what, 60*time.Second, func() error {
			n, err := remaining(keep)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%d pods left", n)
			}
			return nil
		})
		if err != nil {
			c.progress("drain: %v", err)
		}
	}
	// Static pods go only when their manifests do: deleting a mirror pod
	// makes kubelet create it again.
	manifests, _ := os.ReadDir(c.StaticPodDir())
	for _, m := range manifests {
		os.Remove(filepath.Join(c.StaticPodDir(), m.Name()))
	}
	workload := func(ns string) bool { return system[ns] }
	deleteAll(workload)
	wait("workload pods to go", workload)
	for ns := range system {
		dss, err := cs.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, ds := range dss.Items {
			cs.AppsV1().DaemonSets(ns).Delete(ctx, ds.Name, metav1.DeleteOptions{})
		}
		// plexus-webhook's: its ReplicaSet would recreate the pods.
		deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, d := range deps.Items {
			cs.AppsV1().Deployments(ns).Delete(ctx, d.Name, metav1.DeleteOptions{})
		}
	}
	none := func(string) bool { return false }
	deleteAll(none)
	wait("system pods to go", none)
}

// Clean removes every trace of the cluster from the host, whether it
// stopped cleanly or not: processes (components, shims, containers), mounts
// under the state dir, containerd's network namespaces, kubepods cgroups,
// links named pxc*, kubelet's iptables chains, host paths the cluster
// created, and the state dir. Idempotent.
func (c *Cluster) Clean() error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(startOrder) - 1; i >= 0; i-- {
		c.StopComponent(startOrder[i], 5*time.Second)
	}
	killShims(filepath.Join(c.ContainerdBinDir, "containerd-shim-runc-v2"))
	note(cleanCgroups())
	note(unmountUnder(c.StateDir))
	note(cleanNetns())
	note(cleanLinks())
	note(cleanIptables())
	created := c.createdPaths()
	for _, p := range hostPaths {
		if created[p] {
			note(unmountUnder(p))
			note(os.RemoveAll(p))
		}
	}
	if !created["/var/lib/kubelet/device-plugins"] {
		// Kubelet's own files in a directory that was there before.
		for _, f := range []string{"kubelet.sock", "kubelet_internal_checkpoint"} {
			os.Remove(filepath.Join("/var/lib/kubelet/device-plugins", f))
		}
	}
	if !created["/var/lib/cni"] {
		os.RemoveAll(filepath.Join("/var/lib/cni/networks", PrimaryNetwork))
		matches, _ := filepath.Glob("/var/lib/cni/networks/" + LinkPrefix + "*")
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
	if v, ok := c.createdValue("ip_forward"); ok && (v == "0" || v == "1") {
		note(os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0o644))
	}
	note(os.RemoveAll(c.StateDir))
	return errors.Join(errs...)
}

func (c *Cluster) createdPaths() map[string]bool {
	m := map[string]bool{}
	data, _ := os.ReadFile(c.path("created-paths"))
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "/") {
			m[l] = true
		}
	}
	return m
}

func (c *Cluster) createdValue(key string) (string, bool) {
	data, _ := os.ReadFile(c.path("created-paths"))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// killShims kills every process running the given shim binary, and the
// containers under them die with their cgroups below.
func killShims(shim string) {
	for _, pid := range processes(func(exe string) bool { return exe == shim }) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// processes returns the pids of the processes whose executable's path
// satisfies match.
func processes(match func(exe string) bool) []int {
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe"))
		if err == nil && match(strings.TrimSuffix(exe, " (deleted)")) {
			out = append(out, pid)
		}
	}
	return out
}

// cleanCgroups kills the processes left in kubelet's kubepods cgroups and
// removes the cgroups, deepest first, in every hierarchy.
func cleanCgroups() error {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return nil
	}
	for round := 0; round < 50; round++ {
		busy := false
		for _, d := range dirs {
			data, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
					busy = true
				}
			}
		}
		if !busy {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		var err error
		for i := 0; i < 20; i++ {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cleanNetns removes the network namespaces containerd created (cni-*).
func cleanNetns() error {
	var errs []error
	for _, dir := range []string{"/var/run/netns", "/run/netns"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "cni-*"))
		for _, m := range matches {
			syscall.Unmount(m, syscall.MNT_DETACH)
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove netns %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cleanLinks deletes host links named pxc*.
func cleanLinks() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, LinkPrefix) {
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// kubeletChains are the chains kubelet adds to the host's tables.
var kubeletChains = []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT", "KUBE-PROXY-CANARY"}

// ownChains are the chains the cluster leaves in the host's tables.
var ownChains = append(slices.Clone(kubeletChains), apiServerChain)

// apiServerChain keeps kube-apiserver, which listens on every address,
// to loopback and the cluster's links (guardAPIServer).
const apiServerChain = "PLEXUS-CLUSTER-APISERVER"

// guardAPIServer drops connections to kube-apiserver's port except from
// loopback and the links named LinkPrefix* (the primary bridge, whose
// pods reach the host at PrimaryGateway): the test cluster's admin token
// is no secret. In ip6tables too: Go listens on [::] for 0.0.0.0.
// Idempotent; Clean removes it.
func guardAPIServer() error {
	for _, tool := range []string{"iptables", "ip6tables"} {
		ipt := func(args ...string) error {
			if out, err := exec.Command(tool, append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
			return nil
		}
		if ipt("-n", "-L", apiServerChain) != nil {
			if err := ipt("-N", apiServerChain); err != nil {
				return err
			}
		}
		for _, rule := range [][]string{
			{"-F", apiServerChain},
			{"-A", apiServerChain, "-i", "lo", "-j", "RETURN"},
			{"-A", apiServerChain, "-i", LinkPrefix + "+", "-j", "RETURN"},
			{"-A", apiServerChain, "-j", "DROP"},
		} {
			if err := ipt(rule...); err != nil {
				return err
			}
		}
		jump := []string{"INPUT", "-p", "tcp", "--dport", strconv.Itoa(APIServerPort), "-j", apiServerChain}
		if ipt(append([]string{"-C"}, jump...)...) != nil {
			if err := ipt(append([]string{"-I", jump[0], "1"}, jump[1:]...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanIptables removes the cluster's chains and the jumps to them, in
// iptables and ip6tables, leaving every other rule alone.
func cleanIptables() error {
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := exec.Command(tool+"-save", "-t", table).Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(line, "-A ") {
					continue
				}
				for _, ch := range ownChains {
					if strings.Contains(line, "-j "+ch) && !strings.HasPrefix(line, "-A "+ch+" ") {
						args := append([]string{"-t", table, "-D"}, splitRule(strings.TrimPrefix(line, "-A "))...)
						if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
							errs = append(errs, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, out))
						}
					}
				}
			}
			for _, ch := range ownChains {
				if strings.Contains(string(out), ":"+ch+" ") {
					exec.Command(tool, "-t", table, "-F", ch).Run()
					if out, err := exec.Command(tool, "-t", table, "-X", ch).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("%s -t %s -X %s: %w: %s", tool, table, ch, err, out))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an iptables-save rule into arguments, honouring the
// double quotes around comments.
func splitRule(s string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			inQuote = !inQuote
			have = true
		case ch == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

func nodeReady(ctx context.Context, cs *kubernetes.Clientset) error {
	node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status == "True" {
				return nil
			}
			return fmt.Errorf("node %s not ready: %s", NodeName, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}
