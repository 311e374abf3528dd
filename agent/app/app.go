// Package app is the plexus-agent command: `run` serves the shim socket,
// `status` prints the network-status of attached pods from the records.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/cniconf"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/hotplug"
	"github.com/plexus-cni/plexus/agent/metrics"
	"github.com/plexus-cni/plexus/agent/migrate"
	"github.com/plexus-cni/plexus/agent/pluginexec"
	"github.com/plexus-cni/plexus/agent/podresources"
	"github.com/plexus-cni/plexus/agent/probes"
	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/agent/resolve"
	"github.com/plexus-cni/plexus/agent/server"
	"github.com/plexus-cni/plexus/agent/shiminstall"
	"github.com/plexus-cni/plexus/agent/source"
	"github.com/plexus-cni/plexus/agent/source/local"
	plexusv1 "github.com/plexus-cni/plexus/proto/plexus/v1"
)

// Version is the agent's build version, set by the linker.
var Version = "dev"

const usage = `usage: plexus-agent <command> [flags]

commands:
  run     serve CNI requests from the plexus shim
  status  print the network-status of attached pods (from the records)
  migrate --from-multus FILE
          print the agent.yaml equivalent to a Multus configuration
  version print the version`

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", usage)
	}
	switch args[0] {
	case "run":
		return runAgent(ctx, args[1:], stderr)
	case "status":
		return runStatus(args[1:], stdout)
	case "migrate":
		return migrate.Command(args[1:], stdout, stderr)
	case "version":
		_, err := fmt.Fprintln(stdout, Version)
		return err
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/plexus/agent.yaml", "agent configuration file")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	for _, w := range cfg.Warnings {
		log.Warn("agent config uses a Multus key", "config", *configPath, "detail", w)
	}
	m := metrics.New()
	delegates := &pluginexec.Exec{Stderr: stderr, Observe: m.ObserveDelegate}
	// The generator is made first: unless clusterNetwork overrides it, the
	// primary configuration it follows is every pod's cluster network.
	var gen *cniconf.Generator
	var primary attach.PrimarySource
	if cfg.CNIConf != nil {
		gen = &cniconf.Generator{
			ConfDir:                cfg.CNIConfDir,
			FileName:               cfg.CNIConf.FileName,
			SocketPath:             cfg.Socket,
			ReadinessIndicatorFile: cfg.CNIConf.ReadinessIndicatorFile,
			// A primary the agent could not attach pods with is not one.
			Validate: func(path string, data []byte) error {
				_, err := resolve.Parse(path, data, "")
				return err
			},
			Log: log,
		}
		primary = gen
		registerPrimaryMetrics(m.Registry, gen)
	}
	var mgr *attach.Manager
	var uninstalling func() bool
	var hp *hotplug.Controller
	var watch func(context.Context) error
	if cfg.Local != nil {
		dir := &local.Dir{Path: cfg.Local.ManifestsDir}
		if mgr, err = newManager(cfg, dir, dir, nil, log, delegates, primary); err != nil {
			return err
		}
		if cfg.HotPlug {
			hp = &hotplug.Controller{Plugger: mgr, Pod: dir.Pod, Log: log}
			watch = func(ctx context.Context) error { return dir.Watch(ctx, localWatchInterval, hp.Changed, hp.Gone) }
		}
	} else {
		var stop func()
		if mgr, stop, uninstalling, hp, err = newKubeManager(ctx, cfg, log, delegates, primary); err != nil {
			return err
		}
		defer stop()
	}
	defer mgr.Close()
	if cfg.ShimInstall != nil {
		changed, err := shiminstall.Install(cfg.ShimInstall.Source, cfg.ShimInstall.BinDir)
		if err != nil {
			return fmt.Errorf("install the CNI shim: %w", err)
		}
		log.Info("CNI shim in place", "dir", cfg.ShimInstall.BinDir, "updated", changed)
	}
	// The health endpoint listens before the CNI socket: whoever sees the
	// socket can probe the agent.
	var hl net.Listener
	if cfg.HealthAddress != "" {
		if hl, err = net.Listen("tcp", cfg.HealthAddress); err != nil {
			return fmt.Errorf("health endpoint: %w", err)
		}
	}
	l, err := server.Listen(cfg.Socket)
	if err != nil {
		if hl != nil {
			hl.Close()
		}
		return err
	}
	// Every part runs in one group: when one fails, the others stop and
	// the process exits non-zero for kubelet to restart it (a dead CNI
	// server must not leave a live process with a healthy /healthz).
	g, gctx := errgroup.WithContext(ctx)
	if gen != nil {
		g.Go(func() error {
			err := gen.Run(gctx)
			if err != nil {
				err = fmt.Errorf("CNI configuration generation: %w", err)
			}
			// Removed on exit when asked to, and on uninstall (the agent's
			// DaemonSet deleted); kept on a restart or rolling update, so
			// that no pod starts without plexus in the gap.
			remove := cfg.CNIConf.RemoveOnExit
			if !remove && uninstalling != nil && uninstalling() {
				log.Info("the agent's DaemonSet is gone: uninstall, removing the plexus CNI configuration")
				remove = true
			}
			if remove {
				if uerr := gen.Uninstall(); uerr != nil {
					err = errors.Join(err, fmt.Errorf("remove the plexus CNI configuration: %w", uerr))
				}
			}
			return err
		})
	}
	if hp != nil {
		hp.Observe = m.ObserveHotPlug
		g.Go(func() error { return hp.Run(gctx) })
	}
	if watch != nil {
		g.Go(func() error { return watch(gctx) })
	}
	if hl != nil {
		ready := func() error {
			if gen != nil && !gen.Ready() {
				return fmt.Errorf("CNI configuration not written: %s", gen.Status().Reason)
			}
			return nil
		}
		// Alive while the CNI socket takes connections: a socket file
		// removed from under the agent, or a listener that no longer
		// accepts, makes a deaf agent that kubelet must restart.
		live := func() error {
			c, err := net.DialTimeout("unix", cfg.Socket, time.Second)
			if err != nil {
				return fmt.Errorf("CNI socket: %w", err)
			}
			return c.Close()
		}
		g.Go(func() error { return probes.Serve(gctx, hl, live, ready, m.Registry) })
	}
	mode := "kubernetes"
	if cfg.Local != nil {
		mode = "local"
	}
	log.Info("plexus agent serving", "socket", cfg.Socket, "mode", mode, "health", cfg.HealthAddress, "version", Version)
	srv := &server.Server{Handler: Handler(mgr), Version: Version, Log: log, Limit: cfg.MaxConcurrent, Observe: m.ObserveRequest, Queue: m}
	g.Go(func() error {
		if err := srv.Serve(gctx, l); err != nil {
			return fmt.Errorf("CNI server: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// NewLocalManager builds the core for local mode. exec runs the delegate
// plugins; nil means a plain pluginexec.Exec (benchmarks pass one that times
// them).
func NewLocalManager(cfg *config.Config, log *slog.Logger, exec invoke.Exec) (*attach.Manager, error) {
	dir := &local.Dir{Path: cfg.Local.ManifestsDir}
	return newManager(cfg, dir, dir, nil, log, exec, nil)
}

// localWatchInterval is how often local mode's hot-plug looks at the
// manifests.
const localWatchInterval = 200 * time.Millisecond

// registerPrimaryMetrics exports the primary configuration's state: how
// often the directory's became unusable, and whether pods get the last
// good one right now.
func registerPrimaryMetrics(reg *prometheus.Registry, gen *cniconf.Generator) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "plexus_primary_cni_conf_rejected_total",
			Help: "Times the node's primary CNI configuration became unusable (invalid, missing) while a good one was in use.",
		}, func() float64 { return float64(gen.Rejections()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "plexus_primary_cni_conf_stale",
			Help: "1 while new pods get the last good primary CNI configuration because the directory offers no usable one.",
		}, func() float64 {
			if gen.Stale() != "" {
				return 1
			}
			return 0
		}),
	)
}

// newManager builds the core over the given sources: the same code from
// selection on serves both modes.
func newManager(cfg *config.Config, pods source.PodGetter, nads source.NADGetter, reporter attach.StatusReporter, log *slog.Logger, exec invoke.Exec, primary attach.PrimarySource) (*attach.Manager, error) {
	records, err := record.Open(filepath.Join(cfg.StateDir, "records"))
	if err != nil {
		return nil, err
	}
	return attach.New(attach.Options{
		Config: attach.Config{
			ClusterNetwork:        cfg.ClusterNetwork,
			AuxiliaryCNIChainName: cfg.AuxiliaryCNIChainName,
			ConfDir:               cfg.CNIConfDir,
			DefaultNetworks:       cfg.DefaultNetworks,
			SystemNamespace:       cfg.SystemNamespace,
			SystemNamespaces:      cfg.SystemNamespaces,
			NamespaceIsolation:    cfg.NamespaceIsolation,
			GlobalNamespaces:      cfg.GlobalNamespaces,
			SelectionMode:         cfg.SelectionMode,
			BinDirs:               cfg.BinDirs,
			DeviceInfoDir:         cfg.DeviceInfoDir,
		},
		Pods:     pods,
		Resolver: &resolve.Resolver{NADs: nads, ConfDir: cfg.CNIConfDir},
		Records:  records,
		CacheDir: filepath.Join(cfg.StateDir, "cache"),
		Exec:     exec,
		Reporter: reporter,
		Primary:  primary,
		// Asked only for pods with a NAD that names a resource; dialed on
		// first use, so nodes without devices never need the socket.
		Devices: podresources.New(cfg.PodResourcesSocket, 0),
		Log:     log,
	})
}

var verbs = map[plexusv1.Verb]attach.Verb{
	plexusv1.Verb_VERB_ADD:    attach.VerbAdd,
	plexusv1.Verb_VERB_DEL:    attach.VerbDel,
	plexusv1.Verb_VERB_CHECK:  attach.VerbCheck,
	plexusv1.Verb_VERB_STATUS: attach.VerbStatus,
	plexusv1.Verb_VERB_GC:     attach.VerbGC,
}

// Handler adapts the core to the shim protocol.
func Handler(mgr *attach.Manager) server.Handler {
	return server.HandlerFunc(func(ctx context.Context, req *plexusv1.CNIRequest) *plexusv1.CNIResponse {
		verb, ok := verbs[req.Verb]
		if !ok {
			return &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: uint32(attach.CodeInvalidEnv), Msg: fmt.Sprintf("unknown CNI_COMMAND %q", req.Command)}}
		}
		out, err := mgr.Handle(ctx, &attach.Request{
			Verb:        verb,
			ContainerID: req.ContainerId,
			Netns:       req.Netns,
			IfName:      req.Ifname,
			Args:        req.Args,
			Path:        attach.SplitPath(req.Path),
			Config:      req.Config,
		})
		if err != nil {
			e := attach.ToCNIError(err)
			return &plexusv1.CNIResponse{Error: &plexusv1.Error{Code: uint32(e.Code), Msg: e.Msg, Details: e.Details}}
		}
		return &plexusv1.CNIResponse{Result: out}
	})
}

