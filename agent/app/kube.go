package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"

	"github.com/plexus-cni/plexus/agent/attach"
	"github.com/plexus-cni/plexus/agent/config"
	"github.com/plexus-cni/plexus/agent/hotplug"
	"github.com/plexus-cni/plexus/agent/kube"
	"github.com/plexus-cni/plexus/agent/uninstall"
)

// informerSyncTimeout bounds the start-up wait for the informer caches.
const informerSyncTimeout = 2 * time.Minute

// newKubeManager builds the core over informer caches and the Kubernetes
// status reporter. stop waits for the informers after ctx ends;
// uninstalling tells, when the agent stops, whether its DaemonSet is gone;
// hp, with hot-plug on, is fed the node's pod changes and is to be run.
func newKubeManager(ctx context.Context, cfg *config.Config, log *slog.Logger, exec invoke.Exec, primary attach.PrimarySource) (mgr *attach.Manager, stop func(), uninstalling func() bool, hp *hotplug.Controller, err error) {
	node := cfg.Kubernetes.NodeName
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		return nil, nil, nil, nil, fmt.Errorf("kubernetes.nodeName is not set and NODE_NAME is empty: the agent must know its node")
	}
	restCfg, err := kube.RESTConfig(cfg.Kubernetes, "plexus-agent/"+Version)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	client, err := kube.NewClient(restCfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	sources, informers, err := kube.NewSources(kube.Options{
		Client: client, NodeName: node,
		PodWait: time.Duration(cfg.Kubernetes.PodWaitSeconds * float64(time.Second)),
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	syncCtx, cancel := context.WithTimeout(ctx, informerSyncTimeout)
	defer cancel()
	if err := informers.Start(ctx, syncCtx); err != nil {
		return nil, nil, nil, nil, err
	}
	log.Info("informer caches synced", "node", node)
	mgr, err = newManager(cfg, sources, sources, &kube.Reporter{Client: client, NodeName: node}, log, exec, primary)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if cfg.HotPlug {
		hp = &hotplug.Controller{Plugger: mgr, Pod: sources.CachedPod, Log: log}
		if err := informers.OnPods(hp.Changed, hp.Gone); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	uninstalling = func() bool {
		podNS, podName := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
		if podNS == "" || podName == "" {
			log.Info("POD_NAMESPACE or POD_NAME unset: cannot tell an uninstall from a restart, keeping the CNI configuration")
			return false
		}
		// ctx has ended: the agent is stopping.
		checkCtx, cancel := context.WithTimeout(context.Background(), uninstallCheckTimeout)
		defer cancel()
		gone, err := uninstall.DaemonSetGone(checkCtx, client, podNS, podName)
		if err != nil {
			log.Warn("cannot tell an uninstall from a restart, keeping the CNI configuration", "err", err)
			return false
		}
		return gone
	}
	return mgr, informers.Shutdown, uninstalling, hp, nil
}

// uninstallCheckTimeout bounds the stop-time look at the agent's DaemonSet.
const uninstallCheckTimeout = 3 * time.Second
