// Package devices is the devices step of a pod ADD: it hands each
// attachment whose NetworkAttachmentDefinition names a device resource
// (k8s.v1.cni.cncf.io/resourceName) one of the devices kubelet allocated to
// the pod, and keeps the Device Info files (k8snetworkplumbingwg Device Info
// spec v1.1) the delegates and the network-status read.
//
// Where the allocations come from is a Source: kubelet's PodResources API
// (agent/podresources) on a node; anything else that knows them in tests or
// local setups.
package devices

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Container is the devices kubelet allocated to one container of a pod.
type Container struct {
	Name string
	// Resources maps a resource name to the container's device IDs of it,
	// without duplicates, in the order the source reported them.
	Resources map[string][]string
}

// Source reads the devices allocated to a pod, per container, in the order
// kubelet lists the containers (restartable init containers, then
// containers, each in pod spec order). A pod kubelet does not know is an
// error.
type Source interface {
	PodDevices(ctx context.Context, namespace, name string) ([]Container, error)
}

// Request is one attachment of a pod, in attachment order.
type Request struct {
	// Network is the attachment's network, "ns/name" for a NAD.
	Network string
	// IfName is the attachment's interface name in the pod.
	IfName string
	// Resource is the NAD's resourceName; "" means the attachment needs no
	// device.
	Resource string
	// DeviceID is a device the selection asked for by name (the deviceID
	// key), or "" for the next free one.
	DeviceID string
}

// Error is a pod whose selection and device allocation do not fit together.
type Error struct {
	// Pod is "namespace/name".
	Pod string
	// Network and IfName name the attachment that did not get a device.
	Network string
	IfName  string
	// Resource is the NAD's resourceName.
	Resource string
	// Requested counts the pod's attachments of Resource; Allocated the
	// distinct devices of Resource kubelet allocated to the pod.
	Requested, Allocated int
	Reason               string
}

func (e *Error) Error() string {
	return fmt.Sprintf("pod %s: network %s (%s): resource %s: %s", e.Pod, e.Network, e.IfName, e.Resource, e.Reason)
}

// Assign picks the device of each request that has a Resource and returns
// the device IDs aligned with reqs ("" for requests without a resource).
// Distinct requests get distinct devices.
//
// Order. Requests are served in attachment order (the cluster network,
// then net1..N), each taking the first free device of its resource in
// this sequence: containers in the order the source lists them (kubelet:
// pod spec order), and within a container the device IDs sorted
// (byte-wise). Kubelet itself has no stable order within a container: it
// sends a device plugin's Allocate the IDs of a set (random order), which
// is the order the plugin writes into PCIDEVICE_<RESOURCE>, and
// PodResources reports them from a map (random again, and one entry per
// NUMA node of a device). Taking either order as-is would give the same
// pod different devices on every retry and disagree with the container's
// environment by chance only. Sorting is the one order both sides can
// reproduce: a device plugin that sorts the IDs it joins into
// PCIDEVICE_<RESOURCE> gives netK the K-th device listed there.
//
// A request with a DeviceID (the selection's deviceID key) gets exactly
// that device, which must be one of the pod's devices of the resource; it
// is reserved before the others are handed out, so the others never take
// it.
func Assign(pod string, reqs []Request, containers []Container) ([]string, error) {
	pools := map[string][]string{}
	for _, c := range containers {
		for res, ids := range c.Resources {
			sorted := slices.Clone(ids)
			slices.Sort(sorted)
			for _, id := range sorted {
				if id != "" && !slices.Contains(pools[res], id) {
					pools[res] = append(pools[res], id)
				}
			}
		}
	}
	requested := map[string]int{}
	for _, r := range reqs {
		if r.Resource != "" {
			requested[r.Resource]++
		}
	}
	fail := func(r Request, reason string) error {
		return &Error{Pod: pod, Network: r.Network, IfName: r.IfName, Resource: r.Resource,
			Requested: requested[r.Resource], Allocated: len(pools[r.Resource]), Reason: reason}
	}

	out := make([]string, len(reqs))
	taken := map[string]int{} // resource + "\x00" + device → request index
	key := func(res, id string) string { return res + "\x00" + id }
	for i, r := range reqs {
		if r.Resource == "" || r.DeviceID == "" {
			continue
		}
		if len(pools[r.Resource]) == 0 {
			return nil, fail(r, notRequested(r.Resource))
		}
		if !slices.Contains(pools[r.Resource], r.DeviceID) {
			return nil, fail(r, fmt.Sprintf("the selection's deviceID %q is not one of the pod's devices of this resource (%s)",
				r.DeviceID, strings.Join(pools[r.Resource], ", ")))
		}
		if j, ok := taken[key(r.Resource, r.DeviceID)]; ok {
			return nil, fail(r, fmt.Sprintf("the selection's deviceID %q is already selected for network %s (%s)",
				r.DeviceID, reqs[j].Network, reqs[j].IfName))
		}
		taken[key(r.Resource, r.DeviceID)] = i
		out[i] = r.DeviceID
	}
	next := map[string]int{}
	for i, r := range reqs {
		if r.Resource == "" || r.DeviceID != "" {
			continue
		}
		pool := pools[r.Resource]
		if len(pool) == 0 {
			return nil, fail(r, notRequested(r.Resource))
		}
		n := next[r.Resource]
		for n < len(pool) {
			if _, ok := taken[key(r.Resource, pool[n])]; !ok {
				break
			}
			n++
		}
		if n == len(pool) {
			return nil, fail(r, fmt.Sprintf("the pod selects %d networks of this resource but kubelet allocated %d device(s) of it to the pod; request one %s per network in the pod's container resources",
				requested[r.Resource], len(pool), r.Resource))
		}
		taken[key(r.Resource, pool[n])] = i
		out[i] = pool[n]
		next[r.Resource] = n + 1
	}
	return out, nil
}

func notRequested(res string) string {
	return fmt.Sprintf("the NAD's k8s.v1.cni.cncf.io/resourceName is %s, but kubelet allocated no device of it to the pod: the pod did not request %s in any container's resources", res, res)
}

// pciAddress is a PCI address in the BDF form sysfs uses,
// "dddd:bb:dd.f"; VMD domains have more than four hex digits.
var pciAddress = regexp.MustCompile(`^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$`)

// IsPCIAddress reports whether a device ID is a PCI address, the form
// delegates such as sriov-cni also accept as pciBusID.
func IsPCIAddress(id string) bool { return pciAddress.MatchString(id) }
