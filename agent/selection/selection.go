// Package selection parses and validates the network selection annotation
// (k8s.v1.cni.cncf.io/networks) of the Network Plumbing WG multi-net spec,
// in both of its forms, into a list of elements. It knows nothing of NADs or
// delegates; every error names the pod, the network and the field.
package selection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// Annotation keys read from a pod.
const (
	NetworksAnnotation       = "k8s.v1.cni.cncf.io/networks"
	NetworkStatusAnnotation  = "k8s.v1.cni.cncf.io/network-status"
	DefaultNetworkAnnotation = "v1.multus-cni.io/default-network"
	ResourceNameAnnotation   = "k8s.v1.cni.cncf.io/resourceName"
)

// MaxAnnotationSize bounds the annotation we parse. Kubernetes caps all of a
// pod's annotations at 256 KiB; local mode has no such cap.
const MaxAnnotationSize = 256 << 10

// PodRef names the pod a selection belongs to, for error messages.
type PodRef struct {
	Namespace string
	Name      string
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// Element is one entry of a network selection.
type Element struct {
	Name      string
	Namespace string
	// Interface is the requested interface name inside the pod, or "".
	Interface          string
	IPs                []string
	MAC                string
	PortMappings       []PortMapping
	Bandwidth          *Bandwidth
	InfinibandGUID     string
	CNIArgs            map[string]any
	DefaultRoute       []net.IP
	IPAMClaimReference string
	DeviceID           string
}

// Key is the namespace-qualified network name, "ns/name".
func (e *Element) Key() string { return e.Namespace + "/" + e.Name }

// PortMapping is one entry of the portMappings key; the JSON field names are
// those of the CNI portMappings capability.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Bandwidth is the bandwidth key, as the CNI bandwidth capability wants it.
type Bandwidth struct {
	IngressRate  int64 `json:"ingressRate,omitempty"`
	IngressBurst int64 `json:"ingressBurst,omitempty"`
	EgressRate   int64 `json:"egressRate,omitempty"`
	EgressBurst  int64 `json:"egressBurst,omitempty"`
}

// Error is an invalid selection. Field is the JSON key at fault, or "" when
// the annotation as a whole is malformed.
type Error struct {
	Pod     PodRef
	Network string
	Field   string
	Reason  string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s: invalid network selection", e.Pod)
	if e.Network != "" {
		fmt.Fprintf(&b, " for network %q", e.Network)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ", field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// dns1123Label is the Kubernetes DNS-1123 label syntax (max 63 characters).
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// IsDNS1123Label reports whether s is a valid DNS-1123 label.
func IsDNS1123Label(s string) bool {
	return len(s) <= 63 && dns1123Label.MatchString(s)
}

// ValidIfName reports why name cannot be a Linux interface name, or "".
func ValidIfName(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 15:
		return fmt.Sprintf("%q is longer than 15 characters", name)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a valid interface name", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Sprintf("%q contains %q, not allowed in an interface name", name, r)
		}
	}
	return ""
}

// Parse parses the networks annotation value of pod. An empty value is an
// empty selection.
func Parse(pod PodRef, value string) ([]Element, error) {
	if len(value) > MaxAnnotationSize {
		return nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s is %d bytes, over the %d byte limit", NetworksAnnotation, len(value), MaxAnnotationSize)}
	}
	trimmed := strings.TrimSpace(value)
	if trimmed == "" {
		return nil, nil
	}
	if strings.HasPrefix(trimmed, "[") {
		return parseJSON(pod, []byte(trimmed))
	}
	if strings.HasPrefix(trimmed, "{") {
		return nil, &Error{Pod: pod, Reason: "the JSON form must be a list of objects, got an object"}
	}
	return parseList(pod, trimmed)
}

// parseList parses the comma form: [namespace/]name[@ifname], ...
func parseList(pod PodRef, value string) ([]Element, error) {
	var out []Element
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, &Error{Pod: pod, Reason: fmt.Sprintf("empty entry in %q", value)}
		}
		e := Element{Namespace: pod.Namespace}
		ref := item
		if at := strings.LastIndex(item, "@"); at >= 0 {
			ref, e.Interface = item[:at], item[at+1:]
			if why := ValidIfName(e.Interface); why != "" {
				return nil, &Error{Pod: pod, Network: ref, Field: "interface", Reason: why}
			}
		}
		switch parts := strings.Split(ref, "/"); len(parts) {
		case 1:
			e.Name = parts[0]
		case 2:
			e.Namespace, e.Name = parts[0], parts[1]
		default:
			return nil, &Error{Pod: pod, Network: ref, Reason: "expected [namespace/]name[@interface]"}
		}
		if err := checkNames(pod, &e, ref); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// jsonElement mirrors the JSON form's keys. Values are decoded lazily so an
// error can name the key that is wrong.
type jsonElement map[string]json.RawMessage

// knownKeys are the spec's keys plus the deviceID extension. Other keys
// without a dot are reserved by the spec; dotted keys are vendor extensions
// and ignored.
var knownKeys = map[string]bool{
	"name": true, "namespace": true, "ips": true, "mac": true, "interface": true,
	"portMappings": true, "bandwidth": true, "infiniband-guid": true, "cni-args": true,
	"default-route": true, "ipam-claim-reference": true, "deviceID": true,
}

func parseJSON(pod PodRef, data []byte) ([]Element, error) {
	var raw []jsonElement
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s is not a JSON list of objects: %v", NetworksAnnotation, err)}
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s has data after the JSON list", NetworksAnnotation)}
	}
	out := make([]Element, 0, len(raw))
	for i, obj := range raw {
		e, err := parseElement(pod, i, obj)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func parseElement(pod PodRef, index int, obj jsonElement) (Element, error) {
	e := Element{Namespace: pod.Namespace}
	label := fmt.Sprintf("#%d", index)
	if obj == nil {
		return e, &Error{Pod: pod, Network: label, Reason: "element is null"}
	}
	// A key set to null counts as absent, for every key alike.
	for k, v := range obj {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(obj, k)
		}
	}
	if err := decodeField(obj, "name", &e.Name); err != nil {
		return e, &Error{Pod: pod, Network: label, Field: "name", Reason: err.Error()}
	}
	if e.Name != "" {
		label = e.Name
	}
	fail := func(field, format string, args ...any) (Element, error) {
		return e, &Error{Pod: pod, Network: label, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if _, ok := obj["namespace"]; ok {
		if err := decodeField(obj, "namespace", &e.Namespace); err != nil {
			return fail("namespace", "%v", err)
		}
	}
	if err := checkNames(pod, &e, label); err != nil {
		return e, err
	}
	label = e.Key()
	for key := range obj {
		if !knownKeys[key] && !strings.Contains(key, ".") {
			return fail(key, "unknown key; keys without a dot are reserved by the multi-network spec")
		}
	}
	if err := decodeField(obj, "interface", &e.Interface); err != nil {
		return fail("interface", "%v", err)
	}
	if _, ok := obj["interface"]; ok {
		if why := ValidIfName(e.Interface); why != "" {
			return fail("interface", "%s", why)
		}
	}
	if err := decodeField(obj, "ips", &e.IPs); err != nil {
		return fail("ips", "%v", err)
	}
	for _, ip := range e.IPs {
		if _, _, err := net.ParseCIDR(ip); err != nil {
			return fail("ips", "%q is not an IP address with a prefix length (e.g. 10.1.1.5/24)", ip)
		}
	}
	if err := decodeField(obj, "mac", &e.MAC); err != nil {
		return fail("mac", "%v", err)
	}
	if _, ok := obj["mac"]; ok {
		if hw, err := net.ParseMAC(e.MAC); err != nil || len(hw) != 6 {
			return fail("mac", "%q is not a 48-bit MAC address", e.MAC)
		}
	}
	if err := decodeField(obj, "portMappings", &e.PortMappings); err != nil {
		return fail("portMappings", "%v", err)
	}
	for i := range e.PortMappings {
		if why := checkPortMapping(&e.PortMappings[i]); why != "" {
			return fail("portMappings", "entry %d: %s", i, why)
		}
	}
	if _, ok := obj["bandwidth"]; ok {
		e.Bandwidth = &Bandwidth{}
		if err := decodeField(obj, "bandwidth", e.Bandwidth); err != nil {
			return fail("bandwidth", "%v", err)
		}
		b := e.Bandwidth
		if b.IngressRate < 0 || b.IngressBurst < 0 || b.EgressRate < 0 || b.EgressBurst < 0 {
			return fail("bandwidth", "rates and bursts must not be negative")
		}
		if (b.IngressRate > 0) != (b.IngressBurst > 0) || (b.EgressRate > 0) != (b.EgressBurst > 0) {
			return fail("bandwidth", "a rate needs its burst and a burst its rate")
		}
	}
	if err := decodeField(obj, "infiniband-guid", &e.InfinibandGUID); err != nil {
		return fail("infiniband-guid", "%v", err)
	}
	if _, ok := obj["infiniband-guid"]; ok {
		if hw, err := net.ParseMAC(e.InfinibandGUID); err != nil || len(hw) != 8 {
			return fail("infiniband-guid", "%q is not a 64-bit GUID (8 colon-separated bytes)", e.InfinibandGUID)
		}
	}
	if err := decodeField(obj, "cni-args", &e.CNIArgs); err != nil {
		return fail("cni-args", "must be a JSON object: %v", err)
	}
	var routes []string
	if err := decodeField(obj, "default-route", &routes); err != nil {
		return fail("default-route", "%v", err)
	}
	for _, r := range routes {
		ip := net.ParseIP(r)
		if ip == nil {
			return fail("default-route", "%q is not an IP address", r)
		}
		e.DefaultRoute = append(e.DefaultRoute, ip)
	}
	if v4, v6 := countFamilies(e.DefaultRoute); v4 > 1 || v6 > 1 {
		return fail("default-route", "at most one gateway per IP family")
	}
	if err := decodeField(obj, "ipam-claim-reference", &e.IPAMClaimReference); err != nil {
		return fail("ipam-claim-reference", "%v", err)
	}
	if e.IPAMClaimReference != "" && len(e.IPs) > 0 {
		return fail("ipam-claim-reference", "cannot be combined with ips")
	}
	if err := decodeField(obj, "deviceID", &e.DeviceID); err != nil {
		return fail("deviceID", "%v", err)
	}
	return e, nil
}

// decodeField decodes obj[key] into v if present.
func decodeField(obj jsonElement, key string, v any) error {
	raw, ok := obj[key]
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func checkNames(pod PodRef, e *Element, label string) error {
	if !IsDNS1123Label(e.Name) {
		return &Error{Pod: pod, Network: label, Field: "name", Reason: fmt.Sprintf("%q is not a DNS-1123 label", e.Name)}
	}
	if !IsDNS1123Label(e.Namespace) {
		return &Error{Pod: pod, Network: label, Field: "namespace", Reason: fmt.Sprintf("%q is not a DNS-1123 label", e.Namespace)}
	}
	return nil
}

func checkPortMapping(p *PortMapping) string {
	if p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return fmt.Sprintf("containerPort %d is outside 1-65535", p.ContainerPort)
	}
	if p.HostPort < 1 || p.HostPort > 65535 {
		return fmt.Sprintf("hostPort %d is outside 1-65535", p.HostPort)
	}
	switch strings.ToUpper(p.Protocol) {
	case "":
		p.Protocol = "tcp"
	case "TCP", "UDP", "SCTP":
		p.Protocol = strings.ToLower(p.Protocol)
	default:
		return fmt.Sprintf("protocol %q is not TCP, UDP or SCTP", p.Protocol)
	}
	if p.HostIP != "" && net.ParseIP(p.HostIP) == nil {
		return fmt.Sprintf("hostIP %q is not an IP address", p.HostIP)
	}
	return ""
}

func countFamilies(ips []net.IP) (v4, v6 int) {
	for _, ip := range ips {
		if ip.To4() != nil {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}

// ParseDefaultNetwork parses the v1.multus-cni.io/default-network annotation:
// a single [namespace/]name. It returns nil for an empty value.
func ParseDefaultNetwork(pod PodRef, value string) (*Element, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil
	}
	elems, err := Parse(pod, value)
	if err != nil {
		return nil, err
	}
	if len(elems) != 1 {
		return nil, &Error{Pod: pod, Field: DefaultNetworkAnnotation, Reason: fmt.Sprintf("must name exactly one network, got %d", len(elems))}
	}
	return &elems[0], nil
}
