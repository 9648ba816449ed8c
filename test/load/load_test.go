package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/nodepeer"
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
// 500 interactions drained by both bare consumers, the daemon and two replicas; 20 joins and
// closes one at a time beside the protocol floor and the JavaScript client, one batch of 64 closes
// in flight; 50 live sessions joined, activated and closed on websocket and on long-polling, beside
// both holders). It asserts correctness only: every message drained, every join attached, every
// session ended, the figures and the goals all present; never a timing. Anything it needs that is
// missing (the go command, the module, a process that does not start) fails it, save node and npm:
// without them the JS anchors are left out, except under CI=true, where that fails the test (the
// interop tier's rule, test/nodepeer).
func TestLoadQuick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	js := true
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; the load harness's JS anchors need it under CI", tool)
			}
			t.Logf("%s is not installed: the JS anchors are left out (install Node.js 20+ to run them)", tool)
			js = false
		}
	}
	if js {
		nodepeer.Require(t) // test/interop's npm packages, installed as the interop tier installs them
	}
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
		"-joins", "20", "-warmup", "2", "-close-batches", "1",
		"-live", "50", "-cpu-window", "500ms",
		"-js=" + strconv.FormatBool(js),
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
	for _, prefix := range []string{"ingestion: daemon ", "join: daemon ", "join: protocol floor ", "close: one at a time: ", "close: 64 in flight ",
		"live websocket: N=50 ", "live long-polling: N=50 ", "goals ", "wall: "} {
		if !strings.Contains(stdout.String(), "\n"+prefix) && !strings.HasPrefix(stdout.String(), prefix) {
			t.Errorf("no line starts with %q", prefix)
		}
	}

	in := rep.Ingestion
	switch {
	case in == nil:
		t.Fatal("no ingestion figures")
	case in.Msgs != 2000 || in.Created != 0:
		t.Errorf("ingestion: %d messages, %d created events, want 2,000 chat lines and none", in.Msgs, in.Created)
	case in.Anchor.Rate <= 0 || in.Inbound.Rate <= 0 || in.Daemon.Rate <= 0 || in.Replicas2 == nil || in.Replicas2.Rate <= 0:
		t.Errorf("ingestion: a drain has no rate: %+v", in)
	case len(in.Anchor.Runs) != 3 || len(in.Inbound.Runs) != 3:
		t.Errorf("ingestion: the anchors drained %d and %d times, want 3 each", len(in.Anchor.Runs), len(in.Inbound.Runs))
	case in.Ratio <= 0 || in.RatioInbound <= 0:
		t.Errorf("ingestion: no ratios: %+v", in)
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
		t.Errorf("join: %d daemon joins, %d floor joins, %d closes, %d floor stops measured, want 20 each", j.Daemon.N, j.Anchor.N, j.Close.N, j.Stop.N)
	case js && (j.JS == nil || j.JS.N != 20):
		t.Errorf("join: the JS client's joins were not measured: %+v", j.JS)
	case j.CloseBatch.N != 64 || j.FinalBatch.N != 64:
		t.Errorf("close: %d closes in flight measured, want 64", j.CloseBatch.N)
	case j.EndedBy["controller"] != 20+64:
		t.Errorf("join: sessions ended by %v, want the Controller's CometD stop for all 84", j.EndedBy)
	}

	if len(rep.Live) != 2 {
		t.Fatalf("live: %d transports measured, want websocket and long-polling", len(rep.Live))
	}
	for i, want := range []string{"websocket", "long-polling"} {
		l := rep.Live[i]
		switch {
		case l.Transport != want:
			t.Errorf("live %d: transport %q, want %q", i, l.Transport, want)
		case l.Ended != 50 || l.LiveAfter != 0:
			t.Errorf("live %s: %d of 50 sessions ended, %d live after", want, l.Ended, l.LiveAfter)
		case l.RSSNKiB <= 0 || l.RSS0KiB <= 0:
			t.Errorf("live %s: RSS not read: %+v", want, l)
		case want == "websocket" && l.WebSockets < 50:
			t.Errorf("live websocket: the server saw %d websocket connections for 50 sessions: the daemon did not use its default transport", l.WebSockets)
		case want == "long-polling" && (l.WebSockets != 0 || l.LongPolls < 50):
			t.Errorf("live long-polling: the server saw %d websocket connections and %d long-poll requests", l.WebSockets, l.LongPolls)
		case l.Goroutines <= 0:
			t.Errorf("live %s: the goroutines after the close were not counted", want)
		case l.Bare == nil || l.Bare.RSSNMB <= 0:
			t.Errorf("live %s: the bare Go client's figures are missing", want)
		case js && (l.JS == nil || l.JS.RSSNMB <= 0):
			t.Errorf("live %s: the JS client's figures are missing", want)
		}
	}

	for _, k := range []string{"ingest_ratio_same_stream", "join_p50_ratio_floor", "join_p99_ratio_floor", "join_p50_ratio_js",
		"close_p99_ms_one", "close_p99_ms_in_flight",
		"live_websocket_kib_per_session", "live_websocket_daemon_mb", "live_websocket_idle_cpu_pct",
		"live_long_polling_kib_per_session", "live_long_polling_daemon_mb", "live_long_polling_idle_cpu_pct"} {
		g, ok := rep.Goals[k]
		switch {
		case !ok:
			t.Errorf("goals: no %s", k)
		case g.Goal == "":
			t.Errorf("goals: %s has no bound: %+v", k, g)
		case strings.HasPrefix(k, "live_") && !strings.HasPrefix(g.Note, "judged at 10000"):
			t.Errorf("goals: %s at N=50 is not marked judged at 10000: %+v", k, g)
		}
	}
	if !strings.Contains(stdout.String(), "(judged at 10000)") {
		t.Errorf("the goals block marks no goal (judged at 10000)")
	}
}
