// Package benchkube holds what the Kubernetes-mode benchmarks (tools/bench
// burst and scale) share: a scratch dir, a real kube-apiserver with
// deploy/ applied, the bridges and network namespaces the pods use, the
// plexus-agent binary started against the API server, the runtime (libcni
// calling the real shim), and the agent's API calls counted from the audit
// log. Each benchmark keeps its own cluster contents and measurements.
package benchkube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/internal/apiservertest"
	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

// Ifnames are a pod's interfaces: the cluster network and two NADs, on
// Config.Bridges[k] with an address in Config.Subnets[k].
var Ifnames = []string{"eth0", "net1", "net2"}

// Config names what a benchmark creates; every name starts with Name (e.g.
// "pxburst"), and exact names are cleaned up, never prefixes (other tests
// use similar ones).
type Config struct {
	Name       string
	NodeName   string
	ClusterNet string
	Bridges    [3]string
	Subnets    [3]string
	Namespaces []string
	// The admin client's rate limit while filling the cluster.
	QPS   float32
	Burst int
	// BinDir holds plexus and plexus-agent; built with tools/build.sh when
	// empty.
	BinDir string
	Keep   bool // keep the scratch dir (agent and audit logs)
}

// Env is a benchmark's world, removed when the test ends.
type Env struct {
	Config
	Dir     string
	Plugins string
	API     *apiservertest.Server
	Admin   kubernetes.Interface
	NADs    nadclient.Interface
	Runtime *libcni.CNIConfig
}

// Start makes the scratch dir, starts the API server with deploy/ and the
// namespaces, removes leftover bridges, writes the cluster network's
// conflist (clusterConf is its delegate, given the scratch dir) and puts
// the shim where the runtime finds it. It must run from a package two
// levels below tools/bench's parent (deploy/ is found relative to it).
func Start(t *testing.T, ctx context.Context, c Config, clusterConf func(dir string) string) *Env {
	e := &Env{Config: c, Plugins: cnitest.PluginDir(t)}
	e.setUpDir(t)
	e.setUpAPI(t, ctx)
	e.setUpFiles(t, clusterConf(e.Dir))
	return e
}

func (e *Env) setUpDir(t *testing.T) {
	d, err := os.MkdirTemp("", e.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	e.Dir = d
	t.Cleanup(func() {
		if e.Keep || t.Failed() {
			fmt.Printf("%s: scratch files kept in %s\n", e.Name, d)
			return
		}
		os.RemoveAll(d)
	})
	for _, sub := range []string{"bin", "net.d", "runtime", "ipam", "state"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *Env) setUpAPI(t *testing.T, ctx context.Context) {
	e.API = apiservertest.Start(t)
	adminCfg := e.API.Config(apiservertest.AdminToken)
	adminCfg.QPS, adminCfg.Burst = e.QPS, e.Burst
	for _, f := range []string{"../../../deploy/crds/network-attachment-definitions.yaml", "../../../deploy/namespace.yaml", "../../../deploy/rbac.yaml"} {
		if err := apiservertest.ApplyFile(ctx, adminCfg, f, false); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
	}
	var err error
	if e.Admin, err = kubernetes.NewForConfig(adminCfg); err != nil {
		t.Fatal(err)
	}
	if e.NADs, err = nadclient.NewForConfig(adminCfg); err != nil {
		t.Fatal(err)
	}
	for _, ns := range e.Namespaces {
		if _, err := e.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(e.Namespaces[0]).List(ctx, metav1.ListOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NetworkAttachmentDefinition CRD not served")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *Env) setUpFiles(t *testing.T, clusterConf string) {
	t.Cleanup(func() {
		for _, l := range e.Bridges {
			if err := benchhost.DelLink(l); err != nil {
				t.Error(err)
			}
		}
	})
	for _, l := range e.Bridges { // leftovers of an interrupted run
		if err := benchhost.DelLink(l); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, e.ClusterNet, clusterConf)
	path := filepath.Join(e.Dir, "net.d", "10-"+e.Name+".conflist")
	write(t, path, conf)
	if _, err := libcni.ConfListFromFile(path); err != nil {
		t.Fatalf("cluster conflist: %v\n%s", err, conf)
	}
	if e.BinDir == "" {
		e.BinDir = filepath.Join(e.Dir, "build")
		if out, err := exec.Command("../../build.sh", e.BinDir).CombinedOutput(); err != nil {
			t.Fatalf("tools/build.sh: %v\n%s", err, out)
		}
	}
	if err := os.Symlink(filepath.Join(e.BinDir, "plexus"), filepath.Join(e.Dir, "bin", "plexus")); err != nil {
		t.Fatal(err)
	}
	e.Runtime = libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(e.Dir, "bin")}, filepath.Join(e.Dir, "runtime"), nil)
}

// NetnsPath is pod i's network namespace.
func (e *Env) NetnsPath(i int) string {
	return filepath.Join("/var/run/netns", fmt.Sprintf("%s-%d-%d", e.Name, os.Getpid(), i))
}

// AddNetns creates the namespaces of pods 0..n-1, deleted when the test
// ends.
func (e *Env) AddNetns(t *testing.T, n int) {
	var made []string
	t.Cleanup(func() {
		for _, name := range made {
			if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v: %s", name, err, out)
			}
		}
	})
	for i := range n {
		name := filepath.Base(e.NetnsPath(i))
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		made = append(made, name)
	}
}

// RuntimeConf is pod i's, as a runtime would pass it.
func (e *Env) RuntimeConf(i int, namespace, pod string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: fmt.Sprintf("%s%06d", e.Name, i),
		NetNS:       e.NetnsPath(i),
		IfName:      "eth0",
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", pod}},
	}
}