func runStatus(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	configPath := fs.String("config", "/etc/plexus/agent.yaml", "agent configuration file")
	pod := fs.String("pod", "", "only this pod (namespace/name)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	records, err := record.Open(filepath.Join(cfg.StateDir, "records"))
	if err != nil {
		return err
	}
	recs, damaged, err := records.List()
	if err != nil {
		return err
	}
	type podStatus struct {
		Pod           string          `json:"pod,omitempty"`
		ContainerID   string          `json:"containerID,omitempty"`
		Complete      bool            `json:"complete"`
		NetworkStatus json.RawMessage `json:"networkStatus,omitempty"`
		// Damaged: a record that cannot be read (DEL and GC tear down what
		// libcni's cache knows of it).
		Damaged string `json:"damaged,omitempty"`
	}
	out := []podStatus{}
	if *pod == "" {
		for _, d := range damaged {
			out = append(out, podStatus{Damaged: d.Error()})
		}
	}
	for _, r := range recs {
		name := r.PodNamespace + "/" + r.PodName
		if *pod != "" && name != *pod {
			continue
		}
		status := r.Status
		if len(status) == 0 {
			status = json.RawMessage("null")
		}
		out = append(out, podStatus{Pod: name, ContainerID: r.ContainerID, Complete: r.Complete, NetworkStatus: status})
	}
	if *pod != "" && len(out) == 0 {
		return fmt.Errorf("no attachment record for pod %s", strings.TrimSpace(*pod))
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
