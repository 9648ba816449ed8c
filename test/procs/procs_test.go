//go:build unix

package procs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childMode, in the environment, makes the test binary one of the children the tests spawn.
const childMode = "PROCS_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childMode); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child is the test binary run as a child:
//   - lines: prints two lines and exits 0;
//   - echo: copies its stdin to its stdout and exits 0 at its end;
//   - wait, stubborn: says "ready" and waits for a signal; SIGUSR1 makes it say "usr1" and exit 0,
//     SIGTERM ends it as it ends any Go program (stubborn ignores it).
func child(mode string) int {
	switch mode {
	case "lines":
		fmt.Print("a\nb\n")
		return 0
	case "echo":
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			return 1
		}
		return 0
	case "wait", "stubborn":
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		if mode == "stubborn" {
			signal.Ignore(syscall.SIGTERM)
		}
		fmt.Println("ready")
		<-usr1
		fmt.Println("usr1")
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

// spawned is a child started by the tests, with the lines of its stdout.
type spawned struct {
	*Proc
	lines chan string
	out   *bytes.Buffer // its stdout and stderr; read it only once it has exited
}

// spawnChild spawns the test binary in mode, with stdin (nil: none). The child is killed at the
// end of the test if it still runs.
func spawnChild(t *testing.T, mode string, stdin *os.File) *spawned {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &spawned{lines: make(chan string, 16), out: new(bytes.Buffer)}
	w := NewLineWriter(s.out, func(line []byte) { s.lines <- string(line) })
	// A race-enabled child sleeps a second at its exit unless told not to.
	env := append(os.Environ(), childMode+"="+mode, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	p, err := SpawnIO("child "+mode, self, nil, env, stdin, w, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	s.Proc = p
	return s
}

// line waits, bounded, for the child's next line and checks it.
func (s *spawned) line(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s.lines:
		if got != want {
			t.Fatalf("%s said %q, want %q", s.Name(), got, want)
		}
	case <-s.Exited():
		select {
		case got := <-s.lines: // said before it exited
			if got != want {
				t.Fatalf("%s said %q, want %q", s.Name(), got, want)
			}
		default:
			t.Fatalf("%s exited (%v) before it said %q", s.Name(), s.Err(), want)
		}
	case <-time.After(Wait):
		t.Fatalf("%s did not say %q within %v", s.Name(), want, Wait)
	}
}

// exit waits, bounded, for the child to be reaped.
func (s *spawned) exit(t *testing.T) {
	t.Helper()
	select {
	case <-s.Exited():
	case <-time.After(Wait):
		t.Fatalf("%s not reaped within %v", s.Name(), Wait)
	}
}

// killedBy reports whether err is the exit of a process ended by sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee interface{ Sys() any }
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func TestSpawnLines(t *testing.T) {
	s := spawnChild(t, "lines", nil)
	if s.Pid() <= 0 {
		t.Fatalf("pid %d", s.Pid())
	}
	s.exit(t)
	s.line(t, "a")
	s.line(t, "b")
	if got := s.out.String(); got != "a\nb\n" {
		t.Fatalf("copied %q, want %q", got, "a\nb\n")
	}
	if !s.Done() || s.Err() != nil || s.Signaled() {
		t.Fatalf("done %v, err %v, signaled %v; want true, nil, false", s.Done(), s.Err(), s.Signaled())
	}
	if err := s.Stop(syscall.SIGTERM, time.Second); err != nil || s.Signaled() {
		t.Fatalf("Stop of an exited process: %v, signaled %v; want nil, false", err, s.Signaled())
	}
}

func TestSpawnIOStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := spawnChild(t, "echo", r)
	r.Close() // the child has its copy
	fmt.Fprintln(w, "x")
	s.line(t, "x")
	w.Close()
	s.exit(t)
	if s.Err() != nil {
		t.Fatalf("echo child: %v", s.Err())
	}
}

// Kill and Stop end a running child, reap it and count its exit as expected.
func TestKillAndStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(*Proc) error
		sig  syscall.Signal // what the child dies of
	}{
		{"Kill", (*Proc).Kill, syscall.SIGKILL},
		{"Stop", func(p *Proc) error { return p.Stop(syscall.SIGTERM, Wait) }, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spawnChild(t, "wait", nil)
			s.line(t, "ready")
			if s.Done() || s.Err() != nil || s.Signaled() {
				t.Fatalf("running child: done %v, err %v, signaled %v", s.Done(), s.Err(), s.Signaled())
			}
			if err := tc.end(s.Proc); err != nil {
				t.Fatal(err)
			}
			if !s.Done() || !s.Signaled() || !killedBy(s.Err(), tc.sig) {
				t.Fatalf("after %s: done %v, signaled %v, err %v; want true, true, %v", tc.name, s.Done(), s.Signaled(), s.Err(), tc.sig)
			}
		})
	}
}