// VerifyInterfaces checks pod i's namespace after ADD (added) or DEL.
func (e *Env) VerifyInterfaces(i int, added bool) error {
	return benchhost.VerifyInterfaces(e.NetnsPath(i), Ifnames, e.Subnets[:], added)
}

// Agent is a running plexus-agent binary.
type Agent struct {
	Cmd   *exec.Cmd
	List  *libcni.NetworkConfigList // the plexus network, through the shim
	Log   string
	Ready time.Duration // start → first STATUS answered (informers synced)
	stop  sync.Once
	exit  chan error
}

// StartAgent runs bin with its socket, state and log in dir (extraYAML
// appended to its config, env to its environment) and waits until it
// answers a STATUS through the shim, which it does only once its informers
// synced. It is stopped when the test ends, or earlier with Stop.
func (e *Env) StartAgent(t *testing.T, ctx context.Context, bin, dir, extraYAML string, env []string) *Agent {
	socket := filepath.Join(dir, "agent.sock")
	write(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(
		"socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: %s\n%skubernetes: {kubeconfig: %s, nodeName: %s}\n",
		socket, filepath.Join(dir, "state"), filepath.Join(e.Dir, "net.d"), e.Plugins, e.ClusterNet, extraYAML,
		e.API.Kubeconfig(t, apiservertest.AgentToken), e.NodeName))
	// The shim's defaults (connect 3 s, request 300 s), as a runtime would
	// have them.
	list, err := libcni.NetworkConfFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":%q}]}`, socket)))
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{List: list, Log: filepath.Join(dir, "agent.log"), exit: make(chan error, 1)}
	log, err := os.Create(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	a.Cmd = exec.Command(bin, "run", "--config", filepath.Join(dir, "agent.yaml"))
	a.Cmd.Stdout, a.Cmd.Stderr = log, log
	a.Cmd.Env = append(os.Environ(), env...)
	t0 := time.Now()
	if err := a.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exit <- a.Cmd.Wait(); log.Close() }()
	// Registered after the netns and bridge cleanups, so it runs first.
	t.Cleanup(a.Stop)
	for {
		err := e.Runtime.GetStatusNetworkList(ctx, list)
		if err == nil {
			break
		}
		select {
		case werr := <-a.exit:
			a.exit <- werr
			t.Fatalf("%s: agent exited (%v); see %s: %v", bin, werr, a.Log, err)
		default:
		}
		if time.Since(t0) > 3*time.Minute {
			t.Fatalf("%s: agent not ready after 3 min: %v", bin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Ready = time.Since(t0)
	return a
}

// Stop ends the agent: SIGTERM, then SIGKILL after 10 s.
func (a *Agent) Stop() {
	a.stop.Do(func() {
		a.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exit:
		case <-time.After(10 * time.Second):
			a.Cmd.Process.Kill()
			<-a.exit
		}
	})
}

// Calls counts the agent's API requests by kind.
type Calls struct{ Patches, Events, Reads, Watches, Other int }

func (c Calls) String() string {
	return fmt.Sprintf("%d pod patches, %d Event creates, %d get/list, %d watch, %d other", c.Patches, c.Events, c.Reads, c.Watches, c.Other)
}

// AgentCalls counts the agent's requests after the first from (a length of
// API.AgentRequests taken before), logging any read or unexpected one.
func (e *Env) AgentCalls(t *testing.T, from int) Calls {
	var c Calls
	for _, r := range e.API.AgentRequests(t)[from:] {
		switch {
		case r.Verb == "patch" && r.ObjectRef.Resource == "pods" && r.ObjectRef.Subresource == "":
			c.Patches++
		case r.Verb == "create" && r.ObjectRef.Resource == "events":
			c.Events++
		case r.Verb == "get" || r.Verb == "list":
			c.Reads++
			t.Logf("agent read: %s %s", r.Verb, r.RequestURI)
		case r.Verb == "watch":
			c.Watches++
		default:
			c.Other++
			t.Logf("other agent request: %s %s", r.Verb, r.RequestURI)
		}
	}
	return c
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// CPUSeconds is the user + system CPU time pid has used.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	fs := strings.Fields(rest)
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fs[11], 64)
	s, _ := strconv.ParseFloat(fs[12], 64)
	return (u + s) / 100 // USER_HZ
}

// Settle waits until the agent is as quiet as an idle agent: over the last
// second it used at most 20 ms of CPU and its RSS moved by at most 1%. It
// returns how long that took, and fails the benchmark after a minute.
func Settle(t testing.TB, pid int) time.Duration {
	t.Helper()
	const every, window, limit = 100 * time.Millisecond, 10, time.Minute
	start := time.Now()
	var rss []int64
	var cpu []float64
	for {
		rss = append(rss, benchhost.ReadProcStatus(pid).RSS)
		cpu = append(cpu, CPUSeconds(pid))
		if len(rss) > window+1 {
			rss, cpu = rss[1:], cpu[1:]
		}
		used, lo, hi := cpu[len(cpu)-1]-cpu[0], slices.Min(rss), slices.Max(rss)
		if len(rss) == window+1 && used <= 0.02 && hi-lo <= hi/100 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("agent not settled after %v: last second %.2f s CPU, RSS %s to %s MiB", limit, used, benchhost.MiB(lo), benchhost.MiB(hi))
		}
		time.Sleep(every)
	}
}
