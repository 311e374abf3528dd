package kube

import (
	"context"
	"encoding/json"
	"fmt"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/plexus-cni/plexus/agent/config"
)

// Client is the agent's API client: one REST client per API group it uses,
// over a scheme holding only core/v1 and the NAD types. Not the typed
// clientset (kubernetes.NewForConfig) nor the NAD project's generated one:
// both register every API group's types, and the clientset links every
// group's client and apply configurations, for an agent that reads pods
// and NADs, patches pods and creates Events (and, at exit, reads one
// DaemonSet's metadata).
type Client struct {
	core *rest.RESTClient // /api/v1
	nads *rest.RESTClient // /apis/k8s.cni.cncf.io/v1
	apps *rest.RESTClient // /apis/apps/v1, read as metadata only
}

// NewClient makes the REST clients from cfg (which it does not modify).
func NewClient(cfg *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := nadv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	// One HTTP client and one rate limiter for the three, as the clientset
	// shares them among its groups: kubernetes.qps/burst are the agent's
	// whole budget.
	base := rest.CopyConfig(cfg)
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if base.RateLimiter == nil && base.QPS > 0 {
		base.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(base.QPS, base.Burst)
	}
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kubernetes HTTP client: %w", err)
	}
	newREST := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(base)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs
		rc, err := rest.RESTClientForConfigAndClient(c, httpClient)
		if err != nil {
			return nil, fmt.Errorf("REST client for %s: %w", gv, err)
		}
		return rc, nil
	}
	var c Client
	if c.core, err = newREST(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, err
	}
	if c.nads, err = newREST(nadv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if c.apps, err = newREST(schema.GroupVersion{Group: "apps", Version: "v1"}, "/apis"); err != nil {
		return nil, err
	}
	return &c, nil
}

// GetPod reads a pod from the API server.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var pod corev1.Pod
	err := c.core.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(&pod)
	if err != nil {
		return nil, err
	}
	return &pod, nil
}

// PatchPod applies a JSON merge patch to a pod.
func (c *Client) PatchPod(ctx context.Context, namespace, name string, patch []byte, fieldManager string) error {
	return c.core.Patch(types.MergePatchType).Namespace(namespace).Resource("pods").Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: fieldManager}, metav1.ParameterCodec).
		Body(patch).Do(ctx).Error()
}

// CreateEvent creates an Event in its namespace.
func (c *Client) CreateEvent(ctx context.Context, ev *corev1.Event) error {
	return c.core.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Error()
}

// DaemonSetMeta reads a DaemonSet's metadata (the rest of it is dropped
// while decoding: the apps/v1 types are not linked).
func (c *Client) DaemonSetMeta(ctx context.Context, namespace, name string) (*metav1.ObjectMeta, error) {
	raw, err := c.apps.Get().Namespace(namespace).Resource("daemonsets").Name(name).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var ds metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, fmt.Errorf("decode DaemonSet %s/%s: %w", namespace, name, err)
	}
	return &ds.ObjectMeta, nil
}

// RESTConfig is the client configuration of k (agent.yaml's kubernetes
// section): its kubeconfig, or the pod's ServiceAccount when it names
// none, with its rate limit, for the component userAgent names.
func RESTConfig(k config.Kubernetes, userAgent string) (*rest.Config, error) {
	var c *rest.Config
	var err error
	if k.Kubeconfig != "" {
		c, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	} else {
		c, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	c.UserAgent = userAgent
	c.QPS, c.Burst = k.QPS, k.Burst
	return c, nil
}
