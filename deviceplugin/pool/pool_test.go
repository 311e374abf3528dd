package pool_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/pool"
)

func vf(addr, pf string, idx int, driver string, kind discovery.Kind) discovery.Device {
	return discovery.Device{Address: addr, VendorID: "8086", DeviceID: "154c", Driver: driver, Kind: kind,
		IsVF: true, PFName: pf, PFAddress: "0000:3b:00.0", VFIndex: idx, LinkType: "ether"}
}

func TestSelectorMatches(t *testing.T) {
	t.Parallel()
	dev := vf("0000:3b:01.5", "ens1f0", 5, "iavf", discovery.KindNetDevice)
	pf := discovery.Device{Address: "0000:5e:00.0", VendorID: "8086", DeviceID: "1592", Driver: "ice", Kind: discovery.KindNetDevice,
		Ifname: "ens3", VFIndex: -1, LinkType: "ether"}
	tests := []struct {
		name     string
		selector string
		dev      discovery.Device
		want     bool
	}{
		{"empty selector matches all", `{}`, dev, true},
		{"vendor", `{vendors: ["8086"]}`, dev, true},
		{"vendor 0x prefix upper case", `{vendors: ["0x8086"], devices: ["154C"]}`, dev, true},
		{"wrong vendor", `{vendors: ["15b3"]}`, dev, false},
		{"AND inside selector", `{vendors: ["8086"], drivers: ["mlx5_core"]}`, dev, false},
		{"pfName whole", `{pfNames: ["ens1f0"]}`, dev, true},
		{"pfName other", `{pfNames: ["ens1f1"]}`, dev, false},
		{"pfName range hit", `{pfNames: ["ens1f0#0-3,5"]}`, dev, true},
		{"pfName range miss", `{pfNames: ["ens1f0#0-3,7"]}`, dev, false},
		{"pfName range upper bound inclusive", `{pfNames: ["ens1f0#4-5"]}`, dev, true},
		{"pfName matches PF without VFs by ifname", `{pfNames: ["ens3"]}`, pf, true},
		{"pfName with range never matches a PF", `{pfNames: ["ens3#0"]}`, pf, false},
		{"pciAddresses short form", `{pciAddresses: ["3b:01.5"]}`, dev, true},
		{"rootDevices by PF", `{rootDevices: ["0000:3b:00.0"]}`, dev, true},
		{"rootDevices PF is its own root", `{rootDevices: ["0000:5e:00.0"]}`, pf, true},
		{"linkTypes", `{linkTypes: ["infiniband"]}`, dev, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := pool.Parse([]byte(`pools: [{resourceName: p, deviceType: netdevice, selectors: [` + tt.selector + `]}]`))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Pools[0].Matches(&tt.dev); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAssignFirstMatchWins(t *testing.T) {
	t.Parallel()
	cfg, err := pool.Parse([]byte(`
resourcePrefix: example.com
pools:
- resourceName: low_vfs
  deviceType: netdevice
  selectors:
  - pfNames: ["ens1f0#0-1"]
  - pciAddresses: ["0000:3b:01.7"]
- resourceName: all_vfs
  deviceType: netdevice
  allocationPolicy: pack
  selectors: [{vendors: ["8086"]}]
- resourceName: dpdk
  resourcePrefix: dpdk.example.com
  deviceType: vfio
  selectors: [{drivers: ["vfio-pci"]}]
- resourceName: empty
  deviceType: uio
  selectors: [{}]
`))
	if err != nil {
		t.Fatal(err)
	}
	devs := []discovery.Device{
		vf("0000:3b:01.0", "ens1f0", 0, "iavf", discovery.KindNetDevice),
		vf("0000:3b:01.1", "ens1f0", 1, "iavf", discovery.KindNetDevice),
		vf("0000:3b:01.2", "ens1f0", 2, "iavf", discovery.KindNetDevice),
		vf("0000:3b:01.3", "ens1f0", 3, "vfio-pci", discovery.KindVFIO),
		vf("0000:3b:01.7", "ens1f0", 7, "iavf", discovery.KindNetDevice),
		vf("0000:3b:02.0", "ens1f0", 8, "", discovery.KindOther),
	}
	pools, unassigned := pool.Assign(cfg, devs)
	want := map[string][]string{
		"example.com/low_vfs":   {"0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.7"},
		"example.com/all_vfs":   {"0000:3b:01.2"},
		"dpdk.example.com/dpdk": {"0000:3b:01.3"},
		"example.com/empty":     nil,
	}
	if len(pools) != len(want) {
		t.Fatalf("got %d pools", len(pools))
	}
	for _, p := range pools {
		var got []string
		for _, d := range p.Devices {
			got = append(got, d.Address)
		}
		if strings.Join(got, ",") != strings.Join(want[p.Spec.FullName()], ",") {
			t.Errorf("%s: got %v, want %v", p.Spec.FullName(), got, want[p.Spec.FullName()])
		}
	}
	if pools[1].Spec.AllocationPolicy != pool.PolicyPack || pools[0].Spec.AllocationPolicy != pool.PolicySpread {
		t.Errorf("policies not defaulted/overridden: %q %q", pools[0].Spec.AllocationPolicy, pools[1].Spec.AllocationPolicy)
	}
	if len(unassigned) != 1 || unassigned[0].Address != "0000:3b:02.0" {
		t.Errorf("unassigned = %v", unassigned)
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	shell := regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	tests := []struct{ prefix, name, want string }{
		{"plexus.io", "sriov_net", "PCIDEVICE_PLEXUS_IO_SRIOV_NET"},
		{"intel.com", "intel-sriov.dpdk", "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK"},
		{"a-b.example.com", "Mixed9Case", "PCIDEVICE_A_B_EXAMPLE_COM_MIXED9CASE"},
	}
	for _, tt := range tests {
		spec := pool.Spec{ResourcePrefix: tt.prefix, ResourceName: tt.name}
		got := spec.EnvName()
		if got != tt.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tt.prefix, tt.name, got, tt.want)
		}
		if !shell.MatchString(got) {
			t.Errorf("%q is not a shell identifier", got)
		}
	}
}

func TestParseErrorsNamePoolAndField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, config string
		want         []string
	}{
		{"no pools", `pools: []`, []string{"pools: at least one pool"}},
		{"unknown field", `pools: [{resourceName: a, deviceType: vfio, selector: [{}]}]`, []string{`unknown field "selector"`}},
		{"missing name", `pools: [{deviceType: vfio, selectors: [{}]}]`, []string{"pools[0]: resourceName: required"}},
		{"bad device type", `pools: [{resourceName: a, deviceType: gpu, selectors: [{}]}]`, []string{`pools[0] (a): deviceType: "gpu"`}},
		{"no selectors", `pools: [{resourceName: a, deviceType: vfio}]`, []string{"pools[0] (a): selectors: at least one"}},
		{"bad vendor", `pools: [{resourceName: a, deviceType: vfio, selectors: [{vendors: ["intel"]}]}]`, []string{`pools[0] (a): selectors[0].vendors[0]: "intel" is not 4 hex digits`}},
		{"bad range", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}, {pfNames: ["ens1#3-1"]}]}]`, []string{`pools[0] (a): selectors[1].pfNames[0]: "ens1#3-1": bad VF range "3-1"`}},
		{"bad address", `pools: [{resourceName: a, deviceType: vfio, selectors: [{pciAddresses: ["zz"]}]}]`, []string{`selectors[0].pciAddresses[0]: "zz" is not a PCI address`}},
		{"bad policy", `pools: [{resourceName: a, deviceType: vfio, allocationPolicy: random, selectors: [{}]}]`, []string{`pools[0] (a): allocationPolicy: "random"`}},
		{"duplicate", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}]}, {resourceName: a, deviceType: uio, selectors: [{}]}]`, []string{"pools[1] (a): resourceName: plexus.io/a already used by pools[0]"}},
		{"same env var", `pools: [{resourceName: col-x, deviceType: vfio, selectors: [{}]}, {resourceName: col_x, deviceType: uio, selectors: [{}]}]`, []string{"pools[1] (col_x): resourceName: env var PCIDEVICE_PLEXUS_IO_COL_X of plexus.io/col_x already used by pools[0] (plexus.io/col-x)"}},
		{"same env var across prefixes", `pools: [{resourceName: b.c, resourcePrefix: a, deviceType: vfio, selectors: [{}]}, {resourceName: c, resourcePrefix: a.b, deviceType: uio, selectors: [{}]}]`, []string{"pools[1] (c): resourceName: env var PCIDEVICE_A_B_C of a.b/c already used by pools[0] (a/b.c)"}},
		{"bad name", `pools: [{resourceName: "a/b", deviceType: vfio, selectors: [{}]}]`, []string{`resourceName: "a/b" must be`}},
		{"several errors at once", `pools: [{resourceName: a, deviceType: x, selectors: [{devices: ["1"]}]}]`, []string{"deviceType", "devices[0]"}},
		{"cdiKind without class", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], cdiKind: example.com}]`, []string{`pools[0] (a): cdiKind: "example.com" is not a CDI kind`}},
		{"cdiKind class with dot", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], cdiKind: example.com/n.et}]`, []string{`cdiKind: "example.com/n.et"`}},
		{"cdiKind with device name", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], cdiKind: "example.com/net=x"}]`, []string{`cdiKind: "example.com/net=x"`}},
		{"mount relative host path", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], mounts: [{hostPath: dev/hugepages}]}]`, []string{`pools[0] (a): mounts[0].hostPath: "dev/hugepages" is not a clean absolute path`, `mounts[0].containerPath: "dev/hugepages"`}},
		{"mount unclean container path", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], mounts: [{hostPath: /a, containerPath: /b/../c}]}]`, []string{`mounts[0].containerPath: "/b/../c" is not a clean absolute path`}},
		{"mount without host path", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], mounts: [{containerPath: /c}]}]`, []string{`mounts[0].hostPath: required`}},
		{"mount duplicate container path", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], mounts: [{hostPath: /a, containerPath: /c}, {hostPath: /c}]}]`, []string{`mounts[1].containerPath: "/c" already used by mounts[0]`}},
		{"mount unknown field", `pools: [{resourceName: a, deviceType: vfio, selectors: [{}], mounts: [{hostPath: /a, ro: true}]}]`, []string{`unknown field "ro"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pool.Parse([]byte(tt.config))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	cfg, err := pool.Parse([]byte(`{"pools":[{"resourceName":"x","deviceType":"netdevice","selectors":[{"drivers":["iavf"]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pools[0].FullName() != "plexus.io/x" {
		t.Errorf("FullName = %s", cfg.Pools[0].FullName())
	}
}

func TestParseCDIKindAndMounts(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"vendor.example.com/net", "a/b", "Example-1.com/sriov_net-2"} {
		cfg, err := pool.Parse([]byte(`pools: [{resourceName: a, deviceType: vfio, selectors: [{}], cdiKind: "` + kind + `", mounts: [{hostPath: /dev/hugepages}, {hostPath: /x, containerPath: /y, readOnly: true}]}]`))
		if err != nil {
			t.Fatalf("cdiKind %q: %v", kind, err)
		}
		p := cfg.Pools[0]
		if p.CDIKind != kind {
			t.Errorf("CDIKind = %q, want %q", p.CDIKind, kind)
		}
		want := []pool.Mount{{HostPath: "/dev/hugepages", ContainerPath: "/dev/hugepages"}, {HostPath: "/x", ContainerPath: "/y", ReadOnly: true}}
		if !slices.Equal(p.Mounts, want) {
			t.Errorf("Mounts = %+v, want %+v", p.Mounts, want)
		}
	}
}

// TestDocumentedExample keeps the example in docs/deviceplugin.md valid.
func TestDocumentedExample(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docs/deviceplugin.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in docs/deviceplugin.md")
	}
	cfg, err := pool.Parse([]byte(example))
	if err != nil {
		t.Fatalf("documented example: %v", err)
	}
	if len(cfg.Pools) != 2 || cfg.Pools[1].FullName() != "dpdk.example.com/dpdk" || cfg.Pools[1].AllocationPolicy != pool.PolicyPack ||
		cfg.Pools[1].CDIKind == "" || len(cfg.Pools[1].Mounts) == 0 {
		t.Errorf("documented example parsed as %+v", cfg.Pools)
	}
}
