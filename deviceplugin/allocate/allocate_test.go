package allocate_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/allocate"
	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
)

func TestContainer(t *testing.T) {
	t.Parallel()
	devs := map[string]discovery.Device{
		"0000:01:00.0": {Address: "0000:01:00.0", Kind: discovery.KindVFIO, VFIODevice: "/dev/vfio/10"},
		"0000:01:00.1": {Address: "0000:01:00.1", Kind: discovery.KindVFIO, VFIODevice: "/dev/vfio/noiommu-11"},
		"0000:02:00.0": {Address: "0000:02:00.0", Kind: discovery.KindUIO, UIODevice: "/dev/uio0"},
		"0000:03:00.0": {Address: "0000:03:00.0", Kind: discovery.KindNetDevice, Ifname: "eth1"},
	}
	tests := []struct {
		name  string
		ids   []string
		specs []string
		err   bool
	}{
		{"vfio adds the container node once", []string{"0000:01:00.0", "0000:01:00.1"}, []string{"/dev/vfio/vfio", "/dev/vfio/10", "/dev/vfio/noiommu-11"}, false},
		{"IDs sorted whatever kubelet's order", []string{"0000:01:00.1", "0000:01:00.0"}, []string{"/dev/vfio/vfio", "/dev/vfio/10", "/dev/vfio/noiommu-11"}, false},
		{"uio", []string{"0000:02:00.0"}, []string{"/dev/uio0"}, false},
		{"netdevice has no device nodes", []string{"0000:03:00.0"}, nil, false},
		{"unknown id", []string{"0000:09:00.0"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := allocate.Container(&pool.Spec{ResourcePrefix: "plexus.io", ResourceName: "p"}, tt.ids, devs)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			var specs []string
			for _, d := range resp.Devices {
				specs = append(specs, d.HostPath)
			}
			if !slices.Equal(specs, tt.specs) {
				t.Errorf("specs = %v, want %v", specs, tt.specs)
			}
			if got, want := resp.Envs["PCIDEVICE_PLEXUS_IO_P"], strings.Join(slices.Sorted(slices.Values(tt.ids)), ","); got != want {
				t.Errorf("env = %q, want %q", got, want)
			}
			if len(resp.CdiDevices) != 0 || len(resp.Mounts) != 0 {
				t.Errorf("pool without cdiKind/mounts got CDI devices %v, mounts %v", resp.CdiDevices, resp.Mounts)
			}
		})
	}
}

// TestContainerCDIAndMounts goes through pool.Parse so that the defaults
// (containerPath = hostPath) are the ones a real config gets.
func TestContainerCDIAndMounts(t *testing.T) {
	t.Parallel()
	cfg, err := pool.Parse([]byte(`
pools:
- resourceName: dpdk
  deviceType: vfio
  selectors: [{}]
  cdiKind: vendor.example.com/net
  mounts:
  - {hostPath: /dev/hugepages, containerPath: /hugepages}
  - {hostPath: /etc/dpdk, readOnly: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	devs := map[string]discovery.Device{
		"0000:01:00.0": {Address: "0000:01:00.0", Kind: discovery.KindVFIO, VFIODevice: "/dev/vfio/10"},
		"0000:01:00.1": {Address: "0000:01:00.1", Kind: discovery.KindVFIO, VFIODevice: "/dev/vfio/11"},
	}
	ids := []string{"0000:01:00.1", "0000:01:00.0"}
	resp, err := allocate.Container(&cfg.Pools[0], ids, devs)
	if err != nil {
		t.Fatal(err)
	}
	var cdi []string
	for _, d := range resp.CdiDevices {
		cdi = append(cdi, d.Name)
	}
	// In sorted ID order, like the env variable.
	if want := []string{"vendor.example.com/net=0000:01:00.0", "vendor.example.com/net=0000:01:00.1"}; !slices.Equal(cdi, want) {
		t.Errorf("CDI devices = %v, want %v", cdi, want)
	}
	var mounts []string
	for _, m := range resp.Mounts {
		mounts = append(mounts, fmt.Sprintf("%s:%s:%v", m.HostPath, m.ContainerPath, m.ReadOnly))
	}
	if want := []string{"/dev/hugepages:/hugepages:false", "/etc/dpdk:/etc/dpdk:true"}; !slices.Equal(mounts, want) {
		t.Errorf("mounts = %v, want %v", mounts, want)
	}
	if len(resp.Devices) != 3 {
		t.Errorf("device specs = %v, want vfio container + 2 groups", resp.Devices)
	}
}

// topo: node 0 has PF A (4 VFs) and PF B (2 VFs); node 1 has PF C (3 VFs);
// one standalone PF on no NUMA node (-1).
func topo() (map[string]discovery.Device, []string) {
	devs := map[string]discovery.Device{}
	var ids []string
	add := func(pf string, numa, n int) {
		for i := range n {
			id := fmt.Sprintf("%s-vf%d", pf, i)
			devs[id] = discovery.Device{Address: id, PFAddress: pf, NUMANode: numa}
			ids = append(ids, id)
		}
	}
	add("A", 0, 4)
	add("B", 0, 2)
	add("C", 1, 3)
	devs["S"] = discovery.Device{Address: "S", NUMANode: -1}
	ids = append(ids, "S")
	return devs, ids
}

func TestPreferred(t *testing.T) {
	t.Parallel()
	devs, all := topo()
	tests := []struct {
		name      string
		available []string
		must      []string
		size      int
		policy    pool.Policy
		want      []string
	}{
		{"spread over PFs on the fullest node", all, nil, 2, pool.PolicySpread, []string{"A-vf0", "B-vf0"}},
		{"spread three", all, nil, 3, pool.PolicySpread, []string{"A-vf0", "B-vf0", "A-vf1"}},
		{"pack onto one PF", all, nil, 3, pool.PolicyPack, []string{"A-vf0", "A-vf1", "A-vf2"}},
		{"pack spills to the next PF on the same node", all, nil, 5, pool.PolicyPack, []string{"A-vf0", "A-vf1", "A-vf2", "A-vf3", "B-vf0"}},
		{"must-include pulls the request to its node", all, []string{"C-vf2"}, 2, pool.PolicySpread, []string{"C-vf2", "C-vf0"}},
		{"node that fits wins over the fuller node that does not", []string{"A-vf0", "C-vf0", "C-vf1"}, nil, 2, pool.PolicySpread, []string{"C-vf0", "C-vf1"}},
		{"no node fits: fill from the biggest first", []string{"A-vf0", "A-vf1", "C-vf0"}, nil, 3, pool.PolicyPack, []string{"A-vf0", "A-vf1", "C-vf0"}},
		{"fewer available than asked", []string{"A-vf0"}, nil, 2, pool.PolicySpread, []string{"A-vf0"}},
		{"must-include alone satisfies", all, []string{"B-vf1"}, 1, pool.PolicySpread, []string{"B-vf1"}},
		{"spread counts must-include PF usage", all, []string{"A-vf3"}, 2, pool.PolicySpread, []string{"A-vf3", "B-vf0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := allocate.Preferred(tt.available, tt.must, tt.size, devs, tt.policy)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Preferred = %v, want %v", got, tt.want)
			}
			seen := map[int]bool{}
			for _, id := range got {
				seen[devs[id].NUMANode] = true
			}
			if len(got) == tt.size && len(seen) > 1 && tt.name != "no node fits: fill from the biggest first" {
				t.Errorf("request crosses NUMA nodes: %v", got)
			}
		})
	}
}
