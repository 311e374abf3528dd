// Package podresources is a client of kubelet's PodResources API (v1) on
// its unix socket: which devices kubelet allocated to a pod's containers.
// It implements devices.Source.
//
// It speaks gRPC's unary calls itself (wire.go: HTTP/2 without TLS from
// net/http, messages through protowire) instead of linking grpc-go: grpc-go
// imports golang.org/x/net/trace, whose html/template makes the linker keep
// every exported method of every type in the binary, which doubled the
// agent's size (61 MB instead of 33 MB stripped).
//
// The connection is made on first use, so an agent whose pods need no
// devices never talks to kubelet. Kubelet restarts are handled: before each
// query the socket file is compared (inode and modification time) with the
// one the connection was made to, since a restarted kubelet creates a new
// socket, and a query that fails because kubelet is unreachable is retried
// once on a fresh connection.
package podresources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/plexus-cni/plexus/agent/devices"
)

// DefaultSocket is kubelet's PodResources socket.
const DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// DefaultTimeout bounds each call to kubelet.
const DefaultTimeout = 5 * time.Second

// maxMsgSize is what kubelet's own client allows: List on a node with many
// pods is larger than gRPC's 4 MiB default.
const maxMsgSize = 16 << 20

// ErrClosed is returned after Close.
var ErrClosed = errors.New("podresources client closed")

// Client queries kubelet. It is safe for concurrent use.
type Client struct {
	socket  string
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	// conn holds the HTTP/2 connection to sock, the socket file it was
	// made to.
	conn *http.Transport
	sock fs.FileInfo
	// noGet: this kubelet does not serve Get (older than 1.27, or the
	// KubeletPodResourcesGet gate is off); use List. Reset on reconnect:
	// a restarted kubelet may be a newer one.
	noGet bool
}

// New returns a client of the socket; timeout bounds each call (0 means
// DefaultTimeout). Nothing is dialed until the first query.
func New(socket string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{socket: socket, timeout: timeout}
}

// Close closes the connection. Queries after Close fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropLocked()
	return nil
}

// PodDevices implements devices.Source.
func (c *Client) PodDevices(ctx context.Context, namespace, name string) ([]devices.Container, error) {
	pr, err := c.podResources(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	out := make([]devices.Container, 0, len(pr.containers))
	for _, cr := range pr.containers {
		c := devices.Container{Name: cr.name, Resources: map[string][]string{}}
		for _, cd := range cr.devices {
			for _, id := range cd.ids {
				// Kubelet lists a device once per NUMA node it is on.
				if !contains(c.Resources[cd.resource], id) {
					c.Resources[cd.resource] = append(c.Resources[cd.resource], id)
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// podResources asks kubelet, on a fresh connection once more if kubelet
// could not be reached.
func (c *Client) podResources(ctx context.Context, namespace, name string) (*podResources, error) {
	for attempt := 0; ; attempt++ {
		conn, noGet, err := c.connect(attempt > 0)
		if err != nil {
			return nil, err
		}
		pr, err := c.query(ctx, conn, noGet, namespace, name)
		if err == nil {
			return pr, nil
		}
		if attempt == 0 && ctx.Err() == nil && reconnectable(err) {
			continue
		}
		return nil, fmt.Errorf("kubelet PodResources API on %s: pod %s/%s: %w", c.socket, namespace, name, err)
	}
}

// reconnectable: kubelet could not be reached or went away (a transport
// error, or Unavailable), or another query closed the connection under us
// after noticing a new socket (Canceled).
func reconnectable(err error) bool {
	var st *statusError
	if errors.As(err, &st) {
		return st.code == codeUnavailable || st.code == codeCanceled
	}
	var te *transportError
	return errors.As(err, &te)
}

// connect returns a connection to the current socket file, dialing anew
// when there is none, the socket file changed, or force.
func (c *Client) connect(force bool) (*http.Transport, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, ErrClosed
	}
	fi, err := os.Stat(c.socket)
	if err != nil {
		c.dropLocked()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("kubelet PodResources socket %s does not exist (is kubelet running, and is the socket mounted into the agent?)", c.socket)
		}
		return nil, false, fmt.Errorf("kubelet PodResources socket: %w", err)
	}
	if c.conn != nil && !force && sameSocket(fi, c.sock) {
		return c.conn, c.noGet, nil
	}
	c.dropLocked()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	socket := c.socket
	c.conn = &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// One connection, as grpc-go keeps: HTTP/2 multiplexes the calls.
		MaxConnsPerHost: 1,
	}
	c.sock, c.noGet = fi, false
	return c.conn, false, nil
}

// sameSocket: the same inode and modification time. The inode alone is not
// enough: a file system may give a new socket the inode number of the one
// just removed.
func sameSocket(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime())
}

func (c *Client) dropLocked() {
	if c.conn == nil {
		return
	}
	c.conn.CloseIdleConnections()
	c.conn, c.sock = nil, nil
}

// query asks with Get, or with List where kubelet has no Get.
func (c *Client) query(ctx context.Context, conn *http.Transport, noGet bool, namespace, name string) (*podResources, error) {
	if !noGet {
		callCtx, cancel := context.WithTimeout(ctx, c.timeout)
		resp, err := call(callCtx, conn, methodGet, appendGetRequest(nil, namespace, name))
		cancel()
		if err == nil {
			pr, err := parseGetResponse(resp)
			if err != nil {
				return nil, fmt.Errorf("Get: %w", err)
			}
			if pr == nil {
				return nil, fmt.Errorf("kubelet answered Get without pod resources")
			}
			return pr, nil
		}
		if !getUnsupported(err) {
			return nil, fmt.Errorf("Get: %w", err)
		}
		c.mu.Lock()
		if c.conn == conn {
			c.noGet = true
		}
		c.mu.Unlock()
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := call(callCtx, conn, methodList, nil)
	if err != nil {
		return nil, fmt.Errorf("List: %w", err)
	}
	pr, err := parseListResponse(resp, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("List: %w", err)
	}
	if pr == nil {
		return nil, fmt.Errorf("kubelet does not list the pod")
	}
	return pr, nil
}

// getUnsupported recognizes a kubelet without Get: before 1.27 the method
// does not exist (Unimplemented); 1.27 to 1.29 with the
// KubeletPodResourcesGet gate off answer with an untyped error (code
// Unknown) whose text is the only tell.
func getUnsupported(err error) bool {
	var st *statusError
	if !errors.As(err, &st) {
		return false
	}
	switch st.code {
	case codeUnimplemented:
		return true
	case codeUnknown:
		return strings.Contains(st.msg, "disabled")
	}
	return false
}

var _ devices.Source = (*Client)(nil)
