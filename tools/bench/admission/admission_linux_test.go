// Package admission is the admission latency benchmark: the real
// plexus-webhook binary, registered by URL over TLS with a real etcd +
// kube-apiserver (internal/apiservertest) exactly as docs/webhook.md says,
// its certificate made and published by itself (--tls-secret), then rounds
// of 50 (PLEXUS_BENCH_ADMISSION_PODS) concurrent pod creates, each
// selecting three NADs, two of them with a resourceName, so that both pod
// webhooks run: /mutate injects the device resources, /validate parses the
// selection. Every created pod is checked for its resources.
//
// Measured: the webhook's own latency (plexus_admission_duration_seconds,
// its /metrics scraped before and after: bucket deltas); the API server's
// latency of each webhook call (apiserver_admission_webhook_admission_duration_seconds
// at its /metrics); the create as its client sees it; and, because the
// webhook's buckets only bracket a quantile, a precise per-request timing
// of the same handlers from a direct load of AdmissionReviews, 50 at once
// and then one at a time. Results: docs/benchmarks.md. Run it with
//
//	sudo tools/bench/admission.sh
//
// It is a test only so that it can use apiservertest.Start; without
// PLEXUS_BENCH_ADMISSION=1 it skips.
package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/internal/apiservertest"
	"github.com/plexus-cni/plexus/internal/childproc"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

// Names of everything the benchmark creates.
const (
	podNS         = "pxadmission"
	webhookNS     = "plexus-system"
	secretName    = "pxadmission-webhook-tls"
	webhookConfig = "pxadmission"
	resA, resB    = "example.com/pxadmission-a", "example.com/pxadmission-b"
	// selection names the NADs each pod selects: two with a resourceName
	// (a unit of each injected), one without.
	selection = "vf-a,vf-b,plain"
)

