package discovery_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jaypipes/ghw"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
)

// BenchmarkDiscover compares a full discovery pass with the bare ghw
// inventory it builds on, on 4 PFs x 256 VFs in each tree shape. Both get
// the same preloaded pci.ids: loading it is a one-time start-up cost, and
// bare ghw.PCI cannot find it under a chroot anyway (see LoadPCIDB).
// ghw.PCI and Discover give each its own ns/op and allocations; pair
// runs one of each per iteration, alternating which goes first, and
// reports their medians and the median of the per-pair ratios, which on
// a shared machine is the figure to quote: both passes of a pair see the
// same load.
func BenchmarkDiscover(b *testing.B) {
	for _, s := range treeShapes {
		b.Run(s.name, func(b *testing.B) {
			tr, want := shapeTree(b, s, 4, 256)
			db, err := discovery.LoadPCIDB(tr.Root)
			if err != nil {
				b.Fatal(err)
			}
			bare := func() {
				info, err := ghw.PCI(ghw.WithChroot(tr.Root), ghw.WithPCIDB(db), ghw.WithDisableTopology(), ghw.WithDisableWarnings())
				if err != nil || len(info.Devices) != 4*257 {
					b.Fatalf("ghw.PCI: %v", err)
				}
			}
			full := func() {
				res, err := discovery.Discover(context.Background(), tr.Root, discovery.Options{DB: db})
				if err != nil || len(res.Devices) != len(want) {
					b.Fatalf("Discover: %v", err)
				}
			}
			b.Run("ghw.PCI", func(b *testing.B) {
				for b.Loop() {
					bare()
				}
			})
			b.Run("Discover", func(b *testing.B) {
				for b.Loop() {
					full()
				}
			})
			b.Run("pair", func(b *testing.B) {
				var ghwNs, ourNs, ratios []float64
				for b.Loop() {
					first, second := bare, full
					if len(ratios)%2 == 1 {
						first, second = full, bare
					}
					t0 := time.Now()
					first()
					t1 := time.Now()
					second()
					t2 := time.Now()
					g, d := t1.Sub(t0), t2.Sub(t1)
					if len(ratios)%2 == 1 {
						g, d = d, g
					}
					ghwNs, ourNs = append(ghwNs, float64(g)), append(ourNs, float64(d))
					ratios = append(ratios, float64(d)/float64(g))
				}
				b.ReportMetric(median(ghwNs), "ghw-ns/op")
				b.ReportMetric(median(ourNs), "discover-ns/op")
				b.ReportMetric(median(ratios), "ratio")
			})
		})
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
