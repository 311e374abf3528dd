// Package podresources is a client of kubelet's PodResources API (v1) on
// its unix socket: which devices kubelet allocated to a pod's containers.
// It implements devices.Source.
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
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	v1 "k8s.io/kubelet/pkg/apis/podresources/v1"

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
	conn   *grpc.ClientConn
	api    v1.PodResourcesListerClient
	// sock is the socket file conn was made to.
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
	return c.dropLocked()
}

// PodDevices implements devices.Source.
func (c *Client) PodDevices(ctx context.Context, namespace, name string) ([]devices.Container, error) {
	pr, err := c.podResources(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	out := make([]devices.Container, 0, len(pr.GetContainers()))
	for _, cr := range pr.GetContainers() {
		c := devices.Container{Name: cr.GetName(), Resources: map[string][]string{}}
		for _, cd := range cr.GetDevices() {
			res := cd.GetResourceName()
			for _, id := range cd.GetDeviceIds() {
				// Kubelet lists a device once per NUMA node it is on.
				if !contains(c.Resources[res], id) {
					c.Resources[res] = append(c.Resources[res], id)
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
func (c *Client) podResources(ctx context.Context, namespace, name string) (*v1.PodResources, error) {
	for attempt := 0; ; attempt++ {
		api, noGet, err := c.connect(attempt > 0)
		if err != nil {
			return nil, err
		}
		pr, err := c.query(ctx, api, noGet, namespace, name)
		if err == nil {
			return pr, nil
		}
		if attempt == 0 && ctx.Err() == nil && reconnectable(err) {
			continue
		}
		return nil, fmt.Errorf("kubelet PodResources API on %s: pod %s/%s: %w", c.socket, namespace, name, err)
	}
}

// reconnectable: kubelet went away (Unavailable), or another query closed
// the connection under us after noticing a new socket (Canceled).
func reconnectable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return false
}

// connect returns the client of a connection to the current socket file,
// dialing anew when there is none, the socket file changed, or force.
func (c *Client) connect(force bool) (v1.PodResourcesListerClient, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, ErrClosed
	}
	fi, err := os.Stat(c.socket)
	if err != nil {
		_ = c.dropLocked()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("kubelet PodResources socket %s does not exist (is kubelet running, and is the socket mounted into the agent?)", c.socket)
		}
		return nil, false, fmt.Errorf("kubelet PodResources socket: %w", err)
	}
	if c.conn != nil && !force && sameSocket(fi, c.sock) {
		return c.api, c.noGet, nil
	}
	_ = c.dropLocked()
	conn, err := grpc.NewClient("unix://"+c.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)))
	if err != nil {
		return nil, false, fmt.Errorf("kubelet PodResources socket %s: %w", c.socket, err)
	}
	c.conn, c.api, c.sock, c.noGet = conn, v1.NewPodResourcesListerClient(conn), fi, false
	return c.api, false, nil
}

// sameSocket: the same inode and modification time. The inode alone is not
// enough: a file system may give a new socket the inode number of the one
// just removed.
func sameSocket(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime())
}

func (c *Client) dropLocked() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.api, c.sock = nil, nil, nil
	return err
}

// query asks with Get, or with List where kubelet has no Get.
func (c *Client) query(ctx context.Context, api v1.PodResourcesListerClient, noGet bool, namespace, name string) (*v1.PodResources, error) {
	if !noGet {
		callCtx, cancel := context.WithTimeout(ctx, c.timeout)
		resp, err := api.Get(callCtx, &v1.GetPodResourcesRequest{PodNamespace: namespace, PodName: name})
		cancel()
		if err == nil {
			if resp.GetPodResources() == nil {
				return nil, fmt.Errorf("kubelet answered Get without pod resources")
			}
			return resp.GetPodResources(), nil
		}
		if !getUnsupported(err) {
			return nil, fmt.Errorf("Get: %w", err)
		}
		c.mu.Lock()
		if c.api == api {
			c.noGet = true
		}
		c.mu.Unlock()
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := api.List(callCtx, &v1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("List: %w", err)
	}
	for _, pr := range resp.GetPodResources() {
		if pr.GetNamespace() == namespace && pr.GetName() == name {
			return pr, nil
		}
	}
	return nil, fmt.Errorf("kubelet does not list the pod")
}

// getUnsupported recognizes a kubelet without Get: before 1.27 the method
// does not exist (Unimplemented); 1.27 to 1.29 with the
// KubeletPodResourcesGet gate off answer with an untyped error (code
// Unknown) whose text is the only tell.
func getUnsupported(err error) bool {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unimplemented:
		return true
	case codes.Unknown:
		return strings.Contains(st.Message(), "disabled")
	}
	return false
}

var _ devices.Source = (*Client)(nil)
