// Package webhookcert gives the admission webhook its TLS certificate
// without cert-manager: a CA and a serving certificate in one Secret that
// the replicas share, the CA published in the caBundle of the webhook
// configurations, both renewed before they expire.
package webhookcert

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Secret keys besides tls.crt and tls.key.
const (
	// CACertKey holds the CAs to trust, PEM, the one that signs first:
	// a replaced CA stays until it expires, so that certificates it signed
	// keep verifying during a rotation.
	CACertKey = "ca.crt"
	// CAKeyKey holds the signing CA's private key.
	CAKeyKey = "ca.key"
)

const (
	// backdate is how far NotBefore is set in the past, for clock skew
	// between the replicas and the API servers.
	backdate = time.Minute
	// syncTimeout bounds one check, so that a hung API server does not
	// stop the next one.
	syncTimeout  = 10 * time.Second
	fieldManager = "plexus-webhookcert"
	admissionAPI = "/apis/admissionregistration.k8s.io/v1"
)

// Manager keeps the webhook's certificates. Set the fields, call Run, and
// serve with GetCertificate.
type Manager struct {
	Config *rest.Config
	// Namespace and Service name the webhook's Service: the certificate is
	// for <Service>, <Service>.<Namespace> and <Service>.<Namespace>.svc.
	// The Secret is in Namespace too.
	Namespace, Service string
	SecretName         string
	// The webhook configurations whose caBundles are kept (either may be
	// empty; one that does not exist is skipped until it does).
	MutatingWebhookConfiguration, ValidatingWebhookConfiguration string
	// ExtraSANs are more DNS names or IP addresses for the certificate.
	ExtraSANs []string
	// Validity of a new CA (default 5 years) and serving certificate
	// (default 1 year; never past its CA's).
	CAValidity, ServingValidity time.Duration
	// RenewFraction: a certificate is renewed when less than this fraction
	// of its validity remains (default 1/3).
	RenewFraction float64
	// CheckInterval is how often the Secret and the configurations are read
	// (default 1 minute): the bound on noticing the other replica's changes,
	// and how long a new CA is published before it signs.
	CheckInterval time.Duration
	Log           *slog.Logger

	client *rest.RESTClient
	cert   atomic.Pointer[tls.Certificate]
}

// GetCertificate returns the current serving certificate, for
// tls.Config.GetCertificate.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("webhook serving certificate not loaded yet")
}

// Run checks the certificates every CheckInterval until ctx ends. Failed
// checks are logged and retried; only a bad configuration is an error.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.init(); err != nil {
		return err
	}
	t := time.NewTicker(m.CheckInterval)
	defer t.Stop()
	for {
		m.sync(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) init() error {
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	m.CAValidity = cmp.Or(m.CAValidity, 5*365*24*time.Hour)
	m.ServingValidity = cmp.Or(m.ServingValidity, 365*24*time.Hour)
	m.CheckInterval = cmp.Or(m.CheckInterval, time.Minute)
	m.RenewFraction = cmp.Or(m.RenewFraction, 1.0/3)
	switch {
	case m.Config == nil || m.Namespace == "" || m.Service == "" || m.SecretName == "":
		return errors.New("webhookcert: Config, Namespace, Service and SecretName are required")
	case m.RenewFraction <= 0 || m.RenewFraction >= 1:
		return fmt.Errorf("webhookcert: RenewFraction %v not between 0 and 1", m.RenewFraction)
	case m.CheckInterval >= m.renewBefore(m.ServingValidity):
		// The other replica serves the certificate it read last for up to
		// one interval after a renewal.
		return fmt.Errorf("webhookcert: CheckInterval %s not shorter than RenewFraction of ServingValidity", m.CheckInterval)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return err
	}
	c := rest.CopyConfig(m.Config)
	c.GroupVersion, c.APIPath = &corev1.SchemeGroupVersion, "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	var err error
	if m.client, err = rest.RESTClientFor(c); err != nil {
		return fmt.Errorf("webhookcert: REST client: %w", err)
	}
	return nil
}

func (m *Manager) renewBefore(validity time.Duration) time.Duration {
	return time.Duration(float64(validity) * m.RenewFraction)
}

func (m *Manager) sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	var err error
	// A conflict is the other replica writing first: read what it wrote.
	for range 3 {
		if err = m.reconcile(ctx); !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		m.Log.WarnContext(ctx, "webhook certificate check failed", "secret", m.Namespace+"/"+m.SecretName, "err", err)
	}
}

