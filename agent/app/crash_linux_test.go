package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/plexus-cni/plexus/internal/cnitest"
)

// agentProcess is plexus-agent as a process of its own (the test binary
// under that name, see TestMain), so that a test can SIGKILL it.
type agentProcess struct {
	cmd  *osexec.Cmd
	done chan error
}

func (r *rig) startProcess(t *testing.T) *agentProcess {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(r.dir, "bin", "plexus-agent")
	if _, err := os.Lstat(bin); errors.Is(err, fs.ErrNotExist) {
		if err := os.Symlink(self, bin); err != nil {
			t.Fatal(err)
		}
	}
	a := &agentProcess{cmd: osexec.Command(bin, "run", "--config", filepath.Join(r.dir, "agent.yaml")), done: make(chan error, 1)}
	a.cmd.Stdout, a.cmd.Stderr = os.Stderr, os.Stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() { a.kill(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", r.cfg.Socket); err == nil {
			c.Close()
			return a
		}
		select {
		case err := <-a.done:
			t.Fatalf("agent exited before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("agent socket did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill SIGKILLs the agent and waits for it to be gone.
func (a *agentProcess) kill(t *testing.T) {
	t.Helper()
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Error("killed agent did not exit")
	}
}

// slowPlugin writes, into the rig's bin/, a delegate that on ADD writes its
// pid to pidFile, waits, then becomes the reference plugin real.
func (r *rig) slowPlugin(t *testing.T, name, real, pidFile string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > %[1]s.tmp && mv %[1]s.tmp %[1]s; sleep 3; fi\nexec %[2]s\n",
		pidFile, filepath.Join(cnitest.PluginDir(t), real))
	if err := os.WriteFile(filepath.Join(r.dir, "bin", name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// useSlowSide makes the rig's secondary network "side" go through the slow
// delegate, found first in the rig's bin/.
func (r *rig) useSlowSide(t *testing.T, pidFile string) {
	t.Helper()
	r.slowPlugin(t, "slow-bridge", "bridge", pidFile)
	rewrite(t, filepath.Join(r.dir, "manifests", "all.yaml"), `"type":"bridge","bridge":"pxapp1"`, `"type":"slow-bridge","bridge":"pxapp1"`)
	rewrite(t, filepath.Join(r.dir, "agent.yaml"), "binDirs: [", "binDirs: ["+filepath.Join(r.dir, "bin")+", ")
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	write(t, path, strings.Replace(string(data), old, new, 1))
}

// waitForPID polls for the pid a slow delegate wrote.
func waitForPID(t *testing.T, pidFile string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(pidFile); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatalf("pid file %s: %v", pidFile, err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the slow delegate did not start")
	return 0
}

// waitExited polls until pid has exited (gone, or a zombie nobody reaped).
func waitExited(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delegate %d still running %v after the agent that started it was killed", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ipamHolds reports the host-local allocations under the rig's IPAM dir
// that name the container.
func (r *rig) ipamHolds(t *testing.T, containerID string) []string {
	t.Helper()
	var held []string
	err := filepath.WalkDir(filepath.Join(r.dir, "ipam"), func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// host-local: the container ID, then a line with the ifname.
		if f := strings.Fields(string(data)); len(f) > 0 && f[0] == containerID {
			held = append(held, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// I: the agent is SIGKILLed while a later delegate of a pod's ADD runs.
// The delegate dies with it (it must not finish its ADD behind the
// restarted agent's back), and the runtime's DEL to the restarted agent
// tears down every planned attachment: no link, IP allocation or record is
// left.
func TestAgentKilledMidAdd(t *testing.T) {
	r := newRig(t, 2)
	pidFile := filepath.Join(r.dir, "slow.pid")
	r.useSlowSide(t, pidFile)
	agent := r.startProcess(t)
	n := cnitest.NewNS(t)
	ctx := context.Background()

	added := make(chan error, 1)
	go func() {
		_, err := r.runtime.AddNetworkList(ctx, r.list, r.rt("c1", n.Path()))
		added <- err
	}()
	pid := waitForPID(t, pidFile)
	agent.kill(t)
	if err := <-added; err == nil {
		t.Fatal("ADD succeeded although the agent was killed during it")
	}

	r.startProcess(t)
	if err := r.runtime.DelNetworkList(ctx, r.list, r.rt("c1", n.Path())); err != nil {
		t.Fatalf("DEL after the agent restarted: %v", err)
	}
	// An orphaned delegate would finish its ADD about now.
	waitExited(t, pid, 10*time.Second)
	if out := cnitest.InNS(t, n, "-o", "link"); strings.Contains(out, "eth0") || strings.Contains(out, "net1") {
		t.Errorf("links left in the pod after DEL:\n%s", out)
	}
	if held := r.ipamHolds(t, "c1"); len(held) > 0 {
		t.Errorf("IP allocations left after DEL: %v", held)
	}
	if recs, _ := filepath.Glob(filepath.Join(r.dir, "state", "records", "*.json")); len(recs) > 0 {
		t.Errorf("records left after DEL: %v", recs)
	}
}

// unixInode is the inode of the unix socket listening on path.
func unixInode(t *testing.T, path string) string {
	t.Helper()
	table, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(table), "\n") {
		// Flags 00010000: listening (accepted connections show the path too).
		if f := strings.Fields(line); len(f) == 8 && f[7] == path && f[3] == "00010000" {
			return f[6]
		}
	}
	t.Fatalf("no unix socket %s in /proc/net/unix", path)
	return ""
}

// tcpListenInode is the inode of the IPv4 TCP socket listening on port.
func tcpListenInode(t *testing.T, port int) string {
	t.Helper()
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(table), "\n") {
		// local_address is ADDR:PORT in hex; state 0A is LISTEN.
		if f := strings.Fields(line); len(f) > 9 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) && f[3] == "0A" {
			return f[9]
		}
	}
	t.Fatalf("no TCP listener on port %d in /proc/net/tcp", port)
	return ""
}

// shutdownSocket shuts down, from outside, the agent's socket with inode:
// through a duplicate of the agent's own fd (pidfd_getfd), as a fault in
// the kernel or a confused neighbour would, with no hook in the agent.
func shutdownSocket(t *testing.T, pid int, inode string) {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	target := -1
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && link == "socket:["+inode+"]" {
			target, _ = strconv.Atoi(fd.Name())
		}
	}
	if target < 0 {
		t.Fatalf("agent %d holds no fd for socket inode %s", pid, inode)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, target, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// withHealth gives the rig's agent a health endpoint and returns its port.
func (r *rig) withHealth(t *testing.T) int {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := hl.Addr().(*net.TCPAddr).Port
	hl.Close()
	rewrite(t, filepath.Join(r.dir, "agent.yaml"), "local: {", fmt.Sprintf("healthAddress: 127.0.0.1:%d\nlocal: {", port))
	return port
}

func healthz(port int) (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// I: an agent whose CNI socket no longer takes connections (its listener
// shut down from outside; its socket file removed) is not alive: /healthz
// fails naming the socket, so that kubelet restarts it.
func TestDeafAgentNotAlive(t *testing.T) {
	for _, fault := range []string{"listener shut down", "socket file removed"} {
		t.Run(fault, func(t *testing.T) {
			r := newRig(t, 2)
			port := r.withHealth(t)
			agent := r.startProcess(t)
			if code, body := healthz(port); code != http.StatusOK {
				t.Fatalf("/healthz of a healthy agent: %d %s", code, body)
			}
			if fault == "socket file removed" {
				if err := os.Remove(r.cfg.Socket); err != nil {
					t.Fatal(err)
				}
			} else {
				shutdownSocket(t, agent.cmd.Process.Pid, unixInode(t, r.cfg.Socket))
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, body := healthz(port)
				if code == http.StatusServiceUnavailable && strings.Contains(body, r.cfg.Socket) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz of a deaf agent: %d %s; want 503 naming %s", code, body, r.cfg.Socket)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// I: when one part of the agent dies (here its health endpoint, whose
// listener is shut down from outside) the whole agent exits non-zero for
// kubelet to restart it, instead of living on with a part missing.
func TestDeadPartExits(t *testing.T) {
	r := newRig(t, 2)
	port := r.withHealth(t)
	agent := r.startProcess(t)
	shutdownSocket(t, agent.cmd.Process.Pid, tcpListenInode(t, port))
	select {
	case err := <-agent.done:
		var exit *osexec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("agent exited with %v, want a non-zero exit", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running 10s after its health endpoint died")
	}
}
