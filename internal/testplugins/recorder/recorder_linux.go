// Package recorder is a TEST ONLY CNI plugin, plexus-test-recorder: it
// writes down exactly what it was invoked with (stdin configuration and the
// CNI_* environment) so that tests can assert what a delegate received,
// and attaches a real interface so that the pod end shows up in the
// namespace. Never install it on a node.
//
// Configuration keys besides the CNI ones:
//
//	recordDir  (required) absolute directory of the records
//	recordTag  (optional) distinguishes two recorders in one conflist
//
// ADD writes <recordDir>/<containerID>_<ifname>[_<tag>].json. As the first
// plugin of a chain it creates a veth pair, the pod end named CNI_IFNAME in
// CNI_NETNS, the host end HostVethName(containerID, ifname), and returns
// both interfaces (no IPs); chained after another plugin it passes the
// previous result on. DEL removes the host end (and with it the pod end)
// and the record; both may already be gone. CHECK verifies that the pod
// end exists; STATUS and GC succeed.
package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// NetConf is the recorder's configuration.
type NetConf struct {
	types.PluginConf
	RecordDir string `json:"recordDir"`
	RecordTag string `json:"recordTag,omitempty"`
}

// Record is one ADD as the recorder saw it.
type Record struct {
	// Stdin is the configuration exactly as received.
	Stdin json.RawMessage `json:"stdin"`
	// Env holds the CNI_* variables.
	Env map[string]string `json:"env"`
}

// Main runs the plugin (the command's main).
func Main() {
	skel.PluginMainFuncs(Funcs(), version.All, "plexus-test-recorder: TEST ONLY CNI plugin that records its invocations")
}

// Funcs are the plugin's verbs, for skel.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck,
		Status: func(*skel.CmdArgs) error { return nil },
		GC:     func(*skel.CmdArgs) error { return nil }}
}

// RecordPath is where ADD of (containerID, ifname) writes its record.
func RecordPath(dir, containerID, ifname, tag string) string {
	name := containerID + "_" + ifname
	if tag != "" {
		name += "_" + tag
	}
	return filepath.Join(dir, name+".json")
}

// HostVethName is the host end of the pair of (containerID, ifname).
func HostVethName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return "pxr" + hex.EncodeToString(sum[:])[:12]
}

func loadConf(data []byte) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	if !filepath.IsAbs(c.RecordDir) {
		return nil, fmt.Errorf("recordDir %q: must be an absolute path", c.RecordDir)
	}
	if strings.ContainsAny(c.RecordTag, "/\x00") {
		return nil, fmt.Errorf("recordTag %q: must not contain '/'", c.RecordTag)
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, fmt.Errorf("prevResult: %w", err)
	}
	return &c, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	rec := Record{Stdin: args.StdinData, Env: map[string]string{}}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			rec.Env[k] = v
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(conf.RecordDir, 0o755); err != nil {
		return fmt.Errorf("create recordDir: %w", err)
	}
	path := RecordPath(conf.RecordDir, args.ContainerID, args.IfName, conf.RecordTag)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	if conf.PrevResult != nil {
		return types.PrintResult(conf.PrevResult, conf.CNIVersion)
	}
	success := false
	defer func() {
		if !success {
			_ = os.Remove(path)
		}
	}()
	res, err := addVeth(args)
	if err != nil {
		return err
	}
	success = true
	return types.PrintResult(res, conf.CNIVersion)
}

// addVeth creates the pair with the pod end directly in the namespace, so
// that its name never meets the host's interfaces.
func addVeth(args *skel.CmdArgs) (*current.Result, error) {
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", args.Netns, err)
	}
	defer netns.Close()
	hostName := HostVethName(args.ContainerID, args.IfName)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName},
		PeerName:      args.IfName,
		PeerNamespace: netlink.NsFd(int(netns.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", hostName, args.IfName, err)
	}
	success := false
	defer func() {
		if !success {
			_ = netlink.LinkDel(veth)
		}
	}()
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, fmt.Errorf("find host end %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", hostName, err)
	}
	var podMAC string
	err = netns.Do(func(ns.NetNS) error {
		pod, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("find pod end %s: %w", args.IfName, err)
		}
		podMAC = pod.Attrs().HardwareAddr.String()
		return netlink.LinkSetUp(pod)
	})
	if err != nil {
		return nil, err
	}
	success = true
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: host.Attrs().HardwareAddr.String()},
			{Name: args.IfName, Mac: podMAC, Sandbox: args.Netns},
		},
	}, nil
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	// Not only when first in the chain: on DEL libcni hands every plugin
	// the cached result as prevResult. A chained recorder removing the
	// pair first is harmless, the other finds it gone.
	if err := delVeth(args); err != nil {
		return err
	}
	if err := os.Remove(RecordPath(conf.RecordDir, args.ContainerID, args.IfName, conf.RecordTag)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record: %w", err)
	}
	return nil
}

// delVeth removes the host end, which takes the pod end with it. Without
// the host end (already deleted, or the namespace was removed and took
// the pair along) there is nothing to do.
func delVeth(args *skel.CmdArgs) error {
	link, err := netlink.LinkByName(HostVethName(args.ContainerID, args.IfName))
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find host end: %w", err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete %s: %w", link.Attrs().Name, err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	if _, err := loadConf(args.StdinData); err != nil {
		return err
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", args.Netns, err)
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName(args.IfName); err != nil {
			return fmt.Errorf("pod end %s: %w", args.IfName, err)
		}
		return nil
	})
}
