// Package sysfstest builds fake sysfs/dev trees under a root directory so
// that discovery, health and allocation can be tested without real hardware.
// The layout mirrors what the Linux kernel exposes (symlinks included),
// because ghw and our own code follow those links.
package sysfstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// PCIIDs is the small pci.ids database the fake tree ships. ghw refuses to
// enumerate PCI devices without one, and the host may have none installed.
const PCIIDs = `# fake pci.ids for plexus tests
8086  Intel Corporation
	1572  Ethernet Controller X710 for 10GbE SFP+
	154c  Ethernet Virtual Function 700 Series
	1592  Ethernet Controller E810-C for QSFP
	1889  Ethernet Adaptive Virtual Function
15b3  Mellanox Technologies
	101d  MT2892 Family [ConnectX-6 Dx]
	101e  ConnectX Family mlx5Gen Virtual Function

C 02  Network controller
	00  Ethernet controller
	07  Infiniband controller
C 06  Bridge
	04  PCI bridge
`

// Tree is a fake root filesystem. All paths it writes are below Root.
type Tree struct {
	tb    testing.TB
	Root  string
	shape shape
}

// shape is what Options change: layouts real hosts have besides the one
// New builds by default (a recent kernel).
type shape struct {
	noSRIOVLayout bool
	noLinkType    bool
}

// Option changes the shape of a tree for everything added to it.
type Option func(*shape)

// WithoutSRIOVLayout leaves out sriov_offset and sriov_stride, which the
// kernel has only exposed since 4.15 (sysfs-bus-pci); older kernels, such
// as RHEL 7's, list a PF's VFs only through its virtfnN links.
func WithoutSRIOVLayout() Option { return func(s *shape) { s.noSRIOVLayout = true } }

// WithoutLinkType leaves out net/<if>/type. Kernels always expose it
// (sysfs-class-net), so this stands in for what discovery sees when a
// PF's link type is not there to inherit and each VF has to be asked.
func WithoutLinkType() Option { return func(s *shape) { s.noLinkType = true } }

// Func describes one PCI function (a PF or a VF).
type Func struct {
	Address    string // e.g. 0000:3b:00.0
	Vendor     string // 4 hex digits
	Device     string // 4 hex digits
	Class      string // 6 hex digits; default 020000 (Ethernet)
	Driver     string // empty means unbound
	NUMANode   int    // -1 for none
	IOMMUGroup int    // -1 for none
	Ifname     string // netdev name; only for kernel drivers
	Operstate  string // default "up"
	LinkType   int    // ARPHRD value; default 1 (ether)
	UIO        int    // uioN index for igb_uio/uio_pci_generic; -1 for none
	NoIOMMU    bool   // vfio noiommu: /dev/vfio/noiommu-<group>
}

// New creates a tree in root (usually t.TempDir()) with the pci.ids
// database and the empty directories every real sysfs has.
func New(tb testing.TB, root string, opts ...Option) *Tree {
	tb.Helper()
	t := &Tree{tb: tb, Root: root}
	for _, o := range opts {
		o(&t.shape)
	}
	t.write("usr/share/hwdata/pci.ids", PCIIDs)
	for _, d := range []string{"sys/bus/pci/devices", "sys/class/net", "sys/kernel/iommu_groups", "sys/class/uio", "sys/devices/pci0000:00", "dev"} {
		t.mkdir(d)
	}
	// Every host has lo, a netdev with no PCI device behind it.
	t.mkdir("sys/devices/virtual/net/lo")
	t.symlink("sys/class/net/lo", "../../devices/virtual/net/lo")
	return t
}

// AddPF adds a physical function with numVFs VFs. VF i gets address
// vfAddr(i) and the same vendor; vf customises each VF.
func (t *Tree) AddPF(pf Func, totalVFs int, vfs []Func) {
	t.tb.Helper()
	t.AddFunc(pf)
	dir := t.devDir(pf.Address)
	t.write(filepath.Join(dir, "sriov_totalvfs"), strconv.Itoa(totalVFs)+"\n")
	t.write(filepath.Join(dir, "sriov_numvfs"), strconv.Itoa(len(vfs))+"\n")
	if offset, stride, ok := sriovLayout(pf.Address, vfs); ok && !t.shape.noSRIOVLayout {
		t.write(filepath.Join(dir, "sriov_offset"), strconv.Itoa(offset)+"\n")
		t.write(filepath.Join(dir, "sriov_stride"), strconv.Itoa(stride)+"\n")
	}
	t.addVFs(pf.Address, 0, vfs)
}

// addVFs adds the VFs of a PF and their links, the first as virtfn<first>.
func (t *Tree) addVFs(pf string, first int, vfs []Func) {
	t.tb.Helper()
	for i, vf := range vfs {
		t.AddFunc(vf)
		t.symlink(filepath.Join(t.devDir(pf), "virtfn"+strconv.Itoa(first+i)), "../"+vf.Address)
		t.symlink(filepath.Join(t.devDir(vf.Address), "physfn"), "../"+pf)
	}
}

