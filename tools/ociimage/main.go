// Command ociimage builds container images from files and pushes them,
// without a container engine. Bazel's plexus_image rule (image.bzl) runs
// `ociimage build`; plexus_image_push runs `ociimage push` for each image.
//
//	ociimage build --out X.tar --tag localhost/plexus-agent:dev \
//	    --entrypoint /usr/local/bin/plexus-agent \
//	    --file /usr/local/bin/plexus-agent=bazel-bin/.../plexus-agent[:0755] [--env K=V] [--cmd ARG]
//	ociimage push --image X.tar --dest 127.0.0.1:5000/plexus-agent:dev [--insecure]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  ociimage build --out FILE.tar --tag REGISTRY/REPO:TAG --file /DEST=SRC[:MODE]... [--entrypoint ARG]... [--cmd ARG]... [--env K=V]...
  ociimage push --image FILE.tar --dest HOST[:PORT]/REPO:TAG [--insecure]`

// run executes one subcommand. Usage errors are flag.ErrHelp after the
// usage has been printed to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "build":
		return runBuild(args[1:], stderr)
	case "push":
		return runPush(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s\n", args[0], usage)
		return flag.ErrHelp
	}
}
