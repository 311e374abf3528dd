package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	regpb "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/plexus-cni/plexus/deviceplugin/app"
	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/server"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

func tree(t *testing.T) *sysfstest.Tree {
	tr := sysfstest.New(t, t.TempDir())
	var vfs []sysfstest.Func
	for i := range 4 {
		vf := sysfstest.Func{Address: sysfstest.VFAddress(0x3b, i), Vendor: "8086", Device: "154c", Driver: "iavf",
			Ifname: fmt.Sprintf("ens1f0v%d", i), NUMANode: 0, IOMMUGroup: 30 + i, UIO: -1}
		if i >= 2 {
			vf.Driver, vf.Ifname = "vfio-pci", ""
		}
		vfs = append(vfs, vf)
	}
	tr.AddPF(sysfstest.Func{Address: "0000:3b:00.0", Vendor: "8086", Device: "1572", Driver: "i40e", Ifname: "ens1f0", NUMANode: 0, IOMMUGroup: 3, UIO: -1}, 8, vfs)
	return tr
}

const config = `
pools:
- resourceName: net
  deviceType: netdevice
  selectors: [{pfNames: [ens1f0]}]
- resourceName: dpdk
  deviceType: vfio
  selectors: [{drivers: [vfio-pci]}]
`

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	// Atomic replace, as a ConfigMap update or an editor would do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// registered waits until each of want has registered, then drains
// repeats until kubelet has been quiet for a while: after a kubelet
// restart both the kubelet.sock watch and the plugin-socket check may
// register a plugin, which kubelet tolerates. It returns the distinct
// names seen, sorted.
func registered(t *testing.T, k *kubelettest.Kubelet, want ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	missing := func() bool {
		for _, w := range want {
			if !seen[w] {
				return true
			}
		}
		return false
	}
	for missing() {
		seen[k.WaitRegister(t, 10*time.Second).ResourceName] = true
	}
	for {
		select {
		case r := <-k.Registers:
			seen[r.ResourceName] = true
			continue
		case <-time.After(400 * time.Millisecond):
		}
		break
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func noRegister(t *testing.T, k *kubelettest.Kubelet, d time.Duration) {
	t.Helper()
	select {
	case r := <-k.Registers:
		t.Errorf("unexpected Register of %s", r.ResourceName)
	case <-time.After(d):
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func probe(t *testing.T, socket string) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewDevicePluginClient(conn).GetDevicePluginOptions(ctx, &pb.Empty{}); err != nil {
		t.Errorf("plugin %s unreachable: %v", socket, err)
	}
}

// daemon is app.Run in a goroutine with the flags the tests share: the
// fake tree, pools.yaml, the plugin dir, fast health and config polling,
// debug logs.
type daemon struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
	logs   *syncWriter
	err    error
	exited bool
}

func startDaemon(t *testing.T, tr *sysfstest.Tree, cfgPath, dir string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{done: make(chan error, 1), logs: &syncWriter{buf: &bytes.Buffer{}}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	// No PodResources socket unless a test passes one (a later flag
	// wins): the host's kubelet, if any, is none of the test's business.
	args := append([]string{"--config", cfgPath, "--sysfs-root", tr.Root, "--device-plugin-dir", dir,
		"--health-interval", "50ms", "--poll-interval", "100ms", "--log-level", "debug",
		"--pod-resources-socket", filepath.Join(dir, "no-pod-resources.sock")}, extra...)
	go func() { d.done <- app.Run(d.ctx, args, io.Discard, d.logs) }()
	t.Cleanup(func() {
		if err := d.stop(10 * time.Second); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs.String())
		}
	})
	return d
}

// stop cancels Run and returns what it returned, or an error if it did not
// return within timeout. Later calls return the same.
func (d *daemon) stop(timeout time.Duration) error {
	d.cancel()
	if d.exited {
		return d.err
	}
	select {
	case d.err = <-d.done:
	case <-time.After(timeout):
		d.err = fmt.Errorf("Run did not return %v after cancel", timeout)
	}
	d.exited = true
	return d.err
}

// TestRunLifecycle drives the daemon as kubelet would see it: start-up
// registration, a kubelet restart, a live config reload (good and bad),
// and shutdown.
func TestRunLifecycle(t *testing.T) {
	tr := tree(t)
	dir := shortDir(t)
	cfgPath := filepath.Join(t.TempDir(), "pools.yaml")
	writeConfig(t, cfgPath, config)
	kubelet := kubelettest.Start(t, dir)
	regDir := filepath.Join(shortDir(t), "plugins_registry")
	baseline := runtime.NumGoroutine()

	d := startDaemon(t, tr, cfgPath, dir, "--devinfo-dir", filepath.Join(t.TempDir(), "devinfo"), "--plugin-registry-dir", regDir)
	ctx, logs := d.ctx, d.logs

	if got := registered(t, kubelet, "plexus.io/dpdk", "plexus.io/net"); !slices.Equal(got, []string{"plexus.io/dpdk", "plexus.io/net"}) {
		t.Fatalf("registered %v", got)
	}
	netSock := filepath.Join(dir, server.SocketName("plexus.io/net"))
	dpdkSock := filepath.Join(dir, server.SocketName("plexus.io/dpdk"))
	for _, res := range []string{"plexus.io/net", "plexus.io/dpdk"} {
		// Own connection, closed now: the goroutine check below runs
		// before test cleanups.
		conn, err := grpc.NewClient("unix://"+filepath.Join(regDir, server.RegistrationSocketName(res)), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		info, err := regpb.NewRegistrationClient(conn).GetInfo(ctx, &regpb.InfoRequest{})
		_ = conn.Close()
		if err != nil || info.Name != res || info.Endpoint != filepath.Join(dir, server.SocketName(res)) {
			t.Errorf("plugin watcher GetInfo for %s = %+v, %v", res, info, err)
		}
	}

	// Kubelet restart: it deletes every plugin socket and comes back.
	kubelet.Restart(t, true)
	if got := registered(t, kubelet, "plexus.io/dpdk", "plexus.io/net"); !slices.Equal(got, []string{"plexus.io/dpdk", "plexus.io/net"}) {
		t.Fatalf("re-registered %v", got)
	}
	probe(t, netSock)
	probe(t, dpdkSock)

	// A restart that leaves plugin sockets alone is seen through
	// kubelet.sock alone.
	kubelet.Restart(t, false)
	if got := registered(t, kubelet, "plexus.io/dpdk", "plexus.io/net"); !slices.Equal(got, []string{"plexus.io/dpdk", "plexus.io/net"}) {
		t.Fatalf("re-registered %v", got)
	}

	// Live reload: a new pool appears; unchanged pools keep their server.
	netIno, dpdkIno := inode(t, netSock), inode(t, dpdkSock)
	writeConfig(t, cfgPath, config+`
- resourceName: dpdk_uio
  deviceType: uio
  selectors: [{}]
`)
	if got := registered(t, kubelet, "plexus.io/dpdk_uio"); !slices.Equal(got, []string{"plexus.io/dpdk_uio"}) {
		t.Fatalf("after reload registered %v", got)
	}
	if inode(t, netSock) != netIno || inode(t, dpdkSock) != dpdkIno {
		t.Error("unchanged pools were restarted by the reload")
	}

	// A changed pool is restarted and re-registered; the others stay.
	writeConfig(t, cfgPath, strings.Replace(config, "pfNames: [ens1f0]", "pfNames: ['ens1f0#0']", 1)+`
- resourceName: dpdk_uio
  deviceType: uio
  selectors: [{}]
`)
	if got := registered(t, kubelet, "plexus.io/net"); !slices.Equal(got, []string{"plexus.io/net"}) {
		t.Fatalf("after pool change registered %v", got)
	}
	if inode(t, dpdkSock) != dpdkIno {
		t.Error("dpdk pool restarted although unchanged")
	}

	// A broken config is rejected and everything keeps running.
	writeConfig(t, cfgPath, "pools: [{resourceName: x}]")
	noRegister(t, kubelet, 500*time.Millisecond)
	probe(t, netSock)
	if !strings.Contains(logs.String(), "config change rejected") {
		t.Error("bad config not reported")
	}

	// Shutdown: Run returns, sockets go, goroutines end.
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "kubelet.sock" {
			t.Errorf("%s left in plugin dir", e.Name())
		}
	}
	if entries, _ := os.ReadDir(regDir); len(entries) != 0 {
		t.Errorf("%d entries left in plugin registry dir", len(entries))
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after shutdown, %d before start:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

func TestRunStartupErrors(t *testing.T) {
	t.Parallel()
	tr := tree(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeConfig(t, bad, "pools: [{resourceName: net, deviceType: netdev, selectors: [{}]}]")
	good := filepath.Join(t.TempDir(), "good.yaml")
	writeConfig(t, good, config)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"invalid config names pool and field", []string{"--config", bad, "--sysfs-root", tr.Root}, `pools[0] (net): deviceType: "netdev"`},
		{"missing config", []string{"--config", "/nonexistent.yaml"}, "read pool config"},
		{"bad flag", []string{"--bogus"}, "flag provided but not defined"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"negative rediscover interval", []string{"--rediscover-interval", "-1s"}, "--rediscover-interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := app.Run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRunDryRun(t *testing.T) {
	t.Parallel()
	tr := tree(t)
	cfgPath := filepath.Join(t.TempDir(), "pools.json")
	writeConfig(t, cfgPath, config)
	var out bytes.Buffer
	if err := app.Run(context.Background(), []string{"--config", cfgPath, "--sysfs-root", tr.Root, "--dry-run"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var pools []struct {
		Resource string
		Devices  []struct{ Address string }
	}
	if err := json.Unmarshal(out.Bytes(), &pools); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(pools) != 2 || len(pools[0].Devices) != 2 || len(pools[1].Devices) != 2 {
		t.Errorf("dry run output: %s", out.String())
	}
}

// TestRunDryRunWithoutPCIIDs: a host without pci.ids (no hwdata, no
// pciutils) gets the same pools; only names are unknown.
func TestRunDryRunWithoutPCIIDs(t *testing.T) {
	t.Parallel()
	cfgPath := filepath.Join(t.TempDir(), "pools.json")
	writeConfig(t, cfgPath, config)
	dryRun := func(root string) (string, string) {
		var out, logs bytes.Buffer
		if err := app.Run(context.Background(), []string{"--config", cfgPath, "--sysfs-root", root, "--dry-run"}, &out, &logs); err != nil {
			t.Fatal(err)
		}
		return out.String(), logs.String()
	}
	want, _ := dryRun(tree(t).Root)
	without := tree(t)
	if err := os.Remove(filepath.Join(without.Root, "usr/share/hwdata/pci.ids")); err != nil {
		t.Fatal(err)
	}
	got, logs := dryRun(without.Root)
	// Identical but for the names.
	names := regexp.MustCompile(`"(VendorName|ProductName)": "[^"]*"`)
	if !strings.Contains(got, `"VendorName": "unknown"`) || names.ReplaceAllString(got, "") != names.ReplaceAllString(want, "") {
		t.Errorf("pools without pci.ids:\n%s\nwith:\n%s", got, want)
	}
	if !strings.Contains(logs, "no pci.ids database") {
		t.Errorf("no warning about the missing pci.ids in the log: %q", logs)
	}
}

// TestRediscoverHotplug raises sriov_numvfs on the fake tree: the new
// VFs join their pool through periodic rediscovery, the pool is updated
// in place (same socket, no new Register), and the other pool is left
// alone.
func TestRediscoverHotplug(t *testing.T) {
	tr := tree(t)
	dir := shortDir(t)
	cfgPath := filepath.Join(t.TempDir(), "pools.yaml")
	writeConfig(t, cfgPath, config)
	kubelet := kubelettest.Start(t, dir)
	d := startDaemon(t, tr, cfgPath, dir, "--devinfo-dir", "", "--rediscover-interval", "100ms")
	ctx, logs := d.ctx, d.logs
	if got := registered(t, kubelet, "plexus.io/dpdk", "plexus.io/net"); !slices.Equal(got, []string{"plexus.io/dpdk", "plexus.io/net"}) {
		t.Fatalf("registered %v", got)
	}
	netSock := filepath.Join(dir, server.SocketName("plexus.io/net"))
	dpdkSock := filepath.Join(dir, server.SocketName("plexus.io/dpdk"))
	netIno, dpdkIno := inode(t, netSock), inode(t, dpdkSock)

	c := kubelettest.Dial(t, netSock)
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	stream, err := c.ListAndWatch(sctx, &pb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Devices) != 2 {
		t.Fatalf("initial net pool %d devices, want 2", len(resp.Devices))
	}
	held := resp.Devices[0].ID
	if _, err := c.Allocate(sctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{held}}}}); err != nil {
		t.Fatal(err)
	}

	// sriov_numvfs 4 -> 6: two more iavf VFs.
	var vfs []sysfstest.Func
	for i := 4; i < 6; i++ {
		vfs = append(vfs, sysfstest.Func{Address: sysfstest.VFAddress(0x3b, i), Vendor: "8086", Device: "154c", Driver: "iavf",
			Ifname: fmt.Sprintf("ens1f0v%d", i), NUMANode: 0, IOMMUGroup: 30 + i, UIO: -1})
	}
	tr.AddVFs("0000:3b:00.0", vfs)
	for len(resp.Devices) != 4 {
		if resp, err = stream.Recv(); err != nil {
			t.Fatalf("ListAndWatch after hot-plug: %v", err)
		}
	}
	ids := map[string]string{}
	for _, d := range resp.Devices {
		ids[d.ID] = d.Health
	}
	for _, id := range []string{held, vfs[0].Address, vfs[1].Address} {
		if ids[id] != pb.Healthy {
			t.Errorf("device %s: %q in %v", id, ids[id], ids)
		}
	}
	if _, err := c.Allocate(sctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{vfs[1].Address}}}}); err != nil {
		t.Errorf("allocate hot-plugged VF: %v", err)
	}
	noRegister(t, kubelet, 300*time.Millisecond)
	if inode(t, netSock) != netIno || inode(t, dpdkSock) != dpdkIno {
		t.Error("a pool was restarted by rediscovery")
	}
	if !strings.Contains(logs.String(), "pool devices changed") {
		t.Error("device change not logged")
	}
}
