package procs

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// The processes a harness starts must not outlive it, even when it dies without running its
// cleanup (a `go test` timeout panics the test binary; a SIGKILL runs nothing). On Linux each
// child gets PR_SET_PDEATHSIG=SIGKILL. The kernel sends that signal when the THREAD that forked
// the child exits, not the process, and the Go runtime may retire threads; so every child is
// forked from one goroutine locked to its thread, the spawner. The spawner runs from the first
// Start to StopSpawner, which a harness calls once every child is reaped (or never): the
// goroutine returns still locked, so the runtime ends its thread with it (a child still alive
// then gets its SIGKILL), or parks it for good if it is the process's main thread, which the
// runtime never ends. The next Start makes a new spawner.

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnMu sync.Mutex // held across a start: one fork at a time, never on a stopped spawner
	spawnC  chan spawnReq
)

// Start starts cmd from the spawner's thread, with PR_SET_PDEATHSIG=SIGKILL: the child dies
// when that thread ends (the harness's exit, or StopSpawner). The caller waits for cmd.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	spawnMu.Lock()
	defer spawnMu.Unlock()
	if spawnC == nil {
		spawnC = make(chan spawnReq)
		go spawner(spawnC)
	}
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnC <- r
	return <-r.done
}

func spawner(reqs <-chan spawnReq) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}

// StopSpawner ends the spawner, and with it its thread: call it once every child is reaped, since
// one still alive may be killed. The next Start makes a new spawner.
func StopSpawner() {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	if spawnC != nil {
		close(spawnC)
		spawnC = nil
	}
}
