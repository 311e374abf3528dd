// Command pause is the process of a pod's sandbox container: it holds the
// pod's namespaces open and does nothing else until the runtime stops it.
// As PID 1 of a pod that shares its PID namespace it is also the parent of
// every orphaned process, so it reaps them: without that they would stay as
// zombies until the pod ends. SIGINT or SIGTERM make it exit 0.
package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Children that exited before Notify sent no SIGCHLD we can see.
	reap()
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited. Pending SIGCHLDs coalesce, so
// one signal can stand for many children: loop until none is left waiting.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		// pid 0: children remain, none has exited; ECHILD: no children.
		if err != nil || pid <= 0 {
			return
		}
	}
}
