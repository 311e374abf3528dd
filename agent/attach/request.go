package attach

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/selection"
)

// Verb is a CNI command.
type Verb string

// The verbs the agent serves (VERSION is answered by the shim itself).
const (
	VerbAdd    Verb = "ADD"
	VerbDel    Verb = "DEL"
	VerbCheck  Verb = "CHECK"
	VerbStatus Verb = "STATUS"
	VerbGC     Verb = "GC"
)

// Request is one CNI invocation as the shim forwarded it.
type Request struct {
	Verb        Verb
	ContainerID string
	Netns       string
	IfName      string
	// Args is CNI_ARGS, unparsed.
	Args string
	// Path is CNI_PATH, split.
	Path []string
	// Config is the plexus network configuration from stdin.
	Config []byte
}

// pluginConf is the plexus network configuration as the runtime sends it.
type pluginConf struct {
	types.NetConf
	RuntimeConfig    map[string]any       `json:"runtimeConfig,omitempty"`
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
}

// invocation is a validated request.
type invocation struct {
	*Request
	conf pluginConf
	args [][2]string
	pod  selection.PodRef
}

// SplitPath splits a CNI_PATH value.
func SplitPath(p string) []string {
	return filepath.SplitList(p)
}

// validate checks what every verb needs and what each verb requires by the
// CNI spec, and parses config and args.
func validate(req *Request) (*invocation, error) {
	inv := &invocation{Request: req}
	if err := json.Unmarshal(req.Config, &inv.conf); err != nil {
		return nil, withCode(CodeDecodeFailure, fmt.Errorf("decode plexus network configuration: %w", err))
	}
	if inv.conf.CNIVersion == "" {
		return nil, withCode(CodeInvalidConfig, fmt.Errorf("plexus network configuration has no cniVersion"))
	}
	if !isSupportedVersion(inv.conf.CNIVersion) {
		return nil, withCode(CodeIncompatibleVersion, fmt.Errorf("plexus network configuration has cniVersion %q; supported: %s", inv.conf.CNIVersion, strings.Join(version.All.SupportedVersions(), ", ")))
	}
	switch req.Verb {
	case VerbAdd, VerbDel, VerbCheck:
		if !record.ValidContainerID(req.ContainerID) {
			return nil, withCode(CodeInvalidEnv, fmt.Errorf("CNI_CONTAINERID %q is empty or not a valid container ID", req.ContainerID))
		}
		if why := selection.ValidIfName(req.IfName); why != "" {
			return nil, withCode(CodeInvalidEnv, fmt.Errorf("CNI_IFNAME: %s", why))
		}
		if req.Verb != VerbDel && req.Netns == "" {
			return nil, withCode(CodeInvalidEnv, fmt.Errorf("CNI_NETNS is required for %s", req.Verb))
		}
	case VerbStatus, VerbGC:
	default:
		return nil, withCode(CodeInvalidEnv, fmt.Errorf("unknown CNI command %q", req.Verb))
	}
	if req.Verb == VerbCheck {
		if ok, _ := version.GreaterThanOrEqualTo(inv.conf.CNIVersion, "0.4.0"); !ok {
			return nil, withCode(CodeIncompatibleVersion, fmt.Errorf("CHECK needs cniVersion 0.4.0 or later, the configuration has %s", inv.conf.CNIVersion))
		}
	}
	if req.Verb == VerbStatus || req.Verb == VerbGC {
		if ok, _ := version.GreaterThanOrEqualTo(inv.conf.CNIVersion, "1.1.0"); !ok {
			return nil, withCode(CodeIncompatibleVersion, fmt.Errorf("%s needs cniVersion 1.1.0 or later, the configuration has %s", req.Verb, inv.conf.CNIVersion))
		}
	}
	args, err := parseArgs(req.Args)
	if err != nil {
		return nil, withCode(CodeInvalidEnv, err)
	}
	inv.args = args
	for _, kv := range args {
		switch kv[0] {
		case "K8S_POD_NAMESPACE":
			inv.pod.Namespace = kv[1]
		case "K8S_POD_NAME":
			inv.pod.Name = kv[1]
		}
	}
	return inv, nil
}

func isSupportedVersion(v string) bool {
	for _, s := range version.All.SupportedVersions() {
		if s == v {
			return true
		}
	}
	return false
}

// parseArgs parses CNI_ARGS: "K1=V1;K2=V2".
func parseArgs(s string) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	var out [][2]string
	for _, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("CNI_ARGS: %q is not KEY=VALUE", pair)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func (inv *invocation) podUID() string {
	for _, kv := range inv.args {
		if kv[0] == "K8S_POD_UID" {
			return kv[1]
		}
	}
	return ""
}
