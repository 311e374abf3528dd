package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

// mixedTree builds two NUMA nodes: an Intel PF with 4 iavf VFs on node 0
// (VF 3 bound to vfio-pci), a Mellanox PF with 2 VFs on node 1 (one on
// vfio-pci in noiommu mode, one on igb_uio) and a plain PF without VFs.
func mixedTree(t *testing.T) *sysfstest.Tree {
	tr := sysfstest.New(t, t.TempDir())
	var vfs []sysfstest.Func
	for i := range 4 {
		vf := sysfstest.Func{Address: sysfstest.VFAddress(0x3b, i), Vendor: "8086", Device: "154c", Driver: "iavf",
			Ifname: "ens1f0v" + string(rune('0'+i)), NUMANode: 0, IOMMUGroup: 100 + i, UIO: -1}
		if i == 3 {
			vf.Driver, vf.Ifname = "vfio-pci", ""
		}
		vfs = append(vfs, vf)
	}
	tr.AddPF(sysfstest.Func{Address: "0000:3b:00.0", Vendor: "8086", Device: "1572", Driver: "i40e", Ifname: "ens1f0",
		NUMANode: 0, IOMMUGroup: 10, UIO: -1}, 64, vfs)
	tr.AddPF(sysfstest.Func{Address: "0000:af:00.0", Vendor: "15b3", Device: "101d", Driver: "mlx5_core", Ifname: "ens2f0",
		NUMANode: 1, IOMMUGroup: 20, UIO: -1}, 8, []sysfstest.Func{
		{Address: sysfstest.VFAddress(0xaf, 0), Vendor: "15b3", Device: "101e", Driver: "vfio-pci", NUMANode: 1, IOMMUGroup: 200, NoIOMMU: true, UIO: -1},
		{Address: sysfstest.VFAddress(0xaf, 1), Vendor: "15b3", Device: "101e", Driver: "igb_uio", NUMANode: 1, IOMMUGroup: 201, UIO: 3},
	})
	tr.AddFunc(sysfstest.Func{Address: "0000:5e:00.0", Vendor: "8086", Device: "1592", Driver: "ice", Ifname: "ens3",
		NUMANode: -1, IOMMUGroup: -1, UIO: -1, LinkType: 32})
	// A PCI bridge: not a network controller, must be ignored.
	tr.AddFunc(sysfstest.Func{Address: "0000:00:01.0", Vendor: "8086", Device: "1572", Class: "060400", Driver: "pcieport", IOMMUGroup: -1, UIO: -1})
	return tr
}

// discover runs Discover on the tree and fails the test on an error.
func discover(t *testing.T, tr *sysfstest.Tree) *discovery.Result {
	t.Helper()
	res, err := discovery.Discover(context.Background(), tr.Root, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func byAddress(devs []discovery.Device) map[string]discovery.Device {
	got := map[string]discovery.Device{}
	for _, d := range devs {
		got[d.Address] = d
	}
	return got
}

func TestDiscoverKinds(t *testing.T) {
	t.Parallel()
	tr := mixedTree(t)
	res := discover(t, tr)
	if len(res.Problems) != 0 {
		t.Fatalf("unexpected problems: %v", res.Problems)
	}
	got := byAddress(res.Devices)
	tests := []struct {
		addr string
		want discovery.Device
	}{
		{"0000:3b:01.0", discovery.Device{Kind: discovery.KindNetDevice, Driver: "iavf", IsVF: true, PFAddress: "0000:3b:00.0", PFName: "ens1f0", VFIndex: 0, Ifname: "ens1f0v0", LinkType: "ether", NUMANode: 0, IOMMUGroup: "100", VendorID: "8086", DeviceID: "154c"}},
		{"0000:3b:01.1", discovery.Device{Kind: discovery.KindNetDevice, Driver: "iavf", IsVF: true, PFAddress: "0000:3b:00.0", PFName: "ens1f0", VFIndex: 1, Ifname: "ens1f0v1", LinkType: "ether", NUMANode: 0, IOMMUGroup: "101", VendorID: "8086", DeviceID: "154c"}},
		{"0000:3b:01.2", discovery.Device{Kind: discovery.KindNetDevice, Driver: "iavf", IsVF: true, PFAddress: "0000:3b:00.0", PFName: "ens1f0", VFIndex: 2, Ifname: "ens1f0v2", LinkType: "ether", NUMANode: 0, IOMMUGroup: "102", VendorID: "8086", DeviceID: "154c"}},
		{"0000:3b:01.3", discovery.Device{Kind: discovery.KindVFIO, Driver: "vfio-pci", IsVF: true, PFAddress: "0000:3b:00.0", PFName: "ens1f0", VFIndex: 3, NUMANode: 0, IOMMUGroup: "103", VFIODevice: "/dev/vfio/103", VendorID: "8086", DeviceID: "154c"}},
		{"0000:af:01.0", discovery.Device{Kind: discovery.KindVFIO, Driver: "vfio-pci", IsVF: true, PFAddress: "0000:af:00.0", PFName: "ens2f0", VFIndex: 0, NUMANode: 1, IOMMUGroup: "200", VFIODevice: "/dev/vfio/noiommu-200", VendorID: "15b3", DeviceID: "101e"}},
		{"0000:af:01.1", discovery.Device{Kind: discovery.KindUIO, Driver: "igb_uio", IsVF: true, PFAddress: "0000:af:00.0", PFName: "ens2f0", VFIndex: 1, NUMANode: 1, IOMMUGroup: "201", UIODevice: "/dev/uio3", VendorID: "15b3", DeviceID: "101e"}},
		{"0000:5e:00.0", discovery.Device{Kind: discovery.KindNetDevice, Driver: "ice", VFIndex: -1, Ifname: "ens3", LinkType: "infiniband", NUMANode: -1, VendorID: "8086", DeviceID: "1592"}},
	}
	for _, tt := range tests {
		d, ok := got[tt.addr]
		if !ok {
			t.Errorf("%s not discovered", tt.addr)
			continue
		}
		tt.want.Address = tt.addr
		d.VendorName, d.ProductName = "", ""
		if d != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.addr, d, tt.want)
		}
	}
	if len(res.Devices) != len(tests) {
		t.Errorf("discovered %d devices, want %d (PFs with VFs and non-network functions excluded): %+v", len(res.Devices), len(tests), res.Devices)
	}
	if n := got["0000:3b:01.0"].ProductName; n != "Ethernet Virtual Function 700 Series" {
		t.Errorf("product name from pci.ids = %q", n)
	}
}

