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
	"slices"
	"strings"

	"github.com/plexus-cni/plexus/agent/source"
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

// Mode is how a selection Multus tolerates but the spec does not is met.
type Mode string

const (
	// Strict refuses it: unknown keys without a dot, deprecated keys.
	Strict Mode = "strict"
	// Compatible accepts it as Multus does, with a Warning.
	Compatible Mode = "compatible"
)

// Options says how to parse a selection.
type Options struct {
	// Mode: "" is Strict.
	Mode Mode
	// Namespace is the namespace of networks that name none; "" means the
	// pod's.
	Namespace string
}

func (o Options) namespace(pod PodRef) string {
	if o.Namespace != "" {
		return o.Namespace
	}
	return pod.Namespace
}

// Warning is a deviation from the spec that compatible mode accepted.
type Warning struct {
	Network string
	Field   string
	Reason  string
}

func (w Warning) String() string {
	return fmt.Sprintf("network %s, field %q: %s", w.Network, w.Field, w.Reason)
}

// Parse parses the networks annotation value of pod strictly. An empty
// value is an empty selection.
func Parse(pod PodRef, value string) ([]Element, error) {
	elems, _, err := Options{}.Parse(pod, value)
	return elems, err
}

// Parse parses the networks annotation value of pod. An empty value is an
// empty selection. The warnings say what compatible mode accepted.
func (o Options) Parse(pod PodRef, value string) ([]Element, []Warning, error) {
	if len(value) > MaxAnnotationSize {
		return nil, nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s is %d bytes, over the %d byte limit", source.NetworksAnnotation, len(value), MaxAnnotationSize)}
	}
	trimmed := strings.TrimSpace(value)
	if trimmed == "" {
		return nil, nil, nil
	}
	if strings.HasPrefix(trimmed, "[") {
		return parseJSON(pod, []byte(trimmed), o)
	}
	if strings.HasPrefix(trimmed, "{") {
		return nil, nil, &Error{Pod: pod, Reason: "the JSON form must be a list of objects, got an object"}
	}
	elems, err := parseList(pod, trimmed, o)
	return elems, nil, err
}

// parseList parses the comma form: [namespace/]name[@ifname], ...
func parseList(pod PodRef, value string, o Options) ([]Element, error) {
	var out []Element
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, &Error{Pod: pod, Reason: fmt.Sprintf("empty entry in %q", value)}
		}
		e := Element{Namespace: o.namespace(pod)}
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

// elementKey is one key of a JSON element: decode decodes and validates
// its value into e and returns why it is invalid, or "".
type elementKey struct {
	name   string
	decode func(e *Element, raw json.RawMessage) string
}

// elementKeys is every key of a JSON element after name and namespace, in
// the order they are checked (so that the first error reported does not
// depend on map order): the spec's keys plus the deviceID extension. Other
// keys without a dot are reserved by the spec; dotted keys are vendor
// extensions and ignored.
var elementKeys = []elementKey{
	{"interface", func(e *Element, raw json.RawMessage) string {
		if why := decode(raw, &e.Interface); why != "" {
			return why
		}
		return ValidIfName(e.Interface)
	}},
	{"ips", func(e *Element, raw json.RawMessage) string {
		if why := decode(raw, &e.IPs); why != "" {
			return why
		}
		for _, ip := range e.IPs {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return fmt.Sprintf("%q is not an IP address with a prefix length (e.g. 10.1.1.5/24)", ip)
			}
		}
		return ""
	}},
	{"mac", func(e *Element, raw json.RawMessage) string {
		return decodeHWAddr(raw, &e.MAC, 6, "a 48-bit MAC address")
	}},
	{"portMappings", func(e *Element, raw json.RawMessage) string {
		if why := decode(raw, &e.PortMappings); why != "" {
			return why
		}
		for i := range e.PortMappings {
			if why := checkPortMapping(&e.PortMappings[i]); why != "" {
				return fmt.Sprintf("entry %d: %s", i, why)
			}
		}
		return ""
	}},
	{"bandwidth", func(e *Element, raw json.RawMessage) string {
		b := &Bandwidth{}
		if why := decode(raw, b); why != "" {
			return why
		}
		e.Bandwidth = b
		if b.IngressRate < 0 || b.IngressBurst < 0 || b.EgressRate < 0 || b.EgressBurst < 0 {
			return "rates and bursts must not be negative"
		}
		if (b.IngressRate > 0) != (b.IngressBurst > 0) || (b.EgressRate > 0) != (b.EgressBurst > 0) {
			return "a rate needs its burst and a burst its rate"
		}
		return ""
	}},
	{"infiniband-guid", func(e *Element, raw json.RawMessage) string {
		return decodeHWAddr(raw, &e.InfinibandGUID, 8, "a 64-bit GUID (8 colon-separated bytes)")
	}},
	{"cni-args", func(e *Element, raw json.RawMessage) string {
		if why := decode(raw, &e.CNIArgs); why != "" {
			return "must be a JSON object: " + why
		}
		return ""
	}},
	{"default-route", func(e *Element, raw json.RawMessage) string {
		var routes []string
		if why := decode(raw, &routes); why != "" {
			return why
		}
		for _, r := range routes {
			ip := net.ParseIP(r)
			if ip == nil {
				return fmt.Sprintf("%q is not an IP address", r)
			}
			e.DefaultRoute = append(e.DefaultRoute, ip)
		}
		if v4, v6 := countFamilies(e.DefaultRoute); v4 > 1 || v6 > 1 {
			return "at most one gateway per IP family"
		}
		return ""
	}},
	{"ipam-claim-reference", func(e *Element, raw json.RawMessage) string {
		if why := decode(raw, &e.IPAMClaimReference); why != "" {
			return why
		}
		if e.IPAMClaimReference != "" && len(e.IPs) > 0 {
			return "cannot be combined with ips"
		}
		return ""
	}},
	{"deviceID", func(e *Element, raw json.RawMessage) string {
		return decode(raw, &e.DeviceID)
	}},
}

