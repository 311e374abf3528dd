package admission

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/plexus-cni/plexus/agent/admission/webhookcert"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/kube"
)

// Version is the webhook's build version, set by the linker.
var Version = "dev"

// Run is the plexus-webhook command: args without the program name. It
// serves until ctx ends.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plexus-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/plexus/agent.yaml", "the agent's configuration file (systemNamespaces, namespaceIsolation, globalNamespaces, selectionMode, systemNamespace, kubernetes.kubeconfig)")
	listen := fs.String("listen", ":8443", "HTTPS address of /mutate, /validate, /healthz, /readyz and /metrics")
	certFile := fs.String("tls-cert-file", "/etc/plexus/webhook/tls.crt", "serving certificate (PEM), when --tls-secret is not set")
	keyFile := fs.String("tls-key-file", "/etc/plexus/webhook/tls.key", "serving certificate's key (PEM), when --tls-secret is not set")
	secret := fs.String("tls-secret", "", "manage the CA and serving certificate in this Secret of --namespace (created and rotated, shared by the replicas) and keep the caBundle of --webhook-configuration up to date, instead of reading files")
	namespace := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "the webhook's namespace: its Secret and Service (default $POD_NAMESPACE)")
	service := fs.String("service", "plexus-webhook", "the webhook's Service, whose names the serving certificate carries")
	webhookConfig := fs.String("webhook-configuration", "plexus-webhook", "name of the Mutating- and ValidatingWebhookConfiguration whose caBundle is kept up to date")
	sans := fs.String("tls-extra-sans", "", "with --tls-secret: comma-separated DNS names or IPs the serving certificate carries besides the Service's")
	downward := fs.Bool("downward-api", true, "add the podnetinfo Downward API volume (the pod's annotations at "+PodNetInfoPath+") to mutated pods")
	timeout := fs.Duration("lookup-timeout", DefaultLookupTimeout, "bound of each API look-up (NADs, the pod list)")
	verbose := fs.Bool("v", false, "debug logging")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		_, err := fmt.Fprintln(stdout, Version)
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	restCfg, err := restConfig(cfg)
	if err != nil {
		return err
	}
	client, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	var certs *webhookcert.Manager
	if *secret != "" {
		certs = &webhookcert.Manager{Config: restCfg, Namespace: *namespace, Service: *service, SecretName: *secret,
			MutatingWebhookConfiguration: *webhookConfig, ValidatingWebhookConfiguration: *webhookConfig, Log: log}
		if *sans != "" {
			certs.ExtraSANs = strings.Split(*sans, ",")
		}
		tlsConfig.GetCertificate = certs.GetCertificate
	} else {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	cluster := &Cluster{Client: client}
	watchNADs, err := cluster.CacheNADs()
	if err != nil {
		return err
	}
	h := &Handler{
		Policy: cfg.SelectionPolicy(), SystemNamespaces: cfg.SystemNamespaces, DownwardAPI: *downward,
		NADs: cluster, Pods: cluster, LookupTimeout: *timeout, Log: log,
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	log.Info("plexus webhook serving", "address", l.Addr().String(), "config", *configPath, "version", Version)
	// One group: the certificate manager failing stops the server, and
	// the process exits non-zero for its Deployment to restart it.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watchNADs(gctx) })
	if certs != nil {
		g.Go(func() error { return certs.Run(gctx) })
	}
	g.Go(func() error { return NewServer(h, tlsConfig, log).Serve(gctx, l) })
	return g.Wait()
}

// restConfig is the webhook's client configuration: agent.yaml's
// kubernetes section without its rate limit.
func restConfig(cfg *config.Config) (*rest.Config, error) {
	c, err := kube.RESTConfig(cfg.Kubernetes, "plexus-webhook/"+Version)
	if err != nil {
		return nil, err
	}
	// No client-side rate limit (a negative QPS): each look-up serves a
	// request the API server has already admitted through its priority
	// and fairness, which protects it from the webhook as from any client.
	// The agent's kubernetes.qps and burst are one node's budget; here
	// they held a burst of 50 networked pod creates for seconds
	// (docs/benchmarks.md, admission).
	c.QPS = -1
	// A look-up that the lookup timeout abandoned must not linger either.
	c.Timeout = time.Minute
	return c, nil
}
