// Package pool reads the pool configuration and sorts discovered devices
// into pools: a device joins the first pool, in file order, that matches.
package pool

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
)

// DefaultResourcePrefix is used when neither the pool nor the file sets one.
const DefaultResourcePrefix = "plexus.io"

// Policy says how GetPreferredAllocation spreads a request over PFs.
type Policy string

const (
	PolicySpread Policy = "spread" // fewest devices per PF: a PF failure hurts less
	PolicyPack   Policy = "pack"   // fewest PFs: keeps whole PFs free for others
)

// Config is the file passed with --config.
type Config struct {
	// ResourcePrefix is the default for pools that do not set their own.
	ResourcePrefix string `json:"resourcePrefix,omitempty"`
	// AllocationPolicy is the default for pools that do not set their own.
	AllocationPolicy Policy `json:"allocationPolicy,omitempty"`
	Pools            []Spec `json:"pools"`
}

// Spec is one pool.
type Spec struct {
	ResourceName     string         `json:"resourceName"`
	ResourcePrefix   string         `json:"resourcePrefix,omitempty"`
	DeviceType       discovery.Kind `json:"deviceType"`
	AllocationPolicy Policy         `json:"allocationPolicy,omitempty"`
	// Selectors are ORed; the fields inside one selector are ANDed.
	Selectors []Selector `json:"selectors"`
	// CDIKind, when set, makes Allocate also name every device as a CDI
	// device "<kind>=<pci address>", for runtimes that inject devices from
	// CDI specs (written by whoever owns that kind, not by this plugin).
	CDIKind string `json:"cdiKind,omitempty"`
	// Mounts are host paths every container of the pool gets, e.g.
	// hugetlbfs for DPDK, which a device spec cannot express.
	Mounts []Mount `json:"mounts,omitempty"`
}

// Mount is one bind mount returned by Allocate.
type Mount struct {
	HostPath string `json:"hostPath"`
	// ContainerPath defaults to HostPath.
	ContainerPath string `json:"containerPath,omitempty"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// Selector matches devices. Empty fields match everything.
type Selector struct {
	Vendors      []string `json:"vendors,omitempty"`
	Devices      []string `json:"devices,omitempty"`
	Drivers      []string `json:"drivers,omitempty"`
	PFNames      []string `json:"pfNames,omitempty"`
	PCIAddresses []string `json:"pciAddresses,omitempty"`
	RootDevices  []string `json:"rootDevices,omitempty"`
	LinkTypes    []string `json:"linkTypes,omitempty"`

	pfNames []pfName // parsed PFNames
}

// FullName is the extended resource name kubelet advertises: prefix/name.
func (s *Spec) FullName() string { return s.ResourcePrefix + "/" + s.ResourceName }

// EnvName is the variable Allocate sets to a container's devices of the
// pool: PCIDEVICE_<PREFIX>_<NAME>, upper-cased with every character that
// is not a letter or digit replaced by '_', so a shell can read it. The
// mapping is not injective (col-x and col_x give the same name), which is
// why validation insists that pools' names differ.
func (s *Spec) EnvName() string {
	return "PCIDEVICE_" + shellIdent(s.ResourcePrefix) + "_" + shellIdent(s.ResourceName)
}

func shellIdent(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Load reads, defaults and validates a config file.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pool config: %w", err)
	}
	cfg, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("pool config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML or JSON, rejecting unknown fields so that a typo
// (say "selector:") fails loudly instead of silently matching nothing.
func Parse(raw []byte) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)
	prefixRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	hexID    = regexp.MustCompile(`^[0-9a-f]{4}$`)
	// CDI kind "<vendor>/<class>" as the CDI spec defines the two names:
	// vendor may be a domain (letters, digits, '_', '-', '.'), class may
	// not contain '.'; both start and end alphanumeric.
	cdiKindRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$`)
)