// deprecatedKeys are keys Multus still honours under their old name:
// compatible mode reads them as the new one, strict mode refuses them.
var deprecatedKeys = map[string]string{"interfaceRequest": "interface"}

func parseJSON(pod PodRef, data []byte, o Options) ([]Element, []Warning, error) {
	var raw []jsonElement
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s is not a JSON list of objects: %v", source.NetworksAnnotation, err)}
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return nil, nil, &Error{Pod: pod, Reason: fmt.Sprintf("annotation %s has data after the JSON list", source.NetworksAnnotation)}
	}
	out := make([]Element, 0, len(raw))
	var warnings []Warning
	for i, obj := range raw {
		e, w, err := parseElement(pod, i, obj, o)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, e)
		warnings = append(warnings, w...)
	}
	return out, warnings, nil
}

func parseElement(pod PodRef, index int, obj jsonElement, o Options) (Element, []Warning, error) {
	e := Element{Namespace: o.namespace(pod)}
	label := fmt.Sprintf("#%d", index)
	if obj == nil {
		return e, nil, &Error{Pod: pod, Network: label, Reason: "element is null"}
	}
	// A key set to null counts as absent, for every key alike.
	for k, v := range obj {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(obj, k)
		}
	}
	if raw, ok := obj["name"]; ok {
		if why := decode(raw, &e.Name); why != "" {
			return e, nil, &Error{Pod: pod, Network: label, Field: "name", Reason: why}
		}
	}
	if e.Name != "" {
		label = e.Name
	}
	if raw, ok := obj["namespace"]; ok {
		if why := decode(raw, &e.Namespace); why != "" {
			return e, nil, &Error{Pod: pod, Network: label, Field: "namespace", Reason: why}
		}
	}
	if err := checkNames(pod, &e, label); err != nil {
		return e, nil, err
	}
	label = e.Key()
	fail := func(field, reason string) (Element, []Warning, error) {
		return e, nil, &Error{Pod: pod, Network: label, Field: field, Reason: reason}
	}
	var warnings []Warning
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if key == "name" || key == "namespace" || strings.Contains(key, ".") || slices.ContainsFunc(elementKeys, func(k elementKey) bool { return k.name == key }) {
			continue
		}
		if to, ok := deprecatedKeys[key]; ok {
			if o.Mode != Compatible {
				return fail(key, fmt.Sprintf("deprecated key; use %q", to))
			}
			if _, both := obj[to]; both {
				return fail(key, fmt.Sprintf("given together with %q; use %q alone", to, to))
			}
			obj[to] = obj[key]
			delete(obj, key)
			warnings = append(warnings, Warning{Network: label, Field: key, Reason: fmt.Sprintf("deprecated key read as %q; rename it to %q", to, to)})
			continue
		}
		if o.Mode != Compatible {
			return fail(key, "unknown key; keys without a dot are reserved by the multi-network spec")
		}
		delete(obj, key)
		warnings = append(warnings, Warning{Network: label, Field: key, Reason: "unknown key ignored; keys without a dot are reserved by the multi-network spec (remove it, or give a vendor key a dotted name)"})
	}
	for _, k := range elementKeys {
		raw, ok := obj[k.name]
		if !ok {
			continue
		}
		if why := k.decode(&e, raw); why != "" {
			return fail(k.name, why)
		}
	}
	return e, warnings, nil
}

// decode decodes raw into v, refusing unknown fields of objects, and
// returns why it failed, or "".
func decode(raw json.RawMessage, v any) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err.Error()
	}
	return ""
}

// decodeHWAddr decodes a string into *dst that must be a colon-separated
// hardware address of n bytes; what describes it in the reason.
func decodeHWAddr(raw json.RawMessage, dst *string, n int, what string) string {
	if why := decode(raw, dst); why != "" {
		return why
	}
	if hw, err := net.ParseMAC(*dst); err != nil || len(hw) != n {
		return fmt.Sprintf("%q is not %s", *dst, what)
	}
	return ""
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

// ParseDefaultNetwork parses the v1.multus-cni.io/default-network annotation
// strictly: a single [namespace/]name. It returns nil for an empty value.
func ParseDefaultNetwork(pod PodRef, value string) (*Element, error) {
	e, _, err := Options{}.ParseDefaultNetwork(pod, value)
	return e, err
}

// ParseDefaultNetwork parses the v1.multus-cni.io/default-network annotation:
// a single network. It returns nil for an empty value.
func (o Options) ParseDefaultNetwork(pod PodRef, value string) (*Element, []Warning, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil, nil
	}
	elems, warnings, err := o.Parse(pod, value)
	if err != nil {
		return nil, nil, err
	}
	if len(elems) != 1 {
		return nil, nil, &Error{Pod: pod, Field: source.DefaultNetworkAnnotation, Reason: fmt.Sprintf("must name exactly one network, got %d", len(elems))}
	}
	return &elems[0], warnings, nil
}