// state is what a Secret's data holds that is usable now.
type state struct {
	ca      *tls.Certificate    // the signing CA; nil if none
	cas     []*x509.Certificate // the CAs to trust, ca first
	serving *tls.Certificate    // nil if none that verifies
}

func (m *Manager) parse(data map[string][]byte, now time.Time) state {
	var s state
	ca, err := tls.X509KeyPair(data[CACertKey], data[CAKeyKey])
	if err != nil || !ca.Leaf.IsCA || !now.Before(ca.Leaf.NotAfter) {
		return s
	}
	s.ca = &ca
	for _, der := range ca.Certificate {
		if c, err := x509.ParseCertificate(der); err == nil && c.IsCA && now.Before(c.NotAfter) {
			s.cas = append(s.cas, c)
		}
	}
	serving, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return s
	}
	roots := x509.NewCertPool()
	for _, c := range s.cas {
		roots.AddCert(c)
	}
	if _, err := serving.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now}); err != nil {
		return s
	}
	for _, name := range m.names() {
		if serving.Leaf.VerifyHostname(name) != nil {
			return s
		}
	}
	s.serving = &serving
	return s
}

func (m *Manager) names() []string {
	svc := m.Service + "." + m.Namespace
	return append([]string{m.Service, svc, svc + ".svc"}, m.ExtraSANs...)
}

func (m *Manager) reconcile(ctx context.Context) error {
	now := time.Now()
	var sec corev1.Secret
	err := m.client.Get().Namespace(m.Namespace).Resource("secrets").Name(m.SecretName).Do(ctx).Into(&sec)
	if apierrors.IsNotFound(err) {
		sec = corev1.Secret{Type: corev1.SecretTypeTLS}
		sec.Name, sec.Namespace = m.SecretName, m.Namespace
	} else if err != nil {
		return fmt.Errorf("read Secret: %w", err)
	}
	data := maps.Clone(sec.Data)
	if data == nil {
		data = map[string][]byte{}
	}
	s := m.parse(data, now)
	changed := false
	if s.ca == nil || s.ca.Leaf.NotAfter.Sub(now) < m.renewBefore(m.CAValidity) {
		// The serving certificate stays as it is while the new CA is
		// published (below, and by the other replica).
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: fmt.Sprintf("%s.%s webhook CA %d", m.Service, m.Namespace, now.Unix())},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(m.CAValidity),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		if data[CACertKey], data[CAKeyKey], err = newCert(tmpl, nil); err != nil {
			return err
		}
		for _, c := range s.cas {
			data[CACertKey] = append(data[CACertKey], pemCert(c)...)
		}
		s, changed = m.parse(data, now), true
	}
	if s.serving == nil {
		if err := m.sign(data, s.ca, now); err != nil {
			return err
		}
		s, changed = m.parse(data, now), true
	}
	if changed {
		if err := m.write(ctx, &sec, data); err != nil {
			return err
		}
	}
	m.cert.Store(s.serving)

	if err := m.publish(ctx, s.cas, now); err != nil {
		return err
	}
	// A new CA signs once it has been published for an interval, so that
	// every API server has it.
	leaf := s.serving.Leaf
	due := leaf.NotAfter.Sub(now) < m.renewBefore(m.ServingValidity) || leaf.CheckSignatureFrom(s.ca.Leaf) != nil
	if !due || now.Before(s.ca.Leaf.NotBefore.Add(backdate+time.Second+m.CheckInterval)) {
		return nil
	}
	if err := m.sign(data, s.ca, now); err != nil {
		return err
	}
	if err := m.write(ctx, &sec, data); err != nil {
		return err
	}
	m.cert.Store(m.parse(data, now).serving)
	return nil
}

