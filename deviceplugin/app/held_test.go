package app_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/plexus-cni/plexus/agent/podresources/podresourcestest"
	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/server"
	"github.com/plexus-cni/plexus/deviceplugin/sysfstest"
	"github.com/plexus-cni/plexus/devinfo"
)

const netRes = "plexus.io/net"

// heldSetup is a daemon on the fake tree with a fake kubelet serving both
// Registration and PodResources, and a Device Info dir; ctx bounds the test.
type heldSetup struct {
	ctx        context.Context
	tr         *sysfstest.Tree
	dir        string // plugin dir
	netSock    string // the net pool's plugin socket
	cfgPath    string
	devinfoDir string
	podResSock string
	kubelet    *kubelettest.Kubelet
	podRes     *podresourcestest.Kubelet
}

func newHeldSetup(t *testing.T) *heldSetup {
	s := &heldSetup{devinfoDir: filepath.Join(t.TempDir(), "devinfo"), podResSock: filepath.Join(kubelettest.ShortDir(t), "kubelet.sock")}
	s.tr, s.dir, s.cfgPath, s.kubelet = setup(t)
	s.netSock = filepath.Join(s.dir, server.SocketName(netRes))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s.ctx = ctx
	s.podRes = podresourcestest.Start(t, s.podResSock)
	return s
}

func (s *heldSetup) start(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t, s.tr, s.cfgPath, s.dir, "--devinfo-dir", s.devinfoDir, "--pod-resources-socket", s.podResSock)
	if got := registered(t, s.kubelet, d, 0, startedUp); !slices.Equal(got, []string{"plexus.io/dpdk", netRes}) {
		t.Fatalf("registered %v", got)
	}
	return d
}

func (s *heldSetup) infoFile(id string) string { return devinfo.Path(s.devinfoDir, netRes, id) }

func fileExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// listed is ListAndWatch's next list, as sorted IDs.
func listed(t *testing.T, stream pb.DevicePlugin_ListAndWatchClient) []string {
	t.Helper()
	var ids []string
	for _, d := range kubelettest.Next(t, stream) {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// allocate allocates id as kubelet does for a pod, and has the fake
// kubelet list it for the pod, as kubelet's PodResources API then does.
func (s *heldSetup) allocate(t *testing.T, id string) {
	t.Helper()
	if _, err := kubelettest.Dial(t, s.netSock).Allocate(s.ctx, &pb.AllocateRequest{ContainerRequests: []*pb.ContainerAllocateRequest{{DevicesIds: []string{id}}}}); err != nil {
		t.Fatal(err)
	}
	s.podRes.SetPod("default", "pod", podresourcestest.Container("c", map[string][]string{netRes: {id}}))
	if !fileExists(t, s.infoFile(id)) {
		t.Fatalf("no device info file for %s after Allocate", id)
	}
}

// TestRestartKeepsHeldDevice restarts the daemon while a pod holds a
// device: its Device Info file survives both the shutdown and the next
// start-up, and the device is listed again; a free device's leftover
// file is removed at start-up.
func TestRestartKeepsHeldDevice(t *testing.T) {
	s := newHeldSetup(t)
	d := s.start(t)
	held, free := sysfstest.VFAddress(0x3b, 1), sysfstest.VFAddress(0x3b, 0)
	s.allocate(t, held)
	// A file a crashed run might leave for a device no pod holds.
	if _, err := devinfo.WritePCI(s.devinfoDir, netRes, free, "0000:3b:00.0"); err != nil {
		t.Fatal(err)
	}

	if err := d.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !fileExists(t, s.infoFile(held)) {
		t.Fatal("shutdown removed the device info file of a held device")
	}

	s.start(t) // same dirs
	if !fileExists(t, s.infoFile(held)) {
		t.Error("start-up removed the device info file of a held device")
	}
	if fileExists(t, s.infoFile(free)) {
		t.Error("start-up kept the leftover device info file of a free device")
	}
	stream := kubelettest.ListAndWatch(t, s.ctx, kubelettest.Dial(t, s.netSock))
	if got := listed(t, stream); !slices.Contains(got, held) {
		t.Errorf("after restart the pool lists %v, not the held %s", got, held)
	}
}

// TestNarrowWhileHeld narrows the pool's selectors so that a held device
// no longer matches: the pool keeps listing it and its Device Info file
// stays while the pod holds it; once kubelet stops listing it, the pool
// shrinks and the file goes.
func TestNarrowWhileHeld(t *testing.T) {
	s := newHeldSetup(t)
	d := s.start(t)
	held, other := sysfstest.VFAddress(0x3b, 1), sysfstest.VFAddress(0x3b, 0)
	s.allocate(t, held)

	// VF 1 leaves the selectors: the pool's spec changes, so its plugin
	// is restarted and registers again.
	watching(t, filepath.Dir(s.cfgPath))
	mark := d.logs.Len()
	writeConfig(t, s.cfgPath, strings.Replace(config, "pfNames: [ens1f0]", "pfNames: ['ens1f0#0']", 1))
	if got := registered(t, s.kubelet, d, mark, reloaded); !slices.Equal(got, []string{netRes}) {
		t.Fatalf("after narrowing registered %v", got)
	}
	stream := kubelettest.ListAndWatch(t, s.ctx, kubelettest.Dial(t, s.netSock))
	if got := listed(t, stream); !slices.Equal(got, []string{other, held}) {
		t.Errorf("narrowed pool while held lists %v, want %v", got, []string{other, held})
	}
	if !fileExists(t, s.infoFile(held)) {
		t.Error("narrowing removed the device info file of a held device")
	}

	// The pod goes: kubelet lists the device no more.
	s.podRes.SetPod("default", "pod")
	for got := listed(t, stream); !slices.Equal(got, []string{other}); got = listed(t, stream) {
		if s.ctx.Err() != nil {
			t.Fatalf("pool still lists %v after release", got)
		}
	}
	for fileExists(t, s.infoFile(held)) {
		if s.ctx.Err() != nil {
			t.Fatal("device info file of the released device not removed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Logged once UpdateDevices has returned, which is after the stream
	// and the file saw the change.
	for !strings.Contains(d.logs.String(), "pool devices changed") {
		if s.ctx.Err() != nil {
			t.Fatal("shrink not logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
