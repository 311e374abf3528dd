// Command plexus-webhook is Plexus' admission webhook. See package
// admission and docs/webhook.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/plexus-cni/plexus/agent/admission"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := admission.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plexus-webhook:", err)
		os.Exit(1)
	}
}
