// Command cniexec plays the container runtime's part for the demo, the
// tests and the benchmark: it loads the first network configuration in a
// CNI conf dir (as containerd does) and runs one CNI verb through libcni,
// which execs the plugin (the plexus shim) the way a runtime does.
//
//	cniexec -conf-dir D -bin-dir B add|del|check -netns PATH -container ID -pod NS/NAME
//	cniexec -conf-dir D -bin-dir B status
//	cniexec -conf-dir D -bin-dir B gc -valid ID[,ID...]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cniexec:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("cniexec", flag.ContinueOnError)
	confDir := fs.String("conf-dir", "/etc/cni/net.d", "CNI configuration directory")
	binDir := fs.String("bin-dir", "/opt/cni/bin", "CNI plugin directories, colon-separated")
	cacheDir := fs.String("cache-dir", "/var/lib/cni", "libcni cache directory of this runtime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("missing verb (add, del, check, status, gc)")
	}
	verb := fs.Arg(0)
	vfs := flag.NewFlagSet(verb, flag.ContinueOnError)
	netns := vfs.String("netns", "", "network namespace path")
	container := vfs.String("container", "", "container ID")
	pod := vfs.String("pod", "", "pod namespace/name (passed as K8S_POD_* CNI_ARGS)")
	ifname := vfs.String("ifname", "eth0", "interface name")
	valid := vfs.String("valid", "", "gc: comma-separated container IDs still valid (with -ifname)")
	if err := vfs.Parse(fs.Args()[1:]); err != nil {
		return err
	}
	list, err := firstConfList(*confDir)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(*binDir), *cacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: *container, NetNS: *netns, IfName: *ifname}
	if *pod != "" {
		ns, name, ok := strings.Cut(*pod, "/")
		if !ok {
			return fmt.Errorf("-pod must be namespace/name")
		}
		rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", ns}, {"K8S_POD_NAME", name}, {"K8S_POD_INFRA_CONTAINER_ID", *container}}
	}
	ctx := context.Background()
	switch verb {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(res)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "status":
		return cni.GetStatusNetworkList(ctx, list)
	case "gc":
		var atts []types.GCAttachment
		for _, id := range strings.Split(*valid, ",") {
			if id != "" {
				atts = append(atts, types.GCAttachment{ContainerID: id, IfName: *ifname})
			}
		}
		return cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: atts})
	default:
		return fmt.Errorf("unknown verb %q", verb)
	}
}

// firstConfList picks the configuration a runtime would: the first file by
// name.
func firstConfList(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist", ".conf"})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no CNI configuration in %s", dir)
	}
	return libcni.NetworkConfFromFile(files[0])
}
