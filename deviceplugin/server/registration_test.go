package server_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	regpb "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/plexus-cni/plexus/deviceplugin/kubelettest"
	"github.com/plexus-cni/plexus/deviceplugin/server"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPluginWatcherRegistration plays kubelet's plugin watcher against
// the registration socket over real unix sockets.
func TestPluginWatcherRegistration(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	regDir := filepath.Join(kubelettest.ShortDir(t), "plugins_registry")
	logs := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p := start(t, ctx, server.Config{Pool: ps[0], PluginDir: kubelettest.ShortDir(t), RegistryDir: regDir, Root: tr.Root,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})

	sock := p.RegistrationSocket()
	if want := filepath.Join(regDir, server.RegistrationSocketName("plexus.io/sriov_net")); sock != want {
		t.Fatalf("registration socket %s, want %s", sock, want)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("registration socket mode %v, want 0600 socket", fi.Mode())
	}

	// The watcher asks what the socket is, then dials the endpoint.
	c := kubelettest.DialRegistration(t, sock)
	info, err := c.GetInfo(ctx, &regpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != regpb.DevicePlugin || info.Name != "plexus.io/sriov_net" || info.Endpoint != p.Socket() ||
		!slices.Equal(info.SupportedVersions, []string{pb.Version}) {
		t.Errorf("GetInfo = %+v", info)
	}
	if _, err := kubelettest.Dial(t, info.Endpoint).GetDevicePluginOptions(ctx, &pb.Empty{}); err != nil {
		t.Errorf("endpoint from GetInfo unreachable: %v", err)
	}

	if _, err := c.NotifyRegistrationStatus(ctx, &regpb.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NotifyRegistrationStatus(ctx, &regpb.RegistrationStatus{Error: "version mismatch"}); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "registered through kubelet plugin watcher") ||
		!strings.Contains(l, "refused registration") || !strings.Contains(l, "version mismatch") {
		t.Errorf("registration status not logged:\n%s", l)
	}
	// Still serving after a refusal.
	if _, err := c.GetInfo(ctx, &regpb.InfoRequest{}); err != nil {
		t.Errorf("GetInfo after refusal: %v", err)
	}

	// A vanished registration socket is served again.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureServing(); err != nil {
		t.Fatal(err)
	}
	if _, err := kubelettest.DialRegistration(t, sock).GetInfo(ctx, &regpb.InfoRequest{}); err != nil {
		t.Errorf("GetInfo after re-serve: %v", err)
	}

	p.Stop()
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("registration socket after Stop: %v", err)
	}
	if _, err := os.Stat(p.Socket()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("plugin socket after Stop: %v", err)
	}
}

// Without RegistryDir nothing is created.
func TestPluginWatcherRegistrationOff(t *testing.T) {
	tr := sriovTree(t)
	ps := pools(t, tr, testConfig)
	p := start(t, context.Background(), server.Config{Pool: ps[0], PluginDir: kubelettest.ShortDir(t), Root: tr.Root})
	if s := p.RegistrationSocket(); s != "" {
		t.Errorf("RegistrationSocket = %q with RegistryDir unset", s)
	}
}
