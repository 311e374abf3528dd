package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
	"github.com/plexus-cni/plexus/deviceplugin/server"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

// sriovTree: NUMA 0 holds PFs ens1f0 and ens1f1 with 4 iavf VFs each;
// NUMA 1 holds ens2f0 with 2 VFs bound to vfio-pci.
func sriovTree(t *testing.T) *sysfstest.Tree {
	tr := sysfstest.New(t, t.TempDir())
	add := func(pfAddr, pfName string, bus, numa, n int, vfDriver string) {
		var vfs []sysfstest.Func
		for i := range n {
			vf := sysfstest.Func{Address: sysfstest.VFAddress(bus, i), Vendor: "8086", Device: "154c", Driver: vfDriver,
				NUMANode: numa, IOMMUGroup: bus*10 + i, UIO: -1}
			if vfDriver == "iavf" {
				vf.Ifname = fmt.Sprintf("%sv%d", pfName, i)
			}
			vfs = append(vfs, vf)
		}
		tr.AddPF(sysfstest.Func{Address: pfAddr, Vendor: "8086", Device: "1572", Driver: "i40e", Ifname: pfName,
			NUMANode: numa, IOMMUGroup: bus, UIO: -1}, 64, vfs)
	}
	add("0000:3b:00.0", "ens1f0", 0x3b, 0, 4, "iavf")
	add("0000:3c:00.0", "ens1f1", 0x3c, 0, 4, "iavf")
	add("0000:af:00.0", "ens2f0", 0xaf, 1, 2, "vfio-pci")
	return tr
}

func pools(t *testing.T, tr *sysfstest.Tree, config string) []pool.Pool {
	t.Helper()
	cfg, err := pool.Parse([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	res, err := discovery.Discover(context.Background(), tr.Root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := pool.Assign(cfg, res.Devices)
	return ps
}

// start starts a plugin serving cfg until the test ends.
func start(tb testing.TB, ctx context.Context, cfg server.Config) *server.Plugin {
	tb.Helper()
	p := server.New(cfg)
	if err := p.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

const testConfig = `
pools:
- resourceName: sriov_net
  deviceType: netdevice
  selectors: [{drivers: [iavf]}]
  cdiKind: vendor.example.com/net
  mounts: [{hostPath: /dev/hugepages, readOnly: true}]
- resourceName: sriov_dpdk
  resourcePrefix: dpdk.example.com
  deviceType: vfio
  selectors: [{pfNames: ["ens2f0#0-7"]}]
`

func recv(t *testing.T, s pb.DevicePlugin_ListAndWatchClient) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range kubelettest.Next(t, s) {
		out[d.ID] = d.Health
	}
	return out
}

func TestPluginEndToEnd(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	dir := kubelettest.ShortDir(t)
	devinfoDir := filepath.Join(t.TempDir(), "devinfo")
	kubelet := kubelettest.Start(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	p := start(t, ctx, server.Config{Pool: ps[0], PluginDir: dir, Root: tr.Root, DevInfoDir: devinfoDir, HealthInterval: 20 * time.Millisecond})
	fi, err := os.Stat(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %o, want 600", perm)
	}

	// Registration.
	if err := p.Register(ctx, kubelet.Socket); err != nil {
		t.Fatal(err)
	}
	reg := kubelet.WaitRegister(t, 5*time.Second)
	if reg.Version != pb.Version || reg.ResourceName != "plexus.io/sriov_net" || reg.Endpoint != filepath.Base(p.Socket()) ||
		!reg.GetOptions().GetGetPreferredAllocationAvailable() {
		t.Errorf("Register request = %+v", reg)
	}

	// The test now acts as kubelet.
	c := kubelettest.Dial(t, p.Socket())
	opts, err := c.GetDevicePluginOptions(ctx, &pb.Empty{})
	if err != nil || !opts.GetPreferredAllocationAvailable || opts.PreStartRequired {
		t.Fatalf("GetDevicePluginOptions = %+v, %v", opts, err)
	}

	stream := kubelettest.ListAndWatch(t, ctx, c)
	first := kubelettest.Next(t, stream)
	if len(first) != 8 {
		t.Fatalf("initial list has %d devices, want 8", len(first))
	}
	for _, d := range first {
		if d.Health != pb.Healthy || len(d.Topology.GetNodes()) != 1 || d.Topology.Nodes[0].ID != 0 {
			t.Errorf("initial device %+v", d)
		}
	}

	// Health follows the link state, both ways.
	vf := sysfstest.VFAddress(0x3b, 1)
	tr.SetOperstate(vf, "ens1f0v1", "down")
	if h := recv(t, stream); h[vf] != pb.Unhealthy || h[sysfstest.VFAddress(0x3b, 0)] != pb.Healthy {
		t.Errorf("after link down: %v", h)
	}
	tr.SetOperstate(vf, "ens1f0v1", "up")
	if h := recv(t, stream); h[vf] != pb.Healthy {
		t.Errorf("after link up: %v", h)
	}

	// Preferred allocation: two devices, spread over the two PFs.
	var avail []string
	for _, d := range first {
		avail = append(avail, d.ID)
	}
	pref, err := c.GetPreferredAllocation(ctx, &pb.PreferredAllocationRequest{ContainerRequests: []*pb.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: avail, AllocationSize: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := pref.ContainerResponses[0].DeviceIDs
	if want := []string{sysfstest.VFAddress(0x3b, 0), sysfstest.VFAddress(0x3c, 0)}; !slices.Equal(got, want) {
		t.Errorf("preferred = %v, want %v", got, want)
	}

	// Allocate.
	ids := []string{sysfstest.VFAddress(0x3b, 2), sysfstest.VFAddress(0x3c, 3)}
	alloc, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: ids}}})
	if err != nil {
		t.Fatal(err)
	}
	cr := alloc.ContainerResponses[0]
	if env := cr.Envs["PCIDEVICE_PLEXUS_IO_SRIOV_NET"]; env != ids[0]+","+ids[1] {
		t.Errorf("envs = %v", cr.Envs)
	}
	if len(cr.Devices) != 0 {
		t.Errorf("netdevice pool returned device specs %v", cr.Devices)
	}
	var cdi []string
	for _, d := range cr.CdiDevices {
		cdi = append(cdi, d.Name)
	}
	if want := []string{"vendor.example.com/net=" + ids[0], "vendor.example.com/net=" + ids[1]}; !slices.Equal(cdi, want) {
		t.Errorf("CDI devices = %v, want %v", cdi, want)
	}
	if len(cr.Mounts) != 1 || cr.Mounts[0].HostPath != "/dev/hugepages" || cr.Mounts[0].ContainerPath != "/dev/hugepages" || !cr.Mounts[0].ReadOnly {
		t.Errorf("mounts = %v", cr.Mounts)
	}
	infoPath := filepath.Join(devinfoDir, "plexus.io-sriov_net-"+ids[0]+"-device.json")
	raw, err := os.ReadFile(infoPath)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	wantInfo := map[string]any{"type": "pci", "version": "1.1.0", "pci": map[string]any{"pci-address": ids[0], "pf-pci-address": "0000:3b:00.0"}}
	if fmt.Sprint(info) != fmt.Sprint(wantInfo) {
		t.Errorf("device info = %s", raw)
	}
	if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{"0000:00:00.0"}}}}); err == nil {
		t.Error("Allocate of a device outside the pool succeeded")
	}

	// Stop: stream ends, socket and device info files are removed.
	p.Stop()
	p.Stop() // idempotent
	if _, err := stream.Recv(); err == nil {
		t.Error("stream still open after Stop")
	}
	for _, f := range []string{p.Socket(), infoPath} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Stop (%v)", f, err)
		}
	}
}