func TestAdmission(t *testing.T) {
	if os.Getenv("PLEXUS_BENCH_ADMISSION") != "1" {
		t.Skip("admission benchmark: set PLEXUS_BENCH_ADMISSION=1, or run sudo tools/bench/admission.sh (a minute)")
	}
	pods, rounds := envInt(t, "PLEXUS_BENCH_ADMISSION_PODS", 50), envInt(t, "PLEXUS_BENCH_ADMISSION_ROUNDS", 20)
	ctx := context.Background()
	fmt.Printf("admission: %d rounds of %d concurrent pod creates, load average at start: %s\n", rounds, pods, benchhost.LoadAvg())
	defer func() { fmt.Printf("admission: load average at end: %s\n", benchhost.LoadAvg()) }()

	dir := scratchDir(t)
	webhookBin := buildWebhook(t, dir)
	api := apiservertest.Start(t)
	admin := api.Config(apiservertest.AdminToken)
	// The creating client is not the bottleneck: 50 concurrent creates
	// must leave it at once.
	admin.QPS, admin.Burst = 1000, 2000
	for _, f := range []string{"../../../deploy/crds/network-attachment-definitions.yaml", "../../../deploy/namespace.yaml"} {
		if err := apiservertest.ApplyFile(ctx, admin, f, false); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
	}
	kube := kubernetes.NewForConfigOrDie(admin)
	nads := nadclient.NewForConfigOrDie(admin).K8sCniCncfIoV1().NetworkAttachmentDefinitions(podNS)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NAD CRD served", func() bool {
		_, err := nads.List(ctx, metav1.ListOptions{})
		return err == nil
	})
	for _, n := range []struct{ name, resource string }{{"vf-a", resA}, {"vf-b", resB}, {"plain", ""}} {
		nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"1.0.0","type":"macvlan","master":"eth0"}`}}
		if n.resource != "" {
			nad.Annotations = map[string]string{source.ResourceNameAnnotation: n.resource}
		}
		if _, err := nads.Create(ctx, nad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	addr := freeAddr(t)
	registerWebhooks(t, kube, "https://"+addr)
	// The webhook reads the agent's file: the shipped kubernetes.qps and
	// burst defaults (50, 100) apply to its NAD look-ups.
	agentYAML := filepath.Join(dir, "agent.yaml")
	write(t, agentYAML, "clusterNetwork: pxadmission-cluster\nkubernetes: {kubeconfig: "+api.Kubeconfig(t, apiservertest.AdminToken)+"}\n")
	startWebhook(t, webhookBin, filepath.Join(dir, "webhook.log"), "--config", agentYAML, "--listen", addr,
		"--tls-secret", secretName, "--namespace", webhookNS, "--webhook-configuration", webhookConfig, "--tls-extra-sans", "127.0.0.1")
	waitFor(t, "a pod's resources injected through the webhook's own certificate", func() bool {
		p, err := kube.CoreV1().Pods(podNS).Create(ctx, newPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && injected(p) == nil
	})
	// Its /metrics through the CA the API server trusts: the caBundle the
	// webhook published.
	mwc, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	webhook := webhookClient(t, mwc.Webhooks[0].ClientConfig.CABundle)
	scrapeWebhook := func() histograms {
		return scrape(t, webhook, "https://"+addr+"/metrics", "plexus_admission_duration_seconds", "verdict")
	}
	scrapeAPI := func() histograms {
		b, err := kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return parse(t, b, "apiserver_admission_webhook_admission_duration_seconds", "name")
	}

	// One warm-up round, not counted: first connections, TLS handshakes.
	if _, err := round(ctx, kube, "warm", pods); err != nil {
		t.Fatal(err)
	}
	webhookBefore, apiBefore := scrapeWebhook(), scrapeAPI()
	var e2e []time.Duration
	for r := range rounds {
		d, err := round(ctx, kube, "r"+strconv.Itoa(r), pods)
		if err != nil {
			t.Fatalf("round %d: %v (webhook log %s)", r, err, filepath.Join(dir, "webhook.log"))
		}
		e2e = append(e2e, d...)
	}
	webhookDelta, apiDelta := scrapeWebhook().minus(webhookBefore), scrapeAPI().minus(apiBefore)

	n := rounds * pods
	slices.Sort(e2e)
	fmt.Printf("admission: client side, pod create (API server, both webhooks, etcd): %d creates, p50 %v, p99 %v, max %v\n",
		len(e2e), pct(e2e, 50), pct(e2e, 99), e2e[len(e2e)-1])
	for _, h := range []struct{ label, what string }{{"patched", "/mutate (verdict patched)"}, {"allowed", "/validate (verdict allowed)"}} {
		report(t, "webhook side, "+h.what, webhookDelta, h.label, n, 0.01)
	}
	for _, h := range []struct{ label, what string }{{"pods.mutate.plexus.io", "mutating"}, {"pods.validate.plexus.io", "validating"}} {
		report(t, "API server side, "+h.what+" webhook call", apiDelta, h.label, n, 0.005)
	}

	direct(t, ctx, kube, webhook, "https://"+addr, pods, rounds)
	// The same one at a time: the webhook's latency without queueing.
	direct(t, ctx, kube, webhook, "https://"+addr, 1, rounds*pods/5)
}

// round creates pods pods at once, checks that each got its resources and
// returns each create's latency; the pods are deleted afterwards so every
// round sees the same cluster.
func round(ctx context.Context, kube kubernetes.Interface, prefix string, pods int) ([]time.Duration, error) {
	d := make([]time.Duration, pods)
	errs := make([]error, pods)
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	ready.Add(pods)
	for i := range pods {
		wg.Go(func() {
			ready.Done()
			<-start
			t0 := time.Now()
			p, err := kube.CoreV1().Pods(podNS).Create(ctx, newPod(fmt.Sprintf("%s-%d", prefix, i)), metav1.CreateOptions{})
			d[i] = time.Since(t0)
			if err == nil {
				err = injected(p)
			}
			errs[i] = err
		})
	}
	ready.Wait()
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("pod %s-%d: %w", prefix, i, err)
		}
	}
	zero := int64(0)
	if err := kube.CoreV1().Pods(podNS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		return nil, err
	}
	return d, nil
}

func newPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: podNS, Name: name, Annotations: map[string]string{source.NetworksAnnotation: selection}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
}

// injected checks what /mutate must have done to a pod of newPod: a unit
// of resA and of resB, requests equal to limits, and the podnetinfo
// volume.
func injected(p *corev1.Pod) error {
	res := p.Spec.Containers[0].Resources
	for name, want := range map[string]int64{resA: 1, resB: 1} {
		req, lim := res.Requests[corev1.ResourceName(name)], res.Limits[corev1.ResourceName(name)]
		if req.Value() != want || lim.Value() != want {
			return fmt.Errorf("%s: stored requests %v, limits %v; want %d", name, res.Requests, res.Limits, want)
		}
	}
	if len(p.Spec.Volumes) == 0 || p.Spec.Volumes[len(p.Spec.Volumes)-1].Name != "podnetinfo" {
		return fmt.Errorf("no podnetinfo volume: %+v", p.Spec.Volumes)
	}
	return nil
}

// direct posts the AdmissionReviews the API server sends for a pod of
// newPod to /mutate and /validate itself, n at a time, each timed: the
// webhook's latency to the microsecond (TLS and HTTP/2 on loopback
// included), which the histogram only brackets. The API server is idle
// meanwhile except for the webhook's NAD look-ups.
func direct(t *testing.T, ctx context.Context, kube kubernetes.Interface, c *http.Client, url string, n, rounds int) {
	p, err := kube.CoreV1().Pods(podNS).Create(ctx, newPod("template"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	// The object as /mutate receives it: defaulted, not yet injected.
	p.Spec.Containers[0].Resources, p.Spec.Volumes, p.Spec.Containers[0].VolumeMounts = corev1.ResourceRequirements{}, nil, nil
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/mutate", "/validate"} {
		var d []time.Duration
		for r := range rounds + 1 {
			times := make([]time.Duration, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					body, err := json.Marshal(admissionv1.AdmissionReview{
						TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
						Request: &admissionv1.AdmissionRequest{
							UID: types.UID(fmt.Sprintf("direct-%d-%d", r, i)), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
							Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: podNS, Name: "template",
							Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
						}})
					if err != nil {
						errs[i] = err
						return
					}
					t0 := time.Now()
					errs[i] = post(ctx, c, url+path, body, path == "/mutate")
					times[i] = time.Since(t0)
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("direct %s: %v", path, err)
				}
			}
			if r > 0 { // round 0 warms up
				d = append(d, times...)
			}
		}
		slices.Sort(d)
		fmt.Printf("admission: direct load, %d concurrent AdmissionReviews to %s, each timed: %d requests, p50 %v, p99 %v, max %v\n",
			n, path, len(d), pct(d, 50), pct(d, 99), d[len(d)-1])
	}
}

// post sends one AdmissionReview and checks the answer: allowed, with a
// patch from /mutate.
func post(ctx context.Context, c *http.Client, url string, body []byte, patched bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &review); err != nil || review.Response == nil {
		return fmt.Errorf("answer %d %q: %v", resp.StatusCode, b, err)
	}
	if !review.Response.Allowed || (len(review.Response.Patch) > 0) != patched {
		return fmt.Errorf("answer allowed %v, patch %q", review.Response.Allowed, review.Response.Patch)
	}
	return nil
}

// histograms are one metric's buckets by one label's value: cumulative
// counts by upper bound (+Inf last).
type histograms map[string][]bucket

type bucket struct {
	le    float64
	count float64
}

func (h histograms) minus(before histograms) histograms {
	out := histograms{}
	for k, bs := range h {
		d := slices.Clone(bs)
		for i := range d {
			for _, b := range before[k] {
				if b.le == d[i].le {
					d[i].count -= b.count
				}
			}
		}
		out[k] = d
	}
	return out
}

// report prints a histogram's count, the buckets p50 and p99 fall in
// (interpolating inside one, as Prometheus' histogram_quantile does,
// would claim a precision the buckets do not have), the share at or under
// target (a bucket bound, so exact) and the cumulative shares up to the
// p99's bucket. Fewer calls than want means a handler did not run for
// every pod.
func report(t *testing.T, what string, h histograms, key string, want int, target float64) {
	bs := h[key]
	if len(bs) == 0 {
		t.Errorf("%s: no %q samples", what, key)
		return
	}
	total := bs[len(bs)-1].count
	if int(total) < want {
		t.Errorf("%s: %v calls for %d pods", what, total, want)
	}
	under := math.NaN()
	for _, b := range bs {
		if b.le == target {
			under = b.count
		}
	}
	var shares []string
	for _, b := range bs {
		shares = append(shares, fmt.Sprintf("≤%v ms %.1f%%", b.le*1000, 100*b.count/total))
		if b.count >= 0.99*total {
			break
		}
	}
	fmt.Printf("admission: %s: %v calls, p50 in %s, p99 in %s; %.2f%% at or under %v ms (%s)\n",
		what, total, quantile(bs, 0.5), quantile(bs, 0.99), 100*under/total, target*1000, strings.Join(shares, ", "))
}

// quantile is the bucket the q-quantile falls in.
func quantile(bs []bucket, q float64) string {
	rank := q * bs[len(bs)-1].count
	lo := 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return fmt.Sprintf("(%v ms, ∞)", lo*1000)
			}
			return fmt.Sprintf("(%v, %v] ms", lo*1000, b.le*1000)
		}
		lo = b.le
	}
	return "?"
}

func scrape(t *testing.T, c *http.Client, url, metric, label string) histograms {
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, resp.StatusCode, err)
	}
	return parse(t, b, metric, label)
}

// parse reads metric's buckets from Prometheus text, summed over every
// label but label and le (the webhook's kind: only pods are created
// during the measurement).
func parse(t *testing.T, text []byte, metric, label string) histograms {
	sums := map[string]map[float64]float64{}
	for line := range strings.Lines(string(text)) {
		rest, ok := strings.CutPrefix(line, metric+"_bucket{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			t.Fatalf("metric line %q", line)
		}
		var key string
		le := math.NaN()
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case label:
				key = v
			case "le":
				le, _ = strconv.ParseFloat(v, 64)
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || math.IsNaN(le) {
			t.Fatalf("metric line %q", line)
		}
		if sums[key] == nil {
			sums[key] = map[float64]float64{}
		}
		sums[key][le] += n
	}
	out := histograms{}
	for k, m := range sums {
		for le, n := range m {
			out[k] = append(out[k], bucket{le, n})
		}
		slices.SortFunc(out[k], func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// registerWebhooks registers the pod webhooks as docs/webhook.md does
// (agent/admission/kube_linux_test.go's registration), without a caBundle:
// the webhook's certificate manager publishes it.
func registerWebhooks(t *testing.T, kube kubernetes.Interface, url string) {
	ctx := context.Background()
	none := admissionregistrationv1.SideEffectClassNone
	fail, ignore := admissionregistrationv1.Fail, admissionregistrationv1.Ignore
	timeout := int32(10)
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	notSystem := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}}}
	selects := []admissionregistrationv1.MatchCondition{{Name: "selects-networks",
		Expression: `has(object.metadata.annotations) && ('` + source.NetworksAnnotation + `' in object.metadata.annotations || '` + source.DefaultNetworkAnnotation + `' in object.metadata.annotations)`}}
	rule := func(ops ...admissionregistrationv1.OperationType) []admissionregistrationv1.RuleWithOperations {
		return []admissionregistrationv1.RuleWithOperations{{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	}
	client := func(path string) admissionregistrationv1.WebhookClientConfig {
		u := url + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u}
	}
	v1 := []string{"v1"}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfig},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "pods.mutate.plexus.io", ClientConfig: client("/mutate"), Rules: rule(admissionregistrationv1.Create),
			FailurePolicy: &fail, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: v1,
			NamespaceSelector: notSystem, MatchConditions: selects, ReinvocationPolicy: &ifNeeded,
		}}}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfig},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "pods.validate.plexus.io", ClientConfig: client("/validate"), Rules: rule(admissionregistrationv1.Create, admissionregistrationv1.Update),
			FailurePolicy: &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: v1,
			NamespaceSelector: notSystem, MatchConditions: selects,
		}}}
	if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// buildWebhook returns $PLEXUS_BENCH_BIN_DIR/plexus-webhook when
// tools/build.sh built it there, or builds it as shipped binaries are
// (static, stripped).
func buildWebhook(t *testing.T, dir string) string {
	if d := os.Getenv("PLEXUS_BENCH_BIN_DIR"); d != "" {
		if p := filepath.Join(d, "plexus-webhook"); exists(p) {
			return p
		}
	}
	out := filepath.Join(dir, "plexus-webhook")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../../../agent/cmd/plexus-webhook")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build plexus-webhook: %v\n%s", err, b)
	}
	return out
}

func startWebhook(t *testing.T, bin, logPath string, args ...string) {
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	p, err := childproc.Start(cmd, func() { log.Close() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM, 15*time.Second)
		if err := p.Err(); err != nil {
			t.Errorf("plexus-webhook after SIGTERM: %v (log %s)", err, logPath)
		}
	})
}

// webhookClient trusts caBundle only, with HTTP/2 as the API server's
// webhook client uses it, and enough idle connections for 50 at once.
func webhookClient(t *testing.T, caBundle []byte) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle %q", caBundle)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 100,
	}}
}

func scratchDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "pxadmission-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("PLEXUS_BENCH_ADMISSION_KEEP") == "1" || t.Failed() {
			fmt.Printf("admission: scratch files kept in %s\n", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)].Round(10 * time.Microsecond)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func write(t *testing.T, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
