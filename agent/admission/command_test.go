package admission_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/agent/admission"
)

func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ca := newTestCA(t)
	keyDER, err := x509.MarshalECPrivateKey(ca.serve.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cert := write("tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.serve.Certificate[0]}))
	key := write("tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	kubeconfig := write("kubeconfig", []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"))
	config := write("agent.yaml", []byte("clusterNetwork: cluster\nnamespaceIsolation: true\nkubernetes: {kubeconfig: "+kubeconfig+"}\n"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"--config", config, "--tls-cert-file", cert, "--tls-key-file", key, "--listen", addr}

	var out bytes.Buffer
	if err := admission.Run(context.Background(), []string{"--version"}, &out, &out); err != nil || strings.TrimSpace(out.String()) != "dev" {
		t.Errorf("--version: %v, %q", err, out.String())
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", filepath.Join(dir, "nope.yaml")}, "read agent config"},
		{[]string{"--config", write("bad.yaml", []byte("selectionMode: loose\nclusterNetwork: c\n"))}, `selectionMode: "loose"`},
		{append(slices.Clone(args), "--tls-key-file", cert), "serving certificate"},
		{append(slices.Clone(args), "extra"), "unexpected arguments"},
	} {
		if err := admission.Run(context.Background(), tt.args, &out, &out); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run %q: %v, want %q", tt.args, err, tt.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() { done <- admission.Run(ctx, args, &log, &log) }()
	// Serving once its address takes connections.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not listen on %s within 15 s", addr)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v\n%s", err, log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if !strings.Contains(log.String(), "plexus webhook serving") {
		t.Errorf("log: %s", log.String())
	}
}
