// Package netstatus builds the k8s.v1.cni.cncf.io/network-status annotation
// value from delegate results (multi-net spec v1.3, section 4.1.2.1.x).
package netstatus

import (
	"fmt"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/plexus-cni/plexus/devinfo"
)

// Entry is one element of the network-status list. The spec's field is
// "default-route"; Multus writes the same list as "gateway", and readers
// built on the NAD client's NetworkStatus type see only that key, so
// both are written with the same values.
type Entry struct {
	Name         string        `json:"name"`
	Interface    string        `json:"interface,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
	MTU          int           `json:"mtu,omitempty"`
	Default      bool          `json:"default,omitempty"`
	DNS          *types.DNS    `json:"dns,omitempty"`
	DefaultRoute []string      `json:"default-route,omitempty"`
	Gateway      []string      `json:"gateway,omitempty"`
	DeviceInfo   *devinfo.Info `json:"device-info,omitempty"`
}

// Attachment is what Build needs to know of one attachment.
type Attachment struct {
	// Name is the status name: "ns/name" for NADs.
	Name   string
	IfName string
	// Default marks the cluster default network.
	Default    bool
	Result     types.Result
	DeviceInfo *devinfo.Info
}

// Build returns one entry per sandbox interface of each result, or a minimal
// entry when a plugin reported no interfaces. Exactly one entry, the first of
// the default attachment, carries "default": true.
func Build(atts []Attachment) ([]Entry, error) {
	var out []Entry
	defaultSet := false
	for _, a := range atts {
		entries, err := entriesFor(a)
		if err != nil {
			return nil, fmt.Errorf("network-status for %s (%s): %w", a.Name, a.IfName, err)
		}
		if a.Default && !defaultSet && len(entries) > 0 {
			entries[0].Default = true
			defaultSet = true
		}
		out = append(out, entries...)
	}
	return out, nil
}

func entriesFor(a Attachment) ([]Entry, error) {
	if a.Result == nil {
		return []Entry{{Name: a.Name, Interface: a.IfName, DeviceInfo: a.DeviceInfo}}, nil
	}
	res, err := current.NewResultFromResult(a.Result)
	if err != nil {
		return nil, fmt.Errorf("convert result: %w", err)
	}
	var dns *types.DNS
	if len(res.DNS.Nameservers) > 0 || res.DNS.Domain != "" || len(res.DNS.Search) > 0 || len(res.DNS.Options) > 0 {
		d := res.DNS
		dns = &d
	}
	gateways := defaultGateways(res)
	var out []Entry
	for i, iface := range res.Interfaces {
		if iface == nil || iface.Sandbox == "" {
			continue
		}
		e := Entry{Name: a.Name, Interface: iface.Name, MAC: iface.Mac, MTU: iface.Mtu, DNS: dns, DeviceInfo: a.DeviceInfo}
		for _, ip := range res.IPs {
			if ip.Interface != nil && *ip.Interface == i {
				e.IPs = append(e.IPs, ip.Address.IP.String())
			}
		}
		if iface.Name == a.IfName {
			// CNI routes name no interface; they belong to the attachment's.
			e.DefaultRoute, e.Gateway = gateways, slices.Clone(gateways)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		e := Entry{Name: a.Name, Interface: a.IfName, DNS: dns, DeviceInfo: a.DeviceInfo, DefaultRoute: gateways, Gateway: slices.Clone(gateways)}
		for _, ip := range res.IPs {
			e.IPs = append(e.IPs, ip.Address.IP.String())
		}
		out = append(out, e)
	}
	return out, nil
}

// defaultGateways lists the gateways of the result's default routes. A
// default route without a gateway goes via the gateway of the result's IP
// configuration of its family, as plugins install it.
func defaultGateways(res *current.Result) []string {
	var out []string
	for _, r := range res.Routes {
		if r == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones != 0 || !r.Dst.IP.IsUnspecified() {
			continue
		}
		gw := r.GW
		if gw == nil {
			v4 := r.Dst.IP.To4() != nil
			for _, ip := range res.IPs {
				if ip.Gateway != nil && (ip.Gateway.To4() != nil) == v4 {
					gw = ip.Gateway
					break
				}
			}
		}
		if gw != nil {
			out = append(out, gw.String())
		}
	}
	return out
}
