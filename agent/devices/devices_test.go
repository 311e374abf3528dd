package devices_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/devices"
)

const (
	vf  = "example.com/vf"
	gpu = "example.com/gpu"
)

func req(network, ifname, resource string) devices.Request {
	return devices.Request{Network: network, IfName: ifname, Resource: resource}
}

func TestAssign(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		reqs       []devices.Request
		containers []devices.Container
		want       []string
	}{
		{
			name: "one container",
			reqs: []devices.Request{req("ns/cluster", "eth0", ""), req("ns/a", "net1", vf), req("ns/b", "net2", vf)},
			containers: []devices.Container{
				{Name: "app", Resources: map[string][]string{vf: {"0000:03:02.2", "0000:03:02.1"}}},
			},
			// Within a container, sorted: kubelet's order is random.
			want: []string{"", "0000:03:02.1", "0000:03:02.2"},
		},
		{
			name: "two containers in kubelet's order",
			reqs: []devices.Request{req("ns/a", "net1", vf), req("ns/a", "net2", vf), req("ns/a", "net3", vf)},
			containers: []devices.Container{
				{Name: "first", Resources: map[string][]string{vf: {"0000:81:00.5"}}},
				{Name: "second", Resources: map[string][]string{vf: {"0000:03:00.7", "0000:03:00.6"}}},
			},
			// The first container's device comes first even though it
			// sorts last overall.
			want: []string{"0000:81:00.5", "0000:03:00.6", "0000:03:00.7"},
		},
		{
			name: "more devices than networks: the first ones",
			reqs: []devices.Request{req("ns/a", "net1", vf)},
			containers: []devices.Container{
				{Name: "app", Resources: map[string][]string{vf: {"c", "b", "a"}}},
			},
			want: []string{"a"},
		},
		{
			name: "mixed NADs with and without resources",
			reqs: []devices.Request{req("ns/cluster", "eth0", ""), req("ns/plain", "net1", ""), req("ns/sriov", "net2", vf), req("ns/plain", "net3", ""), req("ns/sriov", "net4", vf)},
			containers: []devices.Container{
				{Name: "app", Resources: map[string][]string{vf: {"vf1", "vf0"}}},
			},
			want: []string{"", "", "vf0", "", "vf1"},
		},
		{
			name: "two different resources",
			reqs: []devices.Request{req("ns/g", "net1", gpu), req("ns/v", "net2", vf), req("ns/g", "net3", gpu), req("ns/v", "net4", vf)},
			containers: []devices.Container{
				{Name: "a", Resources: map[string][]string{vf: {"vf9"}, gpu: {"gpu1"}}},
				{Name: "b", Resources: map[string][]string{gpu: {"gpu0"}, vf: {"vf3"}}},
			},
			want: []string{"gpu1", "vf9", "gpu0", "vf3"},
		},
		{
			name: "no request needs a device",
			reqs: []devices.Request{req("ns/cluster", "eth0", ""), req("ns/a", "net1", "")},
			want: []string{"", ""},
		},
		{
			name: "a device listed twice (two NUMA nodes, or two containers) counts once",
			reqs: []devices.Request{req("ns/a", "net1", vf), req("ns/a", "net2", vf)},
			containers: []devices.Container{
				{Name: "a", Resources: map[string][]string{vf: {"vf1", "vf1"}}},
				{Name: "b", Resources: map[string][]string{vf: {"vf1", "vf2"}}},
			},
			want: []string{"vf1", "vf2"},
		},
		{
			name: "a pinned deviceID is reserved before the others are handed out",
			reqs: []devices.Request{req("ns/a", "net1", vf), {Network: "ns/a", IfName: "net2", Resource: vf, DeviceID: "vf0"}},
			containers: []devices.Container{
				{Name: "app", Resources: map[string][]string{vf: {"vf0", "vf1"}}},
			},
			want: []string{"vf1", "vf0"},
		},
		{
			name: "a deviceID on a network without a resource is not matched",
			reqs: []devices.Request{{Network: "ns/a", IfName: "net1", DeviceID: "anything"}},
			want: []string{""},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := devices.Assign("ns/p", c.reqs, c.containers)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Assign = %q, want %q", got, c.want)
			}
		})
	}
}

func TestAssignErrors(t *testing.T) {
	t.Parallel()
	one := []devices.Container{{Name: "app", Resources: map[string][]string{vf: {"vf0"}}}}
	cases := []struct {
		name       string
		reqs       []devices.Request
		containers []devices.Container
		network    string
		mention    []string
	}{
		{
			name:       "more networks than devices",
			reqs:       []devices.Request{req("ns/a", "net1", vf), req("ns/b", "net2", vf), req("ns/b", "net3", vf)},
			containers: one,
			network:    "ns/b",
			mention:    []string{"pod ns/p", "network ns/b", "net2", vf, "selects 3 networks", "allocated 1 device"},
		},
		{
			name:       "resource not requested",
			reqs:       []devices.Request{req("ns/a", "net1", vf), req("ns/g", "net2", gpu)},
			containers: one,
			network:    "ns/g",
			mention:    []string{"pod ns/p", "network ns/g", gpu, "did not request " + gpu},
		},
		{
			name:    "no containers at all",
			reqs:    []devices.Request{req("ns/a", "net1", vf)},
			network: "ns/a",
			mention: []string{"did not request " + vf},
		},
		{
			name:       "pinned deviceID not allocated to the pod",
			reqs:       []devices.Request{{Network: "ns/a", IfName: "net1", Resource: vf, DeviceID: "vf7"}},
			containers: one,
			network:    "ns/a",
			mention:    []string{`"vf7"`, "vf0", vf},
		},
		{
			name:       "pinned deviceID twice",
			reqs:       []devices.Request{{Network: "ns/a", IfName: "net1", Resource: vf, DeviceID: "vf0"}, {Network: "ns/b", IfName: "net2", Resource: vf, DeviceID: "vf0"}},
			containers: one,
			network:    "ns/b",
			mention:    []string{`"vf0"`, "already selected for network ns/a (net1)"},
		},
		{
			name:       "pinned deviceID leaves too few for the rest",
			reqs:       []devices.Request{req("ns/a", "net1", vf), {Network: "ns/b", IfName: "net2", Resource: vf, DeviceID: "vf0"}},
			containers: one,
			network:    "ns/a",
			mention:    []string{"selects 2 networks", "allocated 1 device"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := devices.Assign("ns/p", c.reqs, c.containers)
			if err == nil {
				t.Fatalf("Assign = %q, want an error", got)
			}
			var derr *devices.Error
			if !errors.As(err, &derr) || derr.Network != c.network || derr.Pod != "ns/p" {
				t.Fatalf("err = %#v, want a *devices.Error for network %s", err, c.network)
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestIsPCIAddress(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"0000:03:02.1":  true,
		"0000:af:1f.7":  true,
		"10000:e0:06.0": true,
		"0000:03:02":    false,
		"0000:03:20.1":  false, // device is 5 bits
		"0000:03:02.8":  false,
		"03:02.1":       false,
		"vf0":           false,
		"":              false,
	} {
		if got := devices.IsPCIAddress(id); got != want {
			t.Errorf("IsPCIAddress(%q) = %v, want %v", id, got, want)
		}
	}
}
