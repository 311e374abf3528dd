// Package hotplug drives hot-plug: it hears of every pod change (the pod
// informer in Kubernetes mode, the manifests directory in local mode) and
// hands each pod whose selection changed to the core
// (attach.Manager.HotPlug), one call at a time per pod, always with the
// pod as it is now: quick successive changes converge on the last.
package hotplug

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/source"
)

// Plugger applies a pod's selection to its attachments (attach.Manager).
type Plugger interface {
	HotPlug(ctx context.Context, pod *source.Pod) ([]attach.Change, error)
}

// Controller queues pod changes and applies them.
type Controller struct {
	Plugger Plugger
	// Pod returns the pod of "namespace/name" as it is now, nil if it is
	// gone.
	Pod func(key string) *source.Pod
	// Observe, when set, is told of every change made or failed
	// ("attach"/"detach", "success"/"failure") and the time the pod's
	// whole hot-plug took.
	Observe func(op, result string, d time.Duration)
	Log     *slog.Logger
	// Workers is how many pods are hot-plugged at once (default 4).
	Workers int

	once  sync.Once
	queue workqueue.TypedRateLimitingInterface[string]
	mu    sync.Mutex
	// done is the selection last applied to each pod: an update that does
	// not change it (a status update, our own network-status patch) is
	// not queued.
	done map[string]selectionOf
}

// selectionOf is what hot-plug acts on: the annotations, for one UID.
type selectionOf struct{ uid, networks, defaultNetwork, optOut string }

func of(pod *source.Pod) selectionOf {
	return selectionOf{pod.UID, pod.Annotations[source.NetworksAnnotation], pod.Annotations[source.DefaultNetworkAnnotation], pod.Annotations[source.HotPlugAnnotation]}
}

func (c *Controller) init() {
	c.once.Do(func() {
		c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second))
		c.done = map[string]selectionOf{}
		if c.Log == nil {
			c.Log = slog.New(slog.DiscardHandler)
		}
		if c.Workers <= 0 {
			c.Workers = 4
		}
	})
}

// Changed is told of a pod as it now is; it never blocks. The first time a
// pod is seen (agent start), its record and annotation are compared too:
// a hot-plug the previous agent did not finish is finished.
func (c *Controller) Changed(pod *source.Pod) {
	c.init()
	key := pod.Namespace + "/" + pod.Name
	c.mu.Lock()
	last, ok := c.done[key]
	c.mu.Unlock()
	if ok && last == of(pod) {
		return
	}
	c.queue.Add(key)
}

// Gone forgets a deleted pod.
func (c *Controller) Gone(key string) {
	c.init()
	c.forget(key)
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.done, key)
	c.mu.Unlock()
}

// Run applies queued changes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.init()
	var wg sync.WaitGroup
	for range c.Workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	pod := c.Pod(key)
	if pod == nil {
		c.queue.Forget(key)
		return true
	}
	// Marked done before it is: an update during the hot-plug that leaves
	// the selection as it is (our own status patch) is not queued again.
	c.mu.Lock()
	c.done[key] = of(pod)
	c.mu.Unlock()
	start := time.Now()
	changes, err := c.Plugger.HotPlug(ctx, pod)
	took := time.Since(start)
	switch {
	case errors.Is(err, attach.ErrAddInProgress) && ctx.Err() == nil:
		// The runtime's ADD is running: its record will say what it
		// attached; compare again then.
		c.forget(key)
		c.queue.AddRateLimited(key)
		return true
	case errors.Is(err, attach.ErrNotAttached):
		// Not done: the pod's next update (kubelet reports the sandbox
		// it just made) compares again, which covers a selection changed
		// while the runtime's ADD had not yet written its record.
		c.forget(key)
		c.queue.Forget(key)
		return true
	}
	c.queue.Forget(key)
	if err != nil {
		// Reported to the pod as a Warning Event; retried when the
		// annotation changes again.
		c.Log.WarnContext(ctx, "hot-plug refused", "pod", key, "err", err)
	}
	for _, ch := range changes {
		result := "success"
		if ch.Err != nil {
			result = "failure"
			c.Log.WarnContext(ctx, "hot-plug failed", "pod", key, "op", ch.Op, "network", ch.Network, "ifname", ch.IfName, "err", ch.Err)
		} else {
			c.Log.InfoContext(ctx, "hot-plugged", "pod", key, "op", ch.Op, "network", ch.Network, "ifname", ch.IfName)
		}
		if c.Observe != nil {
			c.Observe(ch.Op, result, took)
		}
	}
	return true
}
