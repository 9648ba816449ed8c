//go:build !linux

package procs

import "os/exec"

// Start starts cmd. Off Linux there is no parent-death signal: the harness's own cleanup is the
// only guard (see spawn_linux.go).
func Start(cmd *exec.Cmd) error { return cmd.Start() }

// StopSpawner does nothing off Linux: there is no spawner.
func StopSpawner() {}
