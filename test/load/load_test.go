package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// TestMain lets the test binary be the harness's helper processes too (NATS, the Co-browse
// Server, the bare client), as the harness binary is: the harness starts the helper program with
// the role in the environment.
func TestMain(m *testing.M) {
	if code, ok := helperMain(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestLoadQuick is the quick form of `make load` that every `go test ./...` runs: the daemon built
// now, NATS and the Co-browse Server in processes of their own, tiny numbers (2,000 chat lines over
// 500 interactions drained by the bare consumer, the daemon and two replicas; 20 joins and closes,
// one at a time, beside the bare client; 50 live sessions joined, activated and closed). It asserts
// correctness only: every message drained, every join attached, every session ended, the figures
// all present; never a timing. Anything it needs that is missing (the go command, the module, a
// process that does not start) fails it.
func TestLoadQuick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	t.Cleanup(procs.StopSpawner) // the builds below start it; run stops it too
	began := time.Now()
	bin, err := buildDaemon(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatalf("building the daemon: %v", err)
	}
	// The helper processes from a build of their own, not from this test binary: under go test
	// -race a race-instrumented NATS server would slow the quick form several times over.
	helper, err := buildPackage(ctx, filepath.Join(dir, "bin"), "./test/load", "load")
	if err != nil {
		t.Fatalf("building the harness's helper: %v", err)
	}
	t.Logf("daemon and helper built in %v", time.Since(began).Round(100*time.Millisecond))

	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{
		"-msgs", "2000", "-interactions", "500",
		"-joins", "20", "-warmup", "2",
		"-live", "50", "-cpu-window", "500ms",
		"-join-wait", "45s", "-drain-timeout", "2m", "-timeout", "4m",
		"-daemon", bin, "-helper", helper, "-dir", filepath.Join(dir, "run"),
	}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("the load harness exited %d", code)
	}

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var rep report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("the last line is not the JSON report: %v", err)
	}
	if !rep.OK {
		t.Fatalf("the report says the run failed: %s", rep.Error)
	}
	for _, prefix := range []string{"ingestion: daemon ", "join: daemon ", "close: daemon ", "live: N=50 "} {
		if !strings.Contains(stdout.String(), "\n"+prefix) && !strings.HasPrefix(stdout.String(), prefix) {
			t.Errorf("no line starts with %q", prefix)
		}
	}

	in := rep.Ingestion
	switch {
	case in == nil:
		t.Fatal("no ingestion figures")
	case in.Msgs != 2500:
		t.Errorf("ingestion: %d messages, want 2,000 chat lines and 500 created events", in.Msgs)
	case in.Bare.Rate <= 0 || in.Daemon.Rate <= 0 || in.Replicas2 == nil || in.Replicas2.Rate <= 0:
		t.Errorf("ingestion: a drain has no rate: %+v", in)
	case len(in.Replicas2.Replicas) != 2:
		t.Errorf("ingestion: 2 replicas reported %d members", len(in.Replicas2.Replicas))
	}
	if in != nil && in.Replicas2 != nil {
		var sum uint64
		for _, m := range in.Replicas2.Replicas {
			if m.Msgs == 0 {
				t.Errorf("ingestion: replica %s drained nothing: the partitions did not spread", m.Member)
			}
			sum += m.Msgs
		}
		if sum < uint64(in.Msgs) {
			t.Errorf("ingestion: the replicas were delivered %d messages of %d", sum, in.Msgs)
		}
	}

	j := rep.Join
	switch {
	case j == nil:
		t.Fatal("no join figures")
	case j.Daemon.N != 20 || j.Anchor.N != 20 || j.Close.N != 20 || j.Stop.N != 20:
		t.Errorf("join: %d daemon joins, %d bare joins, %d closes, %d bare stops measured, want 20 each", j.Daemon.N, j.Anchor.N, j.Close.N, j.Stop.N)
	case j.EndedBy["controller"] != 20:
		t.Errorf("join: sessions ended by %v, want the Controller's CometD stop for all 20", j.EndedBy)
	}

	l := rep.Live
	switch {
	case l == nil:
		t.Fatal("no live figures")
	case l.Ended != 50 || l.LiveAfter != 0:
		t.Errorf("live: %d of 50 sessions ended, %d live after", l.Ended, l.LiveAfter)
	case l.RSSNKiB <= 0 || l.RSS0KiB <= 0:
		t.Errorf("live: RSS not read: %+v", l)
	case l.WebSockets < 50:
		t.Errorf("live: the server saw %d websocket connections for 50 sessions: the daemon did not use its default transport", l.WebSockets)
	case l.Goroutines <= 0:
		t.Errorf("live: the goroutines after the close were not counted")
	}
}
