package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runAsPause makes the test binary run main() instead of the tests, so the
// tests exercise the real signal handling and reaping in a separate process.
const runAsPause = "PLEXUS_PAUSE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsPause) == "1" {
		main()
		os.Exit(3) // main only returns if its signal channel closes
	}
	os.Exit(m.Run())
}

// startPause starts pause with a child of its own: the shell starts the
// child, then execs pause, which inherits it (as an orphan is inherited by
// PID 1 in a pod).
func startPause(t *testing.T, child string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", child+" & exec \"$0\" -test.run=^$", os.Args[0])
	cmd.Env = append(os.Environ(), runAsPause+"=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pause: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// children returns the PIDs of pid's children, zombies included (a zombie
// stays its parent's child until it is reaped).
func children(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "children"))
	if err != nil {
		t.Fatalf("read children of %d: %v", pid, err)
	}
	return strings.Fields(string(b))
}

// waitExecd waits until the shell has exec'd pause (its command line is the
// test binary's), so that the signals and checks below are about pause.
func waitExecd(t *testing.T, pid int) {
	t.Helper()
	want, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d did not exec the pause binary", pid)
}

// waitReaped checks that pause has the child the shell started before the
// exec, then waits until pause has reaped it. pause reaps only after
// signal.Notify, so from then on its handlers are in place.
func waitReaped(t *testing.T, pid int) {
	t.Helper()
	if got := children(t, pid); len(got) != 1 {
		t.Fatalf("pause's children before the child exits = %v, want the sleep", got)
	}
	// Once sleep exits it is a zombie until pause reaps it.
	deadline := time.Now().Add(10 * time.Second)
	for len(children(t, pid)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("child %v of pause not reaped within 10s", children(t, pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running fails unless pid is still running. Unlike a signal 0, it tells
// an exited process that nobody has waited for yet (a zombie) from a
// live one.
func running(t *testing.T, pid int) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("pause is gone: %v", err)
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || len(stat) < i+3 {
		t.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	if state := stat[i+2]; state == 'Z' || state == 'X' {
		t.Fatalf("pause exited before it was told to stop (state %c)", state)
	}
}

func TestPauseReapsChildren(t *testing.T) {
	t.Parallel()
	cmd := startPause(t, "sleep 1")
	pid := cmd.Process.Pid
	waitExecd(t, pid)
	waitReaped(t, pid)
	running(t, pid)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pause after SIGTERM: %v, want exit 0", err)
	}
}

func TestPauseExitsZeroOnSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd := startPause(t, "sleep 1")
			waitExecd(t, cmd.Process.Pid)
			// Its handlers are installed once it has reaped; having
			// handled that SIGCHLD it still runs: pause blocks until told
			// to stop.
			waitReaped(t, cmd.Process.Pid)
			running(t, cmd.Process.Pid)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("pause after %v: %v, want exit 0", sig, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("pause did not exit within 10s of %v", sig)
			}
		})
	}
}
