// Package allocate builds what kubelet hands a container for a set of pool
// devices (environment, device nodes, mounts, CDI device names) and picks
// preferred device sets.
package allocate

import (
	"fmt"
	"slices"
	"strings"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
)

// CDIName is the fully qualified CDI device name "<kind>=<device>"; the
// device ID is the PCI address, which is a valid CDI device name.
func CDIName(kind, id string) string { return kind + "=" + id }

// vfioContainer is the VFIO container node every vfio user needs next to
// its group node.
const vfioContainer = "/dev/vfio/vfio"

// Container builds one container's allocation for pool spec. devs are
// looked up by the IDs kubelet sent; an unknown ID is an error because
// kubelet must only send IDs this pool advertised.
func Container(spec *pool.Spec, ids []string, devs map[string]discovery.Device) (*pb.ContainerAllocateResponse, error) {
	prefix, name := spec.ResourcePrefix, spec.ResourceName
	resp := &pb.ContainerAllocateResponse{Envs: map[string]string{}}
	seen := map[string]bool{}
	addSpec := func(path string) {
		if seen[path] {
			return
		}
		seen[path] = true
		resp.Devices = append(resp.Devices, &pb.DeviceSpec{HostPath: path, ContainerPath: path, Permissions: "rw"})
	}
	// Kubelet sends the IDs in no stable order (a set). Sorted, the env
	// variable's order is the order the agent hands a pod's devices to its
	// networks (net1 gets the first ID, see agent/devices.Assign), and it
	// is the same on every retry.
	ids = slices.Clone(ids)
	slices.Sort(ids)
	for _, id := range ids {
		d, ok := devs[id]
		if !ok {
			return nil, fmt.Errorf("device %q is not in pool %s/%s", id, prefix, name)
		}
		switch d.Kind {
		case discovery.KindVFIO:
			addSpec(vfioContainer)
			addSpec(d.VFIODevice)
		case discovery.KindUIO:
			addSpec(d.UIODevice)
		}
		if spec.CDIKind != "" {
			resp.CdiDevices = append(resp.CdiDevices, &pb.CDIDevice{Name: CDIName(spec.CDIKind, id)})
		}
	}
	for _, m := range spec.Mounts {
		resp.Mounts = append(resp.Mounts, &pb.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	resp.Envs[spec.EnvName()] = strings.Join(ids, ",")
	return resp, nil
}
