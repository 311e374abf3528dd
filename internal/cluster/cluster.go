// Package cluster runs a real single-node Kubernetes cluster on loopback:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
// (with runc) and kubelet, all from a state directory. The binaries come
// from tools/cluster/build-binaries.sh (cached by version outside the
// clone). Down stops everything and Clean removes every trace it left on
// the host (mounts, cgroups, iptables chains, links, files), so the e2e
// tests and tools/cluster/cluster.sh leave the machine as they found it.
//
// One cluster runs at a time: ports and a few host paths are fixed (kubelet
// always uses /var/lib/kubelet/device-plugins; containerd mounts network
// namespaces under /var/run/netns).
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/plexus-cni/plexus"
	"github.com/plexus-cni/plexus/internal/cachedir"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Versions the harness expects in the binary caches (versions.env and
// go.mod, through the root package).
var (
	K8sVersion        = plexus.K8sVersion
	EtcdVersion       = plexus.EtcdVersion
	ContainerdVersion = plexus.ContainerdVersion
	CNIPluginsVersion = plexus.CNIPluginsVersion
)

// Fixed loopback ports (one cluster at a time).
const (
	EtcdPort      = 23790
	EtcdPeerPort  = 23800
	APIServerPort = 16443
)

// NodeName is the node's name.
const NodeName = "plexus-node"

// AdminToken authenticates as system:masters.
const AdminToken = "plexus-cluster-admin"

// PauseImage is the sandbox image containerd is pinned to.
const PauseImage = "localhost/pause:dev"

// PrimaryNetwork is the name of the primary CNI network (a bridge with
// host-local IPAM) the harness installs as the node's cluster network.
const (
	PrimaryNetwork = "primary"
	PrimaryBridge  = "pxcluster0"
	PrimarySubnet  = "10.244.0.0/24"
	// PrimaryGateway is the bridge's address (host-local's default
	// gateway): the host, as pods reach it.
	PrimaryGateway = "10.244.0.1"
)

// Config says where things are.
type Config struct {
	// StateDir holds everything the cluster writes (default
	// /var/lib/plexus-cluster).
	StateDir string
	// K8sBinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler, kubelet and kubectl.
	K8sBinDir string
	// ContainerdBinDir holds containerd, ctr and containerd-shim-runc-v2.
	ContainerdBinDir string
	// CNIPluginDir holds the reference CNI plugins.
	CNIPluginDir string
	// Images are image tarballs imported into containerd (the pause image
	// among them).
	Images []string
	// Progress receives one line per step.
	Progress io.Writer
}

// DefaultConfig fills Config from the caches under $PLEXUS_CACHE
// (default ~/.cache/plexus).
func DefaultConfig() Config {
	cache := cachedir.Dir()
	k8s := os.Getenv("PLEXUS_K8S_BIN_DIR")
	if k8s == "" {
		k8s = filepath.Join(cache, "cluster", "k8s-"+K8sVersion+"-etcd-"+EtcdVersion)
	}
	return Config{
		StateDir:         "/var/lib/plexus-cluster",
		K8sBinDir:        k8s,
		ContainerdBinDir: filepath.Join(cache, "cluster", "containerd-"+ContainerdVersion),
		CNIPluginDir:     filepath.Join(cache, "cni-plugins", CNIPluginsVersion),
		Progress:         os.Stderr,
	}
}

// Missing lists the binaries Up needs that are not there.
func (c Config) Missing() []string {
	var out []string
	check := func(dir string, names ...string) {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				out = append(out, filepath.Join(dir, n))
			}
		}
	}
	check(c.K8sBinDir, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
	check(c.ContainerdBinDir, "containerd", "ctr", "containerd-shim-runc-v2")
	check(c.CNIPluginDir, "bridge", "host-local", "loopback")
	if _, err := exec.LookPath("runc"); err != nil {
		out = append(out, "runc (apt-get install runc)")
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			out = append(out, tool+" (apt-get install iptables)")
		}
	}
	return out
}

