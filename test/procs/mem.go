package procs

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// Mem is what /proc/<pid>/status says of a process's memory and threads (Linux).
type Mem struct {
	RSSKiB  int64 // VmRSS, in KiB
	Threads int   // OS threads (not goroutines)
}

// ReadMem reads pid's Mem; pid 0 is this process.
func ReadMem(pid int) (Mem, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	var haveRSS bool
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSSKiB, err = strconv.ParseInt(f[0], 10, 64)
			haveRSS = err == nil
		case "Threads":
			m.Threads, _ = strconv.Atoi(f[0])
		}
	}
	if !haveRSS {
		return Mem{}, fmt.Errorf("%s has no VmRSS", path)
	}
	return m, nil
}

// RSS is this process's resident set size in bytes; 0 where /proc cannot tell.
func RSS() uint64 {
	m, err := ReadMem(0)
	if err != nil {
		return 0
	}
	return uint64(m.RSSKiB) << 10
}

// MemAfterGC is this process's live heap and goroutine stacks after a full collection, and its
// RSS once the freed pages went back to the system (so that what a benchmark adds is measured
// from a baseline without them).
func MemAfterGC() (heap, stack, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, RSS()
}

// Snapshot is a benchmark's reading of this process: MemAfterGC and the goroutines.
type Snapshot struct {
	Heap, Stack, RSS uint64
	Goroutines       int
}

// TakeSnapshot collects and reads.
func TakeSnapshot() Snapshot {
	g := runtime.NumGoroutine()
	h, s, r := MemAfterGC()
	return Snapshot{Heap: h, Stack: s, RSS: r, Goroutines: g}
}

// ReportPerSession reports what n sessions added between before and after (each taken with
// TakeSnapshot), and rssNoGC (RSS read while they lived, before after's collection, as a daemon
// sees it): heap-B, stack-B, B (the two), rss-B, rss-nogc-B and goroutines, per session.
func ReportPerSession(b *testing.B, n int, before, after Snapshot, rssNoGC uint64) {
	per := func(a, z uint64) float64 { return float64(int64(a)-int64(z)) / float64(n) }
	b.ReportMetric(per(after.Heap, before.Heap), "heap-B/session")
	b.ReportMetric(per(after.Stack, before.Stack), "stack-B/session")
	b.ReportMetric(per(after.Heap+after.Stack, before.Heap+before.Stack), "B/session")
	b.ReportMetric(per(after.RSS, before.RSS), "rss-B/session")
	b.ReportMetric(per(rssNoGC, before.RSS), "rss-nogc-B/session")
	b.ReportMetric(float64(after.Goroutines-before.Goroutines)/float64(n), "goroutines/session")
}
