// Package resolve turns a network reference into the delegate configuration
// to invoke: a NetworkAttachmentDefinition's spec.config, or, when that is
// empty, an on-disk CNI configuration whose name matches (.conflist first,
// then .conf), per the multi-net spec.
package resolve

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/version"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/plexus-cni/plexus/agent/source"
)

// MaxConfigSize bounds a delegate configuration.
const MaxConfigSize = 1 << 20

// ConfigError is a delegate configuration that cannot be used.
type ConfigError struct {
	Network string
	Field   string
	Reason  string
}

func (e *ConfigError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("network %s: invalid delegate config, field %q: %s", e.Network, e.Field, e.Reason)
	}
	return fmt.Sprintf("network %s: invalid delegate config: %s", e.Network, e.Reason)
}

// Network is a resolved delegate.
type Network struct {
	// Name is the network's status name: "ns/name" for a NAD, the
	// configuration's name for an on-disk conf.
	Name         string
	Config       *libcni.NetworkConfigList
	ResourceName string
}

// Resolver resolves network references.
type Resolver struct {
	NADs source.NADGetter
	// ConfDir is searched for configurations NADs without spec.config name.
	ConfDir string
}

// NAD resolves the NAD namespace/name.
func (r *Resolver) NAD(ctx context.Context, namespace, name string) (*Network, error) {
	key := namespace + "/" + name
	nad, err := r.NADs.GetNAD(ctx, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("get NetworkAttachmentDefinition %s: %w", key, err)
	}
	rn, err := ResourceName(nad)
	if err != nil {
		return nil, err
	}
	net := &Network{Name: key, ResourceName: rn}
	if strings.TrimSpace(nad.Spec.Config) == "" {
		list, err := r.confByName(name)
		if err != nil {
			return nil, fmt.Errorf("NetworkAttachmentDefinition %s has no spec.config: %w", key, err)
		}
		net.Config = list
		return net, nil
	}
	list, err := Parse(key, []byte(nad.Spec.Config), name)
	if err != nil {
		return nil, err
	}
	net.Config = list
	return net, nil
}

// ResourceName is the device resource the NAD's
// k8s.v1.cni.cncf.io/resourceName names, "" for none. A value that cannot
// be a Kubernetes extended resource (domain/name) is a ConfigError: no pod
// could have been allocated a device of it.
func ResourceName(nad *nadv1.NetworkAttachmentDefinition) (string, error) {
	rn, ok := nad.Annotations[source.ResourceNameAnnotation]
	if !ok {
		return "", nil
	}
	// Kubernetes' own rule for extended resources: a qualified name with
	// a domain, also as the quota's "requests.<name>".
	errs := validation.IsQualifiedName(rn)
	if len(errs) == 0 && !strings.Contains(rn, "/") {
		errs = []string{"must have a domain prefix (e.g. example.com/device)"}
	}
	if len(errs) == 0 {
		errs = validation.IsQualifiedName("requests." + rn)
	}
	if len(errs) > 0 {
		return "", &ConfigError{Network: nad.Namespace + "/" + nad.Name, Field: "metadata.annotations." + source.ResourceNameAnnotation,
			Reason: fmt.Sprintf("%q is not an extended resource name: %s", rn, strings.Join(errs, "; "))}
	}
	return rn, nil
}

// ConfName resolves a configuration in ConfDir by its network name.
func (r *Resolver) ConfName(name string) (*Network, error) {
	list, err := r.confByName(name)
	if err != nil {
		return nil, err
	}
	return &Network{Name: list.Name, Config: list}, nil
}

// ConfFile resolves a configuration file by path, with its subdirectory
// chain (ConfBytes).
func (r *Resolver) ConfFile(path string) (*Network, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return r.ConfBytes(path, data)
}

