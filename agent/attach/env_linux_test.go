package attach_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/agent/source/local"
	"github.com/plexus-cni/plexus/internal/cnitest"
)

// env is one agent core over real plugins, with its own manifests, conf
// dir, IPAM data dir and uniquely named bridges.
type env struct {
	t         *testing.T
	dir       string
	manifests string
	confDir   string
	ipamDir   string
	plugins   string
	records   *record.Store
	mgr       *attach.Manager
	prefix    string
}

var envSeq atomic.Int32

// newEnv builds an env whose cluster network is a bridge + host-local
// conflist of the given CNI version; mutate may change the Manager's options.
func newEnv(t *testing.T, clusterVersion string, mutate ...func(*attach.Options)) *env {
	t.Helper()
	cnitest.RequireRoot(t)
	e := &env{t: t, dir: t.TempDir(), plugins: cnitest.PluginDir(t)}
	e.prefix = fmt.Sprintf("pxt%d", envSeq.Add(1))
	e.manifests = filepath.Join(e.dir, "manifests")
	e.confDir = filepath.Join(e.dir, "net.d")
	e.ipamDir = filepath.Join(e.dir, "ipam")
	for _, d := range []string{e.manifests, e.confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.writeFile(filepath.Join(e.confDir, "10-cluster.conflist"), fmt.Sprintf(
		`{"cniVersion":%q,"name":"cluster","plugins":[{"type":"bridge","bridge":"%s","isGateway":true,"ipam":{"type":"host-local","subnet":"10.%d.0.0/24","routes":[{"dst":"0.0.0.0/0"}],"dataDir":%q}},{"type":"portmap","capabilities":{"portMappings":true},"snat":false}]}`,
		clusterVersion, e.bridge("c"), 100+envSeq.Load(), e.ipamDir))
	var err error
	e.records, err = record.Open(filepath.Join(e.dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	dir := &local.Dir{Path: e.manifests}
	opts := attach.Options{
		Config:   attach.Config{ClusterNetwork: "cluster", BinDirs: []string{e.plugins}},
		Pods:     dir,
		Resolver: &resolve.Resolver{NADs: dir, ConfDir: e.confDir},
		Records:  e.records,
		CacheDir: filepath.Join(e.dir, "cache"),
	}
	for _, m := range mutate {
		m(&opts)
	}
	e.mgr, err = attach.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanupLinks)
	return e
}

// bridge returns a bridge name unique to this env.
func (e *env) bridge(suffix string) string { return e.prefix + suffix }

func (e *env) cleanupLinks() {
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if strings.HasPrefix(l.Name(), e.prefix) {
			runIP("link", "del", l.Name())
		}
	}
}

func (e *env) writeFile(path, content string) {
	e.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// nad writes a NetworkAttachmentDefinition manifest.
func (e *env) nad(namespace, name, config string) {
	e.t.Helper()
	doc := map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"config": config},
	}
	data, _ := json.Marshal(doc)
	e.writeFile(filepath.Join(e.manifests, "nad-"+namespace+"-"+name+".json"), string(data))
}

// pod writes a Pod manifest with the given annotations.
func (e *env) pod(namespace, name string, annotations map[string]string) {
	e.t.Helper()
	doc := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": namespace, "annotations": annotations}}
	data, _ := json.Marshal(doc)
	e.writeFile(filepath.Join(e.manifests, "pod-"+namespace+"-"+name+".json"), string(data))
}

// bridgeNAD writes a NAD for a bridge + host-local network.
func (e *env) bridgeNAD(namespace, name, cniVersion, subnet string) {
	e.nad(namespace, name, fmt.Sprintf(`{"cniVersion":%q,"type":"bridge","bridge":%q,"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}`,
		cniVersion, e.bridge(name[:min(len(name), 4)]), subnet, e.ipamDir))
}

// call runs one verb through the core as the shim would forward it.
type call struct {
	verb        attach.Verb
	containerID string
	netns       string
	pod         string // ns/name
	cniVersion  string
	ifname      string
	extraConf   map[string]any
}

