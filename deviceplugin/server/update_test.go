package server_test

import (
	"context"
	"os"
	"testing"
	"time"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/server"
)

// TestUpdateDevices: an in-place device change keeps the socket, streams
// the new list, and never drops a device kubelet allocated.
func TestUpdateDevices(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	all := ps[0].Devices // 8 iavf VFs
	first := ps[0]
	first.Devices = all[:4]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := server.New(server.Config{Pool: first, PluginDir: shortDir(t), Root: tr.Root, HealthInterval: time.Hour})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	before, err := os.Stat(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	c := kubelettest.Dial(t, p.Socket())
	stream, err := c.ListAndWatch(ctx, &pb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if h := recv(t, stream); len(h) != 4 {
		t.Fatalf("initial list %v", h)
	}
	held := all[0].Address
	if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{held}}}}); err != nil {
		t.Fatal(err)
	}

	// Grow: all 8.
	added, removed := p.UpdateDevices(all)
	if len(added) != 4 || len(removed) != 0 {
		t.Errorf("grow: added %v removed %v", added, removed)
	}
	if h := recv(t, stream); len(h) != 8 {
		t.Fatalf("after grow %v", h)
	}
	// Newly listed devices are allocatable.
	if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{all[7].Address}}}}); err != nil {
		t.Errorf("allocate new device: %v", err)
	}

	// Shrink to the last two: the held device stays, gone from sysfs and
	// so Unhealthy; the other free ones go.
	tr.Remove(held)
	added, removed = p.UpdateDevices(all[6:])
	if len(added) != 0 || len(removed) != 5 {
		t.Errorf("shrink: added %v removed %v", added, removed)
	}
	h := recv(t, stream)
	if len(h) != 3 || h[held] != pb.Unhealthy || h[all[6].Address] != pb.Healthy || h[all[7].Address] != pb.Healthy {
		t.Errorf("after shrink %v", h)
	}
	if _, ok := h[all[1].Address]; ok {
		t.Errorf("free device %s kept", all[1].Address)
	}

	after, err := os.Stat(p.Socket())
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("socket replaced by an in-place update: %v", err)
	}
}
