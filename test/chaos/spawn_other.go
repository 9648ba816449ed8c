//go:build !linux

package main

import "os/exec"

// startProcess starts cmd. Off Linux there is no parent-death signal: the harness's cleanup is
// what stops its children (see spawn_linux.go).
func startProcess(cmd *exec.Cmd) error { return cmd.Start() }