func (c *Config) validate() error {
	if c.ResourcePrefix == "" {
		c.ResourcePrefix = DefaultResourcePrefix
	}
	if c.AllocationPolicy == "" {
		c.AllocationPolicy = PolicySpread
	}
	if err := validPolicy(c.AllocationPolicy); err != nil {
		return fmt.Errorf("allocationPolicy: %w", err)
	}
	if len(c.Pools) == 0 {
		return errors.New("pools: at least one pool is required")
	}
	seen := map[string]int{}
	envs := map[string]int{}
	var errs []error
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.ResourcePrefix == "" {
			p.ResourcePrefix = c.ResourcePrefix
		}
		if p.AllocationPolicy == "" {
			p.AllocationPolicy = c.AllocationPolicy
		}
		label := fmt.Sprintf("pools[%d]", i)
		if p.ResourceName != "" {
			label = fmt.Sprintf("pools[%d] (%s)", i, p.ResourceName)
		}
		for _, err := range p.validate() {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if p.ResourceName == "" {
			continue
		}
		if j, dup := seen[p.FullName()]; dup {
			errs = append(errs, fmt.Errorf("%s: resourceName: %s already used by pools[%d]", label, p.FullName(), j))
			continue
		}
		seen[p.FullName()] = i
		// Two pools setting one variable: a container with devices of
		// both would see only one pool's devices.
		if j, dup := envs[p.EnvName()]; dup {
			errs = append(errs, fmt.Errorf("%s: resourceName: env var %s of %s already used by pools[%d] (%s)",
				label, p.EnvName(), p.FullName(), j, c.Pools[j].FullName()))
			continue
		}
		envs[p.EnvName()] = i
	}
	return errors.Join(errs...)
}

func validPolicy(p Policy) error {
	if p != PolicySpread && p != PolicyPack {
		return fmt.Errorf("%q is not %q or %q", p, PolicySpread, PolicyPack)
	}
	return nil
}

func (p *Spec) validate() []error {
	var errs []error
	switch {
	case p.ResourceName == "":
		errs = append(errs, errors.New("resourceName: required"))
	case !nameRE.MatchString(p.ResourceName) || len(p.ResourceName) > 63:
		errs = append(errs, fmt.Errorf("resourceName: %q must be 1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric", p.ResourceName))
	}
	if !prefixRE.MatchString(p.ResourcePrefix) || len(p.ResourcePrefix) > 253 {
		errs = append(errs, fmt.Errorf("resourcePrefix: %q is not a DNS subdomain", p.ResourcePrefix))
	}
	switch p.DeviceType {
	case discovery.KindNetDevice, discovery.KindVFIO, discovery.KindUIO:
	case "":
		errs = append(errs, errors.New("deviceType: required (netdevice, vfio or uio)"))
	default:
		errs = append(errs, fmt.Errorf("deviceType: %q is not netdevice, vfio or uio", p.DeviceType))
	}
	if err := validPolicy(p.AllocationPolicy); err != nil {
		errs = append(errs, fmt.Errorf("allocationPolicy: %w", err))
	}
	if len(p.Selectors) == 0 {
		errs = append(errs, errors.New("selectors: at least one selector is required"))
	}
	for i := range p.Selectors {
		for _, err := range p.Selectors[i].validate() {
			errs = append(errs, fmt.Errorf("selectors[%d].%w", i, err))
		}
	}
	if p.CDIKind != "" && !cdiKindRE.MatchString(p.CDIKind) {
		errs = append(errs, fmt.Errorf("cdiKind: %q is not a CDI kind <vendor>/<class> (e.g. vendor.example.com/net)", p.CDIKind))
	}
	errs = append(errs, validateMounts(p.Mounts)...)
	return errs
}

