package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/plexus-cni/plexus/agent/pluginexec"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

// podTiming is one pod's ADD and DEL. For the in-process agent it also
// holds the agent's handler time and the part of it spent in delegate execs.
type podTiming struct {
	add, del                 time.Duration
	addHandler, delHandler   time.Duration
	addDelegate, delDelegate time.Duration
}

type podResults struct {
	direct, plexus []podTiming
}

// measurePods runs warmup+n pods through each path, interleaved: pod i goes
// direct then plexus when i is even, the other way round when odd, so drift
// (page cache, thermal, a noisy neighbour) hits both paths alike.
func (e *env) measurePods(ctx context.Context, t *target, warmup, n int) (*podResults, error) {
	res := &podResults{}
	for i := 0; i < warmup+n; i++ {
		var d, p podTiming
		var err error
		if i%2 == 0 {
			if d, err = e.directPod(ctx, i); err == nil {
				p, err = e.plexusPod(ctx, t, i)
			}
		} else {
			if p, err = e.plexusPod(ctx, t, i); err == nil {
				d, err = e.directPod(ctx, i)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("pod %d: %w", i, err)
		}
		if i >= warmup {
			res.direct = append(res.direct, d)
			res.plexus = append(res.plexus, p)
		}
	}
	return res, nil
}

func podArgs(containerID string) [][2]string {
	return [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", podNS}, {"K8S_POD_NAME", podName}, {"K8S_POD_INFRA_CONTAINER_ID", containerID}}
}

// directPod is a runtime attaching the three networks itself: one libcni
// list call per network, DEL in reverse.
func (e *env) directPod(ctx context.Context, i int) (podTiming, error) {
	var t podTiming
	netns, err := e.newNetns(i, "d")
	if err != nil {
		return t, err
	}
	id := fmt.Sprintf("pxbench-%d-d%d", os.Getpid(), i)
	rts := make([]*libcni.RuntimeConf, len(e.lists))
	for k := range e.lists {
		rts[k] = &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: e.ifnames[k], Args: podArgs(id)}
	}
	start := time.Now()
	for k, l := range e.lists {
		if _, err := e.runtime.AddNetworkList(ctx, l, rts[k]); err != nil {
			return t, fmt.Errorf("direct ADD %s as %s: %w", l.Name, e.ifnames[k], err)
		}
	}
	t.add = time.Since(start)
	if err := e.verify(netns, true); err != nil {
		return t, fmt.Errorf("direct ADD: %w", err)
	}
	start = time.Now()
	for k := len(e.lists) - 1; k >= 0; k-- {
		if err := e.runtime.DelNetworkList(ctx, e.lists[k], rts[k]); err != nil {
			return t, fmt.Errorf("direct DEL %s as %s: %w", e.lists[k].Name, e.ifnames[k], err)
		}
	}
	t.del = time.Since(start)
	if err := e.verify(netns, false); err != nil {
		return t, fmt.Errorf("direct DEL: %w", err)
	}
	return t, e.delNetns(netns)
}

// plexusPod is a runtime with plexus as its CNI: one libcni call for ADD
// and one for DEL, each exec'ing the shim.
func (e *env) plexusPod(ctx context.Context, tg *target, i int) (podTiming, error) {
	var t podTiming
	netns, err := e.newNetns(i, "p")
	if err != nil {
		return t, err
	}
	id := fmt.Sprintf("pxbench-%d-p%d", os.Getpid(), i)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0", Args: podArgs(id)}
	if tg.lastCall != nil {
		tg.lastCall() // drop STATUS and anything else before this pod
	}
	start := time.Now()
	if _, err := e.runtime.AddNetworkList(ctx, tg.list, rt); err != nil {
		return t, fmt.Errorf("plexus ADD: %w", err)
	}
	t.add = time.Since(start)
	if tg.lastCall != nil {
		t.addHandler, t.addDelegate = tg.lastCall()
	}
	if err := e.verify(netns, true); err != nil {
		return t, fmt.Errorf("plexus ADD: %w", err)
	}
	start = time.Now()
	if err := e.runtime.DelNetworkList(ctx, tg.list, rt); err != nil {
		return t, fmt.Errorf("plexus DEL: %w", err)
	}
	t.del = time.Since(start)
	if tg.lastCall != nil {
		t.delHandler, t.delDelegate = tg.lastCall()
	}
	if err := e.verify(netns, false); err != nil {
		return t, fmt.Errorf("plexus DEL: %w", err)
	}
	return t, e.delNetns(netns)
}

// verify checks the pod's namespace after ADD (every interface present, up,
// with an IPv4 address from its network's subnet) or after DEL (none
// left). A timing of a call that did not do its job would be meaningless.
func (e *env) verify(netnsPath string, added bool) error {
	return benchhost.VerifyInterfaces(netnsPath, e.ifnames, e.subnets, added)
}

// execClock is the agent's plugin executor with a stopwatch: the time the
// in-process agent spends waiting for delegate processes.
type execClock struct {
	pluginexec.Exec
	spent atomic.Int64
}

func newExecClock() *execClock {
	c := &execClock{}
	c.Exec = pluginexec.Exec{Stderr: os.Stderr, Observe: func(_, _ string, d time.Duration) { c.spent.Add(int64(d)) }}
	return c
}

func (c *execClock) take() time.Duration { return time.Duration(c.spent.Swap(0)) }

// execResults is the cost of the shim path without delegates: process
// start-up (fork, exec, run, wait), and whole calls against a null agent.
type execResults struct {
	shim, trueBin    []time.Duration
	nullAdd, nullDel []time.Duration
}

// measureExecs execs the shim with CNI_COMMAND=VERSION, which it answers
// without touching the socket, so the time is its start-up and exit alone;
// /bin/true, interleaved, is the floor any exec pays from this process.
//
// With a null agent, ADD and DEL through libcni and the shim show the whole
// cost of the shim path: exec plus the runtime's libcni plus one round trip.
func (e *env) measureExecs(ctx context.Context, shim string, runs int) (*execResults, error) {
	null, err := e.startNullAgent()
	if err != nil {
		return nil, err
	}
	trueBin, err := exec.LookPath("true")
	if err != nil {
		return nil, fmt.Errorf("find true(1): %w", err)
	}
	res := &execResults{}
	for i := 0; i < runs+5; i++ {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, shim)
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdout = &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("exec shim VERSION: %w", err)
		}
		d := time.Since(start)
		if !bytes.Contains(out.Bytes(), []byte("supportedVersions")) {
			return nil, fmt.Errorf("shim VERSION printed %q", out.String())
		}
		start = time.Now()
		if err := exec.CommandContext(ctx, trueBin).Run(); err != nil {
			return nil, fmt.Errorf("exec %s: %w", trueBin, err)
		}
		dTrue := time.Since(start)
		id := fmt.Sprintf("pxbench-%d-null%d", os.Getpid(), i)
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: "/var/run/netns/pxbench-null", IfName: "eth0", Args: podArgs(id)}
		start = time.Now()
		if _, err := e.runtime.AddNetworkList(ctx, null, rt); err != nil {
			return nil, fmt.Errorf("null agent ADD: %w", err)
		}
		dAdd := time.Since(start)
		start = time.Now()
		if err := e.runtime.DelNetworkList(ctx, null, rt); err != nil {
			return nil, fmt.Errorf("null agent DEL: %w", err)
		}
		dDel := time.Since(start)
		if i >= 5 { // the first few fault the binaries into the page cache
			res.shim = append(res.shim, d)
			res.trueBin = append(res.trueBin, dTrue)
			res.nullAdd = append(res.nullAdd, dAdd)
			res.nullDel = append(res.nullDel, dDel)
		}
	}
	return res, nil
}

