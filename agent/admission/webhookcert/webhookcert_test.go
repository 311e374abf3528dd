package webhookcert_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/plexus-cni/plexus/agent/admission/webhookcert"
	"github.com/plexus-cni/plexus/internal/apiservertest"
)

const svc = "plexus-webhook"

// env is a kube-apiserver and an admin client for it.
type env struct {
	api   *apiservertest.Server
	admin kubernetes.Interface
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{api: apiservertest.Start(t)}
	var err error
	if e.admin, err = kubernetes.NewForConfig(e.api.Config(apiservertest.AdminToken)); err != nil {
		t.Fatal(err)
	}
	return e
}

// setup makes namespace ns and the two webhook configurations named name,
// whose webhooks match nothing and would be ignored if they failed.
func (e *env) setup(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ignore, none := admissionv1.Ignore, admissionv1.SideEffectClassNone
	url := "https://127.0.0.1:1/"
	cc := admissionv1.WebhookClientConfig{URL: &url}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"plexus-test": "none"}}
	rules := []admissionv1.RuleWithOperations{{
		Operations: []admissionv1.OperationType{admissionv1.Create},
		Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	mut := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, n := range []string{"a.plexus.test", "b.plexus.test"} {
		mut.Webhooks = append(mut.Webhooks, admissionv1.MutatingWebhook{Name: n, ClientConfig: cc, Rules: rules, NamespaceSelector: sel,
			FailurePolicy: &ignore, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}})
	}
	if _, err := e.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mut, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	val := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionv1.ValidatingWebhook{{
		Name: "v.plexus.test", ClientConfig: cc, Rules: rules, NamespaceSelector: sel,
		FailurePolicy: &ignore, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}}}
	if _, err := e.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, val, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// bundles returns the caBundle of every webhook of both configurations.
func (e *env) bundles(t *testing.T, name string) [][]byte {
	t.Helper()
	ctx := context.Background()
	mut, err := e.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	val, err := e.admin.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range mut.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	for _, w := range val.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

func (e *env) secret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := e.admin.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSecret returns the serving certificate and the CAs of a Secret
// whose serving certificate verifies against its CAs for svc's names.
func checkSecret(s *corev1.Secret, ns string) (*x509.Certificate, []*x509.Certificate, error) {
	if s == nil {
		return nil, nil, errors.New("no Secret")
	}
	cert, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		return nil, nil, err
	}
	cas := certs(s.Data["ca.crt"])
	if _, err := tls.X509KeyPair(s.Data["ca.crt"], s.Data["ca.key"]); err != nil {
		return nil, nil, fmt.Errorf("CA: %w", err)
	}
	for _, name := range []string{svc, svc + "." + ns, svc + "." + ns + ".svc"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool(cas), DNSName: name}); err != nil {
			return nil, nil, err
		}
	}
	return cert.Leaf, cas, nil
}

