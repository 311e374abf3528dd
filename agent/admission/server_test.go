package admission_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/agent/admission"
	"github.com/plexus-cni/plexus/agent/source"
)

// testCA is a throwaway CA and a serving certificate it signed for
// 127.0.0.1.
type testCA struct {
	pem   []byte // the CA certificate, the webhooks' caBundle
	pool  *x509.CertPool
	serve tls.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, key := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plexus test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "plexus-webhook"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool(),
		serve: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}}
	c.pool.AddCert(ca)
	return c
}

// startServer serves h over TLS on a loopback port until the returned stop
// is called (or the test ends); stop returns Serve's error.
func startServer(t *testing.T, h *admission.Handler, ca *testCA) (url string, srv *admission.Server, stop func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = admission.NewServer(h, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &ca.serve, nil }}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	var once bool
	var result error
	stop = func() error {
		if !once {
			once = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(15 * time.Second):
				t.Error("Serve did not return after its context ended")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return "https://" + l.Addr().String(), srv, stop
}

func TestServer(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	url, _, stop := startServer(t, newHandler(cluster), ca)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}, Timeout: 10 * time.Second}
	post := func(path string, body []byte) (int, string) {
		t.Helper()
		resp, err := client.Post(url+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	review := func(req *admissionv1.AdmissionRequest) []byte {
		data, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, tt := range []struct {
		name, path string
		body       []byte
		code       int
		want       string
	}{
		{name: "not JSON", path: "/validate", body: []byte("{"), code: 400, want: "decode AdmissionReview"},
		{name: "no request", path: "/mutate", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: 400, want: "no request"},
		{name: "wrong shape", path: "/validate", body: []byte(`{"request":{"uid":5}}`), code: 400, want: "decode AdmissionReview"},
		{name: "over the size bound", path: "/validate", body: bytes.Repeat([]byte(" "), admission.MaxReviewSize+1), code: 413, want: "request body too large"},
		{name: "object not a pod", path: "/validate", body: review(&admissionv1.AdmissionRequest{UID: "x", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create}),
			code: 200, want: `"uid":"x","allowed":false`},
		{name: "refused", path: "/validate", body: review(podRequest(t, admissionv1.Create, newPod("apps", networks("vf@")))), code: 200, want: `"uid":"u","allowed":false`},
		{name: "patched", path: "/mutate", body: review(podRequest(t, admissionv1.Create, newPod("apps", networks("vf")))), code: 200, want: `"patchType":"JSONPatch"`},
		{name: "huge annotation", path: "/validate", body: review(podRequest(t, admissionv1.Create, newPod("apps", annotation(source.NetworksAnnotation, strings.Repeat("x", 1<<20))))),
			code: 200, want: "byte limit"},
	} {
		code, body := post(tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %.300s; want %d with %q", tt.name, code, body, tt.code, tt.want)
		}
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok",
		"/metrics": `plexus_admission_duration_seconds_count{kind="Pod",verdict="patched"} 1`} {
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(data), want) {
			t.Errorf("%s: %d, want %q in %.2000s", path, resp.StatusCode, want, data)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := client.Get(url + "/healthz"); err == nil {
		t.Error("still serving after its context ended")
	}
}
