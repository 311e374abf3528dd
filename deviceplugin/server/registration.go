package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	regpb "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registerTimeout bounds a registration with kubelet.
const registerTimeout = 10 * time.Second

// Register tells kubelet about this plugin through kubelet's registration
// socket.
func (p *Plugin) Register(ctx context.Context, kubeletSocket string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial kubelet: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	_, err = pb.NewRegistrationClient(conn).Register(ctx, &pb.RegisterRequest{
		Version:      pb.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.ResourceName(),
		Options:      options(),
	}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("register %s with kubelet: %w", p.ResourceName(), err)
	}
	p.log.Info("registered with kubelet", "endpoint", filepath.Base(p.socket), "devices", len(p.devices()))
	return nil
}

// RegistrationSocketName is the file name of a resource's socket in
// kubelet's plugin watcher directory (plugins_registry). It differs from
// SocketName so that both sockets may share one directory.
func RegistrationSocketName(resource string) string {
	return "plexus-" + strings.Replace(resource, "/", "_", 1) + "-reg.sock"
}

// RegistrationSocket is the plugin watcher socket path, "" when
// Config.RegistryDir is empty.
func (p *Plugin) RegistrationSocket() string { return p.regSocket }

// registrar answers kubelet's plugin watcher (pluginregistration v1).
type registrar struct {
	regpb.UnimplementedRegistrationServer
	p *Plugin
}

// GetInfo tells the plugin watcher what this socket is for.
func (r registrar) GetInfo(context.Context, *regpb.InfoRequest) (*regpb.PluginInfo, error) {
	return &regpb.PluginInfo{
		Type:              regpb.DevicePlugin,
		Name:              r.p.ResourceName(),
		Endpoint:          r.p.socket,
		SupportedVersions: []string{pb.Version},
	}, nil
}

// NotifyRegistrationStatus logs kubelet's verdict; a refusal is not
// fatal since the Register call on kubelet.sock may still succeed.
func (r registrar) NotifyRegistrationStatus(_ context.Context, st *regpb.RegistrationStatus) (*regpb.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		r.p.log.Info("registered through kubelet plugin watcher", "socket", r.p.regSocket)
	} else {
		r.p.log.Error("kubelet plugin watcher refused registration", "socket", r.p.regSocket, "err", st.GetError())
	}
	return &regpb.RegistrationStatusResponse{}, nil
}

// listenRegistryLocked serves the pluginregistration API on the registry
// socket. p.life must be held.
func (p *Plugin) listenRegistryLocked() error {
	if p.regSocket == "" {
		return nil
	}
	lis, err := listenUnix(p.regSocket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	regpb.RegisterRegistrationServer(srv, registrar{p: p})
	served := make(chan struct{})
	p.regSrv, p.regServed = srv, served
	p.wg.Go(func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil {
			p.log.Error("plugin registration server stopped", "err", err)
		}
	})
	return nil
}

// ensureRegistryLocked re-serves the registry socket if it vanished.
// p.life must be held.
func (p *Plugin) ensureRegistryLocked() error {
	if p.regSocket == "" {
		return nil
	}
	if _, err := os.Stat(p.regSocket); err == nil {
		return nil
	}
	p.log.Info("plugin registration socket gone, serving again")
	if p.regSrv != nil {
		p.regSrv.Stop()
		<-p.regServed
		p.regSrv = nil
	}
	return p.listenRegistryLocked()
}
