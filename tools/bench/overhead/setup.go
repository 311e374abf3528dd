package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/plexus-cni/plexus/agent/app"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/server"
	"github.com/plexus-cni/plexus/internal/childproc"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

// Names of everything the benchmark creates on the host. They are exact
// names, never prefixes to match: other tests on the same machine use
// similar ones (pxblue0, pxcbr0), and cleanup must not touch those.
const (
	uplink     = "pxbench-up0" // macvlan master (one end of a veth pair)
	uplinkPeer = "pxbench-up1"
	bridge0    = "pxbench-br0" // eth0, the cluster network
	bridge1    = "pxbench-br1" // net1
	netnsPref  = "pxbench-"    // + pid + pod number
	podNS      = "pxbench"
	podName    = "bench"
)

// Subnets of the three networks; DEL after every ADD keeps them from filling.
var subnets = []string{"10.251.0.0/24", "10.251.1.0/24", "10.251.2.0/24"}

// burstSubnets are the burst's two networks (eth0, net1): all its pods are
// attached at once, so each needs room for -burst addresses.
var burstSubnets = []string{"10.251.16.0/20", "10.251.32.0/20"}

// env is the benchmark's world: the scratch dir, the host links, the agent
// processes, and the namespaces still alive.
type env struct {
	o        *options
	dir      string
	ownDir   bool
	runtime  *libcni.CNIConfig
	lists    []*libcni.NetworkConfigList // eth0, net1[, net2]
	ifnames  []string
	subnets  []string
	metrics  string // the agent's healthAddress, in burst mode
	agentCmd *exec.Cmd
	agent    *childproc.Process
	agentLog *os.File
	cancels  []func()
	netns    map[string]bool
}

func setUp(o *options) (*env, error) {
	e := &env{o: o, dir: o.workDir, ifnames: []string{"eth0", "net1", "net2"}, subnets: subnets, netns: map[string]bool{}}
	if o.burst > 0 {
		// The burst's pod: eth0 and one NAD, both bridge + host-local.
		e.ifnames, e.subnets = e.ifnames[:2], burstSubnets
		addr, err := freeLocalPort()
		if err != nil {
			return nil, err
		}
		e.metrics = addr
	}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "pxbench-")
		if err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		e.dir, e.ownDir = d, true
	}
	if err := e.writeFiles(); err != nil {
		e.tearDown()
		return nil, err
	}
	if err := e.createUplink(); err != nil {
		e.tearDown()
		return nil, err
	}
	return e, nil
}

