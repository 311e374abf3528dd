package server

// Lifecycle: the plugin socket and its gRPC server (Start, EnsureServing,
// Stop), all under p.life.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// readyTimeout bounds waiting for our own socket to answer.
const readyTimeout = 10 * time.Second

// Start listens on the plugin socket, serves, waits until the server
// answers, and starts health checking. Everything stops with ctx or Stop.
func (p *Plugin) Start(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.ctx != nil {
		p.mu.Unlock()
		return errors.New("plugin already started")
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.mu.Unlock()
	p.evaluate()
	// A previous run (crash, restart, reload) may have left files for
	// devices that are free now; those a pod holds must stay.
	p.removeFreeDevInfo("stale")
	if err := p.listenLocked(); err != nil {
		p.cancel()
		return err
	}
	// The plugin socket answers already, so the plugin watcher may hand
	// its endpoint to kubelet's device manager right away.
	if err := p.listenRegistryLocked(); err != nil {
		p.cancel()
		p.srv.Stop()
		p.wg.Wait()
		_ = os.Remove(p.socket)
		return err
	}
	done := p.ctx.Done()
	p.wg.Go(func() { p.healthLoop(done) })
	// Stop when the parent context ends even if nobody calls Stop.
	p.wg.Go(func() {
		<-done
		p.life.Lock()
		if p.srv != nil {
			p.srv.Stop()
		}
		if p.regSrv != nil {
			p.regSrv.Stop()
		}
		p.life.Unlock()
	})
	return nil
}

// listenLocked replaces any stale socket, serves on a fresh one and waits
// until a client can reach it. p.life must be held.
func (p *Plugin) listenLocked() error {
	lis, err := listenUnix(p.socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pb.RegisterDevicePluginServer(srv, p)
	served := make(chan struct{})
	p.srv, p.served = srv, served
	p.wg.Go(func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil {
			p.log.Error("device plugin server stopped", "err", err)
		}
	})
	if err := waitReady(p.ctx, p.socket); err != nil {
		srv.Stop()
		return fmt.Errorf("plugin %s not ready: %w", p.socket, err)
	}
	return nil
}

// waitReady dials the socket until an RPC succeeds, so that we never
// register with kubelet before kubelet could reach us.
func waitReady(ctx context.Context, socket string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := pb.NewDevicePluginClient(conn).GetDevicePluginOptions(ctx, &pb.Empty{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	return nil
}

// EnsureServing re-creates the socket if it disappeared: kubelet deletes
// every socket in the plugin dir when it restarts.
func (p *Plugin) EnsureServing() error {
	p.life.Lock()
	defer p.life.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return errors.New("plugin not running")
	}
	if err := p.ensureRegistryLocked(); err != nil {
		return err
	}
	if _, err := os.Stat(p.socket); err == nil {
		return nil
	}
	p.log.Info("plugin socket gone, serving again")
	p.srv.Stop()
	<-p.served
	return p.listenLocked()
}

// Stop shuts the server down and removes the socket and the Device Info
// files of devices no pod holds: a held device's file must outlive the
// plugin, which may be restarting. It waits for every goroutine and is
// idempotent.
func (p *Plugin) Stop() {
	p.life.Lock()
	if p.ctx == nil || p.stopped {
		// A second Stop must not touch the socket: a replacement plugin
		// for the same resource may own that path by now.
		p.life.Unlock()
		return
	}
	p.stopped = true
	p.cancel()
	if p.srv != nil {
		p.srv.Stop()
	}
	if p.regSrv != nil {
		p.regSrv.Stop()
	}
	p.life.Unlock()
	p.wg.Wait()

	p.life.Lock()
	defer p.life.Unlock()
	if err := os.Remove(p.socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("remove plugin socket", "err", err)
	}
	if p.regSocket != "" {
		if err := os.Remove(p.regSocket); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("remove plugin registration socket", "err", err)
		}
	}
	p.removeFreeDevInfo("stop")
}

// listenUnix listens on a fresh unix socket at path (its directory made,
// a stale socket removed), 0600: only kubelet (root) should talk to us.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return lis, nil
}
