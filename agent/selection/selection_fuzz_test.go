package selection_test

import (
	"errors"
	"net"
	"testing"

	"github.com/plexus-cni/plexus/agent/selection"
)

// FuzzParse checks that Parse never panics, that whatever it accepts is valid
// (A.1, A.6, A.10, A.11, A.12) and that whatever it rejects is a
// *selection.Error. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	fuzzPod := selection.PodRef{Namespace: "podns", Name: "mypod"}
	f.Fuzz(func(t *testing.T, value string) {
		elems, err := selection.Parse(fuzzPod, value)
		if err != nil {
			var selErr *selection.Error
			if !errors.As(err, &selErr) {
				t.Fatalf("Parse(%q) error %v is a %T, not a *selection.Error", value, err, err)
			}
			if selErr.Pod != fuzzPod {
				t.Fatalf("Parse(%q) error names pod %v, want %v", value, selErr.Pod, fuzzPod)
			}
			if elems != nil {
				t.Fatalf("Parse(%q) returned %d elements with an error", value, len(elems))
			}
			return
		}
		for i, e := range elems {
			if !selection.IsDNS1123Label(e.Name) {
				t.Errorf("Parse(%q)[%d].Name %q is not a DNS-1123 label", value, i, e.Name)
			}
			if !selection.IsDNS1123Label(e.Namespace) {
				t.Errorf("Parse(%q)[%d].Namespace %q is not a DNS-1123 label", value, i, e.Namespace)
			}
			if e.Interface != "" {
				if why := selection.ValidIfName(e.Interface); why != "" {
					t.Errorf("Parse(%q)[%d].Interface: %s", value, i, why)
				}
			}
			for _, ip := range e.IPs {
				if _, _, err := net.ParseCIDR(ip); err != nil {
					t.Errorf("Parse(%q)[%d].IPs: %v", value, i, err)
				}
			}
			if e.MAC != "" {
				if hw, err := net.ParseMAC(e.MAC); err != nil || len(hw) != 6 {
					t.Errorf("Parse(%q)[%d].MAC %q is not a 48-bit MAC (%v)", value, i, e.MAC, err)
				}
			}
			if e.InfinibandGUID != "" {
				if hw, err := net.ParseMAC(e.InfinibandGUID); err != nil || len(hw) != 8 {
					t.Errorf("Parse(%q)[%d].InfinibandGUID %q is not 8 bytes (%v)", value, i, e.InfinibandGUID, err)
				}
			}
			for _, pm := range e.PortMappings {
				if pm.HostPort < 1 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
					t.Errorf("Parse(%q)[%d] accepted port mapping %+v out of range", value, i, pm)
				}
				switch pm.Protocol {
				case "tcp", "udp", "sctp":
				default:
					t.Errorf("Parse(%q)[%d] port mapping protocol %q, want tcp, udp or sctp", value, i, pm.Protocol)
				}
			}
			if b := e.Bandwidth; b != nil {
				if b.IngressRate < 0 || b.IngressBurst < 0 || b.EgressRate < 0 || b.EgressBurst < 0 {
					t.Errorf("Parse(%q)[%d] accepted negative bandwidth %+v", value, i, *b)
				}
			}
			var v4, v6 int
			for _, gw := range e.DefaultRoute {
				switch {
				case gw.To4() != nil:
					v4++
				case len(gw) == net.IPv6len:
					v6++
				default:
					t.Errorf("Parse(%q)[%d] default-route %v is not an IP", value, i, gw)
				}
			}
			if v4 > 1 || v6 > 1 {
				t.Errorf("Parse(%q)[%d] accepted %d v4 and %d v6 gateways", value, i, v4, v6)
			}
			if e.IPAMClaimReference != "" && len(e.IPs) > 0 {
				t.Errorf("Parse(%q)[%d] accepted ipam-claim-reference with ips", value, i)
			}
		}
	})
}
