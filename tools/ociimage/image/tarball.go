package image

import (
	"bytes"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// ParseTag parses an image reference that must name its registry and tag
// explicitly ("localhost/plexus-agent:dev"): an implied docker.io or
// ":latest" in a build output would be a surprise at import time.
func ParseTag(ref string, opts ...name.Option) (name.Tag, error) {
	tag, err := name.NewTag(ref, append([]name.Option{name.StrictValidation}, opts...)...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q (want registry/repository:tag): %w", ref, err)
	}
	return tag, nil
}

// WriteTarball writes img, named tag, to path as a docker-archive tarball
// (what `docker load` and `ctr images import` read). The file appears
// atomically: a build that fails leaves no partial tarball behind.
func WriteTarball(path string, tag name.Tag, img v1.Image) error {
	var buf bytes.Buffer
	if err := tarball.Write(tag, img, &buf); err != nil {
		return fmt.Errorf("write image tarball %s: %w", path, err)
	}
	if err := atomicfile.WriteNoSync(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write image tarball: %w", err)
	}
	return nil
}

// ReadTarball returns the one image of a docker-archive tarball.
func ReadTarball(path string) (v1.Image, error) {
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, fmt.Errorf("read image tarball %s: %w", path, err)
	}
	return img, nil
}
