// Package admission is plexus-webhook's admission handlers: a mutating one
// that gives pods the device resources their networks need (and the
// Downward API volume of their annotations), and validating ones that
// refuse, at creation, the pods and NetworkAttachmentDefinitions the agent
// would refuse at ADD — with the agent's own code and messages
// (selection.Policy, resolve.Parse, resolve.ResourceName). See
// docs/webhook.md.
package admission

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/plexus-cni/plexus/agent/selection"
	"github.com/plexus-cni/plexus/agent/source"
)

// ResourceContainerAnnotation names the container of a pod that gets the
// device resources of its networks; unset, the first container does.
const ResourceContainerAnnotation = "plexus.io/resource-container"

// DefaultLookupTimeout bounds each look-up of the API server a handler
// makes, so that an answer always comes well within the API server's
// webhook timeout.
const DefaultLookupTimeout = 3 * time.Second

// PodLister lists every pod of the cluster (the NAD-delete warning).
type PodLister interface {
	ListPods(ctx context.Context) ([]source.Pod, error)
}

// Handler answers admission requests.
type Handler struct {
	// Policy and SystemNamespaces are the agent configuration's
	// (config.Config.SelectionPolicy).
	Policy           selection.Policy
	SystemNamespaces []string
	// DownwardAPI adds the podnetinfo Downward API volume to mutated pods.
	DownwardAPI bool
	NADs        source.NADGetter
	Pods        PodLister
	// LookupTimeout bounds each look-up; 0 means DefaultLookupTimeout.
	LookupTimeout time.Duration
	Log           *slog.Logger
}

// Kinds the handlers serve.
var (
	podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	nadKind = metav1.GroupVersionKind{Group: nadv1.SchemeGroupVersion.Group, Version: nadv1.SchemeGroupVersion.Version, Kind: "NetworkAttachmentDefinition"}
)

// Mutate answers a mutating admission request.
func (h *Handler) Mutate(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind == podKind && req.Operation == admissionv1.Create {
		return h.mutatePod(ctx, req)
	}
	return allow(nil)
}

// Validate answers a validating admission request.
func (h *Handler) Validate(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	switch {
	case req.Kind == podKind && (req.Operation == admissionv1.Create || req.Operation == admissionv1.Update):
		return h.validatePod(ctx, req)
	case req.Kind == nadKind && (req.Operation == admissionv1.Create || req.Operation == admissionv1.Update):
		return h.validateNAD(req)
	case req.Kind == nadKind && req.Operation == admissionv1.Delete:
		return h.deleteNAD(ctx, req)
	}
	return allow(nil)
}

func (h *Handler) system(namespace string) bool {
	return slices.Contains(h.SystemNamespaces, namespace)
}

// lookup is a context for one look-up of the API server.
func (h *Handler) lookup(ctx context.Context) (context.Context, context.CancelFunc) {
	d := h.LookupTimeout
	if d == 0 {
		d = DefaultLookupTimeout
	}
	return context.WithTimeout(ctx, d)
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func allow(warnings []string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

// deny refuses with err's message: the agent's, so that what the user
// sees at creation is what the agent would have said at ADD.
func deny(code int32, err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: err.Error()}}
}

// invalid is deny for a request the decoder could not read.
func invalid(what string, err error) *admissionv1.AdmissionResponse {
	return deny(400, fmt.Errorf("decode %s: %w", what, err))
}
