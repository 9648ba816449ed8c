// Package procs is the child-process plumbing of the test harnesses (test/chaos, test/load): it
// starts each child so that it dies with the harness (see Start), watches it until it is reaped,
// stops or kills it within a bound, and hands its output to the harness line by line.
package procs

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Wait bounds how long a harness waits for one of its processes to start serving, or to exit
// after a signal: Kill waits this long for the reaping.
const Wait = 60 * time.Second

// Proc is one child process, reaped by a goroutine of its own that ends with it.
type Proc struct {
	name     string
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error       // Wait's result, set before exited is closed
	signaled atomic.Bool // the harness signalled it (Kill, Stop): an exit is expected
}

// Spawn starts a child with env (nil: the harness's own) and its stdout and stderr going to the
// writers (nil: discarded). name is how errors speak of it.
func Spawn(name, path string, args, env []string, stdout, stderr io.Writer) (*Proc, error) {
	return SpawnIO(name, path, args, env, nil, stdout, stderr)
}

// SpawnIO is Spawn with the child's stdin (nil: none); the caller closes its copy of stdin.
func SpawnIO(name, path string, args, env []string, stdin *os.File, stdout, stderr io.Writer) (*Proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.Env = env
	if err := Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Name is the name the process was spawned with.
func (p *Proc) Name() string { return p.name }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped, its output all written.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Done reports whether the process has exited and been reaped.
func (p *Proc) Done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Err is how the process ended (exec.Cmd.Wait's result); nil while it runs.
func (p *Proc) Err() error {
	if !p.Done() {
		return nil
	}
	return p.err
}

// Signaled reports whether the harness stopped or killed the process: its exit was expected.
func (p *Proc) Signaled() bool { return p.signaled.Load() }

// Signal sends sig without counting it as a stop (Signaled stays false): for a signal the child
// answers, such as SIGUSR1.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits up to Wait for the reaping.
func (p *Proc) Kill() error {
	p.signaled.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(Wait):
		return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.Pid(), Wait)
	}
}

// Stop sends sig (SIGTERM, SIGQUIT), waits up to bound for the exit, then kills. It reports a
// process that had to be killed; one that had exited already is left as it is.
func (p *Proc) Stop(sig syscall.Signal, bound time.Duration) error {
	if p.Done() {
		return nil
	}
	p.signaled.Store(true)
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(bound):
		if err := p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("%s (pid %d) did not exit within %v of %v; killed", p.name, p.Pid(), bound, sig)
	}
}

// Group is every process a harness started, for its cleanup. The zero Group is empty and ready.
type Group struct {
	mu    sync.Mutex
	procs []*Proc
}

// Add adds p to the group.
func (g *Group) Add(p *Proc) {
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
}

// StopAll stops every process of the group still running, the last added first, each with
// Stop(sig, bound), and hands what each Stop reports to report (which may be nil).
func (g *Group) StopAll(sig syscall.Signal, bound time.Duration, report func(error)) {
	g.mu.Lock()
	procs := append([]*Proc(nil), g.procs...)
	g.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(sig, bound); err != nil && report != nil {
			report(err)
		}
	}
}

// LogTail returns the last n lines of a child's log file, indented for a report; "" when it
// cannot be read.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