// Cluster is a running (or stopped) cluster in a state directory.
type Cluster struct {
	Config
	// Kubeconfig is an admin kubeconfig.
	Kubeconfig string
	// URL is the API server's address.
	URL string
}

// Paths inside the state directory.
func (c *Cluster) path(p ...string) string {
	return filepath.Join(append([]string{c.StateDir}, p...)...)
}

// CNIConfDir and CNIBinDir are the runtime's CNI directories.
func (c *Cluster) CNIConfDir() string { return c.path("cni", "net.d") }

// CNIBinDir is where containerd looks for CNI plugins.
func (c *Cluster) CNIBinDir() string { return c.path("cni", "bin") }

// KubeletRootDir is kubelet's --root-dir.
func (c *Cluster) KubeletRootDir() string { return c.path("kubelet") }

// StaticPodDir is kubelet's staticPodPath: a pod manifest placed there
// runs as a static pod, with a mirror pod in the API.
func (c *Cluster) StaticPodDir() string { return c.path("manifests") }

// PodResourcesSocket is kubelet's PodResources API socket.
func (c *Cluster) PodResourcesSocket() string {
	return c.path("kubelet", "pod-resources", "kubelet.sock")
}

// ContainerdSocket is containerd's gRPC socket.
func (c *Cluster) ContainerdSocket() string { return c.path("containerd", "containerd.sock") }

// LogPath is the log file of a component.
func (c *Cluster) LogPath(component string) string { return c.path("logs", component+".log") }

// Open returns the cluster in cfg.StateDir without starting anything.
func Open(cfg Config) *Cluster {
	c := &Cluster{Config: cfg}
	c.Kubeconfig = c.path("kubeconfig")
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", APIServerPort)
	return c
}

func (c *Cluster) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "cluster: "+format+"\n", args...)
	}
}

// Up starts the cluster and waits until the node is Ready. A failure
// leaves the started components running for inspection: call Down.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the cluster needs root (kubelet, containerd, network namespaces)")
	}
	if m := cfg.Missing(); len(m) > 0 {
		return nil, fmt.Errorf("missing binaries (run tools/cluster/build-binaries.sh): %s", strings.Join(m, ", "))
	}
	c := Open(cfg)
	if pids := c.runningComponents(); len(pids) > 0 {
		return nil, fmt.Errorf("a cluster is already running from %s (%s): run down first", c.StateDir, strings.Join(pids, ", "))
	}
	// Clean kills whatever runs in kubepods cgroups: never next to a
	// kubelet that is not ours.
	if pid := foreignKubelet(c.K8sBinDir); pid > 0 {
		return nil, fmt.Errorf("a kubelet not started by this harness runs on this host (pid %d): refusing to start a test cluster next to it", pid)
	}
	start := time.Now()
	if err := c.prepare(); err != nil {
		return nil, err
	}
	c.progress("state in %s", c.StateDir)
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	c.progress("control plane ready (%s)", time.Since(start).Round(time.Millisecond))
	if err := c.startNode(ctx); err != nil {
		return nil, err
	}
	c.progress("node %s Ready (%s)", NodeName, time.Since(start).Round(time.Millisecond))
	return c, nil
}

// foreignKubelet returns the pid of a running kubelet whose binary is not
// the harness's, or 0.
func foreignKubelet(binDir string) int {
	ours := filepath.Join(binDir, "kubelet")
	pids := processes(func(exe string) bool { return filepath.Base(exe) == "kubelet" && exe != ours })
	if len(pids) == 0 {
		return 0
	}
	return pids[0]
}

// hostPaths are host paths outside the state directory the cluster may
// create; Clean removes those it created (recorded in created-paths).
var hostPaths = []string{
	"/var/lib/kubelet/device-plugins", "/var/lib/kubelet/plugins_registry", "/var/lib/kubelet",
	"/run/containerd", "/var/run/netns", "/run/netns", "/var/lib/cni", "/run/plexus",
	"/var/lib/plexus", "/var/run/k8s.cni.cncf.io", "/var/log/pods", "/var/log/containers",
}

