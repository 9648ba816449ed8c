package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// The JavaScript anchors: the official CometD JavaScript client (cometd 9 with
// cometd-nodejs-client 2) in a node process of its own, running test/load/jsanchor.mjs. The npm
// packages are test/interop's: pinned by its package-lock.json and installed with `npm ci` there,
// as test/nodepeer does for the interop tier (the same lock file and the same stamp, so that the
// two never install at once and each sees the other's install).

// jsEnv is what running the JS anchors needs, found once per run.
type jsEnv struct {
	node    string // the node binary
	interop string // test/interop, with its node_modules
	script  string // test/load/jsanchor.mjs
}

// errNoNode says node or npm is missing: the harness needs them for its JS anchors unless -js=false.
var errNoNode = errors.New("the JS anchors need Node.js 20+ and npm (or run with -js=false)")

// setupJS finds node, npm and the repository's folders, and installs test/interop's packages
// unless they are installed already.
func setupJS(ctx context.Context) (*jsEnv, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w: node: %v", errNoNode, err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return nil, fmt.Errorf("%w: npm: %v", errNoNode, err)
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	j := &jsEnv{node: node, interop: filepath.Join(root, "test", "interop"), script: filepath.Join(root, "test", "load", "jsanchor.mjs")}
	if _, err := os.Stat(j.script); err != nil {
		return nil, fmt.Errorf("the JS anchor's script: %w", err)
	}
	if err := npmInstall(ctx, npm, j.interop); err != nil {
		return nil, err
	}
	return j, nil
}

// moduleRoot is the repository's root: the first folder up from the current one whose go.mod
// declares this module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/cobrowse-connector/cobrowse-connector\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the JS anchors: not inside the repository (run from it, or with -js=false)")
		}
		dir = parent
	}
}

// npmInstall runs `npm ci` in dir unless node_modules is newer than the lockfile, under
// test/nodepeer's file lock and with its stamp (node_modules/.installed).
func npmInstall(ctx context.Context, npm, dir string) error {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "cobrowse-connector-npm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	stamp := filepath.Join(dir, "node_modules", ".installed")
	if st, err := os.Stat(stamp); err == nil {
		if lk, err := os.Stat(filepath.Join(dir, "package-lock.json")); err == nil && st.ModTime().After(lk.ModTime()) {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := runCmd(ctx, cmd); err != nil {
		return fmt.Errorf("npm ci in %s: %w: %s", dir, err, out)
	}
	return os.WriteFile(stamp, nil, 0o644)
}

// jsArgs are the script's arguments for a mode on this measurement's server.
func (e *env) jsArgs(mode, transport string) []string {
	j := e.h.js
	return []string{j.script, "--interop", j.interop, "--front", e.gcbR.Front, "--transport", transport, "--mode", mode}
}

// jsJoiner is the join-latency anchor: one node process that joins the sessions it is handed,
// one at a time.
type jsJoiner struct {
	p     *procs.Proc
	stdin *os.File
	lines chan string
	log   string
}

// startJSJoiner starts it and waits for its "ready".
func (e *env) startJSJoiner(ctx context.Context, transport string) (*jsJoiner, error) {
	out, err := e.openLog("jsclient-join.out")
	if err != nil {
		return nil, err
	}
	j := &jsJoiner{lines: make(chan string, 16), log: out.Name()}
	w := procs.NewLineWriter(out, func(line []byte) {
		select {
		case j.lines <- string(line):
		default: // only ever one answer awaited; anything else is in the log
		}
	})
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p, err := procs.SpawnIO("jsclient (join)", e.h.js.node, e.jsArgs("join", transport), childEnv("NODE_NO_WARNINGS=1"), stdinR, w, out)
	stdinR.Close()
	if err != nil {
		stdinW.Close()
		return nil, err
	}
	e.h.children.Add(p)
	j.p, j.stdin = p, stdinW
	if _, err := j.next(ctx, procs.Wait, "ready"); err != nil {
		j.stop()
		return nil, fmt.Errorf("the JS client: %w", err)
	}
	return j, nil
}

// next waits for a line starting with want (or a FAILED line) and returns the rest.
func (j *jsJoiner) next(ctx context.Context, bound time.Duration, want string) (string, error) {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		select {
		case l := <-j.lines:
			if rest, ok := strings.CutPrefix(l, want); ok {
				return strings.TrimSpace(rest), nil
			}
			if rest, ok := strings.CutPrefix(l, "FAILED "); ok {
				return "", errors.New(rest)
			}
		case <-j.p.Exited():
			return "", fmt.Errorf("exited: %v (see %s)", j.p.Err(), j.log)
		case <-t.C:
			return "", fmt.Errorf("no %q line within %v (see %s)", want, bound, j.log)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// join has the JS client join session token as the Controller, stop it and leave; it returns the
// join's and the stop's durations as the client measured them.
func (j *jsJoiner) join(ctx context.Context, token, transport, historyID string) (join, stop time.Duration, err error) {
	if _, err := fmt.Fprintln(j.stdin, token); err != nil {
		return 0, 0, err
	}
	rest, err := j.next(ctx, 60*time.Second, "JOINED ")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(rest)
	if len(f) != 4 {
		return 0, 0, fmt.Errorf("unreadable answer %q", rest)
	}
	jm, err1 := strconv.ParseFloat(f[0], 64)
	sm, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("unreadable answer %q", rest)
	}
	if f[2] != transport {
		return 0, 0, fmt.Errorf("the JS client ran on %s, not %s", f[2], transport)
	}
	if f[3] != historyID {
		return 0, 0, fmt.Errorf("the JS client joined session %q, the server's is %q", f[3], historyID)
	}
	ms := func(x float64) time.Duration { return time.Duration(x * float64(time.Millisecond)) }
	return ms(jm), ms(sm), nil
}

// stop ends the process (EOF on its stdin, then SIGTERM).
func (j *jsJoiner) stop() {
	_ = j.stdin.Close()
	_ = j.p.Stop(syscall.SIGTERM, 10*time.Second)
}
