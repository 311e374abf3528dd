package image_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/plexus-cni/plexus/tools/ociimage/image"
)

// srcFile writes a source file with the given content and host mode.
func srcFile(t *testing.T, dir, name, content string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// Chmod: WriteFile's mode is subject to the umask.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// layerEntry is what the test checks of a layer member.
type layerEntry struct {
	typ     byte
	mode    int64
	content string
}

// readLayer returns the entries of the image's only layer, in order.
func readLayer(t *testing.T, img v1.Image) (names []string, entries map[string]layerEntry) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries = map[string]layerEntry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read layer: %v", err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", hdr.Name, hdr.Uid, hdr.Gid)
		}
		if !hdr.ModTime.Equal(image.Epoch) {
			t.Errorf("%s: mtime %v, want %v", hdr.Name, hdr.ModTime, image.Epoch)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		entries[hdr.Name] = layerEntry{typ: hdr.Typeflag, mode: hdr.Mode, content: string(b)}
	}
	return names, entries
}

func buildTarball(t *testing.T, out, tag string, spec image.Spec) {
	t.Helper()
	ref, err := image.ParseTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Build(spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := image.WriteTarball(out, ref, img); err != nil {
		t.Fatalf("WriteTarball: %v", err)
	}
}

func TestBuildReadBack(t *testing.T) {
	t.Parallel()
	src, out := t.TempDir(), t.TempDir()
	spec := image.Spec{
		Files: []image.File{
			{Path: "/usr/local/bin/agent", Source: srcFile(t, src, "agent", "agent binary", 0o700)},
			{Path: "/opt/plexus/bin/shim", Source: srcFile(t, src, "shim", "shim binary", 0o555)},
			{Path: "/etc/plexus/conf", Source: srcFile(t, src, "conf", "key: value\n", 0o600)},
			{Path: "/etc/plexus/secret", Source: srcFile(t, src, "secret", "s3cret", 0o777), Mode: 0o600},
		},
		Entrypoint: []string{"/usr/local/bin/agent", "run"},
		Cmd:        []string{"--config", "/etc/plexus/conf"},
		Env:        []string{"A=1", "B=x=y"},
	}
	const tag = "localhost/plexus-test:dev"
	path := filepath.Join(out, "img.tar")
	buildTarball(t, path, tag, spec)

	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	// Reading with the tag checks that the tarball's manifest.json names it.
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("ImageFromPath(%s): %v", tag, err)
	}
	cfg := configFile(t, img)
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if !reflect.DeepEqual(cfg.Config.Entrypoint, spec.Entrypoint) {
		t.Errorf("entrypoint %q, want %q", cfg.Config.Entrypoint, spec.Entrypoint)
	}
	if !reflect.DeepEqual(cfg.Config.Cmd, spec.Cmd) {
		t.Errorf("cmd %q, want %q", cfg.Config.Cmd, spec.Cmd)
	}
	if want := []string{"A=1", "B=x=y", image.DefaultPath}; !reflect.DeepEqual(cfg.Config.Env, want) {
		t.Errorf("env %q, want %q", cfg.Config.Env, want)
	}
	if !cfg.Created.Time.Equal(image.Epoch) {
		t.Errorf("created %v, want %v", cfg.Created.Time, image.Epoch)
	}

	names, entries := readLayer(t, img)
	wantNames := []string{
		"etc/", "etc/plexus/", "etc/plexus/conf", "etc/plexus/secret",
		"opt/", "opt/plexus/", "opt/plexus/bin/", "opt/plexus/bin/shim",
		"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/agent",
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("layer entries\n got %q\nwant %q", names, wantNames)
	}
	want := map[string]layerEntry{
		"usr/local/bin/agent": {tar.TypeReg, 0o755, "agent binary"},
		"opt/plexus/bin/shim": {tar.TypeReg, 0o755, "shim binary"},
		"etc/plexus/conf":     {tar.TypeReg, 0o644, "key: value\n"},
		"etc/plexus/secret":   {tar.TypeReg, 0o600, "s3cret"},
	}
	for n, e := range entries {
		if strings.HasSuffix(n, "/") {
			if e.typ != tar.TypeDir || e.mode != 0o755 {
				t.Errorf("%s: type %q mode %o, want a directory with mode 755", n, e.typ, e.mode)
			}
			continue
		}
		if e != want[n] {
			t.Errorf("%s: got %+v, want %+v", n, e, want[n])
		}
	}

	// The image read back is the image built: same manifest digest.
	built, err := image.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if builtDigest, readDigest := digest(t, built), digest(t, img); builtDigest != readDigest {
		t.Errorf("digest read back %s, built %s", readDigest, builtDigest)
	}
}

