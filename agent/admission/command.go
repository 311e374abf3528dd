package admission

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/plexus-cni/plexus/agent/config"
)

// Version is the webhook's build version, set by the linker.
var Version = "dev"

// Run is the plexus-webhook command: args without the program name. It
// serves until ctx ends.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plexus-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/plexus/agent.yaml", "the agent's configuration file (systemNamespaces, namespaceIsolation, globalNamespaces, selectionMode, systemNamespace, kubernetes.*)")
	listen := fs.String("listen", ":8443", "HTTPS address of /mutate, /validate, /healthz, /readyz and /metrics")
	certFile := fs.String("tls-cert-file", "/etc/plexus/webhook/tls.crt", "serving certificate (PEM)")
	keyFile := fs.String("tls-key-file", "/etc/plexus/webhook/tls.key", "serving certificate's key (PEM)")
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
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	cluster := &Cluster{Client: client}
	h := &Handler{
		Policy: cfg.SelectionPolicy(), SystemNamespaces: cfg.SystemNamespaces, DownwardAPI: *downward,
		NADs: cluster, Pods: cluster, LookupTimeout: *timeout, Log: log,
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	log.Info("plexus webhook serving", "address", l.Addr().String(), "config", *configPath, "version", Version)
	return NewServer(h, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, log).Serve(ctx, l)
}

func restConfig(cfg *config.Config) (*rest.Config, error) {
	var c *rest.Config
	var err error
	if cfg.Kubernetes.Kubeconfig != "" {
		c, err = clientcmd.BuildConfigFromFlags("", cfg.Kubernetes.Kubeconfig)
	} else {
		c, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	c.UserAgent = "plexus-webhook/" + Version
	c.QPS, c.Burst = cfg.Kubernetes.QPS, cfg.Kubernetes.Burst
	// A look-up that the lookup timeout abandoned must not linger either.
	c.Timeout = time.Minute
	return c, nil
}
