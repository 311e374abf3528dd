package server_test

import (
	"context"
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
)

// BenchmarkAllocate measures one Allocate of one VF as kubelet sees it:
// over the plugin's unix socket, with and without the device info file
// (written atomically). Reports the p50 and p99 per call besides the mean,
// since the target is on the p99.
func BenchmarkAllocate(b *testing.B) {
	var devs []discovery.Device
	for i := range 64 {
		devs = append(devs, discovery.Device{Address: fmt.Sprintf("0000:3b:%02x.%d", 1+i/8, i%8), Kind: discovery.KindVFIO,
			VFIODevice: fmt.Sprintf("/dev/vfio/%d", 100+i), PFAddress: "0000:3b:00.0", NUMANode: 0})
	}
	spec := pool.Spec{ResourceName: "bench", ResourcePrefix: "plexus.io", DeviceType: discovery.KindVFIO, AllocationPolicy: pool.PolicySpread}
	for _, withDevInfo := range []bool{false, true} {
		b.Run(fmt.Sprintf("devinfo=%v", withDevInfo), func(b *testing.B) {
			dir := b.TempDir()
			devinfoDir := ""
			if withDevInfo {
				// On a node the files go to /var/run, a tmpfs; measure there
				// too when this machine has one, else on the test's disk.
				devinfoDir = filepath.Join(dir, "devinfo")
				if run, err := os.MkdirTemp("/run", "plexus-bench-devinfo-"); err == nil {
					b.Cleanup(func() { os.RemoveAll(run) })
					devinfoDir = run
				}
			}
			ctx := context.Background()
			p := start(b, ctx, server.Config{Pool: pool.Pool{Spec: spec, Devices: devs}, PluginDir: dir, Root: dir, DevInfoDir: devinfoDir})
			c := kubelettest.Dial(b, p.Socket())
			var took []time.Duration
			i := 0
			for b.Loop() {
				req := &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{devs[i%len(devs)].Address}}}}
				start := time.Now()
				if _, err := c.Allocate(ctx, req); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				i++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
