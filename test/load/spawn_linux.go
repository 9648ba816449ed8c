package main

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// The processes the harness starts must not outlive it, even when it dies without running its
// cleanup (a `go test` timeout, a SIGKILL). On Linux each child gets PR_SET_PDEATHSIG=SIGKILL.
// The kernel sends that signal when the THREAD that forked the child exits, not the process, and
// the Go runtime may retire threads; so every child is forked from one goroutine locked to its
// thread (the plumbing of test/chaos). That goroutine runs from the first start to stopSpawner,
// which the harness calls once every child is reaped: the goroutine returns still locked, so its
// thread ends with it (a child still alive then would get its SIGKILL). The next start makes a
// new one.

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnMu sync.Mutex // held across a start: one fork at a time, never on a stopped spawner
	spawnC  chan spawnReq
)

func startProcess(cmd *exec.Cmd) error {
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

// stopSpawner ends the spawning goroutine and its thread.
func stopSpawner() {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	if spawnC != nil {
		close(spawnC)
		spawnC = nil
	}
}
