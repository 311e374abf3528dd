package image

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushOptions tune Push.
type PushOptions struct {
	// Insecure allows plain HTTP to the registry and accepts any TLS
	// certificate, like `crane --insecure`. ggcr already uses HTTP for
	// localhost, loopback and RFC 1918 addresses; this is for other names,
	// e.g. a registry Service with a self-signed certificate in a test
	// cluster.
	Insecure bool
}

// Push uploads img to dest ("host:port/repository:tag") and returns the
// digest of the manifest the registry now serves under that tag.
// Credentials come from the Docker config (~/.docker/config.json,
// $DOCKER_CONFIG) when it has any for the registry; otherwise the push is
// anonymous.
func Push(ctx context.Context, img v1.Image, dest string, opts PushOptions) (v1.Hash, error) {
	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	tag, err := ParseTag(dest, nameOpts...)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: image digest: %w", dest, err)
	}
	remoteOpts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}
	if opts.Insecure {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		remoteOpts = append(remoteOpts, remote.WithTransport(tr))
	}
	if err := remote.Write(tag, img, remoteOpts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", dest, err)
	}
	return digest, nil
}
