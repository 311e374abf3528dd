package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

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

// cniError is the CNI error object as encoding/json writes it.
type cniError struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Code       uint32 `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// The agent makes the CNI error JSON the shim prints, byte for byte as
// encoding/json writes it: escapes, U+2028, invalid UTF-8 as U+FFFD, NUL
// bytes, with the cniVersion of the config when it has one it can read.
func TestShimPrintsCNIErrors(t *testing.T) {
	t.Parallel()
	msg := "bad \"thing\" <in> & \\ \n\t\x01 \x00 \u2028 ünï \xff\xfe end"
	details := "pod ns/p, network side, field spec.config: \xc3"
	path := serve(t, func(context.Context, *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		return &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: 999, Msg: msg, Details: details}}
	})
	for _, c := range []struct{ config, version string }{
		{`{"cniVersion":"0.4.0","socketPath":%q}`, "0.4.0"},
		{`{"socketPath":%q}`, ""},
		{`{"cniVersion":"1.0.0\u0000\u2028<","socketPath":%q}`, "1.0.0\x00\u2028<"},
		{`{"cniVersion":1,"socketPath":%q}`, ""},
		{`{"cniVersion":"1.1.0","socketPath":%q,}`, ""}, // not JSON: no version to trust
		{`{"cniVersion":"1.1.0","socketPath":%q} trailing`, ""},
	} {
		out, exit := shim(t, "ADD", fmt.Sprintf(c.config, path))
		want, _ := json.Marshal(cniError{CNIVersion: c.version, Code: 999, Msg: msg, Details: details})
		if exit != 1 || !bytes.Equal(out, want) {
			t.Errorf("config %s: exit %d, stdout\n%s\nwant\n%s", c.config, exit, out, want)
		}
	}
}

// A shim from before raw_output gets the result and error fields, the
// error's strings made valid UTF-8 so that they encode at all.
func TestOlderShim(t *testing.T) {
	t.Parallel()
	path := serve(t, func(_ context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		if req.ContainerId == "ok" {
			return &plexusv1.CNIResponse{Result: []byte(`{"cniVersion":"1.1.0"}`)}
		}
		return &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: 7, Msg: "bad \xff", Details: "\xc3"}}
	})
	for _, c := range []struct {
		id   string
		want *plexusv1.CNIResponse
	}{
		{"ok", &plexusv1.CNIResponse{Result: []byte(`{"cniVersion":"1.1.0"}`)}},
		{"fail", &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: 7, Msg: "bad \uFFFD", Details: "\uFFFD"}}},
	} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, m := range []proto.Message{&plexusv1.Hello{ApiVersion: 1, ShimVersion: "old"}, &plexusv1.CNIRequest{Verb: plexusv1.Verb_VERB_ADD, ContainerId: c.id}} {
			if _, err := protodelim.MarshalTo(conn, m); err != nil {
				t.Fatal(err)
			}
		}
		r := bufio.NewReader(conn)
		var reply plexusv1.HelloReply
		var resp plexusv1.CNIResponse
		if err := protodelim.UnmarshalFrom(r, &reply); err != nil || reply.RawOutput || reply.Error != nil {
			t.Fatalf("%s: HelloReply %v, %v", c.id, &reply, err)
		}
		if err := protodelim.UnmarshalFrom(r, &resp); err != nil || !proto.Equal(&resp, c.want) {
			t.Errorf("%s: response %v, %v; want %v", c.id, &resp, err, c.want)
		}
	}
}
