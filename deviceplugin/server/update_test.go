package server_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/deviceplugin/discovery"
	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/server"
	"github.com/plexus-cni/plexus/devinfo"
)

// TestUpdateDevices: an in-place device change keeps the socket, streams
// the new list with fresh health, and removes the Device Info files of
// dropped devices (the caller keeps held devices in the list).
func TestUpdateDevices(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	all := ps[0].Devices // 8 iavf VFs
	first := ps[0]
	first.Devices = all[:4]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devinfoDir := filepath.Join(t.TempDir(), "devinfo")
	p := start(t, ctx, server.Config{Pool: first, PluginDir: kubelettest.ShortDir(t), Root: tr.Root, DevInfoDir: devinfoDir, HealthInterval: time.Hour})
	before, err := os.Stat(p.Socket())
	if err != nil {
		t.Fatal(err)
	}
	c := kubelettest.Dial(t, p.Socket())
	stream := kubelettest.ListAndWatch(t, ctx, c)
	if h := recv(t, stream); len(h) != 4 {
		t.Fatalf("initial list %v", h)
	}
	held, freed := all[0].Address, all[1].Address
	if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{held}}, {DevicesIds: []string{freed}}}}); err != nil {
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

	// Shrink to the last two and the held device, which is gone from
	// sysfs and so Unhealthy at once; the others go, with their files.
	tr.Remove(held)
	added, removed = p.UpdateDevices(append([]discovery.Device{all[0]}, all[6:]...))
	if len(added) != 0 || len(removed) != 5 {
		t.Errorf("shrink: added %v removed %v", added, removed)
	}
	h := recv(t, stream)
	if len(h) != 3 || h[held] != pb.Unhealthy || h[all[6].Address] != pb.Healthy || h[all[7].Address] != pb.Healthy {
		t.Errorf("after shrink %v", h)
	}
	if _, ok := h[freed]; ok {
		t.Errorf("free device %s kept", freed)
	}
	if _, err := os.Stat(devinfo.Path(devinfoDir, p.ResourceName(), held)); err != nil {
		t.Errorf("device info of the kept device: %v", err)
	}
	if _, err := os.Stat(devinfo.Path(devinfoDir, p.ResourceName(), freed)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device info of the dropped device %s: %v", freed, err)
	}

	after, err := os.Stat(p.Socket())
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("socket replaced by an in-place update: %v", err)
	}
}

// fakeInUse holds what Allocate handed out plus a preset set; known is
// whether kubelet could be asked.
type fakeInUse struct {
	mu    sync.Mutex
	held  map[string]bool
	known bool
}

func (f *fakeInUse) Allocated(_ string, ids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.held[id] = true
	}
}

func (f *fakeInUse) Held(string) (map[string]bool, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.held), f.known
}

// TestDevInfoOfHeldDevicesOutlivesPlugin: start-up removes the stale files
// of free devices only, Stop keeps the files of held devices (also one
// allocated by this run), and with nobody able to tell what is held no
// file is removed at all.
func TestDevInfoOfHeldDevicesOutlivesPlugin(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	all := ps[0].Devices
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name  string
		known bool
	}{{"known", true}, {"unknown", false}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "devinfo")
			path := func(id string) string { return devinfo.Path(dir, ps[0].Spec.FullName(), id) }
			exists := func(id string) bool {
				_, err := os.Stat(path(id))
				return err == nil
			}
			// Left by a previous run: one held device, one free one.
			for _, d := range all[:2] {
				if _, err := devinfo.WritePCI(dir, ps[0].Spec.FullName(), d.Address, d.PFAddress); err != nil {
					t.Fatal(err)
				}
			}
			inUse := &fakeInUse{held: map[string]bool{all[0].Address: true}, known: tt.known}
			p := start(t, ctx, server.Config{Pool: ps[0], PluginDir: kubelettest.ShortDir(t), Root: tr.Root, DevInfoDir: dir, InUse: inUse, HealthInterval: time.Hour})
			if !exists(all[0].Address) || exists(all[1].Address) != !tt.known {
				t.Errorf("after start: held file kept %v, free file kept %v", exists(all[0].Address), exists(all[1].Address))
			}
			c := kubelettest.Dial(t, p.Socket())
			if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{all[2].Address}}}}); err != nil {
				t.Fatal(err)
			}
			// A device allocated and then (as kubelet reports) released.
			if _, err := c.Allocate(ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{all[3].Address}}}}); err != nil {
				t.Fatal(err)
			}
			inUse.mu.Lock()
			delete(inUse.held, all[3].Address)
			inUse.mu.Unlock()
			p.Stop()
			for _, id := range []string{all[0].Address, all[2].Address} {
				if !exists(id) {
					t.Errorf("device info of held %s removed by Stop", id)
				}
			}
			if exists(all[3].Address) != !tt.known {
				t.Errorf("device info of released %s: exists %v, known %v", all[3].Address, exists(all[3].Address), tt.known)
			}
		})
	}
}
