//go:build unix

package daemon

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// TestSIGHUPReloads: a daemon started from a config file reloads it on SIGHUP (the process goes
// on), and applies a new secret.
func TestSIGHUPReloads(t *testing.T) {
	z, path, v1, cfg := startReloadConfig(t)
	logs := &logtest.Buffer{}
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ConfigPath: path, SIGHUP: true, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	v2 := v1
	v2.bearer = "bearer-secret-two"
	writeReloadConfig(t, path, z, v2)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !logs.WaitFor(`msg="config reloaded" component=reload secrets_changed=[zoom.token_endpoint.bearer_secret]`, 20*time.Second, done) {
		t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
	}
}
