// Package server serves the plexus.v1 shim protocol on a unix socket: per
// connection, a Hello/HelloReply version handshake followed by one
// CNIRequest/CNIResponse, as varint-delimited protobuf messages (see
// cni/README.md for why not gRPC). For shims that ask for raw output it
// also makes what they print: the result, or the CNI error object.
package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/plexus-cni/plexus/agent/config"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// Handler serves one CNI request.
type Handler interface {
	Serve(ctx context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse

// Serve implements Handler.
func (f HandlerFunc) Serve(ctx context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
	return f(ctx, req)
}

// readTimeout bounds how long a connection may take to send its request.
const readTimeout = 10 * time.Second

// MaxMessageSize bounds one framed message in either direction; the shim
// has the same limit (MAX_MESSAGE in cni/plexus/plexus.c). A CNI config or
// result is a few KiB; anything near this size is a bug or an attack.
const MaxMessageSize = 8 << 20

// Server is the agent's shim endpoint.
type Server struct {
	Handler Handler
	Version string
	Log     *slog.Logger
	// Limit caps requests handled at once; excess connections wait for a
	// slot (bounded memory under a burst). Zero means
	// config.DefaultMaxConcurrent, the agent's maxConcurrent default.
	Limit int
	// Observe, if set, is told how each request went.
	Observe func(verb plexusv1.Verb, d time.Duration, errCode uint32)
	// Queue, if set, is told of requests waiting for and holding a slot.
	Queue QueueObserver
}

// QueueObserver follows the bounded request queue.
type QueueObserver interface {
	Waiting(delta int)
	Serving(delta int)
}

// Listen creates the socket at path: its directory 0700, the socket 0600,
// a stale socket from a previous run removed first.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict socket dir %s: %w", dir, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	return l, nil
}

// Serve accepts connections until ctx is done, then closes the listener and
// waits for in-flight requests to finish (their contexts are cancelled).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := s.Limit
	if limit <= 0 {
		limit = config.DefaultMaxConcurrent
	}
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer wg.Wait()
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !transient(err) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors or memory: wait for requests in
			// flight to give some back instead of spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed, retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			s.queue(1, 0)
			select {
			case slots <- struct{}{}:
				s.queue(-1, 1)
			case <-ctx.Done():
				s.queue(-1, 0)
				return
			}
			defer func() { <-slots; s.queue(0, -1) }()
			if err := s.serveConn(ctx, conn); err != nil && !errors.Is(err, io.EOF) {
				log.Warn("shim connection failed", "err", err)
			}
		}()
	}
}

// transient reports whether an accept error passes by itself (resource
// exhaustion, an aborted connection); anything else means the listener is
// gone.
func transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) error {
	if err := conn.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		return err
	}
	// Shutdown must not wait for an idle or slow client: close the
	// connection if the context ends before the request is in.
	stopRead := context.AfterFunc(ctx, func() { conn.Close() })
	r := bufio.NewReader(conn)
	opts := protodelim.UnmarshalOptions{MaxSize: MaxMessageSize}
	var hello plexusv1.Hello
	if err := opts.UnmarshalFrom(r, &hello); err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	reply := &plexusv1.HelloReply{ApiVersion: plexusv1.APIVersion_API_VERSION_1, AgentVersion: s.Version}
	if hello.ApiVersion != plexusv1.APIVersion_API_VERSION_1 {
		reply.Error = &plexusv1.Error{Code: 1, Msg: fmt.Sprintf("plexus shim %s speaks API version %d, this agent (%s) serves %d; install the shim that ships with the agent",
			hello.ShimVersion, hello.ApiVersion, s.Version, plexusv1.APIVersion_API_VERSION_1)}
		_, err := protodelim.MarshalTo(conn, reply)
		return err
	}
	reply.RawOutput = hello.RawOutput
	var req plexusv1.CNIRequest
	if err := opts.UnmarshalFrom(r, &req); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	if !stopRead() {
		return ctx.Err()
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	// Cancel the request if the shim goes away (the runtime timed out).
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go watchHangup(conn, r, cancel)

	start := time.Now()
	resp := s.serveRequest(reqCtx, &req)
	if s.Observe != nil {
		s.Observe(req.Verb, time.Since(start), resp.GetError().GetCode())
	}
	out, err := proto.Marshal(reply)
	if err != nil {
		return err
	}
	body, err := marshalResponse(hello.RawOutput, req.Config, resp)
	if err != nil {
		return err
	}
	if len(body) > MaxMessageSize {
		// The shim would refuse it; say why instead.
		body, err = marshalResponse(hello.RawOutput, req.Config, &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: 5,
			Msg: fmt.Sprintf("result of %d bytes exceeds the %d byte message limit", len(body), MaxMessageSize)}})
		if err != nil {
			return err
		}
	}
	// Both frames in one write, as protodelim frames them: a varint length
	// before each message.
	buf := make([]byte, 0, len(out)+len(body)+2*binary.MaxVarintLen64)
	buf = append(protowire.AppendVarint(buf, uint64(len(out))), out...)
	buf = append(protowire.AppendVarint(buf, uint64(len(body))), body...)
	_, err = conn.Write(buf)
	return err
}