func TestDiscoverReportsBadEntries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		bad   func(*sysfstest.Tree)
		entry string
	}{
		{"bad address", func(tr *sysfstest.Tree) { tr.AddBadAddressEntry("not-a-pci-address") }, "not-a-pci-address"},
		{"truncated modalias", func(tr *sysfstest.Tree) { tr.AddTruncatedModalias("0000:99:00.0") }, "0000:99:00.0"},
		{"vfio without group node", func(tr *sysfstest.Tree) {
			tr.AddFunc(sysfstest.Func{Address: "0000:98:00.0", Vendor: "8086", Device: "1572", Driver: "vfio-pci", IOMMUGroup: -1, UIO: -1})
		}, "0000:98:00.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := mixedTree(t)
			tt.bad(tr)
			res := discover(t, tr)
			if len(res.Problems) != 1 || res.Problems[0].Entry != tt.entry {
				t.Fatalf("problems = %v, want one for %s", res.Problems, tt.entry)
			}
			// The good devices survive the bad entry.
			if len(res.Devices) != 7 {
				t.Errorf("got %d devices, want 7", len(res.Devices))
			}
		})
	}
}

// TestDiscoverVFIndexFallback covers PFs whose VFs do not sit where
// sriov_offset/sriov_stride say (or that lack those files): the index
// must then come from the virtfnN links.
func TestDiscoverVFIndexFallback(t *testing.T) {
	t.Parallel()
	tr := sysfstest.New(t, t.TempDir())
	addrs := []string{"0000:40:02.3", "0000:40:01.0", "0000:40:07.7"} // irregular on purpose
	var vfs []sysfstest.Func
	for i, a := range addrs {
		vfs = append(vfs, sysfstest.Func{Address: a, Vendor: "8086", Device: "154c", Driver: "iavf",
			Ifname: "v" + string(rune('0'+i)), NUMANode: 1, IOMMUGroup: -1, UIO: -1})
	}
	tr.AddPF(sysfstest.Func{Address: "0000:40:00.0", Vendor: "8086", Device: "1572", Driver: "i40e", Ifname: "pf",
		NUMANode: 1, IOMMUGroup: -1, UIO: -1}, 8, vfs)
	res := discover(t, tr)
	got := map[string]int{}
	for _, d := range res.Devices {
		got[d.Address] = d.VFIndex
		if d.NUMANode != 1 || d.PFName != "pf" {
			t.Errorf("%s: NUMA %d PF %q not inherited from PF", d.Address, d.NUMANode, d.PFName)
		}
	}
	for i, a := range addrs {
		if idx, ok := got[a]; !ok || idx != i {
			t.Errorf("%s: VF index %d (found %v), want %d", a, idx, ok, i)
		}
	}
}

// TestDiscoverManyVFs: 300 VFs spill over into the next bus, as routing
// IDs do; every index must still come out right, mostly by arithmetic.
func TestDiscoverManyVFs(t *testing.T) {
	t.Parallel()
	tr := sysfstest.New(t, t.TempDir())
	const n = 300
	vfs := make([]sysfstest.Func, n)
	for i := range vfs {
		vfs[i] = sysfstest.Func{Address: sysfstest.VFAddress(0x20, i), Vendor: "15b3", Device: "101e", Driver: "mlx5_core",
			Ifname: fmt.Sprintf("vf%d", i), NUMANode: 3, IOMMUGroup: 500 + i, UIO: -1}
	}
	tr.AddPF(sysfstest.Func{Address: "0000:20:00.0", Vendor: "15b3", Device: "101d", Driver: "mlx5_core", Ifname: "pf0",
		NUMANode: 3, IOMMUGroup: 1, UIO: -1, LinkType: 32}, 512, vfs)
	res := discover(t, tr)
	if len(res.Devices) != n || len(res.Problems) != 0 {
		t.Fatalf("got %d devices, problems %v", len(res.Devices), res.Problems)
	}
	for _, d := range res.Devices {
		var i int
		if _, err := fmt.Sscanf(d.Ifname, "vf%d", &i); err != nil || d.VFIndex != i || d.Address != sysfstest.VFAddress(0x20, i) {
			t.Errorf("%s (%s): VF index %d", d.Address, d.Ifname, d.VFIndex)
		}
		if d.NUMANode != 3 || d.LinkType != "infiniband" || d.PFName != "pf0" {
			t.Errorf("%s: inherited NUMA %d link %q PF %q", d.Address, d.NUMANode, d.LinkType, d.PFName)
		}
	}
}

func TestDiscoverWithoutPCIIDs(t *testing.T) {
	t.Parallel()
	_, err := discovery.Discover(context.Background(), t.TempDir(), discovery.Options{})
	if !errors.Is(err, discovery.ErrNoPCIDB) {
		t.Fatalf("err = %v, want ErrNoPCIDB", err)
	}
	if !strings.Contains(err.Error(), "usr/share/hwdata/pci.ids") {
		t.Errorf("error should say where it looked: %v", err)
	}
}
