package health_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/health"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	const (
		net  = "0000:3b:00.0"
		vfio = "0000:3c:00.0"
		uio  = "0000:3d:00.0"
	)
	tests := []struct {
		name   string
		addr   string
		break_ func(tr *sysfstest.Tree)
		want   string
	}{
		{"netdev up", net, func(*sysfstest.Tree) {}, ""},
		{"netdev unknown counts as up", net, func(tr *sysfstest.Tree) { tr.SetOperstate(net, "eth0", "unknown") }, ""},
		{"netdev down", net, func(tr *sysfstest.Tree) { tr.SetOperstate(net, "eth0", "down") }, "link eth0 is down"},
		{"netdev moved into a pod namespace", net, func(tr *sysfstest.Tree) {
			_ = os.RemoveAll(filepath.Join(tr.Root, "sys/devices/pci0000:00", net, "net", "eth0"))
		}, ""},
		{"renamed netdev is followed", net, func(tr *sysfstest.Tree) {
			d := filepath.Join(tr.Root, "sys/devices/pci0000:00", net, "net")
			_ = os.Rename(filepath.Join(d, "eth0"), filepath.Join(d, "pod0"))
			tr.SetOperstate(net, "pod0", "lowerlayerdown")
		}, "link pod0 is lowerlayerdown"},
		{"device removed", net, func(tr *sysfstest.Tree) { tr.Remove(net) }, "device gone"},
		{"driver rebound", net, func(tr *sysfstest.Tree) { tr.Bind(net, "vfio-pci") }, "bound to vfio-pci, expected ixgbe"},
		{"vfio ok", vfio, func(*sysfstest.Tree) {}, ""},
		{"vfio group node gone", vfio, func(tr *sysfstest.Tree) { _ = os.Remove(filepath.Join(tr.Root, "dev/vfio/7")) }, "/dev/vfio/7 missing"},
		{"vfio unbound", vfio, func(tr *sysfstest.Tree) { tr.Unbind(vfio) }, "no driver bound"},
		{"uio ok", uio, func(*sysfstest.Tree) {}, ""},
		{"uio node gone", uio, func(tr *sysfstest.Tree) { _ = os.Remove(filepath.Join(tr.Root, "dev/uio2")) }, "/dev/uio2 missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := sysfstest.New(t, t.TempDir())
			tr.AddFunc(sysfstest.Func{Address: net, Vendor: "8086", Device: "1572", Driver: "ixgbe", Ifname: "eth0", IOMMUGroup: -1, UIO: -1})
			tr.AddFunc(sysfstest.Func{Address: vfio, Vendor: "8086", Device: "1572", Driver: "vfio-pci", IOMMUGroup: 7, UIO: -1})
			tr.AddFunc(sysfstest.Func{Address: uio, Vendor: "8086", Device: "1572", Driver: "uio_pci_generic", IOMMUGroup: -1, UIO: 2})
			res, err := discovery.Discover(context.Background(), tr.Root, discovery.Options{})
			if err != nil || len(res.Devices) != 3 {
				t.Fatalf("discover: %v %+v", err, res)
			}
			var dev discovery.Device
			for _, d := range res.Devices {
				if d.Address == tt.addr {
					dev = d
				}
			}
			tt.break_(tr)
			if got := health.Check(tr.Root, &dev); got != tt.want {
				t.Errorf("Check = %q, want %q", got, tt.want)
			}
		})
	}
}
