package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestChaosShort is the short form of `make chaos` that CI runs with every `go test ./...`: the
// built daemon, NATS and the Co-browse cluster in their own processes, 36 interactions, one
// SIGKILL of the daemon, one node kill, one NATS restart. It fails unless lost, doubled,
// live_after_close and ended_by_restart are all 0, and on any finding about the daemon process
// itself (an exit on its own, a data race when run under -race).
//
// Under -race the binaries are built with -race too: `go test -race` has compiled their packages
// already, so the build is quick, and the daemon is checked for races under chaos.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped with -short (make test runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	began := time.Now()
	if _, err := buildBinaries(ctx, filepath.Join(dir, "bin"), raceEnabled); err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries built in %v (race: %v)", time.Since(began).Round(100*time.Millisecond), raceEnabled)

	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{
		"-n", "36", "-concurrency", "6",
		"-daemon-kills", "1", "-node-kills", "1", "-nats-restarts", "1",
		"-timeout", "5m",
		"-bin", filepath.Join(dir, "bin"), "-dir", filepath.Join(dir, "run"),
	}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	line := strings.TrimSpace(stdout.String())
	if !regexp.MustCompile(`^chaos: interactions=36 lost=\d+ doubled=\d+ live_after_close=\d+ ended_by_restart=\d+ server_lost=\d+ failed=\d+$`).MatchString(line) {
		t.Fatalf("the harness printed %q, not its one line", line)
	}
	if code != 0 {
		t.Errorf("chaos harness exited %d: %s", code, line)
	}
	if strings.Contains(stderr.String(), "FINDING:") {
		t.Errorf("the harness found something wrong with the daemon process (FINDING lines above)")
	}
}
