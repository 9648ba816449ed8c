//go:build unix

package daemon

import (
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
	_, stopped := startDaemon(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), ConfigPath: path, SIGHUP: true})
	v2 := v1
	v2.bearer = "bearer-secret-two"
	writeReloadConfig(t, path, z, v2)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !logs.WaitFor(`msg="config reloaded" component=reload secrets_changed=[zoom.token_endpoint.bearer_secret]`, 20*time.Second, stopped) {
		t.Fatalf("no reload after SIGHUP:\n%s", logs.String())
	}
}
