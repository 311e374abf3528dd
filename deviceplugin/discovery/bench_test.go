package discovery_test

import (
	"context"
	"testing"

	"github.com/jaypipes/ghw"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
)

// BenchmarkDiscover compares a full discovery pass with the bare ghw
// inventory it builds on, on 4 PFs x 256 VFs in each tree shape. Both get
// the same preloaded pci.ids: loading it is a one-time start-up cost, and
// bare ghw.PCI cannot find it under a chroot anyway (see LoadPCIDB). With
// -count N the shapes and the two passes alternate, so each ratio is
// between neighbouring measurements.
func BenchmarkDiscover(b *testing.B) {
	for _, s := range treeShapes {
		b.Run(s.name, func(b *testing.B) {
			tr, want := shapeTree(b, s, 4, 256)
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
					if err != nil || len(res.Devices) != len(want) {
						b.Fatalf("Discover: %v", err)
					}
				}
			})
		})
	}
}
