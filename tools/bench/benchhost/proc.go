package benchhost

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProcStatus is what /proc/<pid>/status says about a process's memory, in
// bytes: resident (VmRSS), its anonymous and file-backed parts (RssAnon,
// RssFile: for a Go binary the latter is the binary's pages touched), and
// the peak (VmHWM).
type ProcStatus struct {
	RSS, HWM, Anon, File int64
	Threads              int
}

// ReadProcStatus reads pid's status; zero values if it cannot.
func ReadProcStatus(pid int) ProcStatus {
	var s ProcStatus
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = n * 1024
		case "VmHWM":
			s.HWM = n * 1024
		case "RssAnon":
			s.Anon = n * 1024
		case "RssFile":
			s.File = n * 1024
		case "Threads":
			s.Threads = int(n)
		}
	}
	return s
}

// MiB formats bytes as MiB with one decimal.
func MiB(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// RSS is a run of RSS samples: how many, their spread, and the most threads
// seen.
type RSS struct {
	N                int
	Min, Median, Max int64
	Threads          int
}

func rssOf(samples []int64, threads int) RSS {
	if len(samples) == 0 {
		return RSS{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return RSS{N: len(s), Min: s[0], Median: s[len(s)/2], Max: s[len(s)-1], Threads: threads}
}

// SampleRSS samples pid's RSS every interval for d.
func SampleRSS(pid int, d, every time.Duration) RSS {
	var samples []int64
	threads := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
		st := ReadProcStatus(pid)
		samples = append(samples, st.RSS)
		threads = max(threads, st.Threads)
	}
	return rssOf(samples, threads)
}

// Sampler samples a process's RSS in the background until Stop.
type Sampler struct {
	done chan struct{}
	out  chan RSS
}

// StartSampler samples pid's RSS every interval, from now.
func StartSampler(pid int, every time.Duration) *Sampler {
	s := &Sampler{done: make(chan struct{}), out: make(chan RSS, 1)}
	go func() {
		var samples []int64
		threads := 0
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			st := ReadProcStatus(pid)
			samples = append(samples, st.RSS)
			threads = max(threads, st.Threads)
			select {
			case <-s.done:
				s.out <- rssOf(samples, threads)
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns its figures.
func (s *Sampler) Stop() RSS { close(s.done); return <-s.out }
