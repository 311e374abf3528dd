// Tests of the plexus shim binary (plexus/plexus.c), driven as the runtime drives
// it: exec'd with the CNI environment and the config on stdin, against a
// fake agent that speaks plexus.v1 through the generated protobuf code, so
// plexus.proto, not the shim's own encoder, is the reference.
package cni_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-cni/plexus/internal/shimbin"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

type run struct {
	stdout, stderr []byte
	exit           int
	elapsed        time.Duration
}

// shim execs the binary with exactly env and stdin (shimbin.Run). Call
// shimbin.Path first in the test's own goroutine: it may Fatalf.
func shim(t *testing.T, env map[string]string, stdin []byte) run {
	t.Helper()
	r, err := shimbin.Run(t, env, stdin)
	if err != nil {
		// Errorf, not Fatalf: workers call this from their own goroutines.
		t.Errorf("exec shim: %v", err)
		return run{exit: -1}
	}
	return run{stdout: r.Stdout, stderr: r.Stderr, exit: r.Exit, elapsed: r.Elapsed}
}

// cniError is the CNI error object, in the field order the spec and
// encoding/json give it.
type cniError struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Code       uint32 `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// wantError checks that the run failed with exit status 1 and printed
// exactly what encoding/json prints for e, with details compared by prefix
// when e.Details ends in "…".
func wantError(t *testing.T, r run, e cniError) {
	t.Helper()
	if r.exit != 1 {
		t.Errorf("exit status %d, want 1 (stdout %s)", r.exit, r.stdout)
	}
	var got cniError
	if err := json.Unmarshal(r.stdout, &got); err != nil {
		t.Fatalf("stdout is not a CNI error object: %v: %q", err, r.stdout)
	}
	if prefix, ok := strings.CutSuffix(e.Details, "…"); ok {
		if !strings.HasPrefix(got.Details, prefix) {
			t.Errorf("details %q, want prefix %q", got.Details, prefix)
		}
		e.Details = got.Details
	}
	want, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.stdout, want) {
		t.Errorf("stdout\n%s\nwant\n%s", r.stdout, want)
	}
}

const versionReply = `{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`

// VERSION is answered without the agent and without reading the config,
// as the reference plugins' skel answers it.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, stdin := range []string{"", `{"cniVersion":"0.4.0","type":"plexus"}`, `{"cniVersion":`, `{"cniVersion":"7.0.0"}`} {
		r := shim(t, map[string]string{"CNI_COMMAND": "VERSION"}, []byte(stdin))
		if r.exit != 0 || string(r.stdout) != versionReply {
			t.Errorf("stdin %q: exit %d, stdout %s; want 0 and %s", stdin, r.exit, r.stdout, versionReply)
		}
	}
}

// A config too large for one message is refused without the agent.
func TestConfigTooLarge(t *testing.T) {
	t.Parallel()
	big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 8<<20)...)
	big = append(big, `"}`...)
	wantError(t, shim(t, map[string]string{"CNI_COMMAND": "ADD"}, big),
		cniError{Code: 6, Msg: "network configuration too large", Details: "the request exceeds the 8388608 byte message limit"})
}

// With no agent, every verb fails (DEL too, so the runtime retries it);
// STATUS says "plugin not available", the others "try again later". The
// details name the socket path, escaped, in ASCII.
func TestAgentDown(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "absent.sock")
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","socketPath":%q,"connectTimeoutSeconds":0.3}`, sock)
	for verb, code := range map[string]uint32{"ADD": 11, "DEL": 11, "CHECK": 11, "GC": 11, "STATUS": 50, "FROB": 11} {
		r := shim(t, map[string]string{"CNI_COMMAND": verb}, []byte(conf))
		wantError(t, r, cniError{Code: code, Msg: "plexus agent not available",
			Details: "agent socket " + sock + ": connect (waited 0.3s): No such file or directory"})
		if r.elapsed < 300*time.Millisecond {
			t.Errorf("%s gave up after %v, before its 0.3 s connect timeout", verb, r.elapsed)
		}
	}
	for _, c := range []struct{ path, details string }{
		{"/" + strings.Repeat("d", 120), "agent socket /" + strings.Repeat("d", 120) + ": too long"},
		{`/run/a\u0000b`, `agent socket /run/a\u0000b: contains a NUL byte`},
		{`/no/\"q\" \\ \u00e9 \t`, `agent socket /no/\u0022q\u0022 \u005c \u00c3\u00a9 \u0009: connect (waited 0.01s): No such file or directory`},
	} {
		r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(`{"socketPath":"`+c.path+`","connectTimeoutSeconds":0.01}`))
		if r.exit != 1 || !bytes.Equal(r.stdout, []byte(`{"code":11,"msg":"plexus agent not available","details":"`+c.details+`"}`)) {
			t.Errorf("socketPath %s: exit %d, stdout %s; want details %s", c.path, r.exit, r.stdout, c.details)
		}
	}
}

