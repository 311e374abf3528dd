package main

// The burst mode (-burst N): N pods, each eth0 (the cluster network) plus
// one NAD, both bridge + host-local, ADDed at once through libcni and the
// real shim against the agent binary in local mode, as a runtime starting N
// sandboxes would; then the N DELs at once. Every call must succeed or fail
// in a way a runtime retries; nothing may be lost or left behind.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/plexus-cni/plexus/agent/record"
	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

func burstPodName(i int) string { return fmt.Sprintf("burst-%d", i) }

// burstPods is the manifest of the burst's pods, one per sandbox (a real
// node has distinct pods, and the agent looks each one up).
func burstPods(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\n  uid: 5e0b1c9e-0000-4000-8000-%012d\n  annotations:\n    k8s.v1.cni.cncf.io/networks: '[{\"name\":\"blue\"}]'\n",
			burstPodName(i), podNS, i)
	}
	return b.String()
}

// freeLocalPort picks a loopback address for the agent's /metrics.
func freeLocalPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port for the agent's metrics: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// outcome is how one runtime call ended, as a runtime would treat it.
type outcome int

const (
	succeeded outcome = iota
	tryAgain          // CNI error 11, "try again later": the runtime retries
	timedOut          // past -call-timeout: the runtime gives up on it and retries
	failed            // anything else: a bug
)

type call struct {
	lat     time.Duration
	outcome outcome
	err     error
}

type burstResult struct {
	wall  time.Duration
	calls []call // by pod
	lat   []time.Duration
}

func (r *burstResult) count(o outcome) int {
	n := 0
	for _, c := range r.calls {
		if c.outcome == o {
			n++
		}
	}
	return n
}

// pct is the nearest-rank percentile p of every call's latency.
func (r *burstResult) pct(p int) time.Duration {
	i := (len(r.lat)*p + 99) / 100
	return r.lat[max(i, 1)-1]
}

func (r *burstResult) failures() error {
	var errs []error
	for i, c := range r.calls {
		if c.outcome == failed {
			errs = append(errs, fmt.Errorf("pod %d: %w", i, c.err))
		}
	}
	return firstOf(errs, "calls failed")
}

// firstOf sums up errs as their number and the first three.
func firstOf(errs []error, what string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d %s; first: %w", len(errs), what, errors.Join(errs[:min(3, len(errs))]...))
}

func classify(callCtx context.Context, err error) outcome {
	var ce *types.Error
	switch {
	case err == nil:
		return succeeded
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		return timedOut
	case errors.As(err, &ce) && ce.Code == types.ErrTryAgainLater:
		return tryAgain
	default:
		return failed
	}
}

// fire makes one call per pod, all released at once, each with the
// runtime's deadline; add says ADD or DEL.
func (e *env) fire(ctx context.Context, list *libcni.NetworkConfigList, rts []*libcni.RuntimeConf, add bool) (*burstResult, error) {
	r := &burstResult{calls: make([]call, len(rts))}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cctx, cancel := context.WithTimeout(ctx, e.o.callTimeout)
			defer cancel()
			t0 := time.Now()
			var err error
			if add {
				_, err = e.runtime.AddNetworkList(cctx, list, rt)
			} else {
				err = e.runtime.DelNetworkList(cctx, list, rt)
			}
			r.calls[i] = call{lat: time.Since(t0), outcome: classify(cctx, err), err: err}
		}()
	}
	time.Sleep(100 * time.Millisecond) // the goroutines parked at the barrier
	t0 := time.Now()
	close(start)
	wg.Wait()
	r.wall = time.Since(t0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, c := range r.calls {
		r.lat = append(r.lat, c.lat)
	}
	slices.Sort(r.lat)
	return r, nil
}

