// Package inuse tells which pool devices pods hold. Kubelet's PodResources
// API (List) is the source: it lists, per container of every active pod,
// the device IDs kubelet assigned, and a device leaves the list when its
// pod is gone. Allocate calls bridge the moment between kubelet getting an
// answer from Allocate and recording the assignment that List reports.
package inuse

import (
	"context"
	"fmt"
	"maps"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// DefaultSocket is kubelet's PodResources socket.
const DefaultSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// DefaultTimeout bounds one List call.
const DefaultTimeout = 5 * time.Second

// maxMsgSize is what kubelet's own client allows: List on a node with many
// pods is larger than gRPC's 4 MiB default.
const maxMsgSize = 16 << 20

// releaseMisses is how many Lists, each begun after a device's last
// Allocate, must not list it before it counts as released. One is not
// enough: kubelet records the assignment only after Allocate returns, so
// a List begun in between misses a device that is held.
const releaseMisses = 2

type key struct{ resource, id string }

// Tracker is the set of held devices, refreshed from kubelet. It is safe
// for concurrent use; Allocated and Held do no I/O.
type Tracker struct {
	socket  string
	timeout time.Duration

	mu sync.Mutex
	// known: the last List succeeded. Until then, and after a failed
	// List, nobody can tell which devices are free.
	known  bool
	listed map[key]bool // from the last successful List
	// pending are allocations not yet seen in a List, with the Lists
	// that missed them so far.
	pending map[key]*allocation
	seq     uint64 // counts Allocated calls
}

type allocation struct {
	seq    uint64 // Tracker.seq after the Allocated call
	misses int
}

// New returns a tracker of kubelet's PodResources socket; timeout bounds
// each List (0 means DefaultTimeout). It knows nothing until Refresh
// succeeds.
func New(socket string, timeout time.Duration) *Tracker {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Tracker{socket: socket, timeout: timeout, listed: map[key]bool{}, pending: map[key]*allocation{}}
}

// Allocated records that kubelet was handed ids of resource. They count
// as held until Lists show otherwise (see releaseMisses).
func (t *Tracker) Allocated(resource string, ids []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	for _, id := range ids {
		t.pending[key{resource, id}] = &allocation{seq: t.seq}
	}
}

// Held returns the IDs of resource that pods hold. When known is false
// kubelet could not be asked (or not yet): the caller must then treat
// every device it lists as held.
func (t *Tracker) Held(resource string) (ids map[string]bool, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids = map[string]bool{}
	for k := range t.listed {
		if k.resource == resource {
			ids[k.id] = true
		}
	}
	for k := range t.pending {
		if k.resource == resource {
			ids[k.id] = true
		}
	}
	return ids, t.known
}

// Refresh asks kubelet. It reports whether any device stopped being held
// or the tracker went from not knowing to knowing, i.e. whether pools may
// now shrink. On error the tracker no longer knows (see Held).
func (t *Tracker) Refresh(ctx context.Context) (released bool, err error) {
	t.mu.Lock()
	begun := t.seq
	t.mu.Unlock()
	listed, err := t.list(ctx)

	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.known = false
		return false, err
	}
	before := t.heldLocked()
	wasKnown := t.known
	t.known, t.listed = true, listed
	for k, a := range t.pending {
		switch {
		case listed[k]:
			delete(t.pending, k) // kubelet has it now
		case a.seq <= begun:
			if a.misses++; a.misses >= releaseMisses {
				delete(t.pending, k)
			}
		}
	}
	after := t.heldLocked()
	if !wasKnown {
		return true, nil
	}
	for k := range before {
		if !after[k] {
			return true, nil
		}
	}
	return false, nil
}

func (t *Tracker) heldLocked() map[key]bool {
	held := maps.Clone(t.listed)
	for k := range t.pending {
		held[k] = true
	}
	return held
}

// list makes one List call on a fresh connection: a call every few
// seconds does not need a kept connection, and a fresh one follows a
// kubelet restart (new socket) without further ado.
func (t *Tracker) list(ctx context.Context) (map[key]bool, error) {
	if _, err := os.Stat(t.socket); err != nil {
		return nil, fmt.Errorf("kubelet PodResources socket (is it mounted into the pod?): %w", err)
	}
	conn, err := grpc.NewClient("unix://"+t.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("kubelet PodResources socket %s: %w", t.socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	resp, err := v1.NewPodResourcesListerClient(conn).List(ctx, &v1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("kubelet PodResources List on %s: %w", t.socket, err)
	}
	listed := map[key]bool{}
	for _, pr := range resp.GetPodResources() {
		for _, c := range pr.GetContainers() {
			for _, d := range c.GetDevices() {
				for _, id := range d.GetDeviceIds() {
					listed[key{d.GetResourceName(), id}] = true
				}
			}
		}
	}
	return listed, nil
}