// confByName looks for a .conflist whose name matches, then a .conf or .json.
// Files that do not parse are skipped (another file's breakage must not hide
// ours) but are mentioned when nothing matches.
func (r *Resolver) confByName(name string) (*libcni.NetworkConfigList, error) {
	if r.ConfDir == "" {
		return nil, fmt.Errorf("no CNI configuration directory to look for %q in: %w", name, source.ErrNotFound)
	}
	var broken []string
	for _, exts := range [][]string{{".conflist"}, {".conf", ".json"}} {
		files, err := libcni.ConfFiles(r.ConfDir, exts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.ConfDir, err)
		}
		sort.Strings(files)
		for _, f := range files {
			data, err := readLimited(f)
			if err != nil {
				broken = append(broken, filepath.Base(f))
				continue
			}
			var head struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(data, &head) != nil {
				broken = append(broken, filepath.Base(f))
				continue
			}
			if head.Name != name {
				continue
			}
			return Parse(f, data, "")
		}
	}
	msg := fmt.Sprintf("no .conflist or .conf named %q in %s", name, r.ConfDir)
	if len(broken) > 0 {
		msg += fmt.Sprintf(" (unparsable files skipped: %s)", strings.Join(broken, ", "))
	}
	return nil, fmt.Errorf("%s: %w", msg, source.ErrNotFound)
}

func readLimited(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read CNI config: %w", err)
	}
	if st.Size() > MaxConfigSize {
		return nil, &ConfigError{Network: path, Reason: fmt.Sprintf("file is %d bytes, over the %d byte limit", st.Size(), MaxConfigSize)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CNI config: %w", err)
	}
	return data, nil
}