// runBurst is the burst benchmark, on a started agent. Checks that fail do
// not stop it before the DELs and the leak checks (those say whether a
// failure lost anything); they make it return an error at the end.
func (e *env) runBurst(ctx context.Context, out io.Writer) error {
	n := e.o.burst
	maxConc := e.o.maxConcurrent
	if maxConc == 0 {
		maxConc = 64 // the agent's default (agent/config)
	}
	fmt.Fprintf(out, "%d pods, eth0 + net1 (bridge + host-local each), agent maxConcurrent %d, runtime deadline per call %v\n\n", n, maxConc, e.o.callTimeout)

	t0 := time.Now()
	list := e.binaryTarget().list
	rts := make([]*libcni.RuntimeConf, n)
	for i := range n {
		netns, err := e.newNetns(i, "b")
		if err != nil {
			return err
		}
		id := fmt.Sprintf("pxbench-%d-b%d", os.Getpid(), i)
		rts[i] = &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0", Args: [][2]string{
			{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", podNS}, {"K8S_POD_NAME", burstPodName(i)}, {"K8S_POD_INFRA_CONTAINER_ID", id}}}
	}
	fmt.Fprintf(out, "created %d namespaces in %.1f s\n", n, time.Since(t0).Seconds())

	pid := e.agentCmd.Process.Pid
	before, err := readMem(pid)
	if err != nil {
		return err
	}
	var problems []error
	problem := func(err error) {
		if err != nil {
			fmt.Fprintln(out, "FAIL:", err)
			problems = append(problems, err)
		}
	}

	mon := watchQueue(e.metrics, 25*time.Millisecond)
	add, err := e.fire(ctx, list, rts, true)
	addQ := mon.finish()
	if err != nil {
		return err
	}
	afterAdd, err := readMem(pid)
	if err != nil {
		return err
	}
	problem(add.failures())
	problem(e.checkAdded(list, rts, add))

	mon = watchQueue(e.metrics, 25*time.Millisecond)
	del, err := e.fire(ctx, list, rts, false)
	delQ := mon.finish()
	if err != nil {
		return err
	}
	afterDel, err := readMem(pid)
	if err != nil {
		return err
	}
	problem(del.failures())
	retried, err := e.retryDels(ctx, list, rts, del)
	problem(err)
	// Requests the runtime gave up on may still wait in the agent's queue:
	// they must come to nothing too, so look only once it is idle.
	problem(waitIdle(ctx, e.metrics, 60*time.Second))
	problem(e.checkDeleted(rts))

	t0 = time.Now()
	for _, rt := range rts {
		problem(e.delNetns(rt.NetNS))
	}
	nsDel := time.Since(t0)
	problem(noNetnsLeft(fmt.Sprintf("%s%d-b", netnsPref, os.Getpid())))

	select {
	case <-e.agent.Exited():
		problem(fmt.Errorf("the agent exited during the run (%v); see %s", e.agent.Err(), filepath.Join(e.dir, "agent.log")))
	default:
	}

	fmt.Fprintf(out, "deleted %d namespaces in %.1f s\n\n", n, nsDel.Seconds())
	fmt.Fprintf(out, "| %d at once | wall | p50 | p99 | max | min | succeeded | try again (11) | timed out | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", n)
	for _, v := range []struct {
		verb string
		r    *burstResult
	}{{"ADD", add}, {"DEL", del}} {
		fmt.Fprintf(out, "| %s | %.1f s | %s | %s | %s | %s | %d | %d | %d | %d |\n", v.verb, v.r.wall.Seconds(),
			secs(v.r.pct(50)), secs(v.r.pct(99)), secs(v.r.pct(100)), secs(v.r.lat[0]),
			v.r.count(succeeded), v.r.count(tryAgain), v.r.count(timedOut), v.r.count(failed))
	}
	if retried > 0 {
		fmt.Fprintf(out, "\nDELs retried one at a time after the burst, as a runtime would: %d\n", retried)
	}
	fmt.Fprintf(out, "\n| agent | during ADD | during DEL |\n|---|---:|---:|\n")
	fmt.Fprintf(out, "| requests queued, peak (plexus_cni_requests_queued) | %s | %s |\n", addQ.peak(addQ.queued), delQ.peak(delQ.queued))
	fmt.Fprintf(out, "| requests in flight, peak (plexus_cni_requests_in_flight) | %s | %s |\n", addQ.peak(addQ.inFlight), delQ.peak(delQ.inFlight))
	fmt.Fprintf(out, "| /metrics scrapes (every 25 ms) ok / failed | %d / %d | %d / %d |\n", addQ.samples, addQ.errs, delQ.samples, delQ.errs)
	fmt.Fprintf(out, "| VmHWM after the burst, MiB | **%s** | %s |\n", mib(afterAdd.hwm), mib(afterDel.hwm))
	fmt.Fprintf(out, "| VmRSS after the burst, MiB | %s | %s |\n", mib(afterAdd.rss), mib(afterDel.rss))
	fmt.Fprintf(out, "| VmRSS split: RssAnon + RssFile, MiB | %s + %s | %s + %s |\n", mib(afterAdd.anon), mib(afterAdd.file), mib(afterDel.anon), mib(afterDel.file))
	fmt.Fprintf(out, "\nagent before the burst: VmRSS %s MiB (%s anon + %s file), VmHWM %s MiB (start-up)\n\n", mib(before.rss), mib(before.anon), mib(before.file), mib(before.hwm))

	for _, q := range []*queueMonitor{addQ, delQ} {
		if q.samples == 0 {
			problem(fmt.Errorf("no /metrics scrape succeeded during a burst: %v", q.lastErr))
		} else if q.inFlight > float64(maxConc) {
			problem(fmt.Errorf("%v requests in flight at once, above maxConcurrent %d", q.inFlight, maxConc))
		}
	}
	if float64(afterDel.hwm)/(1<<20) > e.o.maxRSSMiB {
		problem(fmt.Errorf("agent peak RSS (VmHWM) %s MiB exceeds %g MiB", mib(afterDel.hwm), e.o.maxRSSMiB))
	}
	if len(problems) > 0 {
		return fmt.Errorf("burst: %d checks failed: %w", len(problems), errors.Join(problems...))
	}
	fmt.Fprintf(out, "checks passed: every call succeeded or failed retriably; every pod that succeeded had eth0 and net1 up with unique addresses in their subnets, no other link, a complete record and a runtime cache entry; after the DELs no link in any namespace, no bridge port, no host-local allocation, no record, no agent or runtime libcni cache entry; no namespace left; peak RSS ≤ %g MiB; in flight ≤ maxConcurrent\n\n", e.o.maxRSSMiB)
	return nil
}

// checkAdded checks every pod whose ADD succeeded: its interfaces up with
// addresses in their subnets and nothing else, no address given twice, a
// complete record of both attachments, and the runtime's cached result.
func (e *env) checkAdded(list *libcni.NetworkConfigList, rts []*libcni.RuntimeConf, add *burstResult) error {
	store, err := record.Open(filepath.Join(e.dir, "agent", "state", "records"))
	if err != nil {
		return err
	}
	owner := map[string]string{} // address → pod/ifname
	var errs []error
	for i, c := range add.calls {
		if c.outcome != succeeded {
			continue
		}
		if err := e.checkPod(list, store, rts[i], owner); err != nil {
			errs = append(errs, fmt.Errorf("pod %d: %w", i, err))
		}
	}
	return firstOf(errs, "added pods failed the check")
}

func (e *env) checkPod(list *libcni.NetworkConfigList, store *record.Store, rt *libcni.RuntimeConf, owner map[string]string) error {
	if err := e.verify(rt.NetNS, true); err != nil {
		return err
	}
	links, err := benchhost.Links(rt.NetNS)
	if err != nil {
		return err
	}
	if len(links) != len(e.ifnames) {
		return fmt.Errorf("links %v in %s, want only %v", links, rt.NetNS, e.ifnames)
	}
	for name, ips := range links {
		for _, ip := range ips {
			if o, dup := owner[ip.String()]; dup {
				return fmt.Errorf("%s on %s was also given to %s", ip, name, o)
			}
			owner[ip.String()] = rt.ContainerID + "/" + name
		}
	}
	rec, err := store.Get(rt.ContainerID, rt.IfName)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if !rec.Complete || len(rec.Attachments) != len(e.ifnames) {
		return fmt.Errorf("record: complete %v with %d attachments, want complete with %d", rec.Complete, len(rec.Attachments), len(e.ifnames))
	}
	for _, a := range rec.Attachments {
		if !slices.Contains(e.ifnames, a.IfName) || len(a.Result) == 0 {
			return fmt.Errorf("record: attachment %s on %q has result %q", a.Network, a.IfName, a.Result)
		}
	}
	cached, err := e.runtime.GetNetworkListCachedResult(list, rt)
	if err != nil || cached == nil {
		return fmt.Errorf("runtime libcni cache: no result (%v)", err)
	}
	return nil
}

// retryDels retries, one at a time, the DELs that failed retriably, as the
// runtime would (a few times, then it is a failure); it returns how many
// retries it made.
func (e *env) retryDels(ctx context.Context, list *libcni.NetworkConfigList, rts []*libcni.RuntimeConf, del *burstResult) (int, error) {
	retries := 0
	var errs []error
	for i, c := range del.calls {
		if c.outcome != tryAgain && c.outcome != timedOut {
			continue
		}
		err := c.err
		for try := 0; try < 3 && err != nil; try++ {
			retries++
			cctx, cancel := context.WithTimeout(ctx, e.o.callTimeout)
			err = e.runtime.DelNetworkList(cctx, list, rts[i])
			cancel()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %d: DEL retried 3 times: %w", i, err))
		}
	}
	return retries, firstOf(errs, "DELs failed after retries")
}

// checkDeleted checks that nothing is left: no link in any pod namespace,
// no port on the bridges, and no file in host-local's data dir (its locks
// and last-reserved markers aside), the agent's state (records, libcni
// cache) or the runtime's libcni cache.
func (e *env) checkDeleted(rts []*libcni.RuntimeConf) error {
	var errs []error
	for i, rt := range rts {
		links, err := benchhost.Links(rt.NetNS)
		if err == nil && len(links) != 0 {
			err = fmt.Errorf("links %v left in %s", links, rt.NetNS)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %d: %w", i, err))
		}
	}
	if err := firstOf(errs, "namespaces not empty after DEL"); err != nil {
		errs = []error{err}
	}
	ports, err := benchhost.BridgePorts(bridge0, bridge1)
	if err == nil && ports != 0 {
		err = fmt.Errorf("%d ports left on %s and %s after DEL", ports, bridge0, bridge1)
	}
	if err != nil {
		errs = append(errs, err)
	}
	for _, dir := range []string{"ipam", "agent/state", "runtime/cache"} {
		var left []string
		err := filepath.WalkDir(filepath.Join(e.dir, dir), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if !d.IsDir() && d.Name() != "lock" && !strings.HasPrefix(d.Name(), "last_reserved_ip") {
				left = append(left, p)
			}
			return nil
		})
		if err == nil && len(left) != 0 {
			err = fmt.Errorf("%d files left in %s after DEL, e.g. %s", len(left), dir, left[0])
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// noNetnsLeft checks that no named namespace starting with prefix is left.
func noNetnsLeft(prefix string) error {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var left []string
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), prefix) {
			left = append(left, en.Name())
		}
	}
	if len(left) != 0 {
		return fmt.Errorf("%d namespaces left, e.g. %s", len(left), left[0])
	}
	return nil
}