func TestBuildReproducible(t *testing.T) {
	t.Parallel()
	// Same content from different source paths, host modes with the same
	// exec bit, different mtimes, files given in another order: the
	// tarballs must be identical, byte for byte.
	srcA, srcB, out := t.TempDir(), t.TempDir(), t.TempDir()
	specA := image.Spec{
		Files: []image.File{
			{Path: "/usr/local/bin/agent", Source: srcFile(t, srcA, "agent", "agent", 0o755)},
			{Path: "/opt/plexus/bin/plexus", Source: srcFile(t, srcA, "plexus", "shim", 0o644)},
		},
		Entrypoint: []string{"/usr/local/bin/agent"},
	}
	specB := image.Spec{
		Files: []image.File{
			{Path: "/opt/plexus/bin/plexus", Source: srcFile(t, srcB, "shim-copy", "shim", 0o600)},
			{Path: "/usr/local/bin/agent", Source: srcFile(t, srcB, "agent-copy", "agent", 0o500)},
		},
		Entrypoint: []string{"/usr/local/bin/agent"},
	}
	if err := os.Chtimes(specB.Files[0].Source, image.Epoch, image.Epoch); err != nil {
		t.Fatal(err)
	}
	const tag = "localhost/plexus-agent:dev"
	pathA, pathB := filepath.Join(out, "a.tar"), filepath.Join(out, "b.tar")
	buildTarball(t, pathA, tag, specA)
	buildTarball(t, pathB, tag, specB)
	a, err := os.ReadFile(pathA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pathB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same image differ (%d and %d bytes)", len(a), len(b))
	}
	digestA, digestB := digest(t, readTarball(t, pathA)), digest(t, readTarball(t, pathB))
	if digestA != digestB {
		t.Errorf("digests differ: %s and %s", digestA, digestB)
	}

	// And the digest does depend on the content.
	specC := specA
	specC.Files = slices.Clone(specA.Files)
	specC.Files[1].Source = srcFile(t, srcA, "plexus-changed", "shim!", 0o644)
	pathC := filepath.Join(out, "c.tar")
	buildTarball(t, pathC, tag, specC)
	if digestC := digest(t, readTarball(t, pathC)); digestC == digestA {
		t.Errorf("changing a file's content kept the digest %s", digestC)
	}
}

func readTarball(t *testing.T, path string) v1.Image {
	t.Helper()
	img, err := image.ReadTarball(path)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configFile(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	bin := srcFile(t, src, "bin", "x", 0o755)
	tests := []struct {
		name string
		spec image.Spec
		want string
	}{
		{"relative path", image.Spec{Files: []image.File{{Path: "usr/bin/x", Source: bin}}}, "must be absolute"},
		{"unclean path", image.Spec{Files: []image.File{{Path: "/usr/../x", Source: bin}}}, "clean path"},
		{"root", image.Spec{Files: []image.File{{Path: "/", Source: bin}}}, "clean path"},
		{"duplicate", image.Spec{Files: []image.File{{Path: "/x", Source: bin}, {Path: "/x", Source: bin}}}, "given twice"},
		{"file then directory", image.Spec{Files: []image.File{{Path: "/x", Source: bin}, {Path: "/x/y", Source: bin}}}, "a file and a directory"},
		{"directory then file", image.Spec{Files: []image.File{{Path: "/x/y", Source: bin}, {Path: "/x", Source: bin}}}, "a file and a directory"},
		{"missing source", image.Spec{Files: []image.File{{Path: "/x", Source: filepath.Join(src, "nope")}}}, "no such file"},
		{"directory source", image.Spec{Files: []image.File{{Path: "/x", Source: src}}}, "not a regular file"},
		{"mode with type bits", image.Spec{Files: []image.File{{Path: "/x", Source: bin, Mode: fs.ModeSetuid | 0o755}}}, "only permission bits"},
		{"env without =", image.Spec{Files: []image.File{{Path: "/x", Source: bin}}, Env: []string{"FOO"}}, "KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := image.Build(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestEnvKeepsGivenPath(t *testing.T) {
	t.Parallel()
	bin := srcFile(t, t.TempDir(), "bin", "x", 0o755)
	img, err := image.Build(image.Spec{
		Files: []image.File{{Path: "/x", Source: bin}},
		Env:   []string{"PATH=/opt/bin"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := configFile(t, img).Config.Env, []string{"PATH=/opt/bin"}; !reflect.DeepEqual(got, want) {
		t.Errorf("env %q, want %q", got, want)
	}
}

func TestParseTag(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"plexus-agent:dev", "localhost/plexus-agent", "localhost/Plexus:dev"} {
		if _, err := image.ParseTag(ref); err == nil {
			t.Errorf("ParseTag(%q) accepted a reference without explicit registry and tag", ref)
		}
	}
	tag, err := image.ParseTag("127.0.0.1:5000/plexus/agent:dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RegistryStr() != "127.0.0.1:5000" || tag.RepositoryStr() != "plexus/agent" || tag.TagStr() != "dev-1" {
		t.Errorf("ParseTag: registry %q repository %q tag %q", tag.RegistryStr(), tag.RepositoryStr(), tag.TagStr())
	}
}
