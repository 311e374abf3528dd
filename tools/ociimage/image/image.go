// Package image builds single-layer container images from files on disk and
// writes them as docker-archive tarballs, without a container engine. The
// result depends only on the inputs: the layer's entries are sorted, owned by
// root and carry a fixed modification time, and the config has a fixed
// creation time, so identical inputs give identical bytes and digests.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the modification time of every layer entry and the creation time
// of the image: a constant, because a build time would make every build
// differ.
var Epoch = time.Unix(0, 0).UTC()

// DefaultPath is the PATH given to images whose Env sets none (the value
// Docker and BuildKit use), so that runtimes and `kubectl exec` find
// binaries the same way they would in any other image.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one regular file of the image.
type File struct {
	// Path is the absolute path in the image.
	Path string
	// Source is the file on the host whose content is copied.
	Source string
	// Mode holds the permission bits in the image. Zero means 0755 when
	// Source is executable by its owner and 0644 otherwise: the host's other
	// bits (umask, Bazel's read-only outputs) must not leak into the image.
	Mode fs.FileMode
}

// Spec describes an image.
type Spec struct {
	Files      []File
	Entrypoint []string
	Cmd        []string
	// Env holds KEY=VALUE entries, in order. DefaultPath is added when no
	// entry sets PATH.
	Env []string
	// Architecture is the GOARCH the binaries are built for; empty means
	// runtime.GOARCH. The OS is always linux.
	Architecture string
}

// dirMode is the mode of the parent directories the layer creates.
const dirMode = 0o755

// Build returns the image described by spec: one layer holding spec.Files
// and their parent directories, on top of nothing.
func Build(spec Spec) (v1.Image, error) {
	env, err := imageEnv(spec.Env)
	if err != nil {
		return nil, err
	}
	layerTar, err := layerTarball(spec.Files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}

	arch := spec.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: Epoch},
		Config: v1.Config{
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			Env:        env,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("set image config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: Epoch},
			CreatedBy: "ociimage build",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return img, nil
}

func imageEnv(env []string) ([]string, error) {
	out := make([]string, 0, len(env)+1)
	hasPath := false
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
		if k == "PATH" {
			hasPath = true
		}
		out = append(out, kv)
	}
	if !hasPath {
		out = append(out, DefaultPath)
	}
	return out, nil
}

// entry is one member of the layer: a directory (source == "") or a file.
type entry struct {
	name   string // relative to the root, no leading or trailing slash
	source string
	mode   fs.FileMode
}

// layerTarball returns the uncompressed layer. It is held in memory: the
// images hold a few static binaries, and ggcr opens the layer several times
// (digest, diff ID, writing).
func layerTarball(files []File) ([]byte, error) {
	entries, err := layerEntries(files)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := writeEntry(tw, e); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish layer: %w", err)
	}
	return buf.Bytes(), nil
}

// layerEntries validates the files and returns them with their parent
// directories, sorted so that a directory comes before its contents and the
// order does not depend on the order of the arguments.
func layerEntries(files []File) ([]entry, error) {
	byName := map[string]entry{}
	for _, f := range files {
		name, err := entryName(f.Path)
		if err != nil {
			return nil, err
		}
		if prev, ok := byName[name]; ok {
			if prev.source == "" {
				return nil, fmt.Errorf("image path %s: a file and a directory", f.Path)
			}
			return nil, fmt.Errorf("image path %s: given twice (%s and %s)", f.Path, prev.source, f.Source)
		}
		mode, err := fileMode(f)
		if err != nil {
			return nil, err
		}
		byName[name] = entry{name: name, source: f.Source, mode: mode}
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if prev, ok := byName[dir]; ok {
				if prev.source != "" {
					return nil, fmt.Errorf("image path /%s: a file and a directory", dir)
				}
				continue
			}
			byName[dir] = entry{name: dir, mode: dirMode}
		}
	}
	entries := make([]entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	// A parent's name is a prefix of its children's, so it sorts first.
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

func entryName(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("image path %q: must be absolute", p)
	}
	if path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("image path %q: must be a clean path below /", p)
	}
	return strings.TrimPrefix(p, "/"), nil
}

func fileMode(f File) (fs.FileMode, error) {
	fi, err := os.Stat(f.Source)
	if err != nil {
		return 0, fmt.Errorf("image file %s: %w", f.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("image file %s: source %s is not a regular file", f.Path, f.Source)
	}
	if f.Mode != 0 {
		if f.Mode&^fs.ModePerm != 0 {
			return 0, fmt.Errorf("image file %s: mode %v: only permission bits are allowed", f.Path, f.Mode)
		}
		return f.Mode, nil
	}
	if fi.Mode()&0o100 != 0 {
		return 0o755, nil
	}
	return 0o644, nil
}

func writeEntry(tw *tar.Writer, e entry) error {
	hdr := &tar.Header{
		Name:    e.name,
		Mode:    int64(e.mode),
		ModTime: Epoch,
		Uname:   "root",
		Gname:   "root",
		Format:  tar.FormatPAX,
	}
	if e.source == "" {
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer directory /%s: %w", e.name, err)
		}
		return nil
	}
	src, err := os.Open(e.source)
	if err != nil {
		return fmt.Errorf("image file /%s: %w", e.name, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("image file /%s: %w", e.name, err)
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("image file /%s: %w", e.name, err)
	}
	// A source that changes size while being read would make the header
	// lie; the tar writer reports that as an error.
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("image file /%s: copy %s: %w", e.name, e.source, err)
	}
	return nil
}
