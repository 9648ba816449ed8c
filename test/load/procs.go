package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// childEnv is the environment of a child: the harness's own without the daemon's overrides
// (COBROWSE_*: the daemon must run on the config the harness wrote, whatever the caller's shell
// exports), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COBROWSE_") || strings.HasPrefix(kv, helperEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// --- /proc ---

// readFDs counts a process's open files (sockets included).
func readFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go runs on.
const clockTicks = 100

// procMem is what /proc/<pid>/status says of a process's memory and threads.
type procMem = procs.Mem

func readProcMem(pid int) (procMem, error) { return procs.ReadMem(pid) }

// readCPU returns a process's user+system CPU time (utime+stime of /proc/<pid>/stat).
func readCPU(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	if pid == 0 {
		path = "/proc/self/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New(path + ": unexpected format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New(path + ": too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New(path + ": unreadable utime or stime")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// readCPUPrecise sums the CPU time of a process's threads from /proc/<pid>/task/*/schedstat, in
// nanoseconds (utime+stime count 10 ms ticks: too coarse for an idle process over a few seconds).
// A thread that exits between two readings takes its time with it, so a reading below an earlier
// one is possible in theory; the Go runtime keeps its threads.
func readCPUPrecise(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	if pid == 0 {
		dir = "/proc/self/task"
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// cpuTime is readCPUPrecise, or utime+stime where schedstat is not available.
func cpuTime(pid int) time.Duration {
	if d, err := readCPUPrecise(pid); err == nil && d > 0 {
		return d
	}
	d, _ := readCPU(pid)
	return d
}

// cpuMeter measures the CPU share processes use over a window.
type cpuMeter struct {
	pids  []int // 0: the harness itself
	start []time.Duration
	at    time.Time
}

func startCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: make([]time.Duration, len(pids)), at: time.Now()}
	for i, pid := range pids {
		m.start[i] = cpuTime(pid)
	}
	return m
}

// shares returns each process's CPU use since start, as a percentage of one core, and the CPU
// time itself.
func (m *cpuMeter) shares() (pct []float64, used []time.Duration) {
	wall := time.Since(m.at)
	for i, pid := range m.pids {
		d := max(0, cpuTime(pid)-m.start[i])
		used = append(used, d)
		pct = append(pct, div(100*d.Seconds(), wall.Seconds()))
	}
	return pct, used
}
