package benchhost

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
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
