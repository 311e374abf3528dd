package discovery_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

// treeShape is one host layout discovery must handle: how the tree is
// built, which driver each VF is bound to, and the link type netdev VFs
// must then report. PFs are on i40e unless pfDriver says otherwise.
type treeShape struct {
	name     string
	opts     []sysfstest.Option
	vfDriver func(i int) string
	linkType string
	pfDriver string
}

func allOn(driver string) func(int) string { return func(int) string { return driver } }

var treeShapes = []treeShape{
	{"sysfstest", nil, allOn("iavf"), "ether", ""},
	{"no-sriov-layout", []sysfstest.Option{sysfstest.WithoutSRIOVLayout()}, allOn("iavf"), "ether", ""},
	{"no-link-type", []sysfstest.Option{sysfstest.WithoutLinkType()}, allOn("iavf"), "", ""},
	{"uio", nil, allOn("igb_uio"), "", ""},
	{"vfio", nil, allOn("vfio-pci"), "", ""},
	// vfio-pci's enable_sriov: the PF has no netdev, so each VF's link
	// type is its own.
	{"pf-on-vfio", nil, allOn("iavf"), "ether", "vfio-pci"},
	// An older kernel with a DPDK host's mix of drivers.
	{"old-kernel-mixed", []sysfstest.Option{sysfstest.WithoutSRIOVLayout(), sysfstest.WithoutLinkType()},
		func(i int) string { return []string{"iavf", "vfio-pci", "igb_uio", "uio_pci_generic"}[i%4] }, "", ""},
}

// shapeTree builds pfs i40e PFs with vfs VFs each, spread over 2 NUMA
// nodes, and returns the inventory discovery must report for it, worked
// out from the layout rather than from discovery's own rules.
func shapeTree(tb testing.TB, s treeShape, pfs, vfs int) (*sysfstest.Tree, []discovery.Device) {
	tb.Helper()
	tr := sysfstest.New(tb, tb.TempDir(), s.opts...)
	var want []discovery.Device
	for pf := range pfs {
		bus := 0x10 + pf*0x20
		pfAddr, pfName, pfDriver := fmt.Sprintf("0000:%02x:00.0", bus), fmt.Sprintf("p%d", pf), "i40e"
		if s.pfDriver != "" {
			pfName, pfDriver = "", s.pfDriver
		}
		funcs := make([]sysfstest.Func, vfs)
		for i := range funcs {
			f := sysfstest.Func{Address: sysfstest.VFAddress(bus, i), Vendor: "8086", Device: "154c", Driver: s.vfDriver(i),
				NUMANode: pf / 2, IOMMUGroup: 1000*(pf+1) + i, UIO: -1}
			d := discovery.Device{Address: f.Address, VendorID: "8086", DeviceID: "154c", VendorName: "Intel Corporation",
				ProductName: "Ethernet Virtual Function 700 Series", Driver: f.Driver, NUMANode: f.NUMANode,
				IsVF: true, PFAddress: pfAddr, PFName: pfName, VFIndex: i, IOMMUGroup: strconv.Itoa(f.IOMMUGroup)}
			switch f.Driver {
			case "vfio-pci":
				d.Kind, d.VFIODevice = discovery.KindVFIO, "/dev/vfio/"+d.IOMMUGroup
			case "igb_uio", "uio_pci_generic":
				f.UIO = pf*vfs + i
				d.Kind, d.UIODevice = discovery.KindUIO, "/dev/uio"+strconv.Itoa(f.UIO)
			default:
				f.Ifname = fmt.Sprintf("p%dv%d", pf, i)
				d.Kind, d.Ifname, d.LinkType = discovery.KindNetDevice, f.Ifname, s.linkType
			}
			funcs[i] = f
			want = append(want, d)
		}
		tr.AddPF(sysfstest.Func{Address: pfAddr, Vendor: "8086", Device: "1572", Driver: pfDriver,
			Ifname: pfName, NUMANode: pf / 2, IOMMUGroup: pf, UIO: -1}, 256, funcs)
	}
	return tr, want
}

// TestDiscoverShapes: on every layout the inventory is exact, every VF
// found with its index, kind and inherited facts, nothing else listed.
func TestDiscoverShapes(t *testing.T) {
	t.Parallel()
	for _, s := range treeShapes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			tr, want := shapeTree(t, s, 3, 40)
			res := discover(t, tr)
			if len(res.Problems) != 0 {
				t.Errorf("problems: %v", res.Problems)
			}
			got := byAddress(res.Devices)
			for _, w := range want {
				if d, ok := got[w.Address]; !ok {
					t.Errorf("%s not discovered", w.Address)
				} else if d != w {
					t.Errorf("%s:\n got %+v\nwant %+v", w.Address, d, w)
				}
			}
			if len(res.Devices) != len(want) {
				t.Errorf("discovered %d devices, want %d", len(res.Devices), len(want))
			}
		})
	}
}
