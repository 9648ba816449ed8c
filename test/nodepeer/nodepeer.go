// Package nodepeer runs third-party JavaScript peers (CometD servers and clients from npm) for the
// interop tests. The npm packages are pinned by test/interop/package-lock.json and installed with
// `npm ci` by the tests themselves, once per machine state, under a file lock so that test
// binaries running in parallel do not install twice.
//
// Under CI=true a missing node or npm fails the test; elsewhere it skips, saying why.
package nodepeer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Dir is the folder of the interop package.json, found from this source file.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "interop")
}

var (
	installOnce sync.Once
	installErr  error
)

// Require makes sure node and the pinned npm packages are there, or ends the test: a failure
// under CI=true, a skip elsewhere.
func Require(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("nodepeer: %s is not installed; the interop tier needs it under CI", tool)
			}
			tb.Skipf("nodepeer: %s is not installed (install Node.js 20+ to run the interop tier)", tool)
		}
	}
	installOnce.Do(func() { installErr = install() })
	if installErr != nil {
		tb.Fatalf("nodepeer: npm ci: %v", installErr)
	}
}

// install runs `npm ci` unless node_modules is newer than the lockfile.
func install() error {
	dir := Dir()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "cobrowse-connector-npm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }() // closing lock unlocks too

	if fresh(dir) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return os.WriteFile(filepath.Join(dir, "node_modules", ".installed"), nil, 0o644)
}

func fresh(dir string) bool {
	stamp, err := os.Stat(filepath.Join(dir, "node_modules", ".installed"))
	if err != nil {
		return false
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	return err == nil && stamp.ModTime().After(lock.ModTime())
}

// Peer is a running node process.
type Peer struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
	err   error
	tail  *tailBuffer
}

// Start runs `node script args...` from the interop folder and stops it when the test ends.
// The script's stdout is read line by line (see Expect); its stderr is kept and shown if the
// test fails.
func Start(tb testing.TB, script string, args ...string) *Peer {
	tb.Helper()
	Require(tb)
	cmd := exec.Command("node", append([]string{script}, args...)...)
	cmd.Dir = Dir()
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &Peer{cmd: cmd, lines: make(chan string, 64), done: make(chan struct{}), tail: &tailBuffer{}}
	cmd.Stderr = p.tail
	if err := cmd.Start(); err != nil {
		tb.Fatalf("nodepeer: start %s: %v", script, err)
	}
	var reader sync.WaitGroup
	reader.Go(func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	})
	go func() {
		reader.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("%s stderr:\n%s", script, p.tail.String())
		}
	})
	return p
}

// Expect waits up to timeout for a stdout line that starts with prefix and returns the rest of
// the line, trimmed. Lines before it are passed over (and logged).
func (p *Peer) Expect(tb testing.TB, prefix string, timeout time.Duration) string {
	tb.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				tb.Fatalf("nodepeer: process ended (%v) before %q; stderr:\n%s", p.err, prefix, p.tail.String())
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return strings.TrimSpace(rest)
			}
			tb.Logf("node: %s", line)
		case <-timer.C:
			tb.Fatalf("nodepeer: no %q line within %v; stderr:\n%s", prefix, timeout, p.tail.String())
		}
	}
}

// Wait waits for the process to exit by itself and returns its error.
func (p *Peer) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return errors.New("nodepeer: process still running")
	}
}

// tailBuffer keeps the last 16 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - 16<<10; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

var _ io.Writer = (*tailBuffer)(nil)
