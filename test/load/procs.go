package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// procWait bounds how long the harness waits for one of its processes to start serving, or to
// exit after a signal.
const procWait = 60 * time.Second

// proc is one child process. exited is closed once it has been reaped (by the goroutine spawn
// starts, which ends with the process).
type proc struct {
	name     string
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error       // Wait's result, set before exited is closed
	signaled atomic.Bool // the harness signalled it: an exit is expected
}

// spawn starts a child with env (nil: the harness's own) and its stdout and stderr going to
// the writers.
func spawn(name, path string, args, env []string, stdout, stderr io.Writer) (*proc, error) {
	return spawnIO(name, path, args, env, nil, stdout, stderr)
}

// spawnIO is spawn with the child's stdin (nil: none); the caller closes its copy of stdin.
func spawnIO(name, path string, args, env []string, stdin *os.File, stdout, stderr io.Writer) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.Env = env
	if err := startProcess(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// done reports whether the process has exited and been reaped.
func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() error {
	p.signaled.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(procWait):
		return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.pid(), procWait)
	}
}

// stop sends sig (SIGTERM, SIGQUIT), waits up to bound for the exit, then kills. It reports a
// process that had to be killed.
func (p *proc) stop(sig syscall.Signal, bound time.Duration) error {
	if p.done() {
		return nil
	}
	p.signaled.Store(true)
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(bound):
		if err := p.kill(); err != nil {
			return err
		}
		return fmt.Errorf("%s (pid %d) did not exit within %v of %v; killed", p.name, p.pid(), bound, sig)
	}
}

// lineWriter hands each complete line to fn and copies everything to out (which may be nil).
type lineWriter struct {
	mu   sync.Mutex
	out  io.Writer
	fn   func(line []byte)
	part []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		if _, err := w.out.Write(b); err != nil {
			return 0, err
		}
	}
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if w.fn != nil {
			w.fn(w.part[:i])
		}
		w.part = w.part[i+1:]
	}
	if len(w.part) > 1<<20 { // a line without end: keep memory bounded
		w.part = w.part[:0]
	}
	return len(b), nil
}

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
type procMem struct {
	RSSKiB  int64 // VmRSS, in KiB
	Threads int   // OS threads (not goroutines)
}

func readProcMem(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	var m procMem
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
		return procMem{}, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return m, nil
}

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