// Parse validates a delegate configuration, a conf or a conflist, and returns
// it as a conflist. A configuration without a name gets defaultName.
func Parse(network string, data []byte, defaultName string) (*libcni.NetworkConfigList, error) {
	fail := func(field, format string, args ...any) (*libcni.NetworkConfigList, error) {
		return nil, &ConfigError{Network: network, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxConfigSize {
		return fail("", "%d bytes, over the %d byte limit", len(data), MaxConfigSize)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return fail("", "not a JSON object: %v", err)
	}
	if raw == nil {
		return fail("", "not a JSON object")
	}
	name, ok := raw["name"].(string)
	if _, present := raw["name"]; present && !ok {
		return fail("name", "must be a string")
	}
	if name == "" {
		if defaultName == "" {
			return fail("name", "missing")
		}
		name = defaultName
		raw["name"] = name
	}
	cniVersion, ok := raw["cniVersion"].(string)
	if !ok || cniVersion == "" {
		return fail("cniVersion", "missing or not a string")
	}
	if !supported(cniVersion) {
		return fail("cniVersion", "%q is not a supported CNI version (%s)", cniVersion, strings.Join(version.All.SupportedVersions(), ", "))
	}
	plugins, isList := raw["plugins"]
	if !isList {
		// A single plugin conf: wrap it, keeping its own keys intact.
		if _, ok := raw["type"]; !ok {
			return fail("plugins", "neither a conflist (plugins) nor a conf (type)")
		}
		plugin := raw
		raw = map[string]any{"cniVersion": cniVersion, "name": name, "plugins": []any{plugin}}
		plugins = raw["plugins"]
	}
	list, ok := plugins.([]any)
	if !ok || len(list) == 0 {
		return fail("plugins", "must be a non-empty list")
	}
	for i, p := range list {
		pm, ok := p.(map[string]any)
		if !ok {
			return fail(fmt.Sprintf("plugins[%d]", i), "must be an object")
		}
		typ, _ := pm["type"].(string)
		if why := checkType(typ); why != "" {
			return fail(fmt.Sprintf("plugins[%d].type", i), "%s", why)
		}
	}
	normalized, err := json.Marshal(raw)
	if err != nil {
		return fail("", "re-encode: %v", err)
	}
	conf, err := libcni.NetworkConfFromBytes(normalized)
	if err != nil {
		return fail("", "%v", err)
	}
	// libcni lets a cniVersions list override cniVersion; hold the outcome
	// to the same rule.
	if !supported(conf.CNIVersion) {
		return fail("cniVersions", "selects %q, not a supported CNI version (%s)", conf.CNIVersion, strings.Join(version.All.SupportedVersions(), ", "))
	}
	return conf, nil
}

// checkType rejects plugin types that are not a bare binary name: a type with
// a path in it could run any binary on the host.
func checkType(typ string) string {
	switch {
	case typ == "":
		return "missing"
	case strings.ContainsAny(typ, `/\`) || typ == "." || typ == "..":
		return fmt.Sprintf("%q must be a plugin name, not a path", typ)
	case strings.IndexFunc(typ, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Sprintf("%q contains whitespace or control characters", typ)
	}
	return ""
}

func supported(v string) bool {
	for _, s := range version.All.SupportedVersions() {
		if s == v {
			return true
		}
	}
	return false
}

// chainNameRE is the CNI spec's network name syntax: the name becomes a
// directory under the configuration directory, so it must not hold a path.
var chainNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ConfBytes resolves a configuration already read from path (the bytes are
// used, the file is not read again) and, for a .conflist, appends the
// plugins of its subdirectory chain: the .conf files in
// <dir of path>/<network name>/, by name, as libcni's NetworkConfFromFile
// and Multus load them, unless the list sets loadOnlyInlinedPlugins. The
// chained plugins are part of the returned list's Bytes, so whoever stores
// those (the attachment record) tears them down too.
func (r *Resolver) ConfBytes(path string, data []byte) (*Network, error) {
	list, err := Parse(path, data, "")
	if err != nil {
		return nil, err
	}
	if filepath.Ext(path) != ".conflist" || list.LoadOnlyInlinedPlugins {
		return &Network{Name: list.Name, Config: list}, nil
	}
	extra, err := ChainPlugins(filepath.Dir(path), list.Name)
	if err != nil {
		return nil, fmt.Errorf("network %s: subdirectory chain: %w", list.Name, err)
	}
	if len(extra) == 0 {
		return &Network{Name: list.Name, Config: list}, nil
	}
	var raw map[string]any
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return nil, &ConfigError{Network: path, Reason: fmt.Sprintf("re-read: %v", err)}
	}
	plugins, _ := raw["plugins"].([]any)
	raw["plugins"] = append(plugins, extra...)
	merged, err := json.Marshal(raw)
	if err != nil {
		return nil, &ConfigError{Network: path, Reason: fmt.Sprintf("re-encode: %v", err)}
	}
	if list, err = Parse(path, merged, ""); err != nil {
		return nil, err
	}
	return &Network{Name: list.Name, Config: list}, nil
}

// ChainPlugins reads the plugin configurations of the chain name in dir:
// every .conf file in dir/name/, in name order, each a single plugin
// object. A missing directory is an empty chain. Each file is read once
// and must parse; a broken file fails the chain rather than silently
// dropping a plugin the admin asked for.
func ChainPlugins(dir, name string) ([]any, error) {
	if !chainNameRE.MatchString(name) {
		return nil, &ConfigError{Network: name, Field: "name", Reason: "not a valid CNI network name, so it cannot name a chain directory"}
	}
	sub := filepath.Join(dir, name)
	files, err := libcni.ConfFiles(sub, []string{".conf"})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", sub, err)
	}
	sort.Strings(files)
	var out []any
	for _, f := range files {
		data, err := readLimited(f)
		if err != nil {
			return nil, err
		}
		var p map[string]any
		if err := json.Unmarshal(data, &p); err != nil || p == nil {
			return nil, &ConfigError{Network: f, Reason: "not a JSON object"}
		}
		typ, _ := p["type"].(string)
		if why := checkType(typ); why != "" {
			return nil, &ConfigError{Network: f, Field: "type", Reason: why}
		}
		out = append(out, p)
	}
	return out, nil
}
