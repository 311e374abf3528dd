// Command overhead measures what Plexus adds to pod network setup: ADD and
// DEL of a pod with eth0 plus two secondary networks, done the way a
// runtime does it (libcni exec'ing the plexus shim, which asks the running
// agent to invoke the three delegates), against the same three delegates
// invoked directly with libcni. Pods alternate between the two paths, each
// in a fresh network namespace, and every ADD is checked to have produced
// the interfaces before its time counts.
//
// With -burst N it measures load instead (burst.go): N pods with eth0 and
// one secondary network ADDed all at once through the shim, then DELeted
// all at once, checking every pod and everything left behind, and the
// agent's peak memory.
//
// It needs root and the binaries built; tools/bench/overhead.sh builds them
// and runs it. docs/benchmarks.md has the results and their reading.
//
//	overhead -shim BIN -agent BIN -plugins DIR [-pods 40] [-exec-runs 200] [-breakdown=true]
//	overhead -shim BIN -agent BIN -plugins DIR -burst 500 [-call-timeout 2m] [-max-rss-mib 64] [-max-concurrent N]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/plexus-cni/plexus/tools/bench/benchhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

type options struct {
	shim, agent, plugins string
	workDir              string
	keep                 bool
	pods, warmup         int
	execRuns             int
	breakdown            bool
	// burst mode
	burst         int
	callTimeout   time.Duration
	maxConcurrent int
	maxRSSMiB     float64
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("overhead", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.shim, "shim", "", "plexus shim binary (required)")
	fs.StringVar(&o.agent, "agent", "", "plexus-agent binary (required)")
	fs.StringVar(&o.plugins, "plugins", "", "directory of the reference CNI plugins (required)")
	fs.StringVar(&o.workDir, "work-dir", "", "scratch directory (default: a new temp dir, removed at the end)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs, agent log) for inspection")
	fs.IntVar(&o.pods, "pods", 40, "measured pods per path")
	fs.IntVar(&o.warmup, "warmup", 3, "unmeasured pods per path first (page cache, bridges, first exec)")
	fs.IntVar(&o.execRuns, "exec-runs", 200, "execs of the shim (CNI_COMMAND=VERSION) for the start-up cost")
	fs.BoolVar(&o.breakdown, "breakdown", true, "also run the pods against an in-process agent that times its own work")
	fs.IntVar(&o.burst, "burst", 0, "instead: ADD this many pods at once, then DEL them at once (load benchmark, 1–1000)")
	fs.DurationVar(&o.callTimeout, "call-timeout", 2*time.Minute, "burst: deadline of each runtime call, as kubelet's runtime-request-timeout; a call past it counts as retriable")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "the agent's maxConcurrent (0: its default, 64)")
	fs.Float64Var(&o.maxRSSMiB, "max-rss-mib", 64, "burst: fail if the agent's peak RSS (VmHWM) exceeds this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.burst < 0 || o.burst > 1000 {
		// A Linux bridge takes at most 1024 ports.
		return fmt.Errorf("-burst must be between 1 and 1000")
	}
	if o.shim == "" || o.agent == "" || o.plugins == "" {
		return fmt.Errorf("-shim, -agent and -plugins are required")
	}
	if o.pods < 1 || o.warmup < 0 || o.execRuns < 1 {
		return fmt.Errorf("-pods and -exec-runs must be positive, -warmup not negative")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, links)")
	}

	env, err := setUp(&o)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.tearDown(); cerr != nil {
			fmt.Fprintln(os.Stderr, "overhead: cleanup:", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()

	host, _ := os.Hostname()
	if o.burst > 0 {
		fmt.Fprintf(out, "# Plexus burst of %d concurrent ADDs, then DELs — %s, %s, %d CPUs, %s\n\n", o.burst, time.Now().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.Version())
		fmt.Fprintf(out, "load average at start: %s\n\n", benchhost.LoadAvg())
		defer func() { fmt.Fprintf(out, "load average at end: %s\n", benchhost.LoadAvg()) }()
		if err := env.startAgent(ctx); err != nil {
			return err
		}
		return env.runBurst(ctx, out)
	}
	fmt.Fprintf(out, "# Plexus pod ADD/DEL overhead — %s, %s, %d CPUs, %s\n\n", time.Now().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(out, "load average at start: %s\n\n", benchhost.LoadAvg())
	defer func() { fmt.Fprintf(out, "load average at end: %s\n", benchhost.LoadAvg()) }()
	fmt.Fprintf(out, "%d measured pods per path (+%d warm-up), eth0 + net1 + net2 (bridge, bridge, macvlan; host-local IPAM)\n\n", o.pods, o.warmup)

	if err := env.startAgent(ctx); err != nil {
		return err
	}
	binary, err := env.measurePods(ctx, env.binaryTarget(), o.warmup, o.pods)
	if err != nil {
		return fmt.Errorf("plexus-agent binary: %w", err)
	}
	fmt.Fprintln(out, "## Pods, agent binary (the real deployment shape)")
	fmt.Fprintln(out)
	binary.printTable(out, false)

	execs, err := env.measureExecs(ctx, o.shim, o.execRuns)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "## The shim path alone: process start-up, and calls against an agent that does nothing")
	fmt.Fprintln(out)
	execs.printTable(out)

	if o.breakdown {
		target, err := env.startInProcessAgent(ctx)
		if err != nil {
			return err
		}
		inproc, err := env.measurePods(ctx, target, o.warmup, o.pods)
		if err != nil {
			return fmt.Errorf("in-process agent: %w", err)
		}
		fmt.Fprintln(out, "## Pods, in-process agent (where the time goes)")
		fmt.Fprintln(out)
		inproc.printTable(out, true)
	}
	return nil
}

// loadavg is /proc/loadavg's 1, 5 and 15 minute figures: on a shared
// machine, the context a reader needs to trust (or not) the numbers.
