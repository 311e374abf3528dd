// Package discovery finds the network PCI functions a node can hand to pods:
// SR-IOV VFs, PFs without VFs, and functions bound to vfio-pci or a UIO
// driver for DPDK. ghw supplies the PCI inventory and names; plain sysfs
// supplies what ghw does not model (SR-IOV links, netdevs, UIO, /dev/vfio).
package discovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/ghw/pkg/pci"
	"github.com/jaypipes/pcidb"
)

// Kind says how a container consumes a device.
type Kind string

const (
	KindNetDevice Kind = "netdevice" // kernel driver, used through its netdev
	KindVFIO      Kind = "vfio"      // vfio-pci: /dev/vfio/<group>
	KindUIO       Kind = "uio"       // igb_uio or uio_pci_generic: /dev/uioN
	KindOther     Kind = "other"     // unbound or a driver we cannot hand out
)

// Device is one allocatable PCI function.
type Device struct {
	Address     string // PCI address, also the kubelet device ID
	VendorID    string // lower-case hex, e.g. "8086"
	DeviceID    string
	VendorName  string
	ProductName string
	Driver      string
	Kind        Kind
	NUMANode    int // -1 when the platform reports none

	IsVF      bool
	PFAddress string // for VFs: the parent PF
	PFName    string // for VFs: the PF netdev name, if the PF has one
	VFIndex   int    // for VFs: N in the PF's virtfnN link; -1 otherwise
	TotalVFs  int    // for PFs: sriov_totalvfs

	IOMMUGroup string // "" when no IOMMU group
	VFIODevice string // /dev/vfio/<group> or /dev/vfio/noiommu-<group>
	UIODevice  string // /dev/uioN
	Ifname     string // netdev name, kernel drivers only
	LinkType   string // "ether", "infiniband", ... from net/<if>/type
}

// Problem is a PCI entry discovery could not use. Problems are reported
// rather than dropped so that an operator sees why a device is missing.
type Problem struct {
	Entry  string
	Reason string
}

func (p Problem) String() string { return p.Entry + ": " + p.Reason }

// Result is the outcome of one discovery pass.
type Result struct {
	Devices  []Device
	Problems []Problem
}

// ErrNoPCIDB means no pci.ids database exists under the root; ghw cannot
// enumerate PCI devices without one.
var ErrNoPCIDB = errors.New("no pci.ids database")

// LoadPCIDB loads pci.ids from under root. ghw.WithChroot does not reach
// pcidb (ghw v0.27 calls pcidb.New without the chroot, and pcidb checks a
// per-user cache before any chroot), so we locate the file ourselves and
// hand the loaded database to ghw.
func LoadPCIDB(root string) (*pcidb.PCIDB, error) {
	// Where distributions install pci.ids, relative to root.
	pciIDsPaths := []string{
		"usr/share/hwdata/pci.ids",
		"usr/share/misc/pci.ids",
		"usr/share/hwdata/pci.ids.gz",
		"usr/share/misc/pci.ids.gz",
	}
	for _, rel := range pciIDsPaths {
		p := filepath.Join(root, rel)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		db, err := pcidb.New(pcidb.WithPath(p))
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", p, err)
		}
		return db, nil
	}
	return nil, fmt.Errorf("%w under %s (looked in %s)", ErrNoPCIDB, root, strings.Join(pciIDsPaths, ", "))
}

// EmptyPCIDB is a pci.ids database with no entries: discovery works the
// same (it matches on IDs, never names); only the vendor, product and
// class names read "unknown". For hosts without hwdata or pciutils.
func EmptyPCIDB() *pcidb.PCIDB {
	return &pcidb.PCIDB{Classes: map[string]*pcidb.Class{}, Vendors: map[string]*pcidb.Vendor{}, Products: map[string]*pcidb.Product{}}
}

// Options tune a discovery pass.
type Options struct {
	// DB is a preloaded pci.ids database; nil loads it from Root.
	DB *pcidb.PCIDB
}