func (e *env) do(c call) ([]byte, error) {
	e.t.Helper()
	if c.cniVersion == "" {
		c.cniVersion = "1.1.0"
	}
	if c.ifname == "" {
		c.ifname = "eth0"
	}
	conf := map[string]any{"cniVersion": c.cniVersion, "name": "plexus", "type": "plexus"}
	for k, v := range c.extraConf {
		conf[k] = v
	}
	data, _ := json.Marshal(conf)
	args := "IgnoreUnknown=1"
	if c.pod != "" {
		ns, name, _ := strings.Cut(c.pod, "/")
		args += ";K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + name
	}
	return e.mgr.Handle(context.Background(), &attach.Request{
		Verb: c.verb, ContainerID: c.containerID, Netns: c.netns, IfName: c.ifname,
		Args: args, Path: []string{e.plugins}, Config: data,
	})
}

func (e *env) add(id string, n ns.NetNS, pod string) []byte {
	e.t.Helper()
	out, err := e.do(call{verb: attach.VerbAdd, containerID: id, netns: n.Path(), pod: pod})
	if err != nil {
		e.t.Fatalf("ADD %s: %v", pod, err)
	}
	return out
}

func (e *env) del(id string, n ns.NetNS, pod string) {
	e.t.Helper()
	if _, err := e.do(call{verb: attach.VerbDel, containerID: id, netns: n.Path(), pod: pod}); err != nil {
		e.t.Fatalf("DEL %s: %v", pod, err)
	}
}

// addPod writes pod default/p selecting networks and ADDs it as container
// c in a new namespace.
func (e *env) addPod(networks string) ns.NetNS {
	e.t.Helper()
	e.pod("default", "p", map[string]string{source.NetworksAnnotation: networks})
	n := cnitest.NewNS(e.t)
	e.add("c", n, "default/p")
	return n
}

// delPod DELs container c of pod default/p and asserts nothing is left.
func (e *env) delPod(n ns.NetNS) {
	e.t.Helper()
	e.del("c", n, "default/p")
	e.assertClean(n)
}

// wantRefused asserts ADD of pod fails with code and an error naming each
// of names, leaving nothing behind.
func wantRefused(t *testing.T, e *env, pod string, code uint, names ...string) {
	t.Helper()
	n := cnitest.NewNS(t)
	_, err := e.do(call{verb: attach.VerbAdd, containerID: "refused", netns: n.Path(), pod: pod})
	if err == nil {
		t.Fatalf("ADD %s succeeded, want it refused", pod)
	}
	if c := cniCode(err); c != code {
		t.Errorf("ADD %s: code %d, want %d (%v)", pod, c, code, err)
	}
	for _, s := range names {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ADD %s: error %q does not name %s", pod, err, s)
		}
	}
	e.assertClean(n)
}

// allocations lists host-local allocations (files named after IPs).
func (e *env) allocations() []string {
	var out []string
	filepath.Walk(e.ipamDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasPrefix(info.Name(), "last_reserved_ip") && info.Name() != "lock" {
			out = append(out, strings.TrimPrefix(p, e.ipamDir))
		}
		return nil
	})
	return out
}

// assertClean fails unless no record, no allocation and no link inside n
// besides lo remain.
func (e *env) assertClean(n ns.NetNS) {
	e.t.Helper()
	if recs, damaged, err := e.records.List(); err != nil || len(recs) != 0 || len(damaged) != 0 {
		e.t.Errorf("records left: %d, damaged %d (%v)", len(recs), len(damaged), err)
	}
	if a := e.allocations(); len(a) != 0 {
		e.t.Errorf("IP allocations left: %v", a)
	}
	if n != nil {
		if links := sandboxLinks(e.t, n); len(links) != 0 {
			e.t.Errorf("links left in pod namespace: %v", links)
		}
	}
}

// sandboxLinks returns the interface names in n other than lo.
func sandboxLinks(t *testing.T, n ns.NetNS) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(cnitest.InNS(t, n, "-o", "link", "show")), "\n") {
		// A link is "N: name[@peer]: ..."; ip(8) may also print a warning
		// (e.g. about a peer's netns reference) on stderr, mixed in here.
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[0], ":") || strings.Trim(f[0], "0123456789") != ":" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "lo" {
			out = append(out, name)
		}
	}
	return out
}

// addrOf returns the IPv4 addresses (CIDR) of ifname in n.
func addrOf(t *testing.T, n ns.NetNS, ifname string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(cnitest.InNS(t, n, "-o", "-4", "addr", "show", "dev", ifname), "\n") {
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "inet" && i+1 < len(f) {
				out = append(out, f[i+1])
			}
		}
	}
	return out
}

func runIP(args ...string) {
	exec.Command("ip", args...).Run()
}

// cniCode returns the CNI error code of err.
func cniCode(err error) uint {
	return attach.ToCNIError(err).Code
}
