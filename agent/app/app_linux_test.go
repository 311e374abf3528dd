package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/plexus-cni/plexus/agent/app"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/server"
	"github.com/plexus-cni/plexus/internal/cnitest"
	"github.com/plexus-cni/plexus/internal/shimbin"
	"github.com/plexus-cni/plexus/internal/testplugins/recorder"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// Exec'd under the name plexus-test-recorder, the test binary is that TEST
// ONLY delegate; under the name plexus-agent, the agent as a process of its
// own (for tests that kill it).
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "plexus-test-recorder":
		recorder.Main()
		os.Exit(0)
	case "plexus-agent":
		if err := app.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "plexus-agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type rig struct {
	dir     string
	cfg     *config.Config
	runtime *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	cancel  context.CancelFunc
	done    chan error
}

// newRigDir makes a rig's directories and links into its bin/ each of
// names: "plexus" is the real shim binary (internal/shimbin), any other
// name the test binary (the TEST ONLY recorder; see TestMain).
func newRigDir(t *testing.T, names ...string) *rig {
	t.Helper()
	r := &rig{dir: t.TempDir()}
	for _, d := range []string{"bin", "net.d", "manifests", "runtime"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		target := self
		if name == "plexus" {
			target = shimbin.Path(t)
		}
		if err := os.Symlink(target, filepath.Join(r.dir, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// newRig writes a local-mode agent config, NADs and a pod, and a runtime
// conflist pointing the shim at the agent's socket. The agent is not
// started.
func newRig(t *testing.T, connectTimeout float64) *rig {
	t.Helper()
	cnitest.RequireRoot(t)
	plugins := cnitest.PluginDir(t)
	r := newRigDir(t, "plexus")
	var err error
	ipam := filepath.Join(r.dir, "ipam")
	write(t, filepath.Join(r.dir, "net.d", "10-cluster.conflist"),
		`{"cniVersion":"1.1.0","name":"cluster","plugins":[{"type":"bridge","bridge":"pxapp0","isGateway":true,"ipam":{"type":"host-local","subnet":"10.230.0.0/24","dataDir":"`+ipam+`"}}]}`)
	write(t, filepath.Join(r.dir, "manifests", "all.yaml"), `
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: side, namespace: default}
spec:
  config: '{"cniVersion":"0.4.0","type":"bridge","bridge":"pxapp1","ipam":{"type":"host-local","subnet":"10.231.0.0/24","dataDir":"`+ipam+`"}}'
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  annotations:
    k8s.v1.cni.cncf.io/networks: side
`)
	socket := filepath.Join(r.dir, "run", "agent.sock")
	cfgText := fmt.Sprintf("socket: %s\nstateDir: %s\ncniConfDir: %s\nbinDirs: [%s]\nclusterNetwork: cluster\nlocal: {manifestsDir: %s}\n",
		socket, filepath.Join(r.dir, "state"), filepath.Join(r.dir, "net.d"), plugins, filepath.Join(r.dir, "manifests"))
	write(t, filepath.Join(r.dir, "agent.yaml"), cfgText)
	if r.cfg, err = config.Parse([]byte(cfgText), "test"); err != nil {
		t.Fatal(err)
	}
	runtimeConf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"plexus","plugins":[{"type":"plexus","socketPath":%q,"connectTimeoutSeconds":%v}]}`, socket, connectTimeout)
	if r.list, err = libcni.NetworkConfFromBytes([]byte(runtimeConf)); err != nil {
		t.Fatal(err)
	}
	r.runtime = libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(r.dir, "bin")}, filepath.Join(r.dir, "runtime"), nil)
	t.Cleanup(func() {
		r.stop(t)
		for _, l := range []string{"pxapp0", "pxapp1"} {
			if _, err := os.Stat("/sys/class/net/" + l); err == nil {
				exec(t, "ip", "link", "del", l)
			}
		}
	})
	return r
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs the agent as `plexus-agent run` does.
func (r *rig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() {
		r.done <- app.Run(ctx, []string{"run", "--config", filepath.Join(r.dir, "agent.yaml")}, os.Stdout, os.Stderr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", r.cfg.Socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("agent socket did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels the agent and checks it shut down cleanly and promptly.
func (r *rig) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("agent exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("agent did not stop within 10s of cancellation")
	}
}

func (r *rig) rt(id, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "web"}}}
}

// Through the real shim process and the socket: ADD, CHECK, the status
// command, DEL, STATUS and GC, as a runtime drives them.
func TestShimEndToEnd(t *testing.T) {
	r := newRig(t, 2)
	r.start(t)
	n := cnitest.NewNS(t)
	ctx := context.Background()
	res, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("c1", n.Path()))
	if err != nil {
		t.Fatalf("ADD through the shim: %v", err)
	}
	if res.Version() != "1.1.0" {
		t.Errorf("result version %s, want 1.1.0", res.Version())
	}
	if out := cnitest.InNS(t, n, "-o", "addr", "show", "dev", "net1"); !strings.Contains(out, "10.231.0.") {
		t.Errorf("net1 lacks its address:\n%s", out)
	}
	if err := r.runtime.CheckNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := r.runtime.GetStatusNetworkList(ctx, r.list); err != nil {
		t.Errorf("STATUS: %v", err)
	}

	var out bytes.Buffer
	if err := app.Run(ctx, []string{"status", "--config", filepath.Join(r.dir, "agent.yaml"), "--pod", "default/web"}, &out, os.Stderr); err != nil {
		t.Fatalf("status command: %v", err)
	}
	var shown []struct {
		Pod           string            `json:"pod"`
		NetworkStatus []netstatus.Entry `json:"networkStatus"`
	}
	if err := json.Unmarshal(out.Bytes(), &shown); err != nil {
		t.Fatalf("status output %s: %v", out.String(), err)
	}
	if len(shown) != 1 || len(shown[0].NetworkStatus) != 2 || !shown[0].NetworkStatus[0].Default || shown[0].NetworkStatus[1].Name != "default/side" {
		t.Errorf("status command printed %s", out.String())
	}

	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if out := cnitest.InNS(t, n, "-o", "link"); strings.Contains(out, "eth0") || strings.Contains(out, "net1") {
		t.Errorf("links left after DEL:\n%s", out)
	}
	if err := r.runtime.GCNetworkList(ctx, r.list, &libcni.GCArgs{}); err != nil {
		t.Errorf("GC: %v", err)
	}
}

// B: with the agent down, STATUS answers 50, ADD fails with a CNI error
// after the bounded connect wait, and DEL fails (so the runtime retries)
// instead of pretending success.
func TestShimAgentDown(t *testing.T) {
	r := newRig(t, 0.3)
	ctx := context.Background()
	var cniErr *types.Error
	err := r.runtime.GetStatusNetworkList(ctx, r.list)
	if !errors.As(err, &cniErr) || cniErr.Code != 50 {
		t.Errorf("STATUS with the agent down: %v, want CNI error 50", err)
	}
	start := time.Now()
	_, err = r.runtime.AddNetworkList(ctx, r.list, r.rt("c1", "/var/run/netns/none"))
	if !errors.As(err, &cniErr) || cniErr.Code != 11 || !strings.Contains(cniErr.Details, r.cfg.Socket) {
		t.Errorf("ADD with the agent down: %v, want CNI error 11 naming the socket", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond || waited > 5*time.Second {
		t.Errorf("ADD waited %v for the agent, want about the 0.3s connect timeout", waited)
	}
	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("c1", "")); err == nil {
		t.Error("DEL with the agent down reported success")
	}
}

// The socket is 0600 in a 0700 directory; an API version the agent does
// not serve is refused with a clear error; the server stops with its
// context while a client is connected.
func TestServerSocketAndHandshake(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "plexus", "agent.sock")
	l, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s mode %v (%v), want %v", p, st.Mode().Perm(), err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &server.Server{Version: "test", Handler: server.HandlerFunc(func(ctx context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		return &plexusv1.CNIResponse{Result: []byte(req.ContainerId)}
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(c, &plexusv1.Hello{ApiVersion: 2, ShimVersion: "future"}); err != nil {
		t.Fatal(err)
	}
	var reply plexusv1.HelloReply
	if err := protodelim.UnmarshalFrom(bufioReader(c), &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Error == nil || !strings.Contains(reply.Error.Msg, "API version 2") {
		t.Errorf("handshake with API version 2: reply %v, want a refusal naming the version", &reply)
	}
	c.Close()

	idle, err := net.Dial("unix", path) // connected, sends nothing
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancellation")
	}
}

// The agent as a DaemonSet runs it: it installs the shim into the CNI bin
// dir, writes the runtime's conflist next to the primary one, serves
// /healthz, /readyz and /metrics, and removes its conflist on uninstall.
// The runtime here uses only what the agent put in place.
func TestAgentInstallsAndReports(t *testing.T) {
	r := newRig(t, 2)
	hostBin := filepath.Join(r.dir, "host-bin")
	if err := os.MkdirAll(hostBin, 0o755); err != nil {
		t.Fatal(err)
	}
	shim := shimbin.Path(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthAddr := l.Addr().String()
	l.Close()
	extra := fmt.Sprintf("healthAddress: %s\ncniConf: {removeOnExit: true}\nshimInstall: {source: %s, binDir: %s}\n", healthAddr, shim, hostBin)
	cfgPath := filepath.Join(r.dir, "agent.yaml")
	old, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	write(t, cfgPath, string(old)+extra)
	r.start(t)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + healthAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	generated := filepath.Join(r.dir, "net.d", "00-plexus.conflist")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if _, err := os.Stat(generated); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready with a primary conf present: /readyz %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, err := os.Stat(filepath.Join(hostBin, "plexus")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed shim: %v %v", st, err)
	}

	list, err := libcni.NetworkConfFromFile(generated)
	if err != nil {
		t.Fatalf("generated conflist: %v", err)
	}
	runtime := libcni.NewCNIConfigWithCacheDir([]string{hostBin}, filepath.Join(r.dir, "runtime2"), nil)
	n := cnitest.NewNS(t)
	ctx := context.Background()
	if _, err := runtime.AddNetworkList(ctx, list, r.rt("m1", n.Path())); err != nil {
		t.Fatalf("ADD with the generated conf and the installed shim: %v", err)
	}
	if err := runtime.DelNetworkList(ctx, list, r.rt("m1", n.Path())); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	// The gauges drop after the answer is written, so the shim can return
	// first: poll until they have settled.
	want := []string{
		`plexus_cni_request_duration_seconds_count{verb="ADD"} 1`,
		`plexus_cni_request_duration_seconds_count{verb="DEL"} 1`,
		`plexus_delegate_duration_seconds_count{command="ADD",plugin="bridge"} 2`,
		`plexus_cni_requests_in_flight 0`,
		`plexus_cni_requests_queued 0`,
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, metrics := get("/metrics")
		var missing []string
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("/metrics lacks %s", strings.Join(missing, ", "))
			break
		}
	}

	primary, err := os.ReadFile(filepath.Join(r.dir, "net.d", "10-cluster.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	if _, err := os.Stat(generated); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("generated conflist still present after uninstall: %v", err)
	}
	after, err := os.ReadFile(filepath.Join(r.dir, "net.d", "10-cluster.conflist"))
	if err != nil || !bytes.Equal(after, primary) {
		t.Errorf("primary conf changed by uninstall: %v", err)
	}
}
