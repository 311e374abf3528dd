package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/plexus-cni/plexus/agent/netstatus"
	"github.com/plexus-cni/plexus/agent/source"
)

// Component is the Events' source component.
const Component = "plexus-agent"

// Reporter publishes a pod's network-status as a merge patch of its
// annotations (never a PUT of the pod or its status) and records Events.
type Reporter struct {
	Client   *Client
	NodeName string
}

// Report writes the network-status annotation and one Normal Event per
// attached interface.
func (r *Reporter) Report(ctx context.Context, pod *source.Pod, status []netstatus.Entry) error {
	// The Events go out concurrently with the patch: an ADD waits for one
	// API round trip instead of one per interface plus one.
	errs := make([]error, len(status))
	var wg sync.WaitGroup
	for i, e := range status {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("Add %s %v from %s", e.Interface, e.IPs, e.Name)
			errs[i] = r.event(ctx, pod, corev1.EventTypeNormal, "AddedInterface", msg)
		}()
	}
	patchErr := r.Publish(ctx, pod, status)
	wg.Wait()
	if patchErr != nil {
		return patchErr
	}
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("events for pod %s/%s: %s", pod.Namespace, pod.Name, strings.Join(msgs, "; "))
	}
	return nil
}

// Publish writes the network-status annotation.
func (r *Reporter) Publish(ctx context.Context, pod *source.Pod, status []netstatus.Entry) error {
	value, err := json.Marshal(status)
	if err != nil {
		return fmt.Errorf("encode network-status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	meta := map[string]any{"annotations": map[string]string{source.NetworkStatusAnnotation: string(value)}}
	if pod.UID != "" {
		// A UID in the patch makes it fail on a re-created pod of the same
		// name instead of writing our status onto it.
		meta["uid"] = pod.UID
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	if err := r.Client.PatchPod(ctx, pod.Namespace, pod.Name, patch, Component); err != nil {
		return fmt.Errorf("patch network-status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// Event records a Normal Event.
func (r *Reporter) Event(ctx context.Context, pod *source.Pod, reason, msg string) {
	// Best effort: the agent's log and the network-status tell it too.
	_ = r.event(ctx, pod, corev1.EventTypeNormal, reason, msg)
}

// Failed records a Warning Event naming why the pod's networks failed.
func (r *Reporter) Failed(ctx context.Context, pod *source.Pod, cause error) {
	// Best effort: the CNI error already carries the cause to the runtime.
	_ = r.event(ctx, pod, corev1.EventTypeWarning, "ErrorAddingNetwork", cause.Error())
}

// Warn records a Warning Event of a selection compatible mode accepted as
// Multus would, saying how to make it valid.
func (r *Reporter) Warn(ctx context.Context, pod *source.Pod, msg string) {
	// Best effort: the agent's log has the warning too.
	_ = r.event(ctx, pod, corev1.EventTypeWarning, "NetworkSelectionWarning", msg)
}

func (r *Reporter) event(ctx context.Context, pod *source.Pod, typ, reason, msg string) error {
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID),
		},
		Reason:         reason,
		Message:        truncate(msg, 1024),
		Type:           typ,
		Source:         corev1.EventSource{Component: Component, Host: r.NodeName},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	if err := r.Client.CreateEvent(ctx, ev); err != nil {
		return fmt.Errorf("create %s event %s: %w", typ, reason, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
