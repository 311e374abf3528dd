package image_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/plexus-cni/plexus/tools/ociimage/image"
	"github.com/plexus-cni/plexus/tools/ociimage/registrytest"
)

// TestPushToRegistry pushes a built tarball to a real registry and pulls it
// back: same manifest digest, same file.
func TestPushToRegistry(t *testing.T) {
	t.Parallel()
	registry := registrytest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	src, out := t.TempDir(), t.TempDir()
	const content = "#!/bin/false\npretend binary\n"
	spec := image.Spec{
		Files:      []image.File{{Path: "/usr/local/bin/plexus-agent", Source: srcFile(t, src, "agent", content, 0o755)}},
		Entrypoint: []string{"/usr/local/bin/plexus-agent"},
	}
	path := filepath.Join(out, "agent.tar")
	buildTarball(t, path, "localhost/plexus-agent:dev", spec)
	img := readTarball(t, path)
	local := digest(t, img)

	dest := registry + "/plexus-agent:test"
	pushed, err := image.Push(ctx, img, dest, image.PushOptions{})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if pushed != local {
		t.Errorf("Push returned %s, the tarball's image is %s", pushed, local)
	}

	ref, err := name.NewTag(dest)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull %s: %v", dest, err)
	}
	if desc.Digest != local {
		t.Errorf("registry serves %s for %s, pushed %s", desc.Digest, dest, local)
	}
	pulled, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	_, entries := readLayer(t, pulled)
	if got := entries["usr/local/bin/plexus-agent"].content; got != content {
		t.Errorf("pulled file content %q, want %q", got, content)
	}
	if cfg := configFile(t, pulled); len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/usr/local/bin/plexus-agent" {
		t.Errorf("pulled entrypoint %q", cfg.Config.Entrypoint)
	}
}

func TestPushRejectsBadDestination(t *testing.T) {
	t.Parallel()
	img, err := image.Build(image.Spec{Files: []image.File{{Path: "/x", Source: srcFile(t, t.TempDir(), "x", "x", 0o644)}}})
	if err != nil {
		t.Fatal(err)
	}
	// No registry and no tag: never pushed to Docker Hub by accident.
	if _, err := image.Push(context.Background(), img, "plexus-agent", image.PushOptions{}); err == nil {
		t.Error("Push to a reference without registry and tag succeeded")
	}
}