// marshalResponse encodes resp for the shim: for a raw_output shim as the
// bytes it prints and its exit status, for an older one as it is, with the
// error's strings made valid UTF-8 (which proto3 requires to encode them).
func marshalResponse(raw bool, config []byte, resp *plexusv1.CNIResponse) ([]byte, error) {
	e := resp.GetError()
	if !raw {
		if e != nil {
			resp = &plexusv1.CNIResponse{Result: resp.Result, Error: &plexusv1.Error{Code: e.Code,
				Msg: strings.ToValidUTF8(e.Msg, "\uFFFD"), Details: strings.ToValidUTF8(e.Details, "\uFFFD")}}
		}
		return proto.Marshal(resp)
	}
	if e == nil {
		return proto.Marshal(&plexusv1.CNIResponse{Stdout: resp.Result})
	}
	return proto.Marshal(&plexusv1.CNIResponse{Stdout: cniError(config, e), ExitCode: 1})
}

// cniError is the CNI error object for e as encoding/json writes it (so
// invalid UTF-8 becomes U+FFFD and <, >, & are escaped), with the cniVersion
// of the network configuration: left out when the configuration has none,
// is not JSON or is not an object, as the CNI spec allows.
func cniError(config []byte, e *plexusv1.Error) []byte {
	var conf struct {
		CNIVersion string `json:"cniVersion"`
	}
	// Decoded as the agent decodes the whole configuration (agent/attach),
	// so the version is the one it judged; an error leaves it empty.
	if json.Unmarshal(config, &conf) != nil {
		conf.CNIVersion = ""
	}
	b, err := json.Marshal(struct {
		CNIVersion string `json:"cniVersion,omitempty"`
		Code       uint32 `json:"code"`
		Msg        string `json:"msg"`
		Details    string `json:"details,omitempty"`
	}{conf.CNIVersion, e.Code, e.Msg, e.Details})
	if err != nil {
		panic(err) // strings and a number always encode
	}
	return b
}

func (s *Server) queue(waiting, serving int) {
	if s.Queue == nil {
		return
	}
	if waiting != 0 {
		s.Queue.Waiting(waiting)
	}
	if serving != 0 {
		s.Queue.Serving(serving)
	}
}

// serveRequest calls the handler, turning a panic into a CNI error for this
// request: one bad input must not take the agent down for every other pod.
func (s *Server) serveRequest(ctx context.Context, req *plexusv1.CNIRequest) (resp *plexusv1.CNIResponse) {
	defer func() {
		if p := recover(); p != nil {
			if s.Log != nil {
				s.Log.Error("panic serving CNI request", "verb", req.Verb.String(), "container", req.ContainerId, "panic", p, "stack", string(debug.Stack()))
			}
			resp = &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: 100, Msg: fmt.Sprintf("plexus agent internal error serving %s for container %s: %v", req.Verb, req.ContainerId, p)}}
		}
	}()
	return s.Handler.Serve(ctx, req)
}

// watchHangup cancels when the peer closes its end. The shim sends nothing
// after its request, so any read result means the request is abandoned.
func watchHangup(conn net.Conn, r *bufio.Reader, cancel context.CancelFunc) {
	_, err := r.ReadByte()
	if err != nil && errors.Is(err, net.ErrClosed) {
		return // we closed it ourselves after answering
	}
	cancel()
}
