//go:build !linux

package main

import "os/exec"

// startProcess starts cmd; only Linux has the parent-death signal, elsewhere the harness's own
// cleanup is the only guard.
func startProcess(cmd *exec.Cmd) error { return cmd.Start() }

func stopSpawner() {}
