package attach

import (
	"encoding/json"
	"fmt"

	"github.com/containernetworking/cni/libcni"

	"github.com/plexus-cni/plexus/agent/devices"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/selection"
)

// injectSelection returns the network with the selection's per-plugin keys
// written into every plugin of its config: cni-args merged into args.cni
// (the selection wins over the NAD), ipam-claim-reference alongside them.
// The selection's deviceID is injected by the devices step (injectDevice).
func injectSelection(net *resolve.Network, e *selection.Element) (*resolve.Network, error) {
	cniArgs := e.CNIArgs
	if e.IPAMClaimReference != "" {
		cniArgs = make(map[string]any, len(e.CNIArgs)+1)
		for k, v := range e.CNIArgs {
			cniArgs[k] = v
		}
		cniArgs["ipam-claim-reference"] = e.IPAMClaimReference
	}
	if len(cniArgs) == 0 {
		return net, nil
	}
	return withPlugins(net, func(plugin map[string]any) error {
		args, _ := plugin["args"].(map[string]any)
		if args == nil {
			if _, present := plugin["args"]; present {
				return fmt.Errorf("plugin %v: \"args\" is not an object", plugin["type"])
			}
			args = map[string]any{}
		}
		cni, _ := args["cni"].(map[string]any)
		if cni == nil {
			cni = map[string]any{}
		}
		for k, v := range cniArgs {
			cni[k] = v
		}
		args["cni"] = cni
		plugin["args"] = args
		return nil
	})
}

// injectDevice returns the network with deviceID written into every plugin
// of its config, as Multus does for the top-level one, and pciBusID too
// when the device is a PCI address (the key older SR-IOV plugins read).
func injectDevice(net *resolve.Network, deviceID string) (*resolve.Network, error) {
	return withPlugins(net, func(plugin map[string]any) error {
		plugin["deviceID"] = deviceID
		if devices.IsPCIAddress(deviceID) {
			plugin["pciBusID"] = deviceID
		}
		return nil
	})
}

// withPlugins returns a copy of net whose config has fn applied to every
// plugin object.
func withPlugins(net *resolve.Network, fn func(map[string]any) error) (*resolve.Network, error) {
	list, err := mapPlugins(net.Config, fn)
	if err != nil {
		return nil, err
	}
	out := *net
	out.Config = list
	return &out, nil
}

// mapPlugins applies fn to every plugin object of list and returns the
// re-parsed list.
func mapPlugins(list *libcni.NetworkConfigList, fn func(map[string]any) error) (*libcni.NetworkConfigList, error) {
	var raw map[string]any
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return nil, fmt.Errorf("decode config of %s: %w", list.Name, err)
	}
	plugins, _ := raw["plugins"].([]any)
	for _, p := range plugins {
		pm, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("config of %s: plugin is not an object", list.Name)
		}
		if err := fn(pm); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("encode config of %s: %w", list.Name, err)
	}
	out, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("re-parse config of %s: %w", list.Name, err)
	}
	return out, nil
}
