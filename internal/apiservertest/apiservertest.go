// Package apiservertest runs a real etcd and kube-apiserver for tests, built
// by tools/cluster/build-binaries.sh, on loopback with token authentication,
// RBAC and an audit log (so tests can count the API calls a client makes).
package apiservertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/plexus-cni/plexus/internal/childproc"
	"github.com/plexus-cni/plexus/internal/cluster"
)

// Versions the harness expects in the binaries cache (the cluster
// harness's).
var (
	K8sVersion  = cluster.K8sVersion
	EtcdVersion = cluster.EtcdVersion
)

// Tokens of the users the server knows.
const (
	AdminToken = "plexus-test-admin"
	// AgentToken authenticates as the agent's ServiceAccount, so the RBAC in
	// deploy/ applies to it.
	AgentToken = "plexus-test-agent"
	AgentUser  = "system:serviceaccount:plexus-system:plexus-agent"
)

// Server is a running etcd + kube-apiserver.
type Server struct {
	URL      string
	AuditLog string
	dir      string
	bin      string
	etcdURL  string
	etcd     *childproc.Process
	api      *childproc.Process
	args     []string
}

// BinDir returns where the binaries are: $PLEXUS_K8S_BIN_DIR or the cache.
func BinDir() string { return cluster.DefaultConfig().K8sBinDir }

// Start runs etcd and kube-apiserver until the test ends. Without the
// binaries it skips, or fails when PLEXUS_REQUIRE_ROOT_TESTS=1 (the README's
// test command), so a broken setup cannot pass by skipping.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			msg := "kube-apiserver and etcd not built in " + bin + "; run tools/cluster/build-binaries.sh"
			if os.Getenv("PLEXUS_REQUIRE_ROOT_TESTS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	s := &Server{dir: t.TempDir(), bin: bin}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	s.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	etcd := exec.Command(filepath.Join(s.bin, "etcd"),
		"--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", s.etcdURL, "--advertise-client-urls", s.etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync", "--log-level", "error")
	if s.etcd, err = s.run(etcd, "etcd.log"); err != nil {
		return err
	}

	keyPath := filepath.Join(s.dir, "sa.key")
	pubPath := filepath.Join(s.dir, "sa.pub")
	if err := cluster.WriteServiceAccountKey(keyPath, pubPath); err != nil {
		return err
	}
	tokens := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n%s,%s,plexus-agent-uid,\"system:serviceaccounts,system:serviceaccounts:plexus-system,system:authenticated\"\n",
		AdminToken, AgentToken, AgentUser)
	tokenPath := filepath.Join(s.dir, "tokens.csv")
	if err := os.WriteFile(tokenPath, []byte(tokens), 0o600); err != nil {
		return err
	}
	policyPath := filepath.Join(s.dir, "audit-policy.yaml")
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  users: [\"" + AgentUser + "\"]\n- level: None\n"
	if err := os.WriteFile(policyPath, []byte(policy), 0o600); err != nil {
		return err
	}
	s.AuditLog = filepath.Join(s.dir, "audit.log")
	s.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	s.args = []string{
		"--etcd-servers=" + s.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(s.dir, "certs"),
		"--token-auth-file=" + tokenPath,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pubPath,
		"--service-account-signing-key-file=" + keyPath,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--audit-policy-file=" + policyPath,
		"--audit-log-path=" + s.AuditLog,
		"--audit-log-mode=blocking",
		"--disable-admission-plugins=ServiceAccount",
	}
	return s.StartAPIServer()
}

// StartAPIServer (re)starts kube-apiserver on the same port and data.
func (s *Server) StartAPIServer() error {
	var err error
	if s.api, err = s.run(exec.Command(filepath.Join(s.bin, "kube-apiserver"), s.args...), "kube-apiserver.log"); err != nil {
		return err
	}
	return s.waitReady(90 * time.Second)
}

// StopAPIServer stops kube-apiserver, leaving etcd running.
func (s *Server) StopAPIServer() {
	s.api.Stop(os.Interrupt, stopGrace)
	s.api = nil
}

// PauseAPIServer freezes kube-apiserver (SIGSTOP): connections stay open
// and requests hang, as with an overloaded server. ResumeAPIServer undoes it.
func (s *Server) PauseAPIServer() error { return s.api.Signal(syscall.SIGSTOP) }

// ResumeAPIServer resumes a paused kube-apiserver.
func (s *Server) ResumeAPIServer() error { return s.api.Signal(syscall.SIGCONT) }

// Stop stops both.
func (s *Server) Stop() {
	s.api.Stop(os.Interrupt, stopGrace)
	s.etcd.Stop(os.Interrupt, stopGrace)
	s.api, s.etcd = nil, nil
}

// stopGrace is how long etcd and kube-apiserver get to exit on SIGINT.
const stopGrace = 10 * time.Second

func (s *Server) run(c *exec.Cmd, logName string) (*childproc.Process, error) {
	f, err := os.Create(filepath.Join(s.dir, logName))
	if err != nil {
		return nil, err
	}
	c.Stdout, c.Stderr = f, f
	p, err := childproc.Start(c, func() { f.Close() })
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	return p, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cluster.Readyz(s.URL, AdminToken) == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "kube-apiserver.log"))
	if len(log) > 4000 {
		log = log[len(log)-4000:]
	}
	return fmt.Errorf("kube-apiserver not ready after %s:\n%s", timeout, log)
}

// Config returns a client configuration authenticating with token.
func (s *Server) Config(token string) *rest.Config {
	return &rest.Config{Host: s.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
}

// Kubeconfig writes a kubeconfig file for token and returns its path.
func (s *Server) Kubeconfig(t testing.TB, token string) string {
	t.Helper()
	path := filepath.Join(s.dir, "kubeconfig-"+token)
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: test, user: u}}]
current-context: c
`, s.URL, token)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// AuditEvent is the part of an audit event tests count.
type AuditEvent struct {
	Verb      string                    `json:"verb"`
	User      struct{ Username string } `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestURI string `json:"requestURI"`
}

// AgentRequests returns the audited requests of the agent's user so far.
func (s *Server) AgentRequests(t testing.TB) []AuditEvent {
	t.Helper()
	f, err := os.Open(s.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit log line %q: %v", sc.Text(), err)
		}
		if e.User.Username == AgentUser {
			out = append(out, e)
		}
	}
	return out
}

// ApplyFile server-side applies every object of a multi-document YAML
// file, as `kubectl apply --server-side` would; with dryRun the server
// validates without persisting.
func ApplyFile(ctx context.Context, cfg *rest.Config, path string, dryRun bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			// A CRD created by an earlier document is not in the cached
			// discovery yet.
			mapper.Reset()
			if mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				return fmt.Errorf("%s: %s %s: %w", path, gvk.Kind, obj.GetName(), err)
			}
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		body, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{FieldManager: "plexus-test", Force: ptrTo(true)}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts); err != nil {
			return fmt.Errorf("%s: apply %s %s: %w", path, gvk.Kind, obj.GetName(), err)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
