package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-cni/plexus/agent/server"
	"github.com/plexus-cni/plexus/internal/shimbin"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// serve runs a Server with h on a fresh socket until the test ends.
func serve(t *testing.T, h server.HandlerFunc) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	l, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&server.Server{Handler: h, Version: "test"}).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// shim execs the real shim binary with verb and config.
func shim(t *testing.T, verb, config string) (stdout []byte, exit int) {
	t.Helper()
	r, err := shimbin.Run(t, map[string]string{"CNI_COMMAND": verb, "CNI_CONTAINERID": "ctr1", "CNI_IFNAME": "eth0"}, []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	return r.Stdout, r.Exit
}

// The real shim and the server understand each other: the request arrives
// whole and the handler's result comes back as the shim's stdout.
func TestShimRoundTrip(t *testing.T) {
	path := serve(t, func(_ context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		return &plexusv1.CNIResponse{Result: fmt.Appendf(nil, `{"verb":%q,"id":%q,"ifname":%q,"config":%d}`,
			req.Verb.String(), req.ContainerId, req.Ifname, len(req.Config))}
	})
	config := fmt.Sprintf(`{"cniVersion":"1.1.0","socketPath":%q}`, path)
	out, exit := shim(t, "ADD", config)
	want := fmt.Sprintf(`{"verb":"VERB_ADD","id":"ctr1","ifname":"eth0","config":%d}`, len(config))
	if exit != 0 || string(out) != want {
		t.Fatalf("exit %d, stdout %s; want 0 and %s", exit, out, want)
	}
}

// A result too large for the shim to accept becomes a clear CNI error
// instead of a frame the shim would reject as a broken agent.
func TestOversizedResult(t *testing.T) {
	path := serve(t, func(context.Context, *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		return &plexusv1.CNIResponse{Result: bytes.Repeat([]byte("x"), server.MaxMessageSize+1)}
	})
	out, exit := shim(t, "ADD", fmt.Sprintf(`{"cniVersion":"1.1.0","socketPath":%q}`, path))
	var e struct {
		Code uint32 `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(out, &e); err != nil || exit != 1 || e.Code != 5 || !strings.Contains(e.Msg, "exceeds the 8388608 byte message limit") {
		t.Fatalf("exit %d, stdout %.200s; want exit 1 and CNI error 5 naming the limit", exit, out)
	}
}