func (c *Cluster) prepare() error {
	for _, d := range []string{"logs", "pids", "pki", "certs", "etcd", "containerd", "cni/net.d", "cni/bin", "kubelet", "pod-logs", "manifests"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	// Record host paths that did not exist, so Clean removes only ours.
	created := c.path("created-paths")
	if _, err := os.Stat(created); errors.Is(err, os.ErrNotExist) {
		var lines []string
		for _, p := range hostPaths {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				lines = append(lines, p)
			}
		}
		fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		lines = append(lines, "ip_forward="+strings.TrimSpace(string(fwd)))
		if err := os.WriteFile(created, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := c.writePKI(); err != nil {
		return err
	}
	// The reference plugins, copied so the runtime's bin dir is ours (the
	// agent installs its shim there).
	entries, err := os.ReadDir(c.CNIPluginDir)
	if err != nil {
		return fmt.Errorf("CNI plugins: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := copyFile(filepath.Join(c.CNIPluginDir, e.Name()), filepath.Join(c.CNIBinDir(), e.Name()), 0o755); err != nil {
			return err
		}
	}
	primary := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}
  ]
}
`, PrimaryNetwork, PrimaryBridge, PrimarySubnet)
	if err := os.WriteFile(filepath.Join(c.CNIConfDir(), "10-primary.conflist"), []byte(primary), 0o644); err != nil {
		return err
	}
	return c.writeConfigs()
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func (c *Cluster) writePKI() error {
	if _, err := os.Stat(c.path("pki", "sa.key")); err == nil {
		return nil
	}
	if err := WriteServiceAccountKey(c.path("pki", "sa.key"), c.path("pki", "sa.pub")); err != nil {
		return err
	}
	tokens := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", AdminToken)
	if err := os.WriteFile(c.path("pki", "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: plexus, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: plexus, context: {cluster: plexus, user: admin}}]
current-context: plexus
`, c.URL, AdminToken)
	return os.WriteFile(c.Kubeconfig, []byte(kubeconfig), 0o600)
}

