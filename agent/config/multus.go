package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// MultusKey is a Multus configuration key (the thick daemon's
// daemon-config.json or a 00-multus.conf) and what Plexus makes of it.
type MultusKey struct {
	// Key is Multus' spelling.
	Key string
	// Plexus is the Plexus key it sets, dotted for nested keys
	// ("cniConf.readinessIndicatorFile"); empty when Plexus has no
	// such setting and the key is refused.
	Plexus string
	// Convert turns Multus' value (as JSON decodes it, numbers as
	// json.Number) into the Plexus value; nil keeps it as is.
	Convert func(v any) (any, error)
	// Note says, for an alias, how the meaning differs from Multus' and,
	// for a refused key, why Plexus has no such setting.
	Note string
}

// Refused reports whether Plexus has no setting for the key.
func (k MultusKey) Refused() bool { return k.Plexus == "" }

// Same reports whether the key means in Plexus what it means in Multus
// under the same name.
func (k MultusKey) Same() bool { return k.Plexus == k.Key }

// Value converts a Multus value to the Plexus one.
func (k MultusKey) Value(v any) (any, error) {
	if k.Convert == nil {
		return v, nil
	}
	return k.Convert(v)
}

const logNote = "the agent logs structured lines to stderr, collected by the container runtime; `plexus-agent run -v` logs debug lines"

// MultusKeys is every key of Multus' configuration (pkg/types NetConf,
// pkg/server ControllerNetConf and the config generator's MultusConf), in
// precedence order: of two aliases for one Plexus key, migrate keeps the
// first.
var MultusKeys = []MultusKey{
	// Same name, same meaning.
	{Key: "clusterNetwork", Plexus: "clusterNetwork"},
	{Key: "defaultNetworks", Plexus: "defaultNetworks"},
	{Key: "systemNamespaces", Plexus: "systemNamespaces"},
	{Key: "namespaceIsolation", Plexus: "namespaceIsolation"},
	{Key: "auxiliaryCNIChainName", Plexus: "auxiliaryCNIChainName"},
	{Key: "globalNamespaces", Plexus: "globalNamespaces", Convert: commaList,
		Note: "Multus' comma-separated string read as a list"},

	// Aliases.
	{Key: "multusNamespace", Plexus: "systemNamespace"},
	{Key: "readinessindicatorfile", Plexus: "cniConf.readinessIndicatorFile",
		Note: "this also turns on generation of the runtime's conflist (cniConf)"},
	{Key: "multusConfigFile", Plexus: "cniConf", Convert: autoConfig,
		Note: `"auto": plexus generates its conflist from the primary configuration`},
	{Key: "cniConfigDir", Plexus: "cniConfDir",
		Note: "plexus writes its conflist, finds the primary and looks delegates up by name in this one directory"},
	{Key: "multusAutoconfigDir", Plexus: "cniConfDir",
		Note: "plexus writes its conflist, finds the primary and looks delegates up by name in this one directory"},
	{Key: "confDir", Plexus: "cniConfDir",
		Note: "plexus writes its conflist, finds the primary and looks delegates up by name in this one directory"},
	{Key: "binDir", Plexus: "binDirs", Convert: pathList,
		Note: "plexus searches only these directories, not the runtime's CNI_PATH after them"},
	{Key: "kubeconfig", Plexus: "kubernetes.kubeconfig"},
	{Key: "connectionLimit", Plexus: "maxConcurrent", Convert: positiveInt,
		Note: "requests beyond it wait, as connections beyond Multus' limit did"},
	{Key: "metricsPort", Plexus: "healthAddress", Convert: portAddress,
		Note: "serves /healthz and /readyz besides /metrics, on every address as Multus did"},

	// No Plexus setting.
	{Key: "socketDir", Note: "the Multus shim's socket: the plexus shim reaches the agent at `socket`, which the generated conflist names"},
	{Key: "daemonSocketDir", Note: "the Multus shim's socket: the plexus shim reaches the agent at `socket`, which the generated conflist names"},
	{Key: "chrootDir", Note: "plexus-agent runs delegates in its pod, with the host's CNI directories mounted at their host paths (deploy/), never in a chroot"},
	{Key: "logFile", Note: logNote},
	{Key: "logLevel", Note: logNote},
	{Key: "logToStderr", Note: logNote},
	{Key: "logOptions", Note: logNote},
	{Key: "cniVersion", Note: "the generated conflist takes its cniVersion from the primary configuration"},
	{Key: "forceCNIVersion", Note: "the generated conflist takes its cniVersion from the primary configuration"},
	{Key: "overrideNetworkName", Note: `the generated conflist is always named "plexus"`},
	{Key: "capabilities", Note: "the generated conflist carries the primary configuration's capabilities"},
	{Key: "multusMasterCNI", Note: "plexus takes the first valid configuration by file name as the primary; name the cluster network in clusterNetwork"},
	{Key: "delegates", Note: "inline delegate configurations: put the cluster network's configuration in cniConfDir and name it in clusterNetwork"},
	{Key: "cniDir", Note: "Multus' cache of delegate configurations: plexus keeps attachment records and libcni's cache under stateDir"},
	{Key: "retryDeleteOnError", Note: "DEL always tries every delegate and returns all their errors"},
	{Key: "perNodeCertificate", Note: "the agent uses its ServiceAccount token; deploy/agent-policy.yaml confines its writes to its own node"},
	{Key: "enablePprof", Note: "plexus-agent serves no pprof endpoint"},
	{Key: "name", Note: "a key of Multus' own CNI configuration: agent.yaml is not one, plexus generates its own"},
	{Key: "type", Note: "a key of Multus' own CNI configuration: agent.yaml is not one, plexus generates its own"},
}