// Discover lists the network PCI functions under root ("/" on a node).
func Discover(ctx context.Context, root string, opts Options) (*Result, error) {
	db := opts.DB
	if db == nil {
		var err error
		if db, err = LoadPCIDB(root); err != nil {
			return nil, err
		}
	}
	s := newScanner(root)
	entries, err := busEntries(s.busDir)
	if err != nil {
		return nil, err
	}
	// Our own sysfs reads do not depend on ghw's answer, so they run
	// alongside ghw's scan: on a node with a few thousand VFs both are
	// thousands of syscalls, and overlapping them keeps discovery close
	// to the cost of ghw alone.
	var all map[string]*facts
	var wg sync.WaitGroup
	wg.Go(func() { all = s.readAll(ctx, entries) })
	// Topology is disabled because ghw only fills NUMA nodes when it
	// decides the machine is NUMA, and it fails outright when
	// sys/devices/system/node is absent; we read numa_node ourselves.
	// ghw's warnings are silenced: it would warn about topology on every
	// pass, and the entries it warns about are reported as Problems.
	info, err := ghw.PCI(ghw.WithChroot(root), ghw.WithPCIDB(db), ghw.WithDisableTopology(), ghw.WithDisableWarnings())
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("ghw PCI inventory under %s: %w", root, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	res := &Result{}
	devs := info.Devices
	// Nearly every function on an SR-IOV node is a VF we keep; growing the
	// slice of large Device values step by step cost more than ghw's own
	// bookkeeping.
	res.Devices = make([]Device, 0, len(devs))
	if len(devs) != len(entries) {
		// ghw gives up on the whole bus when a single entry is unreadable
		// and returns an empty list. Rebuild the list entry by entry with
		// ghw's own parser so the good devices survive and the bad ones
		// are named.
		devs, res.Problems = s.salvage(info, entries)
	}
	for _, d := range devs {
		f, ok := all[d.Address]
		if !ok || d.Class == nil || d.Class.ID != "02" { // network controllers only
			continue
		}
		dev, ok, err := s.device(d, f, all)
		if err != nil {
			res.Problems = append(res.Problems, Problem{Entry: d.Address, Reason: err.Error()})
			continue
		}
		if ok {
			res.Devices = append(res.Devices, dev)
		}
	}
	sort.Slice(res.Devices, func(i, j int) bool { return res.Devices[i].Address < res.Devices[j].Address })
	return res, nil
}

var pciAddrRE = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// ValidAddress reports whether s is a full, lower-case PCI address.
func ValidAddress(s string) bool { return pciAddrRE.MatchString(s) }

// modaliasLen is the length of a PCI modalias line, the shortest ghw accepts.
const modaliasLen = 53

// busEntries lists sys/bus/pci/devices unsorted; only the count matters
// unless ghw lost devices.
func busEntries(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return names, nil
}

func (s *scanner) salvage(info *pci.Info, entries []string) ([]*pci.Device, []Problem) {
	sort.Strings(entries)
	var devs []*pci.Device
	var problems []Problem
	for _, addr := range entries {
		if !ValidAddress(strings.ToLower(addr)) {
			problems = append(problems, Problem{Entry: addr, Reason: "not a PCI address"})
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.busDir, addr, "modalias"))
		if err != nil {
			problems = append(problems, Problem{Entry: addr, Reason: fmt.Sprintf("read modalias: %v", err)})
			continue
		}
		m := strings.TrimSpace(string(raw))
		if len(m) < modaliasLen {
			problems = append(problems, Problem{Entry: addr, Reason: fmt.Sprintf("modalias %q too short", m)})
			continue
		}
		d := info.ParseDevice(addr, m)
		if d == nil {
			problems = append(problems, Problem{Entry: addr, Reason: fmt.Sprintf("modalias %q unparsable", m)})
			continue
		}
		d.Driver = s.linkBase(addr, "driver")
		d.IOMMUGroup = s.linkBase(addr, "iommu_group")
		devs = append(devs, d)
	}
	return devs, problems
}

