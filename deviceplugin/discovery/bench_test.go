package discovery_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jaypipes/ghw"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

// bigTree is 4 PFs x 256 iavf VFs spread over 2 NUMA nodes.
func bigTree(b *testing.B) *sysfstest.Tree {
	tr := sysfstest.New(b, b.TempDir())
	for pf := range 4 {
		bus := 0x10 + pf*0x20
		vfs := make([]sysfstest.Func, 256)
		for i := range vfs {
			vfs[i] = sysfstest.Func{Address: sysfstest.VFAddress(bus, i), Vendor: "8086", Device: "154c", Driver: "iavf",
				Ifname: fmt.Sprintf("p%dv%d", pf, i), NUMANode: pf / 2, IOMMUGroup: 1000*(pf+1) + i, UIO: -1}
		}
		tr.AddPF(sysfstest.Func{Address: fmt.Sprintf("0000:%02x:00.0", bus), Vendor: "8086", Device: "1572", Driver: "i40e",
			Ifname: fmt.Sprintf("p%d", pf), NUMANode: pf / 2, IOMMUGroup: pf, UIO: -1}, 256, vfs)
	}
	return tr
}

// BenchmarkDiscover compares a full discovery pass with the bare ghw
// inventory it builds on. Both get the same preloaded pci.ids: loading it
// is a one-time start-up cost, and bare ghw.PCI cannot find it under a
// chroot anyway (see LoadPCIDB).
func BenchmarkDiscover(b *testing.B) {
	tr := bigTree(b)
	db, err := discovery.LoadPCIDB(tr.Root)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ghw.PCI", func(b *testing.B) {
		for b.Loop() {
			info, err := ghw.PCI(ghw.WithChroot(tr.Root), ghw.WithPCIDB(db), ghw.WithDisableTopology(), ghw.WithDisableWarnings())
			if err != nil || len(info.Devices) != 4*257 {
				b.Fatalf("ghw.PCI: %v", err)
			}
		}
	})
	b.Run("Discover", func(b *testing.B) {
		for b.Loop() {
			res, err := discovery.Discover(context.Background(), tr.Root, discovery.Options{DB: db})
			if err != nil || len(res.Devices) != 4*256 {
				b.Fatalf("Discover: %v", err)
			}
		}
	})
}