// agent is a fake plexus agent on a unix socket: it records what each
// connection sent and answers with reply.
type agent struct {
	path  string
	reqs  chan request
	reply func(c net.Conn, hello *plexusv1.Hello, req *plexusv1.CNIRequest)
}

type request struct {
	hello *plexusv1.Hello
	req   *plexusv1.CNIRequest
	err   error
}

func newAgent(t *testing.T, reply func(c net.Conn, hello *plexusv1.Hello, req *plexusv1.CNIRequest)) *agent {
	t.Helper()
	a := &agent{path: filepath.Join(t.TempDir(), "agent.sock"), reqs: make(chan request, 16), reply: reply}
	l, err := net.Listen("unix", a.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			go a.serve(c)
		}
	}()
	return a
}

func (a *agent) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	hello, req := &plexusv1.Hello{}, &plexusv1.CNIRequest{}
	opts := protodelim.UnmarshalOptions{MaxSize: 16 << 20}
	if err := opts.UnmarshalFrom(r, hello); err != nil {
		a.reqs <- request{err: fmt.Errorf("read Hello: %w", err)}
		return
	}
	if err := opts.UnmarshalFrom(r, req); err != nil {
		a.reqs <- request{err: fmt.Errorf("read CNIRequest: %w", err)}
		return
	}
	a.reqs <- request{hello: hello, req: req}
	a.reply(c, hello, req)
}

func (a *agent) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-a.reqs:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the fake agent got no request")
	}
	return request{}
}

func send(c net.Conn, msgs ...proto.Message) {
	for _, m := range msgs {
		if _, err := protodelim.MarshalTo(c, m); err != nil {
			return // the shim went away; the test sees it
		}
	}
}

// answer accepts the call and answers with what to print and the exit code.
func answer(stdout []byte, exit uint32) func(net.Conn, *plexusv1.Hello, *plexusv1.CNIRequest) {
	return func(c net.Conn, _ *plexusv1.Hello, _ *plexusv1.CNIRequest) {
		send(c, &plexusv1.HelloReply{ApiVersion: plexusv1.APIVersion_API_VERSION_1, AgentVersion: "test", RawOutput: true},
			&plexusv1.CNIResponse{Stdout: stdout, ExitCode: exit})
	}
}

func accept(result []byte) func(net.Conn, *plexusv1.Hello, *plexusv1.CNIRequest) {
	return answer(result, 0)
}

