package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/plexus-cni/plexus/tools/ociimage/image"
)

// runPush pushes the image of a docker-archive tarball and prints the
// manifest digest (sha256:...) on stdout, alone, for scripts.
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("ociimage push", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var (
		tarball, dest string
		insecure      bool
	)
	fset.StringVar(&tarball, "image", "", "docker-archive tarball holding one image (from ociimage build)")
	fset.StringVar(&dest, "dest", "", "where to push: host[:port]/repository:tag")
	fset.BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS to the registry")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return usageError(fset, "unexpected argument %q", fset.Arg(0))
	}
	if tarball == "" || dest == "" {
		return usageError(fset, "--image and --dest are required")
	}
	img, err := image.ReadTarball(tarball)
	if err != nil {
		return err
	}
	digest, err := image.Push(ctx, img, dest, image.PushOptions{Insecure: insecure})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, digest)
	return nil
}
