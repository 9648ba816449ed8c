package main

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// The processes the harness starts must not outlive it, even when it dies without running its
// cleanup (a `go test` timeout panics the test binary; a SIGKILL runs nothing). On Linux each
// child gets PR_SET_PDEATHSIG=SIGKILL. The kernel sends that signal when the THREAD that forked
// the child exits, not the process, and the Go runtime may retire threads; so every child is
// forked from one goroutine locked to its thread for the life of the harness (it never returns,
// so its thread is never retired).

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnC    chan spawnReq
)

func startProcess(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnC = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the harness
			for r := range spawnC {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnC <- r
	return <-r.done
}
