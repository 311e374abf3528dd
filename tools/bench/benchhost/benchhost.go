// Package benchhost holds what the benchmarks under tools/bench share about
// the host they run on: checking that a pod's interfaces really exist (a
// timing of a call that did not do its job is meaningless), removing links
// by name, and the load average printed next to every result.
package benchhost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// VerifyInterfaces checks the namespace at netnsPath after ADD (added:
// every ifnames[k] present, up, with an IPv4 address in subnets[k]) or
// after DEL (none of them left).
func VerifyInterfaces(netnsPath string, ifnames, subnets []string, added bool) error {
	if len(ifnames) != len(subnets) {
		return fmt.Errorf("verify %s: %d interface names for %d subnets", netnsPath, len(ifnames), len(subnets))
	}
	nets := make([]*net.IPNet, len(subnets))
	for k, s := range subnets {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return fmt.Errorf("verify %s: subnet %q: %w", netnsPath, s, err)
		}
		nets[k] = n
	}
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		for k, name := range ifnames {
			link, err := netlink.LinkByName(name)
			var nf netlink.LinkNotFoundError
			switch {
			case !added && errors.As(err, &nf):
				continue
			case !added && err == nil:
				return fmt.Errorf("interface %s still in %s after DEL", name, netnsPath)
			case err != nil:
				return fmt.Errorf("interface %s missing in %s: %w", name, netnsPath, err)
			}
			if link.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("interface %s in %s is down", name, netnsPath)
			}
			addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
			if err != nil {
				return fmt.Errorf("addresses of %s in %s: %w", name, netnsPath, err)
			}
			if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return nets[k].Contains(a.IP) }) {
				return fmt.Errorf("interface %s in %s has no address in %s (has %v)", name, netnsPath, subnets[k], addrs)
			}
		}
		return nil
	})
}

// DelLink deletes the link called name; a missing link is not an error.
func DelLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// LoadAvg is /proc/loadavg's 1, 5 and 15 minute figures, or "unknown".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Links lists the links in the namespace at netnsPath other than lo, each
// with its IPv4 addresses: after ADD exactly the pod's interfaces, after DEL
// nothing. A dump the kernel interrupted (links changing meanwhile) is
// taken again.
func Links(netnsPath string) (map[string][]net.IP, error) {
	for {
		out, err := links(netnsPath)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
}

func links(netnsPath string) (map[string][]net.IP, error) {
	out := map[string][]net.IP{}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links in %s: %w", netnsPath, err)
		}
		for _, l := range links {
			if l.Attrs().Name == "lo" {
				continue
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil {
				return fmt.Errorf("addresses of %s in %s: %w", l.Attrs().Name, netnsPath, err)
			}
			ips := []net.IP{}
			for _, a := range addrs {
				ips = append(ips, a.IP)
			}
			out[l.Attrs().Name] = ips
		}
		return nil
	})
	return out, err
}

// BridgePorts counts the links enslaved to the named bridges on the host.
func BridgePorts(bridges ...string) (int, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return 0, fmt.Errorf("list host links: %w", err)
	}
	masters := map[int]bool{}
	for _, l := range links {
		if slices.Contains(bridges, l.Attrs().Name) {
			masters[l.Attrs().Index] = true
		}
	}
	n := 0
	for _, l := range links {
		if masters[l.Attrs().MasterIndex] {
			n++
		}
	}
	return n, nil
}