// validateMounts defaults containerPath and insists on absolute, clean
// paths: a relative host path would resolve against the runtime's working
// directory, and two mounts on one container path would shadow each other.
func validateMounts(ms []Mount) []error {
	var errs []error
	seen := map[string]int{}
	for i := range ms {
		m := &ms[i]
		if m.ContainerPath == "" {
			m.ContainerPath = m.HostPath
		}
		for _, f := range []struct{ name, val string }{{"hostPath", m.HostPath}, {"containerPath", m.ContainerPath}} {
			switch {
			case f.val == "":
				errs = append(errs, fmt.Errorf("mounts[%d].%s: required", i, f.name))
			case !path.IsAbs(f.val) || path.Clean(f.val) != f.val:
				errs = append(errs, fmt.Errorf("mounts[%d].%s: %q is not a clean absolute path", i, f.name, f.val))
			}
		}
		if j, dup := seen[m.ContainerPath]; dup && m.ContainerPath != "" {
			errs = append(errs, fmt.Errorf("mounts[%d].containerPath: %q already used by mounts[%d]", i, m.ContainerPath, j))
		} else {
			seen[m.ContainerPath] = i
		}
	}
	return errs
}

func (s *Selector) validate() []error {
	var errs []error
	lower := func(field string, vals []string, check func(string) bool, what string) {
		for i, v := range vals {
			vals[i] = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X"))
			if !check(vals[i]) {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is not %s", field, i, v, what))
			}
		}
	}
	lower("vendors", s.Vendors, hexID.MatchString, "4 hex digits")
	lower("devices", s.Devices, hexID.MatchString, "4 hex digits")
	for i, a := range s.PCIAddresses {
		if s.PCIAddresses[i] = normalizeAddress(a); !discovery.ValidAddress(s.PCIAddresses[i]) {
			errs = append(errs, fmt.Errorf("pciAddresses[%d]: %q is not a PCI address (dddd:bb:dd.f)", i, a))
		}
	}
	for i, a := range s.RootDevices {
		if s.RootDevices[i] = normalizeAddress(a); !discovery.ValidAddress(s.RootDevices[i]) {
			errs = append(errs, fmt.Errorf("rootDevices[%d]: %q is not a PCI address (dddd:bb:dd.f)", i, a))
		}
	}
	for i, d := range s.Drivers {
		if d == "" {
			errs = append(errs, fmt.Errorf("drivers[%d]: empty", i))
		}
	}
	for i, l := range s.LinkTypes {
		if l == "" {
			errs = append(errs, fmt.Errorf("linkTypes[%d]: empty", i))
		}
	}
	s.pfNames = nil
	for i, v := range s.PFNames {
		pf, err := parsePFName(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("pfNames[%d]: %w", i, err))
			continue
		}
		s.pfNames = append(s.pfNames, pf)
	}
	return errs
}

// normalizeAddress accepts the short bb:dd.f form lspci prints.
func normalizeAddress(a string) string {
	a = strings.ToLower(strings.TrimSpace(a))
	if strings.Count(a, ":") == 1 {
		a = "0000:" + a
	}
	return a
}

// pfName is "ens1f0" (every VF of ens1f0, and ens1f0 itself when it has no
// VFs) or "ens1f0#0-3,7" (only those VF indexes).
type pfName struct {
	name   string
	ranges [][2]int // inclusive; nil means all
}

func parsePFName(s string) (pfName, error) {
	name, spec, hasRange := strings.Cut(s, "#")
	if name == "" {
		return pfName{}, fmt.Errorf("%q: empty interface name", s)
	}
	pf := pfName{name: name}
	if !hasRange {
		return pf, nil
	}
	if spec == "" {
		return pfName{}, fmt.Errorf("%q: empty VF range after '#'", s)
	}
	for part := range strings.SplitSeq(spec, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return pfName{}, fmt.Errorf("%q: bad VF range %q (want N or N-M with N <= M)", s, part)
		}
		pf.ranges = append(pf.ranges, [2]int{a, b})
	}
	return pf, nil
}

func (p pfName) matches(d *discovery.Device) bool {
	if !d.IsVF {
		return p.ranges == nil && d.Ifname == p.name
	}
	if d.PFName != p.name {
		return false
	}
	if p.ranges == nil {
		return true
	}
	for _, r := range p.ranges {
		if d.VFIndex >= r[0] && d.VFIndex <= r[1] {
			return true
		}
	}
	return false
}