// WriteServiceAccountKey writes a new RSA key pair for kube-apiserver's
// service account tokens (--service-account-signing-key-file and
// --service-account-key-file).
func WriteServiceAccountKey(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

func (c *Cluster) writeConfigs() error {
	containerd := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  # Required here: no CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[7]q]
    conf_dir = %[8]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.ContainerdSocket(), c.ContainerdSocket()+".ttrpc",
		PauseImage, runcPath(), c.CNIBinDir(), c.CNIConfDir())
	if err := os.WriteFile(c.path("containerd", "config.toml"), []byte(containerd), 0o644); err != nil {
		return err
	}
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
podLogsDir: %s
resolvConf: ""
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
localStorageCapacityIsolation: false
maxPods: 110
syncFrequency: 10s
staticPodPath: %s
`, c.ContainerdSocket(), c.path("pod-logs"), c.StaticPodDir())
	return os.WriteFile(c.path("kubelet-config.yaml"), []byte(kubelet), 0o644)
}

func runcPath() string {
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	return "/usr/sbin/runc"
}

// component is one process of the cluster.
type component struct {
	name string
	bin  string
	args []string
	env  []string
}

func (c *Cluster) components() map[string]component {
	k := func(b string) string { return filepath.Join(c.K8sBinDir, b) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", EtcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", EtcdPeerPort)
	return map[string]component{
		"etcd": {name: "etcd", bin: k("etcd"), args: []string{
			"--data-dir", c.path("etcd"),
			"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "default=" + peerURL,
			"--unsafe-no-fsync", "--log-level", "error",
		}},
		"kube-apiserver": {name: "kube-apiserver", bin: k("kube-apiserver"), args: []string{
			"--etcd-servers=" + etcdURL,
			// Every address, for pods (plexus-webhook) to reach it through
			// the primary bridge; guardAPIServer drops the rest. The
			// advertised 127.0.0.1 stays in the serving certificate.
			"--bind-address=0.0.0.0", "--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(APIServerPort),
			// No kube-proxy: admission webhooks are called at their
			// Service's endpoints, not its cluster IP.
			"--enable-aggregator-routing=true",
			"--cert-dir=" + c.path("certs"),
			"--token-auth-file=" + c.path("pki", "tokens.csv"),
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + c.path("pki", "sa.pub"),
			"--service-account-signing-key-file=" + c.path("pki", "sa.key"),
			"--service-cluster-ip-range=10.96.0.0/24",
			"--endpoint-reconciler-type=none",
			"--allow-privileged=true",
		}},
		"kube-controller-manager": {name: "kube-controller-manager", bin: k("kube-controller-manager"), args: []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=10257",
			"--service-account-private-key-file=" + c.path("pki", "sa.key"),
			"--root-ca-file=" + c.path("pki", "ca.crt"),
			"--use-service-account-credentials=false",
			"--controllers=*", "--leader-elect=false",
		}},
		"kube-scheduler": {name: "kube-scheduler", bin: k("kube-scheduler"), args: []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false",
		}},
		"containerd": {name: "containerd", bin: filepath.Join(c.ContainerdBinDir, "containerd"),
			args: []string{"--config", c.path("containerd", "config.toml")},
			// The v2 shim must come before any other on PATH.
			env: []string{"PATH=" + c.ContainerdBinDir + ":" + os.Getenv("PATH")},
		},
		"kubelet": {name: "kubelet", bin: k("kubelet"), args: []string{
			"--config=" + c.path("kubelet-config.yaml"),
			"--kubeconfig=" + c.Kubeconfig,
			"--root-dir=" + c.KubeletRootDir(),
			"--hostname-override=" + NodeName,
			"--node-ip=127.0.0.1",
		}},
	}
}

// startOrder is the order components start in; they stop in reverse.
var startOrder = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet"}

// StartComponent starts one component, detached from the caller (it
// outlives a CLI that started it), logging to LogPath and recording its
// pid under pids/.
func (c *Cluster) StartComponent(name string) error {
	comp, ok := c.components()[name]
	if !ok {
		return fmt.Errorf("unknown component %q", name)
	}
	if pid := c.pid(name); pid > 0 {
		return fmt.Errorf("%s already running (pid %d)", name, pid)
	}
	logf, err := os.OpenFile(c.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(comp.bin, comp.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), comp.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while we live; a CLI exits and init reaps.
	go cmd.Wait()
	return os.WriteFile(c.path("pids", name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// pid returns the recorded pid of a live component, or 0.
func (c *Cluster) pid(name string) int {
	data, err := os.ReadFile(c.path("pids", name+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	// The pid may have been reused: check it runs the component's binary.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != name {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is as good as gone.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func (c *Cluster) runningComponents() []string {
	var out []string
	for _, n := range startOrder {
		if pid := c.pid(n); pid > 0 {
			out = append(out, fmt.Sprintf("%s=%d", n, pid))
		}
	}
	return out
}

// StopComponent stops one component: SIGTERM, then SIGKILL after grace.
func (c *Cluster) StopComponent(name string, grace time.Duration) {
	pid := c.pid(name)
	if pid == 0 {
		os.Remove(c.path("pids", name+".pid"))
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Remove(c.path("pids", name+".pid"))
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	if err := guardAPIServer(); err != nil {
		return err
	}
	if err := c.StartComponent("etcd"); err != nil {
		return err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	// The controller-manager publishes this CA in every namespace's
	// kube-root-ca.crt, so in-cluster clients verify the API server. It
	// must be the CA alone: the serving bundle makes it complain forever.
	if err := c.extractCA(); err != nil {
		return err
	}
	for _, n := range []string{"kube-controller-manager", "kube-scheduler"} {
		if err := c.StartComponent(n); err != nil {
			return err
		}
	}
	return nil
}

// StartAPIServer (re)starts kube-apiserver and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.StartComponent("kube-apiserver"); err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-apiserver /readyz", 90*time.Second, func() error {
		return Readyz(c.URL, AdminToken)
	})
}

// StopAPIServer stops kube-apiserver, leaving everything else running.
func (c *Cluster) StopAPIServer() { c.StopComponent("kube-apiserver", 10*time.Second) }

// KillAPIServer kills kube-apiserver at once (SIGKILL), as a crash would.
func (c *Cluster) KillAPIServer() { c.StopComponent("kube-apiserver", 0) }

func (c *Cluster) extractCA() error {
	data, err := os.ReadFile(c.path("certs", "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("API server certificate: %w", err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fmt.Errorf("%s: no CA certificate in the bundle", c.path("certs", "apiserver.crt"))
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("API server certificate: %w", err)
		}
		if cert.IsCA {
			return os.WriteFile(c.path("pki", "ca.crt"), pem.EncodeToMemory(block), 0o644)
		}
	}
}

// Readyz checks kube-apiserver's /readyz at url (self-signed serving
// certificate, not verified) with a bearer token.
func Readyz(url, token string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequest(http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// waitFor polls check until it succeeds, showing progress.
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	start := time.Now()
	deadline := start.Add(timeout)
	nextNote := start.Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s (%s): %w", what, timeout, err)
		}
		if time.Now().After(nextNote) {
			c.progress("still waiting for %s (%s): %v", what, time.Since(start).Round(time.Second), err)
			nextNote = time.Now().Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) startNode(ctx context.Context) error {
	if err := c.StartComponent("containerd"); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd", 60*time.Second, func() error {
		_, err := c.Ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	if len(c.Images) > 0 {
		if err := c.ImportImages(ctx, c.Images...); err != nil {
			return err
		}
	}
	if err := c.StartComponent("kubelet"); err != nil {
		return err
	}
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "node "+NodeName+" Ready", 120*time.Second, func() error {
		return nodeReady(ctx, cs)
	})
}

// Ctr runs ctr against the cluster's containerd in namespace k8s.io.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.ContainerdBinDir, "ctr"),
		append([]string{"--address", c.ContainerdSocket(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ImportImages imports image tarballs into containerd's k8s.io namespace.
func (c *Cluster) ImportImages(ctx context.Context, tars ...string) error {
	for _, t := range tars {
		start := time.Now()
		// Unpacked by default, for the CRI's snapshotter.
		if _, err := c.Ctr(ctx, "images", "import", t); err != nil {
			return fmt.Errorf("import %s: %w", t, err)
		}
		c.progress("imported %s (%s)", filepath.Base(t), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// RestConfig is an admin client configuration.
func (c *Cluster) RestConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", c.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Clientset is an admin clientset.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := c.RestConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Kubectl runs kubectl with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.K8sBinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Env is the cluster's facts for scripts, as shell assignments.
func (c *Cluster) Env() string {
	kv := [][2]string{
		{"KUBECONFIG", c.Kubeconfig},
		{"PLEXUS_CLUSTER_STATE", c.StateDir},
		{"PLEXUS_CLUSTER_URL", c.URL},
		{"PLEXUS_CLUSTER_CNI_CONF_DIR", c.CNIConfDir()},
		{"PLEXUS_CLUSTER_CNI_BIN_DIR", c.CNIBinDir()},
		{"PLEXUS_CLUSTER_KUBECTL", filepath.Join(c.K8sBinDir, "kubectl")},
	}
	var b strings.Builder
	for _, p := range kv {
		fmt.Fprintf(&b, "%s=%q\n", p[0], p[1])
	}
	return b.String()
}

// Status reports the components' pids as JSON.
func (c *Cluster) Status() string {
	m := map[string]int{}
	for _, n := range startOrder {
		m[n] = c.pid(n)
	}
	data, _ := json.Marshal(m)
	return string(data)
}