// queueMonitor scrapes the agent's request queue gauges during a burst.
type queueMonitor struct {
	stop, done       chan struct{}
	samples, errs    int
	queued, inFlight float64 // peaks
	lastErr          error
}

func watchQueue(addr string, every time.Duration) *queueMonitor {
	m := &queueMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			q, f, err := scrapeQueue(client, "http://"+addr+"/metrics")
			if err != nil {
				m.errs++
				m.lastErr = err
			} else {
				m.samples++
				m.queued, m.inFlight = max(m.queued, q), max(m.inFlight, f)
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// finish stops the scraping; the fields are final after it.
func (m *queueMonitor) finish() *queueMonitor { close(m.stop); <-m.done; return m }

func (m *queueMonitor) peak(v float64) string {
	if m.samples == 0 {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// waitIdle waits until the agent has no request queued or in flight.
func waitIdle(ctx context.Context, addr string, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		q, f, err := scrapeQueue(client, "http://"+addr+"/metrics")
		if err == nil && q == 0 && f == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not idle %v after the DELs (queued %v, in flight %v, %v)", limit, q, f, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scrapeQueue reads plexus_cni_requests_queued and _in_flight from the
// Prometheus text exposition.
func scrapeQueue(client *http.Client, url string) (queued, inFlight float64, err error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (name != "plexus_cni_requests_queued" && name != "plexus_cni_requests_in_flight") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", name, value, err)
		}
		if name == "plexus_cni_requests_queued" {
			queued = v
		} else {
			inFlight = v
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", url, err)
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%s: the queue gauges are missing", url)
	}
	return queued, inFlight, nil
}

// mem is a process's current and peak resident set, in bytes.
type mem struct{ rss, hwm, anon, file int64 }

func readMem(pid int) (mem, error) {
	var m mem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, fmt.Errorf("agent memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		fields := map[string]*int64{"VmRSS": &m.rss, "VmHWM": &m.hwm, "RssAnon": &m.anon, "RssFile": &m.file}
		dst, ok := fields[k]
		if len(f) == 0 || !ok {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("agent memory: %s: %q: %w", k, v, err)
		}
		*dst = kb << 10
	}
	if m.hwm == 0 {
		return m, fmt.Errorf("agent memory: no VmHWM in /proc/%d/status", pid)
	}
	return m, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
