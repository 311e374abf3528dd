// Command plexus-test-recorder is a TEST ONLY CNI plugin: it records the
// configuration and CNI_* environment of every ADD and attaches a veth
// (see package recorder). Never install it on a node.
package main

import "github.com/plexus-cni/plexus/internal/testplugins/recorder"

func main() { recorder.Main() }