// sriovLayout returns the SR-IOV First VF Offset and VF Stride that place
// the given VF addresses, if they follow such a layout (real hardware
// always does; tests use irregular addresses to exercise the fallback).
func sriovLayout(pf string, vfs []Func) (offset, stride int, ok bool) {
	if len(vfs) == 0 {
		return 0, 0, false
	}
	base, ok := rid(pf)
	if !ok {
		return 0, 0, false
	}
	first, ok := rid(vfs[0].Address)
	if !ok {
		return 0, 0, false
	}
	offset, stride = first-base, 1
	if len(vfs) > 1 {
		second, ok := rid(vfs[1].Address)
		if !ok {
			return 0, 0, false
		}
		stride = second - first
	}
	if offset <= 0 || stride <= 0 {
		return 0, 0, false
	}
	for i, vf := range vfs {
		r, ok := rid(vf.Address)
		if !ok || r != base+offset+i*stride {
			return 0, 0, false
		}
	}
	return offset, stride, true
}

func rid(addr string) (int, bool) {
	var dom, bus, dev, fn int
	if _, err := fmt.Sscanf(addr, "%04x:%02x:%02x.%d", &dom, &bus, &dev, &fn); err != nil {
		return 0, false
	}
	return bus<<8 | dev<<3 | fn, true
}

// AddFunc adds one PCI function without SR-IOV links.
func (t *Tree) AddFunc(f Func) {
	t.tb.Helper()
	if f.Class == "" {
		f.Class = "020000"
	}
	dir := t.devDir(f.Address)
	t.mkdir(dir)
	t.write(filepath.Join(dir, "vendor"), "0x"+f.Vendor+"\n")
	t.write(filepath.Join(dir, "device"), "0x"+f.Device+"\n")
	t.write(filepath.Join(dir, "class"), "0x"+f.Class+"\n")
	t.write(filepath.Join(dir, "revision"), "0x02\n")
	t.write(filepath.Join(dir, "modalias"), Modalias(f.Vendor, f.Device, f.Class)+"\n")
	t.write(filepath.Join(dir, "numa_node"), strconv.Itoa(f.NUMANode)+"\n")
	t.symlink(filepath.Join("sys/bus/pci/devices", f.Address), "../../../devices/pci0000:00/"+f.Address)
	if f.IOMMUGroup >= 0 {
		g := strconv.Itoa(f.IOMMUGroup)
		t.mkdir(filepath.Join("sys/kernel/iommu_groups", g, "devices"))
		t.symlink(filepath.Join("sys/kernel/iommu_groups", g, "devices", f.Address), "../../../../devices/pci0000:00/"+f.Address)
		t.symlink(filepath.Join(dir, "iommu_group"), "../../../kernel/iommu_groups/"+g)
	}
	if f.Driver != "" {
		t.Bind(f.Address, f.Driver)
	}
	switch {
	case f.Driver == "vfio-pci" && f.IOMMUGroup >= 0:
		t.write("dev/vfio/vfio", "")
		name := strconv.Itoa(f.IOMMUGroup)
		if f.NoIOMMU {
			name = "noiommu-" + name
		}
		t.write(filepath.Join("dev/vfio", name), "")
	case f.UIO >= 0 && (f.Driver == "igb_uio" || f.Driver == "uio_pci_generic"):
		t.addUIO(f, dir)
	case f.Ifname != "":
		nd := filepath.Join(dir, "net", f.Ifname)
		t.mkdir(nd)
		state := f.Operstate
		if state == "" {
			state = "up"
		}
		lt := f.LinkType
		if lt == 0 {
			lt = 1
		}
		t.write(filepath.Join(nd, "operstate"), state+"\n")
		if !t.shape.noLinkType {
			t.write(filepath.Join(nd, "type"), strconv.Itoa(lt)+"\n")
		}
		t.symlink(filepath.Join("sys/class/net", f.Ifname), "../../devices/pci0000:00/"+f.Address+"/net/"+f.Ifname)
	}
}

// addUIO lays out a UIO device as drivers/uio/uio.c registers it: a
// uio/uioN directory under the PCI function with its attributes and
// mappings, the class link, and the /dev/uioN node.
func (t *Tree) addUIO(f Func, dir string) {
	t.tb.Helper()
	n := "uio" + strconv.Itoa(f.UIO)
	ud := filepath.Join(dir, "uio", n)
	t.write(filepath.Join(ud, "name"), f.Driver+"\n")
	t.write(filepath.Join(ud, "version"), "0.1\n")
	t.write(filepath.Join(ud, "dev"), "243:"+strconv.Itoa(f.UIO)+"\n")
	t.write(filepath.Join(ud, "event"), "0\n")
	t.write(filepath.Join(ud, "maps/map0/addr"), "0xfb000000\n")
	t.write(filepath.Join(ud, "maps/map0/size"), "0x10000\n")
	t.symlink(filepath.Join(ud, "device"), "../../../"+f.Address)
	t.symlink(filepath.Join(ud, "subsystem"), "../../../../../class/uio")
	t.symlink(filepath.Join("sys/class/uio", n), "../../devices/pci0000:00/"+f.Address+"/uio/"+n)
	t.write(filepath.Join("dev", n), "")
}

