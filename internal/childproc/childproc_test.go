package childproc

import (
	"bufio"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestStopPolitely(t *testing.T) {
	closed := false
	p, err := Start(exec.Command("sleep", "60"), func() { closed = true })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(syscall.SIGTERM, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v for a process that exits on SIGTERM", d)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the process was reaped")
	}
	if !closed {
		t.Error("the after function did not run before Exited closed")
	}
	if ee, ok := p.Err().(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Err = %v, want death by SIGTERM", p.Err())
	}
	p.Stop(syscall.SIGTERM, time.Second) // already stopped: a no-op
	var none *Process
	none.Stop(os.Interrupt, time.Second)
}

// A process that ignores the signal is killed after the grace period.
func TestStopKillsAfterGrace(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 0.05; done")
	cmd.Stdout = w
	p, err := Start(cmd, nil)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGKILL, time.Second) })
	// The shell says so once its trap is in place.
	if line, err := bufio.NewReader(r).ReadString('\n'); err != nil || line != "trapped\n" {
		t.Fatalf("shell printed %q (%v), want its trap installed", line, err)
	}
	start := time.Now()
	p.Stop(syscall.SIGTERM, 300*time.Millisecond)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period", d)
	}
	if ee, ok := p.Err().(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err = %v, want death by SIGKILL", p.Err())
	}
}
