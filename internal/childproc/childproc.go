// Package childproc reaps and stops the helper processes that tests and
// benchmarks start (etcd, kube-apiserver, a registry, the agent): one
// goroutine waits for the process, any number of parties can wait for its
// exit, and Stop asks politely before it kills.
package childproc

import (
	"os"
	"os/exec"
	"time"
)

// Process is a started command being reaped in the background.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	after  func()
}

// Start starts cmd and reaps it in the background; after, if not nil, runs
// once it has exited (to close its log file, say).
func Start(cmd *exec.Cmd, after func()) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{}), after: after}
	go func() {
		p.err = cmd.Wait()
		if p.after != nil {
			p.after()
		}
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the process returned; valid once Exited is
// closed.
func (p *Process) Err() error { return p.err }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends sig, waits up to grace for the process to exit, then kills it;
// it returns once the process is reaped. Stopping a nil or exited Process
// does nothing.
func (p *Process) Stop(sig os.Signal, grace time.Duration) {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.exited
	}
}