func certs(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func pool(cas []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p
}

// newManager makes a Manager with intervals for tests.
func newManager(t *testing.T, cfg *rest.Config, ns, secret, configs string) *webhookcert.Manager {
	return &webhookcert.Manager{
		Config: cfg, Namespace: ns, Service: svc, SecretName: secret,
		MutatingWebhookConfiguration: configs, ValidatingWebhookConfiguration: configs,
		ExtraSANs:     []string{"127.0.0.1"},
		CheckInterval: 100 * time.Millisecond,
		Log:           slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

// run runs m until the test ends; Run must not return before.
func run(t *testing.T, m *webhookcert.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		select {
		case err := <-done:
			t.Errorf("Run returned before its context ended: %v", err)
			return
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitFor polls f until it returns nil, failing the test with f's last
// error at the deadline.
func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready waits until the Secret is valid, every caBundle holds its CAs and m
// serves its certificate; it returns the serving certificate.
func (e *env) ready(t *testing.T, m *webhookcert.Manager, configs string) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	waitFor(t, 30*time.Second, func() error {
		s, err := e.admin.CoreV1().Secrets(m.Namespace).Get(context.Background(), m.SecretName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		l, cas, err := checkSecret(s, m.Namespace)
		if err != nil {
			return err
		}
		for i, b := range e.bundles(t, configs) {
			got := certs(b)
			for _, ca := range cas {
				if !containsCert(got, ca) {
					return fmt.Errorf("caBundle %d lacks CA %q", i, ca.Subject.CommonName)
				}
			}
		}
		c, err := m.GetCertificate(nil)
		if err != nil {
			return err
		}
		if !c.Leaf.Equal(l) {
			return errors.New("served certificate is not the Secret's")
		}
		leaf = l
		return nil
	})
	return leaf
}

func containsCert(cs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range cs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func TestManager(t *testing.T) {
	e := newEnv(t)
	t.Run("FirstStartWithREADMERBAC", func(t *testing.T) {
		t.Parallel()
		testFirstStart(t, e)
	})
	t.Run("ConcurrentStartOneCA", func(t *testing.T) {
		t.Parallel()
		for i := range 3 {
			ns, name := fmt.Sprintf("concurrent-%d", i), fmt.Sprintf("concurrent-%d", i)
			e.setup(t, ns, name)
			cfg := e.api.Config(apiservertest.AdminToken)
			a, b := newManager(t, cfg, ns, "tls", name), newManager(t, cfg, ns, "tls", name)
			run(t, a)
			run(t, b)
			leaf := e.ready(t, a, name)
			waitFor(t, 10*time.Second, func() error {
				if c, err := b.GetCertificate(nil); err != nil || !c.Leaf.Equal(leaf) {
					return fmt.Errorf("second replica does not serve the Secret's certificate (%v)", err)
				}
				return nil
			})
			if _, cas, _ := checkSecret(e.secret(t, ns, "tls"), ns); len(cas) != 1 {
				t.Errorf("round %d: %d CAs in the Secret, want 1", i, len(cas))
			}
			for j, bundle := range e.bundles(t, name) {
				if n := len(certs(bundle)); n != 1 {
					t.Errorf("round %d: caBundle %d holds %d certificates, want 1", i, j, n)
				}
			}
		}
	})
	t.Run("RotationWhileServing", func(t *testing.T) {
		t.Parallel()
		testRotation(t, e)
	})
	t.Run("DamagedSecret", func(t *testing.T) {
		t.Parallel()
		testDamaged(t, e)
	})
}

// testFirstStart runs as the agent's user bound to the README's RBAC, with
// the names the README uses.
func testFirstStart(t *testing.T, e *env) {
	const ns, name, secret = "plexus-system", "plexus-webhook", "plexus-webhook-tls"
	ctx := context.Background()
	e.setup(t, ns, name)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```yaml\n")
	if block, _, ok = strings.Cut(block, "```"); !ok {
		t.Fatal("no yaml block in README.md")
	}
	rbac := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(rbac, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := apiservertest.ApplyFile(ctx, e.api.Config(apiservertest.AdminToken), rbac, false); err != nil {
		t.Fatal(err)
	}
	// The agent's user stands for the webhook's ServiceAccount.
	user := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: apiservertest.AgentUser}}
	if _, err := e.admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test"}, Subjects: user,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "plexus-webhook-cert"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test"}, Subjects: user,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "plexus-webhook-cert"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	m := newManager(t, e.api.Config(apiservertest.AgentToken), ns, secret, name)
	run(t, m)
	leaf := e.ready(t, m, name)
	s := e.secret(t, ns, secret)
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %q", s.Type)
	}
	_, cas, _ := checkSecret(s, ns)
	for i, b := range e.bundles(t, name) {
		if got := certs(b); len(got) != 1 || !got[0].Equal(cas[0]) {
			t.Errorf("caBundle %d: %d certificates, want the Secret's CA", i, len(got))
		}
	}

	// Later checks find nothing to change: after more of them, still one
	// create and one patch per configuration, and no refused request.
	count := func(verb, resource string) (n int) {
		for _, ev := range e.api.AgentRequests(t) {
			if ev.Verb == verb && ev.ObjectRef.Resource == resource {
				n++
			}
		}
		return n
	}
	base := count("get", "secrets")
	waitFor(t, 30*time.Second, func() error {
		if n := count("get", "secrets"); n < base+5 {
			return fmt.Errorf("%d Secret reads", n)
		}
		return nil
	})
	for _, c := range []struct {
		verb, resource string
		want           int
	}{
		{"create", "secrets", 1}, {"update", "secrets", 0},
		{"patch", "mutatingwebhookconfigurations", 1}, {"patch", "validatingwebhookconfigurations", 1},
	} {
		if n := count(c.verb, c.resource); n != c.want {
			t.Errorf("%d %s %s, want %d", n, c.verb, c.resource, c.want)
		}
	}
	if c, _ := m.GetCertificate(nil); !c.Leaf.Equal(leaf) {
		t.Error("serving certificate changed")
	}
}

// testRotation: two replicas behind https servers; a client trusting the
// caBundle read from the API before each request completes every handshake
// across serving and CA rotations.
func testRotation(t *testing.T, e *env) {
	const ns, name = "rotation", "rotation"
	e.setup(t, ns, name)
	var urls []string
	for range 2 {
		m := newManager(t, e.api.Config(apiservertest.AdminToken), ns, "tls", name)
		m.CAValidity, m.ServingValidity = 9*time.Second, 4*time.Second
		run(t, m)
		urls = append(urls, serve(t, m))
		e.ready(t, m, name)
	}
	leaves, issuers, maxBundle := map[string]bool{}, map[string]bool{}, 0
	deadline := time.Now().Add(60 * time.Second)
	for len(issuers) < 2 || len(leaves) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d serving certificates by %d CAs seen", len(leaves), len(issuers))
		}
		bundle := e.bundles(t, name)[0]
		maxBundle = max(maxBundle, len(certs(bundle)))
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(bundle)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
		for _, u := range urls {
			resp, err := client.Get(u)
			if err != nil {
				t.Fatalf("after %d serving certificates by %d CAs: %v", len(leaves), len(issuers), err)
			}
			resp.Body.Close()
			leaf := resp.TLS.PeerCertificates[0]
			leaves[string(leaf.Raw)], issuers[string(leaf.AuthorityKeyId)] = true, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	if maxBundle < 2 {
		t.Errorf("the caBundle never held two CAs")
	}
}

// serve runs an https server on loopback with m's certificates until the
// test ends and returns its URL.
func serve(t *testing.T, m *webhookcert.Manager) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		TLSConfig: &tls.Config{GetCertificate: m.GetCertificate},
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeTLS(l, "", "") })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return "https://" + l.Addr().String()
}

