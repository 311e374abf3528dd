// Package migrate turns a Multus configuration — the thick daemon's
// daemon-config.json or the thin plugin's 00-multus.conf(list) — into the
// equivalent plexus-agent configuration. What a key becomes is
// config.MultusKeys' word; this package adds only what needs the whole
// file: the cluster network from `delegates` or `multusMasterCNI`, Multus'
// default global namespace, and paths as the Multus pod saw them.
package migrate

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/plexus-cni/plexus/agent/config"
)

// Note is what happened to one Multus key.
type Note struct {
	// Key is the Multus key (delegates[1] for an element).
	Key string
	// Carried is false when the key has no place in the output.
	Carried bool
	Msg     string
}

func (n Note) String() string {
	if n.Carried {
		return fmt.Sprintf("converted %s: %s", n.Key, n.Msg)
	}
	return fmt.Sprintf("not carried %s: %s", n.Key, n.Msg)
}

// Result is a migrated configuration.
type Result struct {
	// YAML is the agent.yaml.
	YAML []byte
	// Notes name every key not carried as is, in config.MultusKeys'
	// order, then the unknown keys sorted.
	Notes []Note
}

// hostPrefix is where Multus' thick DaemonSet mounts the host's
// directories; plexus-agent mounts them at their host paths.
const hostPrefix = "/host/"

// pathKeys hold paths (or, for clusterNetwork, maybe a path).
var pathKeys = map[string]bool{
	"confDir": true, "cniConfigDir": true, "multusAutoconfigDir": true, "binDir": true,
	"readinessindicatorfile": true, "kubeconfig": true, "clusterNetwork": true,
}