type scanner struct {
	root   string
	busDir string
	vfio   map[string]bool // names in /dev/vfio: one listing, not a stat per device

	// netdev and uio name, by PCI address, from sys/class/net and
	// sys/class/uio: a readlink per netdev or uio device instead of
	// listing every function's net/ and uio/ directories (three syscalls
	// each, and a failed open for every function without one).
	netdevs map[string]string
	uios    map[string]string
}

func newScanner(root string) *scanner {
	return &scanner{
		root:   root,
		busDir: filepath.Join(root, "sys/bus/pci/devices"),
	}
}

func (s *scanner) linkBase(addr, name string) string {
	base, _ := linkBase(filepath.Join(s.busDir, addr, name))
	return base
}

// facts is what sysfs says about one function beyond ghw's inventory.
// VFs take what they inherit from their PF (NUMA node, PF name, link
// type, which the kernel reports identically for every VF of a PF): with
// hundreds of VFs per PF their own copies would dominate discovery.
type facts struct {
	physfn   string // PF address, for VFs
	pfName   string // for VFs: the PF's netdev
	numa     int
	numVFs   int
	totalVFs int
	ifname   string
	linkType string
	uio      string // uioN, for functions without a netdev

	// For PFs with VFs: VF address to N in virtfnN. vfsFromLinks says
	// the map was read from the links, so a VF missing from it has none.
	vfs          map[string]int
	vfsFromLinks bool
}

// readAll reads facts for every bus entry on GOMAXPROCS-1 goroutines (at
// least one): sysfs reads are syscalls, independent per device, and ghw's
// single-threaded scan runs meanwhile on the remaining P; a worker per P
// made ghw's goroutine wait for a P and lengthened the whole pass. A
// second pass gives VFs what they inherit from their PF, and reads it from
// the VF itself only where the PF lacks it: every read that can fall back
// per device does so here, overlapped with ghw, not after it. It stops
// early when ctx ends; the caller checks ctx.
func (s *scanner) readAll(ctx context.Context, addrs []string) map[string]*facts {
	s.vfio = map[string]bool{}
	for _, name := range dirNames(filepath.Join(s.root, "dev/vfio")) {
		s.vfio[name] = true
	}
	s.netdevs = classDevices(ctx, filepath.Join(s.root, "sys/class/net"), "net")
	s.uios = classDevices(ctx, filepath.Join(s.root, "sys/class/uio"), "uio")
	out := make([]facts, len(addrs))
	each(ctx, len(addrs), func(i int) { out[i] = s.read(addrs[i]) })
	m := make(map[string]*facts, len(out))
	for i := range out {
		m[addrs[i]] = &out[i]
	}
	each(ctx, len(addrs), func(i int) { s.inherit(addrs[i], &out[i], m) })
	return m
}

