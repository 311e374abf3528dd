package shiminstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestInstallIdempotentKeepsInode(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "shim")
	writeExec(t, src, []byte("#!/bin/sh\nexit 0\n"))
	dstDir := t.TempDir()
	dst := filepath.Join(dstDir, BinaryName)
	if changed, err := Install(src, dstDir); err != nil || !changed {
		t.Fatalf("first Install: changed %v, err %v", changed, err)
	}
	ino := inode(t, dst)
	for i := range 3 {
		changed, err := Install(src, dstDir)
		if err != nil || changed {
			t.Fatalf("Install #%d: changed %v, err %v", i+2, changed, err)
		}
	}
	if got := inode(t, dst); got != ino {
		t.Errorf("inode %d, want %d: an identical install replaced the file", got, ino)
	}
}

// TestInstallWhileRunning upgrades the shim while the installed binary is
// running (a long-lived process) and being exec'd in a loop, as the runtime
// does during pod churn.
func TestInstallWhileRunning(t *testing.T) {
	t.Parallel()
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary to run as the old shim")
	}
	trueBin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary to run as the new shim")
	}
	oldData, err := os.ReadFile(sleepBin)
	if err != nil {
		t.Fatal(err)
	}
	newData, err := os.ReadFile(trueBin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(oldData, newData) {
		t.Skip("sleep and true are the same binary here")
	}
	srcDir, dstDir := t.TempDir(), t.TempDir()
	oldSrc, newSrc := filepath.Join(srcDir, "old"), filepath.Join(srcDir, "new")
	writeExec(t, oldSrc, oldData)
	writeExec(t, newSrc, newData)
	dst := filepath.Join(dstDir, BinaryName)
	if _, err := Install(oldSrc, dstDir); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := exec.CommandContext(ctx, dst, "60")
	if err := running.Start(); err != nil {
		t.Fatalf("start the installed binary: %v", err)
	}
	defer func() {
		cancel()
		_ = running.Wait()
	}()

	// The hazard this package exists for: writing the running binary in
	// place fails. Kernels that stopped denying writes to running
	// executables make this check moot, not the test wrong.
	if f, err := os.OpenFile(dst, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Logf("this kernel allows writing a running executable; ETXTBSY cannot occur here")
	} else if !errors.Is(err, syscall.ETXTBSY) {
		t.Fatalf("open running binary for writing: %v, want ETXTBSY", err)
	}

	var wg sync.WaitGroup
	var execs atomic.Int64
	var execErrs []error
	loopCtx, stopLoop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for loopCtx.Err() == nil {
			// Both binaries exit 0 at once with argument "0".
			if err := exec.Command(dst, "0").Run(); err != nil {
				execErrs = append(execErrs, err)
			}
			execs.Add(1)
		}
	}()

	for i := range 40 {
		src := newSrc
		if i%2 == 1 {
			src = oldSrc
		}
		changed, err := Install(src, dstDir)
		if err != nil {
			t.Fatalf("Install #%d while the shim runs: %v", i+1, err)
		}
		if !changed {
			t.Fatalf("Install #%d of a different binary reported no change", i+1)
		}
		// Two more execs complete, so one begun after this upgrade ran
		// before the next.
		for n, deadline := execs.Load(), time.Now().Add(10*time.Second); execs.Load() <= n+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no exec completed after Install #%d", i+1)
			}
		}
	}
	if _, err := Install(newSrc, dstDir); err != nil {
		t.Fatal(err)
	}
	stopLoop()
	wg.Wait()

	for _, err := range execErrs {
		if errors.Is(err, syscall.ETXTBSY) {
			t.Fatalf("exec hit ETXTBSY: %v", err)
		}
	}
	if len(execErrs) > 0 {
		t.Fatalf("%d of %d execs failed during upgrades, first: %v", len(execErrs), execs.Load(), execErrs[0])
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newData) {
		t.Fatal("the new binary is not in place")
	}
	// The old process still runs its own, untouched binary (a zombie's
	// exe cannot be read; a signal 0 would reach it all the same).
	if exe, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", running.Process.Pid)); err != nil || !bytes.Equal(exe, oldData) {
		t.Fatalf("the old binary's process did not survive the upgrade intact: %v", err)
	}
	if err := exec.Command(dst).Run(); err != nil {
		t.Fatalf("run the new binary: %v", err)
	}
	t.Logf("%d execs during 41 upgrades", execs.Load())
}
