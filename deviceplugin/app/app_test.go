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

// setup is what a daemon test starts from: the fake tree, pools.yaml with
// config, and a fake kubelet in the plugin dir.
func setup(t *testing.T) (tr *sysfstest.Tree, dir, cfgPath string, kubelet *kubelettest.Kubelet) {
	t.Helper()
	tr, dir, cfgPath = tree(t), kubelettest.ShortDir(t), filepath.Join(t.TempDir(), "pools.yaml")
	writeConfig(t, cfgPath, config)
	return tr, dir, cfgPath, kubelettest.Start(t, dir)
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

// Lines that end the daemon's passes (app.go). What a pass did not do by
// the time it logs its line, it does not do: a test judging an absence
// waits for the line of the pass that could have caused it.
var (
	startedUp      = line(`msg="pools reconciled" why=start-up`)
	reloaded       = line(`msg="pools reconciled" why="config change"`)
	rediscovered   = line(`msg="pools reconciled" why=rediscovery`)
	restartHandled = line(`msg="kubelet restart handled"`)
	// reload logs this as its last act, having started, stopped and
	// registered nothing.
	rejected = line(`msg="config change rejected, keeping current pools"`)
)

func line(s string) *regexp.Regexp { return regexp.MustCompile(regexp.QuoteMeta(s)) }

// waitLog waits until the daemon has logged lines matching each of res, in
// this order, after byte offset from of its log, and returns the offset
// just past the last match.
func (d *daemon) waitLog(t *testing.T, from int, res ...*regexp.Regexp) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs, pos, i := d.logs.String(), from, 0
		for ; i < len(res); i++ {
			loc := res[i].FindStringIndex(logs[pos:])
			if loc == nil {
				break
			}
			pos += loc[1]
		}
		if i == len(res) {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not log %q within 10s", res[i])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// registered waits until the daemon has logged done after byte offset
// from of its log, then returns the distinct names kubelet has been asked
// to register and no caller took yet, sorted. done ends the work that
// registers plugins (a reconcile pass, the handling of a kubelet
// restart); Register is synchronous and the fake kubelet records it
// before answering, so by then every Register of that work is in
// k.Registers. Callers see to it that nothing else registers meanwhile.
func registered(t *testing.T, k *kubelettest.Kubelet, d *daemon, from int, done *regexp.Regexp) []string {
	t.Helper()
	d.waitLog(t, from, done)
	seen := map[string]bool{}
	for {
		select {
		case r := <-k.Registers:
			seen[r.ResourceName] = true
			continue
		default:
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

// noRegister fails the test for each Register kubelet has received that no
// caller took. Callers first wait for the line of the pass that could have
// registered.
func noRegister(t *testing.T, k *kubelettest.Kubelet) {
	t.Helper()
	for {
		select {
		case r := <-k.Registers:
			t.Errorf("unexpected Register of %s", r.ResourceName)
			continue
		default:
		}
		return
	}
}

// watching waits until an inotify instance of this process watches dir.
// watch.Path reads its baseline before it adds its watch, so from then on
// a change in dir reaches it; a daemon that does not poll sees nothing
// done earlier.
func watching(t *testing.T, dir string) {
	t.Helper()
	want := fmt.Sprintf(" ino:%x ", inode(t, dir))
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, _ := os.ReadDir("/proc/self/fdinfo")
		for _, fd := range fds {
			info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
			if err == nil && strings.Contains(string(info), "inotify wd:") && strings.Contains(string(info), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no inotify watch on %s within 10s", dir)
		}
		time.Sleep(10 * time.Millisecond)
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
	tr, dir, cfgPath, kubelet := setup(t)
	regDir := filepath.Join(kubelettest.ShortDir(t), "plugins_registry")
	baseline := runtime.NumGoroutine()

	// No polling: the daemon hears of kubelet restarts and config changes
	// through inotify alone, so each restart fires the kubelet.sock watch
	// once (a poll can see the new socket before inotify's Create is
	// taken, and the two fire twice), and nothing registers but a
	// reconcile pass or the handling of a restart. No rediscovery either.
	d := startDaemon(t, tr, cfgPath, dir, "--devinfo-dir", filepath.Join(t.TempDir(), "devinfo"), "--plugin-registry-dir", regDir,
		"--poll-interval", "1h", "--rediscover-interval", "0")
	ctx, logs := d.ctx, d.logs
	both := []string{"plexus.io/dpdk", "plexus.io/net"}

	if got := registered(t, kubelet, d, 0, startedUp); !slices.Equal(got, both) {
		t.Fatalf("registered %v", got)
	}
	watching(t, dir)
	watching(t, filepath.Dir(cfgPath))
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
	mark := logs.Len()
	kubelet.Restart(t, true)
	if got := registered(t, kubelet, d, mark, restartHandled); !slices.Equal(got, both) {
		t.Fatalf("re-registered %v", got)
	}
	probe(t, netSock)
	probe(t, dpdkSock)

	// A restart that leaves plugin sockets alone is seen through
	// kubelet.sock alone.
	mark = logs.Len()
	kubelet.Restart(t, false)
	if got := registered(t, kubelet, d, mark, restartHandled); !slices.Equal(got, both) {
		t.Fatalf("re-registered %v", got)
	}

	// Live reload: a new pool appears; unchanged pools keep their server.
	// The inode checks follow the reload's pass, which would have replaced
	// their sockets.
	netIno, dpdkIno := inode(t, netSock), inode(t, dpdkSock)
	mark = logs.Len()
	writeConfig(t, cfgPath, config+`
- resourceName: dpdk_uio
  deviceType: uio
  selectors: [{}]
`)
	if got := registered(t, kubelet, d, mark, reloaded); !slices.Equal(got, []string{"plexus.io/dpdk_uio"}) {
		t.Fatalf("after reload registered %v", got)
	}
	if inode(t, netSock) != netIno || inode(t, dpdkSock) != dpdkIno {
		t.Error("unchanged pools were restarted by the reload")
	}

	// A changed pool is restarted and re-registered; the others stay.
	mark = logs.Len()
	writeConfig(t, cfgPath, strings.Replace(config, "pfNames: [ens1f0]", "pfNames: ['ens1f0#0']", 1)+`
- resourceName: dpdk_uio
  deviceType: uio
  selectors: [{}]
`)
	if got := registered(t, kubelet, d, mark, reloaded); !slices.Equal(got, []string{"plexus.io/net"}) {
		t.Fatalf("after pool change registered %v", got)
	}
	if inode(t, dpdkSock) != dpdkIno {
		t.Error("dpdk pool restarted although unchanged")
	}

	// A broken config is rejected and everything keeps running. The
	// rejection is the reload's last act, so the Register check follows
	// all the reload did.
	mark = logs.Len()
	writeConfig(t, cfgPath, "pools: [{resourceName: x}]")
	d.waitLog(t, mark, rejected)
	noRegister(t, kubelet)
	probe(t, netSock)

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
	tr, dir, cfgPath, kubelet := setup(t)
	d := startDaemon(t, tr, cfgPath, dir, "--devinfo-dir", "", "--rediscover-interval", "100ms")
	ctx := d.ctx
	if got := registered(t, kubelet, d, 0, startedUp); !slices.Equal(got, []string{"plexus.io/dpdk", "plexus.io/net"}) {
		t.Fatalf("registered %v", got)
	}
	netSock := filepath.Join(dir, server.SocketName("plexus.io/net"))
	dpdkSock := filepath.Join(dir, server.SocketName("plexus.io/dpdk"))
	netIno, dpdkIno := inode(t, netSock), inode(t, dpdkSock)

	c := kubelettest.Dial(t, netSock)
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	stream := kubelettest.ListAndWatch(t, sctx, c)
	devs := kubelettest.Next(t, stream)
	if len(devs) != 2 {
		t.Fatalf("initial net pool %d devices, want 2", len(devs))
	}
	held := devs[0].ID
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
	for len(devs) != 4 {
		devs = kubelettest.Next(t, stream)
	}
	ids := map[string]string{}
	for _, d := range devs {
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
	// The pass that grew the pool to 4 devices logs the change, then its
	// end: a restart or a Register in that pass would be done by then.
	// Nothing else here registers (no kubelet restart, no socket gone).
	d.waitLog(t, 0, regexp.MustCompile(`msg="pool devices changed" resource=plexus\.io/net .*devices=4\n`), rediscovered)
	noRegister(t, kubelet)
	if inode(t, netSock) != netIno || inode(t, dpdkSock) != dpdkIno {
		t.Error("a pool was restarted by rediscovery")
	}
}