// each runs fn(0..n-1) on GOMAXPROCS-1 goroutines (at least one).
func each(ctx context.Context, n int, fn func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(runtime.GOMAXPROCS(0)-1, 1), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// classDevices maps PCI addresses to the names in a class directory whose
// links point below them: sys/class/net/ens1f0 ->
// ../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/net/ens1f0. Class
// directories are filtered by network namespace like the devices' own
// net/ directories, so both list the same netdevs. Virtual netdevs
// (devices/virtual/net/...) map to names that are no PCI address and
// are never looked up. Where a function has several, one is kept.
func classDevices(ctx context.Context, dir, class string) map[string]string {
	names := dirNames(dir)
	addrs := make([]string, len(names))
	each(ctx, len(names), func(i int) {
		dest, ok := readLink(dir + "/" + names[i])
		if !ok {
			return
		}
		// .../<addr>/<class>/<name>
		parent, _ := filepath.Split(dest)
		parent, cl := filepath.Split(strings.TrimSuffix(parent, "/"))
		if cl == class {
			addrs[i] = filepath.Base(parent)
		}
	})
	m := make(map[string]string, len(names))
	for i, a := range addrs {
		if a != "" && m[a] == "" {
			m[a] = names[i]
		}
	}
	return m
}

// read runs before ghw has said what the device is, so it reads only what
// is cheap for every device.
//
// Paths are built by concatenation, not filepath.Join: busDir is already
// clean and addr is a directory entry, so Join's cleaning pass would only
// add allocations to a loop that runs once per VF.
func (s *scanner) read(addr string) facts {
	dir := s.busDir + "/" + addr
	f := facts{numa: -1}
	if pf, ok := linkBase(dir + "/physfn"); ok {
		f.physfn = pf
	} else {
		f.numa = readInt(dir+"/numa_node", -1)
		f.numVFs = readInt(dir+"/sriov_numvfs", 0)
		f.totalVFs = readInt(dir+"/sriov_totalvfs", 0)
		if f.numVFs > 0 {
			f.vfs = s.vfIndexByArithmetic(addr, f.numVFs)
			if f.vfs == nil {
				f.vfs, f.vfsFromLinks = s.vfIndexByLinks(addr), true
			}
		}
	}
	if f.ifname = s.netdevs[addr]; f.ifname != "" {
		if f.physfn == "" {
			f.linkType = linkType(readInt(dir+"/net/"+f.ifname+"/type", -1))
		}
	} else {
		f.uio = s.uios[addr]
	}
	return f
}

// inherit gives a VF its PF's facts; m is only read, so VFs can be
// handled concurrently.
func (s *scanner) inherit(addr string, f *facts, m map[string]*facts) {
	if f.physfn == "" {
		return
	}
	dir := s.busDir + "/" + addr
	if pf, ok := m[f.physfn]; ok {
		f.numa, f.pfName = pf.numa, pf.ifname
		if f.ifname != "" {
			f.linkType = pf.linkType
		}
	} else {
		// The PF is not on the bus listing; read what we would have
		// inherited directly.
		f.numa = readInt(dir+"/numa_node", -1)
	}
	if f.ifname != "" && f.linkType == "" {
		f.linkType = linkType(readInt(dir+"/net/"+f.ifname+"/type", -1))
	}
}

// device turns facts into a Device; ok is false for PFs that carry VFs
// (their VFs are handed out instead) and for functions we cannot use.
func (s *scanner) device(d *pci.Device, f *facts, all map[string]*facts) (Device, bool, error) {
	dev := Device{
		Address:     d.Address,
		VendorID:    d.Vendor.ID,
		DeviceID:    d.Product.ID,
		VendorName:  d.Vendor.Name,
		ProductName: d.Product.Name,
		Driver:      d.Driver,
		IOMMUGroup:  d.IOMMUGroup,
		NUMANode:    f.numa,
		VFIndex:     -1,
		Ifname:      f.ifname,
		LinkType:    f.linkType,
	}
	if f.physfn != "" {
		dev.IsVF = true
		dev.PFAddress = f.physfn
		dev.PFName = f.pfName
		idx, ok := s.vfIndex(f.physfn, dev.Address, all)
		if !ok {
			return Device{}, false, fmt.Errorf("VF of %s has no virtfn link back from its PF", dev.PFAddress)
		}
		dev.VFIndex = idx
	} else {
		dev.TotalVFs = f.totalVFs
		if f.numVFs > 0 {
			return Device{}, false, nil
		}
	}

	switch d.Driver {
	case "vfio-pci":
		dev.Kind = KindVFIO
		dev.Ifname, dev.LinkType = "", ""
		if dev.IOMMUGroup == "" {
			return Device{}, false, errors.New("bound to vfio-pci but has no iommu_group")
		}
		for _, name := range []string{dev.IOMMUGroup, "noiommu-" + dev.IOMMUGroup} {
			if s.vfio[name] {
				dev.VFIODevice = "/dev/vfio/" + name
				break
			}
		}
		if dev.VFIODevice == "" {
			return Device{}, false, fmt.Errorf("bound to vfio-pci but neither /dev/vfio/%s nor /dev/vfio/noiommu-%s exists", dev.IOMMUGroup, dev.IOMMUGroup)
		}
	case "igb_uio", "uio_pci_generic":
		dev.Kind = KindUIO
		if f.uio == "" {
			return Device{}, false, fmt.Errorf("bound to %s but has no uio device", d.Driver)
		}
		dev.UIODevice = "/dev/" + f.uio
		dev.Ifname, dev.LinkType = "", ""
	case "":
		return dev, false, nil // unbound: nothing a container could open
	default:
		if f.ifname == "" {
			return dev, false, nil // e.g. a VF whose driver has not created its netdev yet
		}
		dev.Kind = KindNetDevice
	}
	return dev, true, nil
}

// vfIndex maps a VF to N in its PF's virtfnN link, from the map read with
// the PF. When the arithmetic did not place this VF, the links are read
// after all (once per PF).
func (s *scanner) vfIndex(pfAddr, vf string, all map[string]*facts) (int, bool) {
	pf, ok := all[pfAddr]
	if !ok {
		pf = &facts{}
		all[pfAddr] = pf
	}
	if i, ok := pf.vfs[vf]; ok || pf.vfsFromLinks {
		return i, ok
	}
	pf.vfs, pf.vfsFromLinks = s.vfIndexByLinks(pfAddr), true
	i, ok := pf.vfs[vf]
	return i, ok
}

// vfIndexByArithmetic maps the PF's n VFs to their indexes without a
// readlink per VF: the PCIe SR-IOV capability places VF N at routing ID
// PF + offset + N*stride, which the kernel exposes as sriov_offset and
// sriov_stride (since 4.15). nil when those are missing or the result
// does not match the kernel's own virtfn0 link; the virtfnN links are
// the authority.
func (s *scanner) vfIndexByArithmetic(pf string, n int) map[string]int {
	dir := s.busDir + "/" + pf
	offset := readInt(dir+"/sriov_offset", -1)
	stride := readInt(dir+"/sriov_stride", -1)
	domain, rid, ok := routingID(pf)
	if offset < 0 || stride < 1 || !ok {
		return nil
	}
	m := make(map[string]int, n)
	for i := range n {
		r := rid + offset + i*stride
		if r > 0xffff {
			break
		}
		m[formatAddress(domain, r)] = i
	}
	if vf0, ok := linkBase(dir + "/virtfn0"); !ok {
		return nil
	} else if i, ok := m[vf0]; !ok || i != 0 {
		return nil
	}
	return m
}

// vfIndexByLinks reads every virtfnN link of the PF. The directory is
// listed without stat or sort; its entries are ~100 attributes plus one
// link per VF.
func (s *scanner) vfIndexByLinks(pf string) map[string]int {
	dir := s.busDir + "/" + pf
	m := map[string]int{}
	for _, name := range dirNames(dir) {
		n, found := strings.CutPrefix(name, "virtfn")
		if !found {
			continue
		}
		i, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if vf, ok := linkBase(dir + "/" + name); ok {
			m[vf] = i
		}
	}
	return m
}

// formatAddress is the inverse of routingID. It runs once per VF, hence
// no fmt.
func formatAddress(domain string, rid int) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 12)
	b = append(b, domain...)
	bus, dev := rid>>8&0xff, rid>>3&0x1f
	b = append(b, ':', hex[bus>>4], hex[bus&0xf], ':', hex[dev>>4], hex[dev&0xf], '.', byte('0'+rid&7))
	return string(b)
}

// routingID splits dddd:bb:dd.f into the domain and the 16-bit PCIe
// routing ID (bus<<8 | device<<3 | function).
func routingID(addr string) (string, int, bool) {
	if !ValidAddress(addr) {
		return "", 0, false
	}
	bus, err1 := strconv.ParseUint(addr[5:7], 16, 8)
	dev, err2 := strconv.ParseUint(addr[8:10], 16, 8)
	fn, err3 := strconv.ParseUint(addr[11:12], 16, 8)
	if err1 != nil || err2 != nil || err3 != nil || dev > 0x1f {
		return "", 0, false
	}
	return addr[:4], int(bus<<8 | dev<<3 | fn), true
}

// linkType names the ARPHRD_* values a pool selector can ask for.
func linkType(arphrd int) string {
	switch arphrd {
	case 1:
		return "ether"
	case 32:
		return "infiniband"
	case -1:
		return ""
	default:
		return strconv.Itoa(arphrd)
	}
}
