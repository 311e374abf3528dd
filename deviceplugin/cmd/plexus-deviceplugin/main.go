// Command plexus-deviceplugin advertises SR-IOV VFs and DPDK-bound NICs to
// kubelet as extended resources, one resource per configured pool.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/plexus-cni/plexus/deviceplugin/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plexus-deviceplugin:", err)
		os.Exit(1)
	}
}
