package procs

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
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
