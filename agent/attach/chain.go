package attach

import (
	"encoding/json"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/plexus-cni/plexus/agent/resolve"
)

// auxiliaryChain is Config.AuxiliaryCNIChainName as a network of its own:
// the .conf plugins of <ConfDir>/<name>/ in a list of that name, at the
// cluster network's cniVersion; nil when unset or the directory has none.
// It is its own attachment (own libcni cache entry, own record entry), so
// a plugin there cannot change the cluster network's result, and DEL runs
// it from the record like any other.
func (m *Manager) auxiliaryChain(cniVersion string) (*resolve.Network, error) {
	name := m.cfg.AuxiliaryCNIChainName
	if name == "" {
		return nil, nil
	}
	plugins, err := resolve.ChainPlugins(m.cfg.ConfDir, name)
	if err != nil {
		return nil, withCode(CodeInvalidConfig, fmt.Errorf("auxiliary CNI chain %s: %w", name, err))
	}
	if len(plugins) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(map[string]any{"cniVersion": cniVersion, "name": name, "plugins": plugins})
	if err != nil {
		return nil, fmt.Errorf("auxiliary CNI chain %s: %w", name, err)
	}
	list, err := resolve.Parse("auxiliary chain "+name, data, "")
	if err != nil {
		return nil, withCode(CodeInvalidConfig, err)
	}
	return &resolve.Network{Name: name, Config: list}, nil
}

// withPrevResult returns list with prev, in the list's cniVersion, as its
// first plugin's prevResult. The auxiliary chain's plugins (tuning,
// portmap, ...) are meant to follow another plugin; the cluster network's
// result is the one they follow. Multus feeds them an empty result from a
// passthru plugin instead, which tuning, needing the interface, cannot use.
func withPrevResult(list *libcni.NetworkConfigList, prev types.Result) (*libcni.NetworkConfigList, error) {
	conv, err := prev.GetAsVersion(list.CNIVersion)
	if err != nil {
		return nil, fmt.Errorf("convert the cluster network's result to cniVersion %s: %w", list.CNIVersion, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return nil, err
	}
	plugins, _ := raw["plugins"].([]any)
	if len(plugins) == 0 {
		return list, nil
	}
	first, _ := plugins[0].(map[string]any)
	if first == nil {
		return list, nil
	}
	first["prevResult"] = conv
	data, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(data)
}
