package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// TestHealthCommand: `health` reads http.listen from the config that `run` reads and asks the
// running daemon's /readyz there: exit 0 once it is ready, printing the report; 1 when nothing
// answers (--url), and 1 (never 2, which Docker reserves) when the config names no listener.
func TestHealthCommand(t *testing.T) {
	cluster := gcbtest.NewCluster(gcbtest.Options{Nodes: 1})
	t.Cleanup(cluster.Close)
	cfg := configs.Default()
	cfg.NATS.Embedded.Enabled, cfg.NATS.Embedded.Port = true, -1
	cfg.Genesys.URL = cluster.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(t.Context())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg, daemon.Options{Logger: slog.New(slog.DiscardHandler), InternalAddr: func(a string) { addr <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	var listen string
	select {
	case listen = <-addr:
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no internal listener")
	}

	dir := t.TempDir()
	write := func(name, listen string) string {
		p := filepath.Join(dir, name)
		y := fmt.Sprintf("nats:\n  embedded:\n    enabled: true\ngenesys:\n  url: %s\nhttp:\n  listen: %q\n", cluster.URL(), listen)
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	path := write("config.yaml", listen)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // the daemon may still be starting: ask again
	defer tick.Stop()
	for {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), []string{"health", "--config", path}, &stdout, &stderr)
		if code == 0 {
			if !strings.Contains(stdout.String(), "[+] nats: connected") || !strings.HasSuffix(stdout.String(), "\nready\n") {
				t.Fatalf("ready, but the report says %q", stdout.String())
			}
			break
		}
		if code != 1 || time.Now().After(deadline) {
			t.Fatalf("health: exit %d, %q %q", code, stdout.String(), stderr.String())
		}
		<-tick.C
	}

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"health", "--url", "http://" + free + "/readyz"}, "connection refused"},
		{[]string{"health", "--config", write("none.yaml", "")}, "http.listen is empty"},
		{[]string{"health", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tc.args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