// Every CNI variable and the config, byte for byte, reach the agent in the
// messages plexus.proto defines; what the agent says to print comes out
// unchanged.
func TestRequestAndResult(t *testing.T) {
	t.Parallel()
	result := []byte(`{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24"}]}`)
	a := newAgent(t, accept(result))
	// Escapes in the socket path are decoded (\u002f is '/'); the rest of
	// the config is not the shim's business, invalid JSON included.
	escaped := strings.ReplaceAll(a.path, "/", `\u002f`)
	config := []byte("{\"cniVersion\":\"1.0.0\",\n \"name\":\"plexus\",\"type\":\"plexus\",\"socketPath\":\"" + escaped +
		"\",\"timeoutSeconds\":30,\"x\":[1,2,{\"y\":null}],\"ünï\":\"ç\", not json \x00\xff")
	for verb, want := range map[string]plexusv1.Verb{"ADD": plexusv1.Verb_VERB_ADD, "DEL": plexusv1.Verb_VERB_DEL,
		"CHECK": plexusv1.Verb_VERB_CHECK, "STATUS": plexusv1.Verb_VERB_STATUS, "GC": plexusv1.Verb_VERB_GC,
		"FROB": plexusv1.Verb_VERB_UNSPECIFIED} {
		env := map[string]string{"CNI_COMMAND": verb, "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/var/run/netns/cni-1",
			"CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}
		r := shim(t, env, config)
		if r.exit != 0 || !bytes.Equal(r.stdout, result) {
			t.Fatalf("%s: exit %d, stdout %s; want 0 and the agent's result", verb, r.exit, r.stdout)
		}
		got := a.next(t)
		if got.hello.ApiVersion != plexusv1.APIVersion_API_VERSION_1 || got.hello.ShimVersion == "" || !got.hello.RawOutput {
			t.Errorf("%s: Hello %v", verb, got.hello)
		}
		wantReq := &plexusv1.CNIRequest{Verb: want, ContainerId: "c0ffee", Netns: "/var/run/netns/cni-1", Ifname: "eth0",
			Args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", Path: "/opt/cni/bin:/usr/lib/cni", Config: config, Command: verb}
		if !proto.Equal(got.req, wantReq) {
			t.Errorf("%s: request\n%v\nwant\n%v", verb, got.req, wantReq)
		}
	}
	// Unset variables are empty fields; a DEL's empty result prints nothing.
	b := newAgent(t, accept(nil))
	r := shim(t, map[string]string{"CNI_COMMAND": "DEL"}, []byte(fmt.Sprintf(`{"socketPath":%q}`, b.path)))
	if r.exit != 0 || len(r.stdout) != 0 {
		t.Errorf("DEL: exit %d, stdout %q; want 0 and nothing", r.exit, r.stdout)
	}
	if got := b.next(t).req; got.Verb != plexusv1.Verb_VERB_DEL || got.ContainerId != "" || got.Netns != "" {
		t.Errorf("DEL request %v", got)
	}
}

// The shim prints the agent's bytes as they are, NUL bytes and invalid
// UTF-8 included (making them is the agent's job: agent/server), and exits
// with the agent's exit code; a code beyond what exit can carry is 1.
func TestAgentOutputAndExitCode(t *testing.T) {
	t.Parallel()
	out := []byte("{\"code\":7,\"msg\":\"a\x00b \xff\"}")
	for _, c := range []struct {
		code uint32
		exit int
	}{{0, 0}, {1, 1}, {2, 2}, {255, 255}, {256, 1}, {1 << 31, 1}} {
		a := newAgent(t, answer(out, c.code))
		r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"socketPath":%q}`, a.path)))
		if r.exit != c.exit || !bytes.Equal(r.stdout, out) {
			t.Errorf("exit_code %d: exit %d, stdout %q; want %d and %q", c.code, r.exit, r.stdout, c.exit, out)
		}
	}
}

// What a broken, slow, foreign or older agent sends never passes for an
// answer: each case is CNI error 11 with details naming the failure.
func TestAgentMisbehaves(t *testing.T) {
	t.Parallel()
	hello := []byte{0x04, 0x08, 0x01, 0x20, 0x01} // a framed HelloReply{api_version: 1, raw_output: true}
	older, _ := proto.Marshal(&plexusv1.HelloReply{ApiVersion: 1, AgentVersion: "old"})
	refusal, _ := proto.Marshal(&plexusv1.HelloReply{Error: &plexusv1.Error{Code: 1, Msg: "shim too new"}})
	cases := []struct {
		name    string
		reply   []byte
		details string
	}{
		{"closes at once", nil, "read handshake: unexpected EOF"},
		{"closes mid-frame", append(append([]byte{}, hello...), 0x10, 0x1a, 0x03), "read response: unexpected EOF"},
		{"frame over the limit", append(append([]byte{}, hello...), 0x81, 0x80, 0x80, 0x05), "read response: frame of 10485761 bytes exceeds the 8388608 byte limit"},
		{"length varint overflows", bytes.Repeat([]byte{0xff}, 11), "read handshake: frame length varint overflows"},
		{"truncated field", append(append([]byte{}, hello...), 0x02, 0x1a, 0x05), "decode CNIResponse: malformed message"},
		{"field number 0", []byte{0x02, 0x00, 0x01}, "decode HelloReply: malformed message"},
		{"a group", append(append([]byte{}, hello...), 0x02, 0x2b, 0x2c), "decode CNIResponse: malformed message"},
		{"an older agent", protowire.AppendBytes(nil, older), "the agent did not accept this shim's protocol (agent and shim versions differ)"},
		{"a refusal", protowire.AppendBytes(nil, refusal), "the agent did not accept this shim's protocol (agent and shim versions differ)"},
	}
	for _, c := range cases {
		a := newAgent(t, func(conn net.Conn, _ *plexusv1.Hello, _ *plexusv1.CNIRequest) { conn.Write(c.reply) })
		r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"socketPath":%q}`, a.path)))
		wantError(t, r, cniError{Code: 11, Msg: "plexus agent not available", Details: "agent socket " + a.path + ": " + c.details})
		if t.Failed() {
			t.Fatalf("case %q", c.name)
		}
	}

	// An agent that never answers: the call gives up after timeoutSeconds.
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	a := newAgent(t, func(net.Conn, *plexusv1.Hello, *plexusv1.CNIRequest) { <-hang })
	r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"socketPath":%q,"timeoutSeconds":0.4}`, a.path)))
	wantError(t, r, cniError{Code: 11, Msg: "plexus agent not available", Details: "agent socket " + a.path + ": read handshake: Connection timed out"})
	if r.elapsed < 400*time.Millisecond || r.elapsed > 5*time.Second {
		t.Errorf("gave up after %v; timeoutSeconds was 0.4", r.elapsed)
	}
}

// Fields a newer agent adds, of every wire type, and those only older
// shims read are skipped; the last stdout field wins.
func TestUnknownFieldsSkipped(t *testing.T) {
	t.Parallel()
	resp := []byte{
		0x1a, 0x03, 'o', 'l', 'd', // stdout "old"
		0x0a, 0x01, 'r', // result "r", for older shims
		0x12, 0x02, 0x08, 0x07, // error {code: 7}, for older shims
		0x2d, 1, 2, 3, 4, // field 5, fixed32
		0x31, 1, 2, 3, 4, 5, 6, 7, 8, // field 6, fixed64
		0x38, 0x96, 0x01, // field 7 varint
		0x1a, 0x03, 'n', 'e', 'w', // stdout "new"
	}
	reply := append([]byte{0x04, 0x08, 0x01, 0x20, 0x01, byte(len(resp))}, resp...)
	a := newAgent(t, func(c net.Conn, _ *plexusv1.Hello, _ *plexusv1.CNIRequest) { c.Write(reply) })
	r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, []byte(fmt.Sprintf(`{"socketPath":%q}`, a.path)))
	if r.exit != 0 || string(r.stdout) != "new" {
		t.Fatalf("exit %d, stdout %q; want 0 and %q", r.exit, r.stdout, "new")
	}
	// The generated code agrees on what this message says.
	var m plexusv1.CNIResponse
	if err := proto.Unmarshal(resp, &m); err != nil || string(m.Stdout) != "new" || m.ExitCode != 0 {
		t.Fatalf("protobuf reads stdout %q, exit code %d, err %v", m.Stdout, m.ExitCode, err)
	}
}

// A config larger than the socket's buffers is sent whole.
func TestLargeConfig(t *testing.T) {
	t.Parallel()
	a := newAgent(t, accept([]byte("{}")))
	config := []byte(fmt.Sprintf(`{"socketPath":%q,"pad":"%s"}`, a.path, strings.Repeat("p", 4<<20)))
	r := shim(t, map[string]string{"CNI_COMMAND": "ADD"}, config)
	if r.exit != 0 {
		t.Fatalf("exit %d: %s", r.exit, r.stdout)
	}
	if got := a.next(t).req.Config; !bytes.Equal(got, config) {
		t.Errorf("agent got %d config bytes, want %d", len(got), len(config))
	}
}

// The shim exits promptly when the runtime closes its stdout before the
// answer is written, instead of dying by SIGPIPE unnoticed.
func TestClosedStdout(t *testing.T) {
	// Not parallel: a fork by a concurrent test holds a copy of the pipe's
	// read end until its exec, and a write in that window succeeds.
	a := newAgent(t, accept([]byte(`{"cniVersion":"1.1.0"}`)))
	cmd := exec.Command(shimbin.Path(t))
	cmd.Env = []string{"CNI_COMMAND=ADD"}
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`{"socketPath":%q}`, a.path))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	cmd.Stdout = pw
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err = cmd.Run()
	pw.Close()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(errOut.String(), "write result") {
		t.Fatalf("err %v, stderr %q; want exit status 1 and a write error on stderr", err, errOut.String())
	}
}
