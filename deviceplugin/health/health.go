// Package health decides whether a discovered device can still be handed
// to a pod. Checks read sysfs and /dev under a root directory each time:
// they are cheap and a device that recovers must turn healthy again.
package health

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
)

// Check returns "" when d is healthy, else why it is not.
func Check(root string, d *discovery.Device) string {
	dir := filepath.Join(root, "sys/bus/pci/devices", d.Address)
	if _, err := os.Stat(dir); err != nil {
		return "device gone"
	}
	// A driver rebind (say iavf -> vfio-pci) changes what the device is;
	// until rediscovery it must not be handed out as the old kind.
	drv, err := os.Readlink(filepath.Join(dir, "driver"))
	if err != nil {
		return "no driver bound"
	}
	if got := filepath.Base(drv); got != d.Driver {
		return "bound to " + got + ", expected " + d.Driver
	}
	switch d.Kind {
	case discovery.KindNetDevice:
		// The netdev may have been renamed, or moved into a pod's network
		// namespace, where host sysfs cannot see it. A renamed netdev is
		// followed; an invisible one is judged by presence and driver
		// alone, because marking every allocated VF unhealthy would be
		// wrong.
		name := d.Ifname
		raw, err := os.ReadFile(filepath.Join(dir, "net", name, "operstate"))
		if err != nil {
			if name = discovery.FirstEntry(filepath.Join(dir, "net")); name == "" {
				return ""
			}
			if raw, err = os.ReadFile(filepath.Join(dir, "net", name, "operstate")); err != nil {
				return ""
			}
		}
		// "unknown" is what drivers without carrier reporting say while
		// passing traffic; only an explicit non-up state is unhealthy.
		if s := strings.TrimSpace(string(raw)); s != "up" && s != "unknown" {
			return "link " + name + " is " + s
		}
	case discovery.KindVFIO:
		for _, p := range []string{"/dev/vfio/vfio", d.VFIODevice} {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				return p + " missing"
			}
		}
	case discovery.KindUIO:
		if _, err := os.Stat(filepath.Join(root, d.UIODevice)); err != nil {
			return d.UIODevice + " missing"
		}
	}
	return ""
}
