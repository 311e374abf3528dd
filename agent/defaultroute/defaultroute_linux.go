// Package defaultroute moves a pod's default route to the attachment the
// network selection's "default-route" key chose: for each IP family with a
// chosen gateway, every other default route of that family is removed from
// the pod's network namespace and one via the gateway on the chosen
// interface is installed.
package defaultroute

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Apply sets, inside the namespace at netnsPath, the default route of each
// family of gateways (at most one gateway per family) to go via the
// given gateway on ifname. Only the main table is touched.
func Apply(netnsPath, ifname string, gateways []net.IP) error {
	if len(gateways) == 0 {
		return nil
	}
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("find interface %s: %w", ifname, err)
		}
		for _, gw := range gateways {
			family := netlink.FAMILY_V6
			dst := &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			if gw.To4() != nil {
				family = netlink.FAMILY_V4
				dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			}
			routes, err := netlink.RouteList(nil, family)
			if err != nil {
				return fmt.Errorf("list default routes: %w", err)
			}
			var errs []error
			for i := range routes {
				r := routes[i]
				if r.Dst != nil && !isDefault(r.Dst) {
					continue
				}
				if err := netlink.RouteDel(&r); err != nil {
					errs = append(errs, fmt.Errorf("delete default route via %v: %w", r.Gw, err))
				}
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw, Scope: netlink.SCOPE_UNIVERSE}
			if err := netlink.RouteReplace(route); err != nil {
				return fmt.Errorf("add default route via %s dev %s: %w", gw, ifname, err)
			}
		}
		return nil
	})
}

func isDefault(dst *net.IPNet) bool {
	ones, _ := dst.Mask.Size()
	return ones == 0 && dst.IP.IsUnspecified()
}
