// Command plexus-cluster starts, stops and cleans the single-node test
// cluster of internal/cluster. tools/cluster/cluster.sh builds what it
// needs first; use that.
//
//	plexus-cluster [--state DIR] up [--image TAR ...]
//	plexus-cluster [--state DIR] deploy DEPLOY_DIR
//	plexus-cluster [--state DIR] down | clean | env | status
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/plexus-cni/plexus/internal/cluster"
)

type images []string

func (i *images) String() string     { return fmt.Sprint(*i) }
func (i *images) Set(v string) error { *i = append(*i, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "plexus-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := cluster.DefaultConfig()
	fs := flag.NewFlagSet("plexus-cluster", flag.ContinueOnError)
	fs.StringVar(&cfg.StateDir, "state", cfg.StateDir, "state directory")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: plexus-cluster [--state DIR] up|deploy|down|clean|env|status")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	verb, args := fs.Arg(0), fs.Args()[1:]
	switch verb {
	case "up":
		up := flag.NewFlagSet("up", flag.ContinueOnError)
		var imgs images
		up.Var(&imgs, "image", "image tarball to import into containerd (repeatable)")
		if err := up.Parse(args); err != nil {
			return err
		}
		cfg.Images = imgs
		c, err := cluster.Up(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Print(c.Env())
		return nil
	case "deploy":
		if len(args) != 1 {
			return fmt.Errorf("usage: plexus-cluster deploy DEPLOY_DIR")
		}
		c := cluster.Open(cfg)
		overlay, err := c.WriteOverlay(args[0], cluster.OverlayOptions{})
		if err != nil {
			return err
		}
		return c.Deploy(ctx, args[0], overlay)
	case "down":
		return cluster.Open(cfg).Down(ctx)
	case "clean":
		return cluster.Open(cfg).Clean()
	case "env":
		fmt.Print(cluster.Open(cfg).Env())
		return nil
	case "status":
		fmt.Println(cluster.Open(cfg).Status())
		return nil
	}
	return fmt.Errorf("unknown verb %q", verb)
}
