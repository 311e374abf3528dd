// Package podresourcestest is a stand-in for kubelet's PodResources API:
// the real v1 PodResourcesLister gRPC service on a unix socket, answering
// from pods the test sets, and able to restart or vanish as kubelet does.
package podresourcestest

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// GetMode is how the fake answers Get.
type GetMode int

const (
	// GetServed: Get works, as on kubelet 1.30 and later.
	GetServed GetMode = iota
	// GetUnimplemented: Get does not exist, as before kubelet 1.27.
	GetUnimplemented
	// GetGateDisabled: Get answers kubelet 1.27-1.29's error with the
	// KubeletPodResourcesGet feature gate off.
	GetGateDisabled
)

// Kubelet serves PodResourcesLister on Socket.
type Kubelet struct {
	Socket string
	// Gets and Lists count the calls served.
	Gets, Lists atomic.Int32

	mu      sync.Mutex
	getMode GetMode
	pods    []*v1.PodResources
	srv     *grpc.Server
	lis     *net.UnixListener
	wg      sync.WaitGroup
}

// Start serves on socket until the test ends.
func Start(tb testing.TB, socket string) *Kubelet {
	tb.Helper()
	k := &Kubelet{Socket: socket}
	k.listen(tb)
	tb.Cleanup(k.Stop)
	return k
}

func (k *Kubelet) listen(tb testing.TB) {
	tb.Helper()
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: k.Socket, Net: "unix"})
	if err != nil {
		tb.Fatalf("fake kubelet: listen on %s: %v", k.Socket, err)
	}
	srv := grpc.NewServer()
	v1.RegisterPodResourcesListerServer(srv, &service{k: k})
	k.mu.Lock()
	k.srv, k.lis = srv, lis
	k.mu.Unlock()
	k.wg.Go(func() { _ = srv.Serve(lis) })
}

// SetGetMode chooses how Get answers.
func (k *Kubelet) SetGetMode(m GetMode) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.getMode = m
}

// SetPod sets (replaces) a pod's containers.
func (k *Kubelet) SetPod(namespace, name string, containers ...*v1.ContainerResources) {
	k.mu.Lock()
	defer k.mu.Unlock()
	pr := &v1.PodResources{Namespace: namespace, Name: name, Containers: containers}
	for i, p := range k.pods {
		if p.Namespace == namespace && p.Name == name {
			k.pods[i] = pr
			return
		}
	}
	k.pods = append(k.pods, pr)
}

// Container builds a container's resources the way kubelet reports them:
// one ContainerDevices per device, each on NUMA node 0 (a device on two
// nodes would be listed twice; dup lists such devices).
func Container(name string, devices map[string][]string, dup ...string) *v1.ContainerResources {
	c := &v1.ContainerResources{Name: name}
	numa := func(id int64) *v1.TopologyInfo { return &v1.TopologyInfo{Nodes: []*v1.NUMANode{{ID: id}}} }
	for res, ids := range devices {
		for _, id := range ids {
			c.Devices = append(c.Devices, &v1.ContainerDevices{ResourceName: res, DeviceIds: []string{id}, Topology: numa(0)})
			for _, d := range dup {
				if d == id {
					c.Devices = append(c.Devices, &v1.ContainerDevices{ResourceName: res, DeviceIds: []string{id}, Topology: numa(1)})
				}
			}
		}
	}
	return c
}

// Stop stops serving and removes the socket, as a kubelet shutting down
// cleanly does. It may be called more than once.
func (k *Kubelet) Stop() { k.stop(true) }

// Crash stops serving but leaves the socket file behind, as a killed
// kubelet does.
func (k *Kubelet) Crash() { k.stop(false) }

func (k *Kubelet) stop(unlink bool) {
	k.mu.Lock()
	srv, lis := k.srv, k.lis
	k.srv, k.lis = nil, nil
	k.mu.Unlock()
	if srv == nil {
		return
	}
	lis.SetUnlinkOnClose(unlink)
	srv.Stop()
	k.wg.Wait()
}

// Restart stops and serves again on the same path: a new socket file with
// a new inode, as after a kubelet restart. A socket left by Crash is
// replaced.
func (k *Kubelet) Restart(tb testing.TB) {
	tb.Helper()
	k.Crash()
	// Hold on to the old inode while the new socket is created, so that the
	// file system cannot hand the new socket the same inode number.
	old := k.Socket + ".old"
	if err := os.Link(k.Socket, old); err != nil && !os.IsNotExist(err) {
		tb.Fatalf("fake kubelet: %v", err)
	}
	defer os.Remove(old)
	if err := os.Remove(k.Socket); err != nil && !os.IsNotExist(err) {
		tb.Fatalf("fake kubelet: remove stale socket: %v", err)
	}
	k.listen(tb)
}

type service struct {
	v1.UnimplementedPodResourcesListerServer
	k *Kubelet
}

func (s *service) List(context.Context, *v1.ListPodResourcesRequest) (*v1.ListPodResourcesResponse, error) {
	s.k.Lists.Add(1)
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	return &v1.ListPodResourcesResponse{PodResources: s.k.pods}, nil
}

func (s *service) Get(_ context.Context, req *v1.GetPodResourcesRequest) (*v1.GetPodResourcesResponse, error) {
	s.k.Gets.Add(1)
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	switch s.k.getMode {
	case GetUnimplemented:
		return nil, status.Error(codes.Unimplemented, "method Get not implemented")
	case GetGateDisabled:
		// What kubelet returns: a plain error, which gRPC sends as Unknown.
		return nil, fmt.Errorf("PodResources API Get method disabled")
	}
	for _, p := range s.k.pods {
		if p.Namespace == req.GetPodNamespace() && p.Name == req.GetPodName() {
			return &v1.GetPodResourcesResponse{PodResources: p}, nil
		}
	}
	return nil, fmt.Errorf("pod %s in namespace %s not found", req.GetPodName(), req.GetPodNamespace())
}