// delegateConfs are the delegate conflists (three, or the burst's first
// two), shared byte for byte by the direct path and the agent (cluster conf
// file and NADs).
func (e *env) delegateConfs() []string {
	ipam := func(subnet string, route bool) map[string]any {
		m := map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": subnet}}}, "dataDir": filepath.Join(e.dir, "ipam")}
		if route {
			m["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
		}
		return m
	}
	lists := []map[string]any{
		{"cniVersion": "1.1.0", "name": "pxbench-cluster", "plugins": []any{map[string]any{"type": "bridge", "bridge": bridge0, "isGateway": true, "ipam": ipam(e.subnets[0], true)}}},
		{"cniVersion": "1.1.0", "name": "pxbench-blue", "plugins": []any{map[string]any{"type": "bridge", "bridge": bridge1, "ipam": ipam(e.subnets[1], false)}}},
	}
	if len(e.subnets) > 2 {
		lists = append(lists, map[string]any{"cniVersion": "1.1.0", "name": "pxbench-mv", "plugins": []any{map[string]any{"type": "macvlan", "master": uplink, "mode": "bridge", "ipam": ipam(e.subnets[2], false)}}})
	}
	out := make([]string, len(lists))
	for i, l := range lists {
		b, _ := json.Marshal(l) // plain maps and strings cannot fail
		out[i] = string(b)
	}
	return out
}

func (e *env) writeFiles() error {
	confs := e.delegateConfs()
	nad := func(name, conf string) string {
		return fmt.Sprintf("apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  config: '%s'\n", name, podNS, conf)
	}
	files := map[string]string{
		"agent/net.d/10-pxbench-cluster.conflist": confs[0],
		"agent/agent.yaml":                        e.agentConfig("agent"),
		"runtime/net.d/00-plexus.conflist":        plexusConf(filepath.Join(e.dir, "agent", "agent.sock")),
	}
	if e.o.burst > 0 {
		files["agent/manifests/nads.yaml"] = nad("blue", confs[1])
		files["agent/manifests/pods.yaml"] = burstPods(e.o.burst)
	} else {
		files["agent/manifests/nads.yaml"] = nad("blue", confs[1]) + "---\n" + nad("mv", confs[2])
		files["agent/manifests/pod.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  uid: 5e0b1c9e-0000-4000-8000-00000000beef\n  annotations:\n    k8s.v1.cni.cncf.io/networks: '[{\"name\":\"blue\"},{\"name\":\"mv\"}]'\n", podName, podNS)
		files["inproc/agent.yaml"] = e.agentConfig("inproc")
		files["runtime/net.d-inproc/00-plexus.conflist"] = plexusConf(filepath.Join(e.dir, "inproc", "agent.sock"))
	}
	for name, data := range files {
		p := filepath.Join(e.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	e.lists = make([]*libcni.NetworkConfigList, len(confs))
	for i, c := range confs {
		l, err := libcni.NetworkConfFromBytes([]byte(c))
		if err != nil {
			return fmt.Errorf("parse delegate config %d: %w", i, err)
		}
		e.lists[i] = l
	}
	// The runtime's CNI_PATH: the shim's dir, then the reference plugins,
	// as a node's /opt/cni/bin holds both. One libcni config serves both
	// paths so their exec and cache handling are identical.
	binDir := filepath.Join(e.dir, "runtime", "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("create runtime bin dir: %w", err)
	}
	shim, err := filepath.Abs(e.o.shim)
	if err != nil {
		return fmt.Errorf("shim path: %w", err)
	}
	if err := os.Symlink(shim, filepath.Join(binDir, "plexus")); err != nil {
		return fmt.Errorf("link shim into runtime bin dir: %w", err)
	}
	e.runtime = libcni.NewCNIConfigWithCacheDir([]string{binDir, e.o.plugins}, filepath.Join(e.dir, "runtime", "cache"), nil)
	return nil
}

func (e *env) agentConfig(sub string) string {
	d := filepath.Join(e.dir, sub)
	c := fmt.Sprintf("socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: pxbench-cluster\nlocal:\n  manifestsDir: %s\n",
		filepath.Join(d, "agent.sock"), filepath.Join(d, "state"), filepath.Join(e.dir, "agent", "net.d"), e.o.plugins, filepath.Join(e.dir, "agent", "manifests"))
	if e.metrics != "" && sub == "agent" {
		c += fmt.Sprintf("healthAddress: %s\n", e.metrics)
	}
	if e.o.maxConcurrent > 0 {
		c += fmt.Sprintf("maxConcurrent: %d\n", e.o.maxConcurrent)
	}
	return c
}

func plexusConf(socket string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":%q}]}`, socket)
}

// createUplink makes the macvlan master: a veth pair, both ends up (a
// macvlan on a down master cannot come up). A leftover from an interrupted
// run is replaced.
func (e *env) createUplink() error {
	benchhost.DelLink(uplink)
	// Stale bridges would carry a previous run's state; the bridge plugin
	// recreates them on the first ADD.
	benchhost.DelLink(bridge0)
	benchhost.DelLink(bridge1)
	if len(e.ifnames) < 3 {
		return nil // no macvlan network
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplink}, PeerName: uplinkPeer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", uplink, uplinkPeer, err)
	}
	for _, n := range []string{uplink, uplinkPeer} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return fmt.Errorf("find %s: %w", n, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", n, err)
		}
	}
	return nil
}

// target is one way to reach the plexus agent: a runtime conflist naming
// the plexus shim, and, for the in-process agent, what it measured for the
// last request.
type target struct {
	list     *libcni.NetworkConfigList
	lastCall func() (handler, delegates time.Duration)
}

func (e *env) binaryTarget() *target {
	l, _ := libcni.NetworkConfFromFile(filepath.Join(e.dir, "runtime", "net.d", "00-plexus.conflist"))
	return &target{list: l}
}

// startAgent runs the plexus-agent binary in local mode and waits until it
// answers a STATUS through the shim.
func (e *env) startAgent(ctx context.Context) error {
	log, err := os.Create(filepath.Join(e.dir, "agent.log"))
	if err != nil {
		return fmt.Errorf("create agent log: %w", err)
	}
	e.agentLog = log
	cmd := exec.Command(e.o.agent, "run", "--config", filepath.Join(e.dir, "agent", "agent.yaml"))
	cmd.Stdout, cmd.Stderr = log, log
	proc, err := childproc.Start(cmd, nil)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	e.agentCmd, e.agent = cmd, proc
	e.cancels = append(e.cancels, func() { proc.Stop(syscall.SIGTERM, 5*time.Second) })
	return e.waitReady(ctx, e.binaryTarget().list, proc.Exited(), proc.Err)
}

// waitReady waits until the agent answers STATUS; exited closing first
// means it is gone, and why says why.
func (e *env) waitReady(ctx context.Context, list *libcni.NetworkConfigList, exited <-chan struct{}, why func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := e.runtime.GetStatusNetworkList(ctx, list)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("agent exited (%v); see %s: %w", why(), filepath.Join(e.dir, "agent.log"), err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not ready after 15s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startInProcessAgent serves the shim protocol from this process with the
// same core the binary builds (app.NewLocalManager's wiring), plus two
// clocks: the server's per-request handler time, and the time spent inside
// delegate execs. Handler time minus delegate time is the agent's own work;
// the plexus call minus handler time is the shim's exec, the socket and the
// runtime-side libcni.
func (e *env) startInProcessAgent(ctx context.Context) (*target, error) {
	cfg, err := config.Load(filepath.Join(e.dir, "inproc", "agent.yaml"))
	if err != nil {
		return nil, err
	}
	clock := newExecClock()
	mgr, err := app.NewLocalManager(cfg, slog.New(slog.DiscardHandler), clock)
	if err != nil {
		return nil, fmt.Errorf("in-process agent: %w", err)
	}
	l, err := server.Listen(cfg.Socket)
	if err != nil {
		return nil, err
	}
	var handler atomic.Int64
	srv := &server.Server{
		Handler: app.Handler(mgr),
		Version: "bench",
		// Observe runs before the response is written, so the value is in
		// place when the shim (and thus libcni) returns.
		Observe: func(_ plexusv1.Verb, d time.Duration, _ uint32) { handler.Store(int64(d)) },
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var serveErr error
	go func() { serveErr = srv.Serve(sctx, l); close(done) }()
	e.cancels = append(e.cancels, func() { cancel(); <-done })

	list, err := libcni.NetworkConfFromFile(filepath.Join(e.dir, "runtime", "net.d-inproc", "00-plexus.conflist"))
	if err != nil {
		return nil, fmt.Errorf("in-process agent conflist: %w", err)
	}
	if err := e.waitReady(ctx, list, done, func() error { return serveErr }); err != nil {
		return nil, err
	}
	return &target{list: list, lastCall: func() (time.Duration, time.Duration) {
		return time.Duration(handler.Swap(0)), clock.take()
	}}, nil
}

// newNetns creates a named namespace and returns its path.
func (e *env) newNetns(i int, kind string) (string, error) {
	name := fmt.Sprintf("%s%d-%s%d", netnsPref, os.Getpid(), kind, i)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	e.netns[name] = true
	return filepath.Join("/var/run/netns", name), nil
}

func (e *env) delNetns(path string) error {
	name := filepath.Base(path)
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	delete(e.netns, name)
	return nil
}

// tearDown removes everything setUp and the run created, continuing past
// failures so that one stuck item does not leave the rest behind.
func (e *env) tearDown() error {
	var errs []error
	for i := len(e.cancels) - 1; i >= 0; i-- {
		e.cancels[i]()
	}
	e.cancels = nil
	for name := range e.netns {
		if err := e.delNetns(filepath.Join("/var/run/netns", name)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range []string{uplink, bridge0, bridge1} {
		if err := benchhost.DelLink(l); err != nil {
			errs = append(errs, err)
		}
	}
	if e.agentLog != nil {
		e.agentLog.Close()
	}
	if e.ownDir && !e.o.keep {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", e.dir, err))
		}
	} else {
		fmt.Fprintln(os.Stderr, "overhead: scratch files kept in", e.dir)
	}
	return errors.Join(errs...)
}

// startNullAgent serves the shim protocol with a handler that does nothing
// and answers at once: a plexus call against it costs the runtime's libcni,
// the shim's exec and one socket round trip, and nothing else.
func (e *env) startNullAgent() (*libcni.NetworkConfigList, error) {
	sock := filepath.Join(e.dir, "null", "agent.sock")
	l, err := server.Listen(sock)
	if err != nil {
		return nil, err
	}
	result := []byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"ips":[]}`)
	srv := &server.Server{Version: "bench", Handler: server.HandlerFunc(func(_ context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		if req.Verb == plexusv1.Verb_VERB_ADD {
			return &plexusv1.CNIResponse{Result: result}
		}
		return &plexusv1.CNIResponse{}
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	e.cancels = append(e.cancels, func() { cancel(); <-done })
	list, err := libcni.NetworkConfFromBytes([]byte(plexusConf(sock)))
	if err != nil {
		return nil, fmt.Errorf("null agent conflist: %w", err)
	}
	return list, nil
}