// FromMultus migrates the Multus configuration data; name is used in
// errors. It fails only when data is not a JSON object.
func FromMultus(data []byte, name string) (*Result, error) {
	doc, err := config.DecodeJSONObject(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("multus config %s: %w", name, err)
	}
	if doc == nil {
		return nil, fmt.Errorf("multus config %s: not a JSON object", name)
	}
	var notes []Note
	note := func(key string, carried bool, format string, args ...any) {
		notes = append(notes, Note{Key: key, Carried: carried, Msg: fmt.Sprintf(format, args...)})
	}
	// A 00-multus.conflist: Multus' keys are in its multus plugin.
	if plugins, ok := doc["plugins"].([]any); ok {
		var found map[string]any
		for _, p := range plugins {
			if pm, ok := p.(map[string]any); ok && isMultusType(pm["type"]) {
				found = pm
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("multus config %s: a conflist without a multus plugin", name)
		}
		for k := range doc {
			if k != "plugins" {
				note(k, false, "a key of the Multus conflist itself: plexus generates its own")
			}
		}
		doc = found
	}

	out := map[string]any{}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Table order, so that of two aliases for one key the first wins.
	for _, mk := range config.MultusKeys {
		v, ok := doc[mk.Key]
		if !ok {
			continue
		}
		if mk.Refused() {
			notes = append(notes, refused(mk, v, doc, out)...)
			continue
		}
		var host string // the Multus pod's path for a host one
		if s, ok := v.(string); ok && pathKeys[mk.Key] && strings.HasPrefix(s, hostPrefix) {
			host, v = s, "/"+strings.TrimPrefix(s, hostPrefix)
		}
		if mk.Key == "kubeconfig" {
			if s, _ := v.(string); strings.HasSuffix(s, "/multus.d/multus.kubeconfig") {
				note(mk.Key, false, "%s is the kubeconfig Multus' entrypoint wrote for Multus' ServiceAccount: plexus-agent uses its own (in-cluster)", s)
				continue
			}
		}
		if mk.Key == "confDir" {
			// Multus looked delegates up in confDir and wrote its own conf
			// for the runtime elsewhere; plexus does both in cniConfDir.
			dir, _ := out["cniConfDir"].(string)
			if dir == "" {
				dir = config.DefaultCNIConfDir
			}
			if v != dir {
				note(mk.Key, false, "Multus looked delegate confs up by name in %v; plexus looks in cniConfDir (%s), where it also writes its conflist for the runtime: "+
					"move them there, or reference them by NAD or file path", v, dir)
				continue
			}
		}
		nv, err := mk.Value(v)
		if err != nil {
			note(mk.Key, false, "%v", err)
			continue
		}
		if err := config.SetPath(out, mk.Plexus, nv); err != nil {
			note(mk.Key, false, "%s is already set from another key to a different value, kept", mk.Plexus)
			continue
		}
		var msg []string
		if !mk.Same() {
			msg = append(msg, "as "+mk.Plexus)
		}
		if host != "" {
			msg = append(msg, fmt.Sprintf("%s is the Multus pod's view of the host's %s, where plexus-agent mounts it (deploy/)", host, v))
		}
		if mk.Note != "" && (!mk.Same() || mk.Convert != nil) {
			msg = append(msg, mk.Note)
		}
		if len(msg) > 0 {
			note(mk.Key, true, "%s", strings.Join(msg, "; "))
		}
	}
	for _, k := range keys {
		if _, ok := config.LookupMultusKey(k); !ok && k != "plugins" {
			note(k, false, "not a Multus key plexus knows")
		}
	}

	// Multus lets any pod use NADs of "default" under namespace isolation
	// unless globalNamespaces says otherwise; plexus only those listed.
	if iso, _ := out["namespaceIsolation"].(bool); iso {
		if _, ok := out["globalNamespaces"]; !ok {
			out["globalNamespaces"] = []any{"default"}
			note("globalNamespaces", true, `unset: Multus' default "default" written out (plexus has no default global namespace)`)
		}
	}
	// Multus generated its CNI configuration by default (the thick
	// daemon's multusConfigFile "auto", the thin entrypoint's
	// --multus-conf-file=auto); plexus does when cniConf is set.
	if _, ok := out["cniConf"]; !ok {
		if _, ok := doc["multusConfigFile"]; !ok {
			out["cniConf"] = map[string]any{}
			note("cniConf", true, "set: plexus generates its conflist in cniConfDir from the primary configuration, as Multus' daemon or entrypoint did")
		}
	}
	if _, ok := out["clusterNetwork"]; !ok {
		if _, gen := out["cniConf"]; gen {
			note("clusterNetwork", true, "unset, as in Multus' auto mode: the cluster network is the primary configuration cniConf follows (the first valid conf by file name in cniConfDir)")
		} else {
			note("clusterNetwork", false, "neither clusterNetwork, delegates nor multusMasterCNI names the cluster network, and no conflist is generated to follow the primary: "+
				"set clusterNetwork to the primary network's name (the \"name\" in its conf in cniConfDir), a NAD or a conf file path")
			out["clusterNetwork"] = ""
		}
	}

	body, err := yaml.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("multus config %s: %w", name, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# plexus-agent configuration (docs/agent-config.md), migrated from the Multus\n# configuration %s by `plexus-agent migrate`.\n", filepath.Base(name))
	b.Write(body)
	return &Result{YAML: b.Bytes(), Notes: notes}, nil
}

func isMultusType(t any) bool { return t == "multus" || t == "multus-shim" }

// refused notes a key with no plexus setting, turning the two that name
// the cluster network into clusterNetwork when nothing else does.
func refused(mk config.MultusKey, v any, doc, out map[string]any) []Note {
	_, clusterSet := doc["clusterNetwork"]
	switch mk.Key {
	case "delegates":
		ds, _ := v.([]any)
		var notes []Note
		for i, d := range ds {
			key := fmt.Sprintf("delegates[%d]", i)
			dm, _ := d.(map[string]any)
			n, _ := dm["name"].(string)
			switch {
			case i == 0 && !clusterSet && n != "":
				out["clusterNetwork"] = n
				notes = append(notes, Note{Key: key, Carried: true, Msg: fmt.Sprintf("as clusterNetwork %q, looked up by name in cniConfDir: "+
					"the primary's own conf must be there (Multus' entrypoint leaves it; restore it if it was renamed *.old)", n)})
			case i == 0 && !clusterSet:
				notes = append(notes, Note{Key: key, Msg: "the cluster network's inline conf has no name: put it in cniConfDir and name it in clusterNetwork"})
			case clusterSet:
				notes = append(notes, Note{Key: key, Msg: "ignored by Multus too, clusterNetwork is set"})
			default:
				notes = append(notes, Note{Key: key, Msg: fmt.Sprintf("an inline conf (%q) attached to every pod: make it a NAD and list it in defaultNetworks", n)})
			}
		}
		return notes
	case "multusMasterCNI":
		s, _ := v.(string)
		if !clusterSet && s != "" && doc["delegates"] == nil {
			dir, _ := doc["multusAutoconfigDir"].(string)
			if dir == "" {
				dir = config.DefaultCNIConfDir
			}
			if strings.HasPrefix(dir, hostPrefix) {
				dir = "/" + strings.TrimPrefix(dir, hostPrefix)
			}
			p := filepath.Join(dir, s)
			out["clusterNetwork"] = p
			return []Note{{Key: mk.Key, Carried: true, Msg: fmt.Sprintf("as clusterNetwork %s, the primary's conf file", p)}}
		}
	}
	return []Note{{Key: mk.Key, Msg: mk.Note}}
}