func TestPluginVFIOAllocateAndHealth(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := start(t, ctx, server.Config{Pool: ps[1], PluginDir: kubelettest.ShortDir(t), Root: tr.Root, HealthInterval: 20 * time.Millisecond})
	c := kubelettest.Dial(t, p.Socket())
	ids := []string{sysfstest.VFAddress(0xaf, 0), sysfstest.VFAddress(0xaf, 1)}
	alloc, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: ids}}})
	if err != nil {
		t.Fatal(err)
	}
	cr := alloc.ContainerResponses[0]
	var paths []string
	for _, d := range cr.Devices {
		if d.HostPath != d.ContainerPath || d.Permissions != "rw" {
			t.Errorf("device spec %+v", d)
		}
		paths = append(paths, d.HostPath)
	}
	if want := []string{"/dev/vfio/vfio", "/dev/vfio/1750", "/dev/vfio/1751"}; !slices.Equal(paths, want) {
		t.Errorf("device specs %v, want %v", paths, want)
	}
	if env := cr.Envs["PCIDEVICE_DPDK_EXAMPLE_COM_SRIOV_DPDK"]; env != ids[0]+","+ids[1] {
		t.Errorf("envs = %v", cr.Envs)
	}
	if len(cr.CdiDevices) != 0 || len(cr.Mounts) != 0 {
		t.Errorf("pool without cdiKind/mounts: CDI devices %v, mounts %v", cr.CdiDevices, cr.Mounts)
	}

	stream := kubelettest.ListAndWatch(t, ctx, c)
	if h := recv(t, stream); h[ids[0]] != pb.Healthy {
		t.Fatalf("initial %v", h)
	}
	// Unbinding from vfio-pci makes the device unusable; rebinding heals it.
	tr.Unbind(ids[0])
	if h := recv(t, stream); h[ids[0]] != pb.Unhealthy {
		t.Errorf("after unbind %v", h)
	}
	tr.Bind(ids[0], "vfio-pci")
	if h := recv(t, stream); h[ids[0]] != pb.Healthy {
		t.Errorf("after rebind %v", h)
	}
}

func TestPluginStopsWithContext(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	p := start(t, ctx, server.Config{Pool: ps[0], PluginDir: kubelettest.ShortDir(t), Root: tr.Root})
	stream := kubelettest.ListAndWatch(t, context.Background(), kubelettest.Dial(t, p.Socket()))
	recv(t, stream)
	cancel()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream open after context cancel")
	}
	p.Stop()
	if _, err := os.Stat(p.Socket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestEnsureServingAfterSocketDeleted(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := start(t, ctx, server.Config{Pool: ps[0], PluginDir: kubelettest.ShortDir(t), Root: tr.Root})
	if err := os.Remove(p.Socket()); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureServing(); err != nil {
		t.Fatal(err)
	}
	c := kubelettest.Dial(t, p.Socket())
	if _, err := c.GetDevicePluginOptions(ctx, &pb.Empty{}); err != nil {
		t.Fatalf("plugin unreachable after re-serve: %v", err)
	}
}

func TestSocketNameDistinct(t *testing.T) {
	t.Parallel()
	tests := []struct{ resource, want string }{
		{"plexus.io/sriov_net", "plexus-plexus.io_sriov_net.sock"},
		{"plexus.io/a.b", "plexus-plexus.io_a.b.sock"},
		{"plexus.io/a_b", "plexus-plexus.io_a_b.sock"},
		{"plexus.io.a/b", "plexus-plexus.io.a_b.sock"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := server.SocketName(tt.resource)
		if got != tt.want {
			t.Errorf("SocketName(%q) = %q, want %q", tt.resource, got, tt.want)
		}
		if seen[got] {
			t.Errorf("SocketName(%q) collides", tt.resource)
		}
		seen[got] = true
	}
}
