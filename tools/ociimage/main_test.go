package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/plexus-cni/plexus/tools/ociimage/image"
	"github.com/plexus-cni/plexus/tools/ociimage/registrytest"
)

func TestParseFileFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    image.File
		wantErr bool
	}{
		{in: "/usr/bin/x=bazel-out/bin/x", want: image.File{Path: "/usr/bin/x", Source: "bazel-out/bin/x"}},
		{in: "/usr/bin/x=bin/x:0755", want: image.File{Path: "/usr/bin/x", Source: "bin/x", Mode: 0o755}},
		{in: "/etc/x=x:600", want: image.File{Path: "/etc/x", Source: "x", Mode: 0o600}},
		// Not a mode: stays part of the source path.
		{in: "/x=a:b", want: image.File{Path: "/x", Source: "a:b"}},
		{in: "/x=a:0999", want: image.File{Path: "/x", Source: "a:0999"}},
		{in: "/x=a=b", want: image.File{Path: "/x", Source: "a=b"}},
		{in: "/x", wantErr: true},
		{in: "=src", wantErr: true},
		{in: "/x=", wantErr: true},
		{in: "/x=:0755", wantErr: true},
		{in: "/x=a:0000", wantErr: true},
		{in: "/x=a:7755", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseFileFlag(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFileFlag(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("parseFileFlag(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"build", "--out", "x.tar"},
		{"build", "--out", "x.tar", "--tag", "localhost/x:dev", "extra"},
		{"push", "--image", "x.tar"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), args, io.Discard, &stderr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
		if stderr.Len() == 0 {
			t.Errorf("run(%q) printed no usage", args)
		}
	}
}

// TestBuildAndPushCommands runs the two subcommands as Bazel's rules do.
func TestBuildAndPushCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "agent")
	if err := os.WriteFile(bin, []byte("agent"), 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "agent.tar")
	err := run(context.Background(), []string{"build",
		"--out", out, "--tag", "localhost/plexus-agent:dev",
		"--entrypoint", "/usr/local/bin/plexus-agent", "--cmd", "run",
		"--file", "/usr/local/bin/plexus-agent=" + bin,
		"--file", "/opt/plexus/bin/plexus=" + bin + ":0500",
		"--env", "K=V",
	}, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	img, err := image.ReadTarball(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/usr/local/bin/plexus-agent"}) ||
		!reflect.DeepEqual(cfg.Config.Cmd, []string{"run"}) ||
		!reflect.DeepEqual(cfg.Config.Env, []string{"K=V", image.DefaultPath}) {
		t.Errorf("config %+v", cfg.Config)
	}
	modes := layerModes(t, out)
	if want := map[string]fs.FileMode{"usr/local/bin/plexus-agent": 0o755, "opt/plexus/bin/plexus": 0o500}; !reflect.DeepEqual(filterFiles(modes), want) {
		t.Errorf("file modes %v, want %v", modes, want)
	}

	t.Run("push", func(t *testing.T) {
		registry := registrytest.Start(t)
		dest := registry + "/plexus-agent:dev"
		var stdout bytes.Buffer
		if err := run(context.Background(), []string{"push", "--image", out, "--dest", dest}, &stdout, io.Discard); err != nil {
			t.Fatalf("push: %v", err)
		}
		ref, err := name.NewTag(dest)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatalf("HEAD %s: %v", dest, err)
		}
		if got := strings.TrimSpace(stdout.String()); got != desc.Digest.String() {
			t.Errorf("push printed %q, registry has %s", got, desc.Digest)
		}
	})
}

func layerModes(t *testing.T, tarball string) map[string]fs.FileMode {
	t.Helper()
	img, err := image.ReadTarball(tarball)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]fs.FileMode{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		for name, mode := range tarModes(t, rc) {
			modes[name] = mode
		}
		rc.Close()
	}
	return modes
}

func filterFiles(modes map[string]fs.FileMode) map[string]fs.FileMode {
	files := map[string]fs.FileMode{}
	for n, m := range modes {
		if !strings.HasSuffix(n, "/") {
			files[n] = m
		}
	}
	return files
}

// tarModes returns the permission bits of every member of a tar stream.
func tarModes(t *testing.T, r io.Reader) map[string]fs.FileMode {
	t.Helper()
	modes := map[string]fs.FileMode{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return modes
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		modes[hdr.Name] = fs.FileMode(hdr.Mode) & fs.ModePerm
	}
}