// Bind points the device's driver link at driver (creating the driver dir).
func (t *Tree) Bind(addr, driver string) {
	t.tb.Helper()
	t.mkdir(filepath.Join("sys/bus/pci/drivers", driver))
	link := filepath.Join(t.devDir(addr), "driver")
	_ = os.Remove(filepath.Join(t.Root, link))
	t.symlink(link, "../../../bus/pci/drivers/"+driver)
}

// Unbind removes the device's driver link.
func (t *Tree) Unbind(addr string) {
	t.tb.Helper()
	if err := os.Remove(filepath.Join(t.Root, t.devDir(addr), "driver")); err != nil {
		t.tb.Fatalf("unbind %s: %v", addr, err)
	}
}

// SetOperstate rewrites the operstate of netdev ifname on device addr.
func (t *Tree) SetOperstate(addr, ifname, state string) {
	t.tb.Helper()
	t.write(filepath.Join(t.devDir(addr), "net", ifname, "operstate"), state+"\n")
}

// Remove deletes a device as hot-unplug would: both the bus link and the
// device directory disappear.
func (t *Tree) Remove(addr string) {
	t.tb.Helper()
	for _, p := range []string{filepath.Join("sys/bus/pci/devices", addr), t.devDir(addr)} {
		if err := os.RemoveAll(filepath.Join(t.Root, p)); err != nil {
			t.tb.Fatalf("remove %s: %v", p, err)
		}
	}
}

// AddBadAddressEntry adds a bus entry whose name is not a PCI address.
func (t *Tree) AddBadAddressEntry(name string) {
	t.tb.Helper()
	t.mkdir(filepath.Join("sys/devices/pci0000:00", name))
	t.symlink(filepath.Join("sys/bus/pci/devices", name), "../../../devices/pci0000:00/"+name)
}

// AddTruncatedModalias adds a device whose modalias is too short to parse.
func (t *Tree) AddTruncatedModalias(addr string) {
	t.tb.Helper()
	dir := t.devDir(addr)
	t.mkdir(dir)
	t.write(filepath.Join(dir, "modalias"), "pci:v00008086d\n")
	t.symlink(filepath.Join("sys/bus/pci/devices", addr), "../../../devices/pci0000:00/"+addr)
}

// Modalias encodes ids the way the kernel does in .../modalias.
func Modalias(vendor, device, class string) string {
	return fmt.Sprintf("pci:v0000%sd0000%ssv00000000sd00000000bc%ssc%si%s",
		upper(vendor), upper(device), upper(class[0:2]), upper(class[2:4]), upper(class[4:6]))
}

// VFAddress returns the address of VF i of the PF at 0000:<bus>:00.0 for
// a First VF Offset of 8 and a VF Stride of 1, carrying into the next bus
// as real routing IDs do.
func VFAddress(bus, i int) string {
	r := bus<<8 + 8 + i
	return fmt.Sprintf("0000:%02x:%02x.%d", r>>8, (r>>3)&0x1f, r&7)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func (t *Tree) devDir(addr string) string {
	return filepath.Join("sys/devices/pci0000:00", addr)
}

func (t *Tree) mkdir(rel string) {
	t.tb.Helper()
	if err := os.MkdirAll(filepath.Join(t.Root, rel), 0o755); err != nil {
		t.tb.Fatalf("mkdir %s: %v", rel, err)
	}
}

// parent creates rel's directory and returns rel's full path.
func (t *Tree) parent(rel string) string {
	t.tb.Helper()
	p := filepath.Join(t.Root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.tb.Fatalf("mkdir for %s: %v", rel, err)
	}
	return p
}

func (t *Tree) write(rel, content string) {
	t.tb.Helper()
	if err := os.WriteFile(t.parent(rel), []byte(content), 0o644); err != nil {
		t.tb.Fatalf("write %s: %v", rel, err)
	}
}

func (t *Tree) symlink(rel, target string) {
	t.tb.Helper()
	if err := os.Symlink(target, t.parent(rel)); err != nil {
		t.tb.Fatalf("symlink %s -> %s: %v", rel, target, err)
	}
}

// AddVFs appends VFs to a PF added by AddPF, as raising sriov_numvfs
// does: new virtfnN links continue after the existing ones.
func (t *Tree) AddVFs(pf string, vfs []Func) {
	t.tb.Helper()
	dir := t.devDir(pf)
	raw, err := os.ReadFile(filepath.Join(t.Root, dir, "sriov_numvfs"))
	if err != nil {
		t.tb.Fatalf("read sriov_numvfs of %s: %v", pf, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.tb.Fatalf("sriov_numvfs of %s: %v", pf, err)
	}
	t.addVFs(pf, n, vfs)
	t.write(filepath.Join(dir, "sriov_numvfs"), strconv.Itoa(n+len(vfs))+"\n")
}