// sign puts a new serving certificate signed by ca in data.
func (m *Manager) sign(data map[string][]byte, ca *tls.Certificate, now time.Time) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: m.Service + "." + m.Namespace + ".svc"},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(m.ServingValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.Leaf.NotAfter) {
		tmpl.NotAfter = ca.Leaf.NotAfter
	}
	for _, n := range m.names() {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	var err error
	data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey], err = newCert(tmpl, ca)
	return err
}

// newCert makes a key and a certificate from tmpl signed by parent, or
// self-signed if parent is nil; both PEM.
func newCert(tmpl *x509.Certificate, parent *tls.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Leaf, parent.PrivateKey.(crypto.Signer)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// write creates or updates the Secret: resourceVersion makes a concurrent
// write by the other replica a conflict.
func (m *Manager) write(ctx context.Context, sec *corev1.Secret, data map[string][]byte) error {
	sec.Data = data
	req := m.client.Post().Namespace(m.Namespace).Resource("secrets")
	if sec.ResourceVersion != "" {
		req = m.client.Put().Namespace(m.Namespace).Resource("secrets").Name(m.SecretName)
	}
	if err := req.Param("fieldManager", fieldManager).Body(sec).Do(ctx).Into(sec); err != nil {
		return fmt.Errorf("write Secret: %w", err)
	}
	m.Log.InfoContext(ctx, "webhook certificates written", "secret", m.Namespace+"/"+m.SecretName)
	return nil
}

// webhookConfiguration is the part of a Mutating- or
// ValidatingWebhookConfiguration read and patched here.
type webhookConfiguration struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Webhooks []struct {
		Name         string `json:"name"`
		ClientConfig struct {
			CABundle []byte `json:"caBundle"`
		} `json:"clientConfig"`
	} `json:"webhooks"`
}

// publish puts cas in the caBundle of every webhook. CAs already there
// stay until they expire: a replica that has not yet read the other's new
// CA must not take it out.
func (m *Manager) publish(ctx context.Context, cas []*x509.Certificate, now time.Time) error {
	for _, r := range []struct{ resource, name string }{
		{"mutatingwebhookconfigurations", m.MutatingWebhookConfiguration},
		{"validatingwebhookconfigurations", m.ValidatingWebhookConfiguration},
	} {
		if r.name == "" {
			continue
		}
		raw, err := m.client.Get().AbsPath(admissionAPI, r.resource, r.name).DoRaw(ctx)
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("read %s %s: %w", r.resource, r.name, err)
		}
		var cfg webhookConfiguration
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("decode %s %s: %w", r.resource, r.name, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			cc := &cfg.Webhooks[i].ClientConfig
			if b := bundle(cas, cc.CABundle, now); !bytes.Equal(b, cc.CABundle) {
				cc.CABundle, changed = b, true
			}
		}
		if !changed {
			continue
		}
		// A strategic merge patch by webhook name, conditional on the
		// resourceVersion read.
		patch, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		if err := m.client.Patch(types.StrategicMergePatchType).AbsPath(admissionAPI, r.resource, r.name).
			Param("fieldManager", fieldManager).Body(patch).Do(ctx).Error(); err != nil {
			return fmt.Errorf("patch caBundle of %s %s: %w", r.resource, r.name, err)
		}
		m.Log.InfoContext(ctx, "caBundle updated", "resource", r.resource, "name", r.name)
	}
	return nil
}

// bundle returns cas and the unexpired certificates of old, newest first.
func bundle(cas []*x509.Certificate, old []byte, now time.Time) []byte {
	all := slices.Clone(cas)
	for rest := old; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && now.Before(c.NotAfter) {
			all = append(all, c)
		}
	}
	slices.SortFunc(all, func(a, b *x509.Certificate) int {
		return cmp.Or(b.NotAfter.Compare(a.NotAfter), bytes.Compare(a.Raw, b.Raw))
	})
	all = slices.CompactFunc(all, func(a, b *x509.Certificate) bool { return a.Equal(b) })
	var out []byte
	for _, c := range all {
		out = append(out, pemCert(c)...)
	}
	return out
}
