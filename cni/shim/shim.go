// Package shim is the plexus CNI plugin the container runtime execs. It
// forwards the CNI invocation to the node agent over a unix socket and prints
// the agent's answer: a result on stdout, or CNI error JSON and exit status 1.
//
// Every pod ADD and DEL pays this binary's start-up, so the package keeps its
// import graph small on purpose: no Kubernetes packages, no grpc-go, no
// protobuf reflection runtime (see proto/plexus/v1/shimwire), no net package
// (the socket is dialled with syscall). docs/benchmarks.md has the numbers.
package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/plexus-cni/plexus/proto/plexus/v1/shimwire"
)

// Version is the shim's build version, set by the linker.
var Version = "dev"

// DefaultSocket is where the agent listens unless the config says otherwise.
const DefaultSocket = "/run/plexus/agent.sock"

// CNI error codes the shim itself produces (CNI spec, "Error codes").
const (
	codeIncompatibleVersion = 1
	codeInvalidEnv          = 4
	codeIOFailure           = 5
	codeDecodeFailure       = 6
	codeTryAgainLater       = 11
	codePluginNotAvailable  = 50
)

// supportedVersions are the CNI spec versions plexus accepts on stdin.
var supportedVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// netConf is the part of the plexus network configuration the shim reads.
// Everything else is the agent's business.
type netConf struct {
	CNIVersion string `json:"cniVersion"`
	// SocketPath overrides DefaultSocket (tests and the local demo).
	SocketPath string `json:"socketPath,omitempty"`
	// ConnectTimeoutSeconds bounds how long the shim waits for the agent's
	// socket to accept; the agent may be restarting.
	ConnectTimeoutSeconds float64 `json:"connectTimeoutSeconds,omitempty"`
	// TimeoutSeconds bounds the whole call once connected.
	TimeoutSeconds float64 `json:"timeoutSeconds,omitempty"`
}

const (
	defaultConnectTimeout = 3 * time.Second
	defaultCallTimeout    = 5 * time.Minute
)

