package admission

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/metadata"

	"github.com/plexus-cni/plexus/agent/config"
)

// The webhook's look-ups are not throttled by the agent's
// kubernetes.qps/burst: at 1/1, twenty look-ups would take 19 s.
func TestRestConfigDoesNotThrottle(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":{"name":"vf","namespace":"apps"}}`)
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: '"+srv.URL+"'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := restConfig(&config.Config{Kubernetes: config.Kubernetes{Kubeconfig: kubeconfig, QPS: 1, Burst: 1}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := metadata.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Client: client}
	start := time.Now()
	for range 20 {
		if _, err := c.GetNAD(context.Background(), "apps", "vf"); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 look-ups took %v: throttled client-side", d)
	}
}