// summary is a distribution's median and nearest-rank p90.
type summary struct{ median, p90, min, max time.Duration }

func summarize(ds []time.Duration) summary {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	p90 := s[(9*n+9)/10-1] // ceil(0.9n)-th smallest
	return summary{median: med, p90: p90, min: s[0], max: s[n-1]}
}

func column(ts []podTiming, f func(podTiming) time.Duration) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

// paired is fa(a[i]) − fb(b[i]) for each pod pair.
func paired(a, b []podTiming, fa, fb func(podTiming) time.Duration) []time.Duration {
	out := make([]time.Duration, len(a))
	for i := range a {
		out[i] = fa(a[i]) - fb(b[i])
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func row(w io.Writer, label string, ds []time.Duration) {
	s := summarize(ds)
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", label, ms(s.median), ms(s.p90), ms(s.min), ms(s.max))
}

func header(w io.Writer) {
	fmt.Fprintln(w, "| ms | median | p90 | min | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
}

func (r *podResults) printTable(w io.Writer, breakdown bool) {
	add := func(t podTiming) time.Duration { return t.add }
	del := func(t podTiming) time.Duration { return t.del }
	header(w)
	for _, v := range []struct {
		verb string
		f    func(podTiming) time.Duration
	}{{"ADD", add}, {"DEL", del}} {
		row(w, v.verb+" direct (3 libcni list calls)", column(r.direct, v.f))
		row(w, v.verb+" plexus (1 libcni call → shim → agent)", column(r.plexus, v.f))
		row(w, "**"+v.verb+" overhead per pod** (plexus − direct, paired)", paired(r.plexus, r.direct, v.f, v.f))
	}
	fmt.Fprintln(w)
	if !breakdown {
		return
	}
	fmt.Fprintln(w, "Plexus calls split by the agent's own clocks (server handler time; time in delegate execs):")
	fmt.Fprintln(w)
	header(w)
	for _, v := range []struct {
		verb     string
		total    func(podTiming) time.Duration
		handler  func(podTiming) time.Duration
		delegate func(podTiming) time.Duration
	}{
		{"ADD", add, func(t podTiming) time.Duration { return t.addHandler }, func(t podTiming) time.Duration { return t.addDelegate }},
		{"DEL", del, func(t podTiming) time.Duration { return t.delHandler }, func(t podTiming) time.Duration { return t.delDelegate }},
	} {
		outside := make([]time.Duration, len(r.plexus))
		own := make([]time.Duration, len(r.plexus))
		for i, t := range r.plexus {
			outside[i] = v.total(t) - v.handler(t)
			own[i] = v.handler(t) - v.delegate(t)
		}
		row(w, v.verb+" agent handler", column(r.plexus, v.handler))
		row(w, v.verb+" … of which delegate execs", column(r.plexus, v.delegate))
		row(w, v.verb+" … of which the rest (agent's own work + libcni around the execs)", own)
		row(w, v.verb+" agent handler − direct (paired)", paired(r.plexus, r.direct, v.handler, v.total))
		row(w, v.verb+" shim exec + socket + runtime libcni (plexus − handler)", outside)
	}
	fmt.Fprintln(w)
}

func (r *execResults) printTable(w io.Writer) {
	fmt.Fprintf(w, "%d runs each, interleaved:\n\n", len(r.shim))
	header(w)
	row(w, "plexus shim, CNI_COMMAND=VERSION", r.shim)
	row(w, "/bin/true (exec floor)", r.trueBin)
	row(w, "ADD via libcni → shim → null agent", r.nullAdd)
	row(w, "DEL via libcni → shim → null agent", r.nullDel)
	fmt.Fprintln(w)
}