// cniError is the CNI error object printed on stdout.
type cniError struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Code       uint64 `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

var verbs = map[string]uint64{
	"ADD":    shimwire.VerbAdd,
	"DEL":    shimwire.VerbDel,
	"CHECK":  shimwire.VerbCheck,
	"STATUS": shimwire.VerbStatus,
	"GC":     shimwire.VerbGC,
}

// Run executes one CNI invocation and returns the process exit status.
func Run(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	command := getenv("CNI_COMMAND")
	if command == "VERSION" {
		return printVersion(stdin, stdout)
	}
	config, err := io.ReadAll(io.LimitReader(stdin, shimwire.MaxMessageSize+1))
	if err != nil {
		return fail(stdout, "", codeIOFailure, "read network configuration from stdin", err.Error())
	}
	var conf netConf
	if err := json.Unmarshal(config, &conf); err != nil {
		return fail(stdout, "", codeDecodeFailure, "decode network configuration from stdin", err.Error())
	}
	verb, ok := verbs[command]
	if !ok {
		return fail(stdout, conf.CNIVersion, codeInvalidEnv, fmt.Sprintf("unknown CNI_COMMAND %q", command), "")
	}
	if len(config) > shimwire.MaxMessageSize {
		return fail(stdout, conf.CNIVersion, codeDecodeFailure, "network configuration too large", fmt.Sprintf("over %d bytes", shimwire.MaxMessageSize))
	}
	req := &shimwire.CNIRequest{
		Verb:        verb,
		ContainerID: getenv("CNI_CONTAINERID"),
		Netns:       getenv("CNI_NETNS"),
		Ifname:      getenv("CNI_IFNAME"),
		Args:        getenv("CNI_ARGS"),
		Path:        getenv("CNI_PATH"),
		Config:      config,
	}
	resp, err := call(&conf, req)
	if err != nil {
		code := uint64(codeTryAgainLater)
		if verb == shimwire.VerbStatus {
			// STATUS must say "plugin not available" while the agent is down.
			code = codePluginNotAvailable
		}
		return fail(stdout, conf.CNIVersion, code, "plexus agent not available", err.Error())
	}
	if resp.Error != nil {
		return fail(stdout, conf.CNIVersion, resp.Error.Code, resp.Error.Msg, resp.Error.Details)
	}
	if _, err := stdout.Write(resp.Result); err != nil {
		fmt.Fprintf(stderr, "plexus: write result: %v\n", err)
		return 1
	}
	return 0
}

func printVersion(stdin io.Reader, stdout io.Writer) int {
	// VERSION may carry a config; only its cniVersion matters for the answer.
	info := struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}{"1.1.0", supportedVersions}
	var conf netConf
	if data, err := io.ReadAll(io.LimitReader(stdin, 1<<20)); err == nil && len(data) > 0 && json.Unmarshal(data, &conf) == nil && conf.CNIVersion != "" {
		if !contains(supportedVersions, conf.CNIVersion) {
			return fail(stdout, conf.CNIVersion, codeIncompatibleVersion, fmt.Sprintf("incompatible CNI versions: config is %q, plugin supports %v", conf.CNIVersion, supportedVersions), "")
		}
		info.CNIVersion = conf.CNIVersion
	}
	out, _ := json.Marshal(info)
	if _, err := stdout.Write(out); err != nil {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func fail(stdout io.Writer, cniVersion string, code uint64, msg, details string) int {
	out, _ := json.Marshal(cniError{CNIVersion: cniVersion, Code: code, Msg: msg, Details: details})
	stdout.Write(out)
	return 1
}

// call sends the handshake and the request in one write and reads both
// answers: one round trip.
func call(conf *netConf, req *shimwire.CNIRequest) (*shimwire.CNIResponse, error) {
	socket := conf.SocketPath
	if socket == "" {
		socket = DefaultSocket
	}
	connectTimeout := seconds(conf.ConnectTimeoutSeconds, defaultConnectTimeout)
	conn, err := dial(socket, connectTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(seconds(conf.TimeoutSeconds, defaultCallTimeout))); err != nil {
		return nil, fmt.Errorf("set deadline on %s: %w", socket, err)
	}

	out, err := shimwire.AppendFrame(nil, shimwire.MarshalHello(&shimwire.Hello{APIVersion: shimwire.APIVersion1, ShimVersion: Version}))
	if err != nil {
		return nil, err
	}
	if out, err = shimwire.AppendFrame(out, shimwire.MarshalCNIRequest(req)); err != nil {
		return nil, err
	}
	if _, err := conn.Write(out); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", socket, err)
	}
	r := bufio.NewReader(conn)
	frame, err := shimwire.ReadFrame(r)
	if err != nil {
		return nil, fmt.Errorf("read handshake from %s: %w", socket, err)
	}
	hello, err := shimwire.UnmarshalHelloReply(frame)
	if err != nil {
		return nil, err
	}
	if hello.Error != nil {
		// The agent refused this shim; that is an answer, not an outage.
		return &shimwire.CNIResponse{Error: hello.Error}, nil
	}
	frame, err = shimwire.ReadFrame(r)
	if err != nil {
		return nil, fmt.Errorf("read response from %s: %w", socket, err)
	}
	return shimwire.UnmarshalCNIResponse(frame)
}

func seconds(v float64, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v * float64(time.Second))
}

// dial connects to a unix stream socket, retrying while the socket is absent
// or refuses (agent starting or restarting) until timeout.
func dial(path string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := dialOnce(path)
		if err == nil {
			return f, nil
		}
		retry := errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EAGAIN)
		if !retry || time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to agent socket %s (waited %s): %w", path, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialOnce(path string) (*os.File, error) {
	if len(path) >= 108 || strings.IndexByte(path, 0) >= 0 {
		return nil, fmt.Errorf("invalid socket path %q", path)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// A non-blocking fd is registered with the runtime poller, so deadlines work.
	return os.NewFile(uintptr(fd), path), nil
}
