// Package kubelettest is a stand-in for kubelet's device plugin side: a
// Registration server on a kubelet.sock, and a client for plugin sockets.
// It lets tests exercise the real gRPC servers over real unix sockets.
package kubelettest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	regpb "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Kubelet records Register calls made to its socket.
type Kubelet struct {
	pb.UnimplementedRegistrationServer

	Socket    string
	Registers chan *pb.RegisterRequest

	mu  sync.Mutex
	srv *grpc.Server
	wg  sync.WaitGroup
}

// Start serves a Registration server on dir/kubelet.sock. The server is
// stopped when the test ends.
func Start(tb testing.TB, dir string) *Kubelet {
	tb.Helper()
	k := &Kubelet{Socket: filepath.Join(dir, "kubelet.sock"), Registers: make(chan *pb.RegisterRequest, 64)}
	k.listen(tb)
	tb.Cleanup(k.Stop)
	return k
}

func (k *Kubelet) listen(tb testing.TB) {
	tb.Helper()
	lis, err := net.Listen("unix", k.Socket)
	if err != nil {
		tb.Fatalf("fake kubelet listen: %v", err)
	}
	srv := grpc.NewServer()
	pb.RegisterRegistrationServer(srv, k)
	k.mu.Lock()
	k.srv = srv
	k.mu.Unlock()
	k.wg.Go(func() { _ = srv.Serve(lis) })
}

// Register implements the Registration service.
func (k *Kubelet) Register(_ context.Context, r *pb.RegisterRequest) (*pb.Empty, error) {
	k.Registers <- r
	return &pb.Empty{}, nil
}

// Restart mimics a kubelet restart: the socket goes away, plugin sockets
// in the directory are deleted as kubelet does, and a new kubelet.sock
// appears.
func (k *Kubelet) Restart(tb testing.TB, deletePluginSockets bool) {
	tb.Helper()
	k.Stop()
	_ = os.Remove(k.Socket)
	if deletePluginSockets {
		entries, _ := os.ReadDir(filepath.Dir(k.Socket))
		for _, e := range entries {
			_ = os.Remove(filepath.Join(filepath.Dir(k.Socket), e.Name()))
		}
	}
	k.listen(tb)
}

// Stop stops the server; it may be called more than once.
func (k *Kubelet) Stop() {
	k.mu.Lock()
	srv := k.srv
	k.srv = nil
	k.mu.Unlock()
	if srv != nil {
		// Graceful, so a Register that kubelet recorded also gets its
		// answer; otherwise the plugin retries and tests see it twice.
		srv.GracefulStop()
	}
	k.wg.Wait()
}

// WaitRegister returns the next Register request or fails the test.
func (k *Kubelet) WaitRegister(tb testing.TB, timeout time.Duration) *pb.RegisterRequest {
	tb.Helper()
	select {
	case r := <-k.Registers:
		return r
	case <-time.After(timeout):
		tb.Fatalf("no Register call within %v", timeout)
		return nil
	}
}

// Dial connects to a plugin socket the way kubelet does.
func Dial(tb testing.TB, socket string) pb.DevicePluginClient {
	tb.Helper()
	return pb.NewDevicePluginClient(dial(tb, socket))
}

// DialRegistration connects to a plugin's socket in the plugin watcher
// directory (plugins_registry) the way kubelet's plugin watcher does.
func DialRegistration(tb testing.TB, socket string) regpb.RegistrationClient {
	tb.Helper()
	return regpb.NewRegistrationClient(dial(tb, socket))
}

func dial(tb testing.TB, socket string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dial %s: %v", socket, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// ListAndWatch opens the device list stream of a plugin, as kubelet does
// once the plugin has registered.
func ListAndWatch(tb testing.TB, ctx context.Context, c pb.DevicePluginClient) pb.DevicePlugin_ListAndWatchClient {
	tb.Helper()
	stream, err := c.ListAndWatch(ctx, &pb.Empty{})
	if err != nil {
		tb.Fatalf("ListAndWatch: %v", err)
	}
	return stream
}

// Next is the stream's next device list or fails the test.
func Next(tb testing.TB, stream pb.DevicePlugin_ListAndWatchClient) []*pb.Device {
	tb.Helper()
	resp, err := stream.Recv()
	if err != nil {
		tb.Fatalf("ListAndWatch recv: %v", err)
	}
	return resp.Devices
}

// ShortDir returns a temp dir with a short path for sockets: unix socket
// paths are limited to 108 bytes and t.TempDir() paths can be long.
func ShortDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