func TestStopKillsAtBound(t *testing.T) {
	s := spawnChild(t, "stubborn", nil)
	s.line(t, "ready")
	err := s.Stop(syscall.SIGTERM, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a child that ignores SIGTERM: %v, want it reported killed", err)
	}
	if !s.Done() || !killedBy(s.Err(), syscall.SIGKILL) {
		t.Fatalf("after Stop: done %v, err %v", s.Done(), s.Err())
	}
}

func TestSignal(t *testing.T) {
	s := spawnChild(t, "wait", nil)
	s.line(t, "ready")
	if err := s.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s.line(t, "usr1")
	s.exit(t)
	if s.Err() != nil || s.Signaled() {
		t.Fatalf("after SIGUSR1: err %v, signaled %v; want nil, false", s.Err(), s.Signaled())
	}
}

func TestGroupStopAll(t *testing.T) {
	var g Group
	done := spawnChild(t, "lines", nil)
	done.exit(t)
	g.Add(done.Proc)
	var running []*spawned
	for _, mode := range []string{"wait", "stubborn", "wait"} {
		s := spawnChild(t, mode, nil)
		s.line(t, "ready")
		g.Add(s.Proc)
		running = append(running, s)
	}
	var reported []error
	g.StopAll(syscall.SIGTERM, time.Second, func(err error) { reported = append(reported, err) })
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "child stubborn") {
		t.Fatalf("reported %v, want the stubborn child killed", reported)
	}
	for _, s := range running {
		if !s.Done() || !s.Signaled() {
			t.Fatalf("%s after StopAll: done %v, signaled %v", s.Name(), s.Done(), s.Signaled())
		}
	}
	if done.Signaled() {
		t.Fatal("StopAll signalled a process that had exited")
	}
	g.StopAll(syscall.SIGTERM, time.Second, nil) // all exited: nothing to do, nothing to report
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	var lines []string
	w := NewLineWriter(&out, func(line []byte) { lines = append(lines, string(line)) })
	for _, s := range []string{"a\nb", "c\n", "\nd", strings.Repeat("x", maxLine), "y\ne\n"} {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(s), n, err)
		}
	}
	// The unended line grew past maxLine and was dropped: "y" is what is left of it.
	if want := []string{"a", "bc", "", "y", "e"}; !slices.Equal(lines, want) {
		t.Fatalf("lines %q, want %q", lines, want)
	}
	if want := "a\nbc\n\nd" + strings.Repeat("x", maxLine) + "y\ne\n"; out.String() != want {
		t.Fatalf("copied %d bytes, want %d", out.Len(), len(want))
	}
	// Neither a writer nor a func: it takes the bytes all the same.
	if n, err := NewLineWriter(nil, nil).Write([]byte("z\n")); err != nil || n != 2 {
		t.Fatalf("bare LineWriter: %d, %v", n, err)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]bool)
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 4 distinct", ports)
		}
		seen[p] = true
	}
	if len(seen) != 4 {
		t.Fatalf("ports %v: want 4", ports)
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := LogTail(path, 2), "    line 8\n    line 9"; got != want {
		t.Fatalf("LogTail = %q, want %q", got, want)
	}
	if got := LogTail(filepath.Join(t.TempDir(), "none"), 2); got != "" {
		t.Fatalf("LogTail of no file = %q", got)
	}
	sc := bufio.NewScanner(strings.NewReader(LogTail(path, 100)))
	n := 0
	for sc.Scan() {
		n++
	}
	if n != 10 {
		t.Fatalf("LogTail(path, 100) has %d lines, want 10", n)
	}
}