// LookupMultusKey returns the table's entry for a Multus key.
func LookupMultusKey(key string) (MultusKey, bool) {
	for _, k := range MultusKeys {
		if k.Key == key {
			return k, true
		}
	}
	return MultusKey{}, false
}

func commaList(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return v, nil // already a list, or wrong and refused by decoding
	}
	out := []any{}
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out, nil
}

func pathList(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("a directory path, not %s", describe(v))
	}
	var out []any
	for _, d := range filepath.SplitList(s) {
		out = append(out, d)
	}
	return out, nil
}

func autoConfig(v any) (any, error) {
	if v != "auto" {
		return nil, fmt.Errorf(`only "auto" has a plexus meaning: plexus generates its own conflist and never copies one in (not %s)`, describe(v))
	}
	return map[string]any{}, nil
}

func toInt(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("a number, not %s", describe(v))
	}
	i, err := strconv.Atoi(n.String())
	if err != nil {
		return 0, fmt.Errorf("an integer, not %s", n)
	}
	return i, nil
}

func positiveInt(v any) (any, error) {
	i, err := toInt(v)
	if err != nil {
		return nil, err
	}
	if i < 1 {
		return nil, fmt.Errorf("must be positive, not %d", i)
	}
	return json.Number(strconv.Itoa(i)), nil
}

func portAddress(v any) (any, error) {
	i, err := toInt(v)
	if err != nil {
		return nil, err
	}
	if i < 1 || i > 65535 {
		return nil, fmt.Errorf("not a port: %d", i)
	}
	return ":" + strconv.Itoa(i), nil
}

func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// SetPath sets the dotted key in doc to v, merging objects into objects
// already there. It fails when a leaf already holds a different value;
// the error names the key whose value is in the way.
func SetPath(doc map[string]any, key string, v any) error {
	parts := strings.Split(key, ".")
	for i, p := range parts[:len(parts)-1] {
		sub, ok := doc[p].(map[string]any)
		if !ok {
			if doc[p] != nil {
				return &conflictError{key: strings.Join(parts[:i+1], ".")}
			}
			sub = map[string]any{}
			doc[p] = sub
		}
		doc = sub
	}
	last := parts[len(parts)-1]
	old, set := doc[last]
	if om, ok := old.(map[string]any); ok {
		if nm, ok := v.(map[string]any); ok {
			for k, nv := range nm {
				if err := SetPath(om, k, nv); err != nil {
					var c *conflictError
					if errors.As(err, &c) {
						c.key = key + "." + c.key
					}
					return err
				}
			}
			return nil
		}
	}
	if set && !reflect.DeepEqual(old, v) {
		return &conflictError{key: key}
	}
	doc[last] = v
	return nil
}

type conflictError struct{ key string }

func (e *conflictError) Error() string { return e.key + " is already set to another value" }

// ConflictKey returns the key named by a SetPath conflict.
func ConflictKey(err error) (string, bool) {
	var c *conflictError
	if errors.As(err, &c) {
		return c.key, true
	}
	return "", false
}

// DecodeJSONObject decodes one JSON object keeping numbers as json.Number.
func DecodeJSONObject(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("data after the JSON object")
	}
	return doc, nil
}

// translateMultus rewrites the Multus keys of a configuration document
// (YAML or JSON) into Plexus keys. It returns data unchanged when there
// are none, the warnings for the aliases it used, and an error naming
// every refused key and every alias that disagrees with the key it sets.
func translateMultus(data []byte) ([]byte, []string, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return data, nil, nil // decoding reports it
	}
	doc, err := DecodeJSONObject(js)
	if err != nil || doc == nil {
		return data, nil, nil // not an object: decoding reports it
	}
	var warnings []string
	var errs []error
	changed := false
	setBy := map[string]string{}
	for _, k := range MultusKeys {
		v, ok := doc[k.Key]
		if !ok {
			continue
		}
		if k.Refused() {
			errs = append(errs, fmt.Errorf("%s: a Multus key plexus does not take: %s", k.Key, k.Note))
			continue
		}
		if k.Same() {
			nv, err := k.Value(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k.Key, err))
			} else if !reflect.DeepEqual(nv, v) {
				doc[k.Key] = nv
				changed = true
				warnings = append(warnings, fmt.Sprintf("%s: %s", k.Key, k.Note))
			}
			continue
		}
		nv, err := k.Value(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (Multus, for %s): %w", k.Key, k.Plexus, err))
			continue
		}
		delete(doc, k.Key)
		changed = true
		if err := SetPath(doc, k.Plexus, nv); err != nil {
			other, _ := ConflictKey(err)
			if by, ok := setBy[other]; ok {
				other = by
			}
			errs = append(errs, fmt.Errorf("%s and %s: both set, to different values (%s is Multus' name for %s)", k.Key, other, k.Key, k.Plexus))
			continue
		}
		setBy[k.Plexus] = k.Key
		w := fmt.Sprintf("%s: Multus' name, read as %s", k.Key, k.Plexus)
		if k.Note != "" {
			w += "; " + k.Note
		}
		warnings = append(warnings, w)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	if !changed {
		return data, nil, nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	return out, warnings, nil
}