func testDamaged(t *testing.T, e *env) {
	for i, c := range []struct {
		name   string
		damage map[string][]byte
		keepCA bool
	}{
		{"garbage tls.crt", map[string][]byte{"tls.crt": []byte("garbage")}, true},
		{"garbage ca.key", map[string][]byte{"ca.key": []byte("garbage")}, false},
		{"emptied", map[string][]byte{"tls.crt": nil, "tls.key": nil, "ca.crt": nil, "ca.key": nil}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns, name := fmt.Sprintf("damaged-%d", i), fmt.Sprintf("damaged-%d", i)
			e.setup(t, ns, name)
			m := newManager(t, e.api.Config(apiservertest.AdminToken), ns, "tls", name)
			run(t, m)
			before := e.ready(t, m, name)
			s := e.secret(t, ns, "tls")
			for k, v := range c.damage {
				s.Data[k] = v
			}
			if _, err := e.admin.CoreV1().Secrets(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			after := before
			waitFor(t, 30*time.Second, func() error {
				if after = e.ready(t, m, name); after.Equal(before) {
					return errors.New("serving certificate not replaced")
				}
				return nil
			})
			if kept := string(after.AuthorityKeyId) == string(before.AuthorityKeyId); kept != c.keepCA {
				t.Errorf("CA kept: %v, want %v", kept, c.keepCA)
			}
		})
	}
}

// TestAPIServerRestart: while kube-apiserver is down the serving certificate
// comes due and someone empties the caBundles; once it is back, Run
// renews the certificate and restores the bundles.
func TestAPIServerRestart(t *testing.T) {
	e := newEnv(t)
	const ns, name = "restart", "restart"
	e.setup(t, ns, name)
	m := newManager(t, e.api.Config(apiservertest.AdminToken), ns, "tls", name)
	m.ServingValidity = 5 * time.Second
	run(t, m)
	before := e.ready(t, m, name)

	e.api.StopAPIServer()
	waitFor(t, 30*time.Second, func() error {
		if left := time.Until(before.NotAfter); left > m.ServingValidity/3 {
			return fmt.Errorf("%s of the serving certificate left", left)
		}
		return nil
	})
	if c, err := m.GetCertificate(nil); err != nil || !c.Leaf.Equal(before) {
		t.Fatalf("certificate while the API server is down: %v", err)
	}
	if err := e.api.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	empty := []byte(`{"webhooks":[{"name":"%s","clientConfig":{"caBundle":null}}]}`)
	for _, n := range []string{"a.plexus.test", "b.plexus.test"} {
		if _, err := e.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, "application/strategic-merge-patch+json",
			fmt.Appendf(nil, string(empty), n), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, func() error {
		if after := e.ready(t, m, name); after.Equal(before) {
			return errors.New("serving certificate not renewed")
		}
		return nil
	})
}

func TestRunRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, c := range []struct {
		name string
		m    *webhookcert.Manager
	}{
		{"no Secret", &webhookcert.Manager{Config: cfg, Namespace: "ns", Service: svc}},
		{"RenewFraction 1", &webhookcert.Manager{Config: cfg, Namespace: "ns", Service: svc, SecretName: "tls", RenewFraction: 1}},
		{"CheckInterval too long", &webhookcert.Manager{Config: cfg, Namespace: "ns", Service: svc, SecretName: "tls",
			ServingValidity: 3 * time.Second, CheckInterval: time.Second}},
	} {
		if err := c.m.Run(context.Background()); err == nil {
			t.Errorf("%s: Run returned nil", c.name)
		}
	}
}
