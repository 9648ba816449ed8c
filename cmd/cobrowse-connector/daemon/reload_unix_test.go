//go:build unix

package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// TestSIGHUPReloads: a daemon started from a config file reloads it on SIGHUP (the process goes
// on), and applies a new secret.
func TestSIGHUPReloads(t *testing.T) {
	z := zoomtest.New(zoomtest.Options{})
	defer z.Close()
	path := filepath.Join(t.TempDir(), "cobrowse.yaml")
	v1 := reloadSecrets{webhook: "webhook-secret-one", bearer: "bearer-secret-one", sdk: "sdk-secret-one-0123456789",
		client: z.Options().ClientSecret, overlap: "1h", tokenTTL: "2h"}
	writeReloadConfig(t, path, z, v1)
	cfg, err := LoadRunConfig(path)
	if err != nil {
		t.Fatal(err)
	}
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
