// Command plexus is the meta-CNI plugin the container runtime execs. See
// package shim.
package main

import (
	"os"

	"github.com/plexus-cni/plexus/cni/shim"
)

func main() {
	os.Exit(shim.Run(os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
