package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
)

// procWait bounds how long the harness waits for one of its processes to start serving, or to
// exit after a signal.
const procWait = 60 * time.Second

// proc is one child process. exited is closed once it has been reaped.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error       // Wait's result, set before exited is closed
	killed atomic.Bool // the harness signalled it: an exit is expected
}

// spawn starts a child with its stdout and stderr going to the writers.
func spawn(name, path string, args []string, stdout, stderr io.Writer) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := startProcess(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() error {
	p.killed.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(procWait):
		return fmt.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.cmd.Process.Pid, procWait)
	}
}

// stop sends SIGTERM, waits up to bound, then kills.
func (p *proc) stop(bound time.Duration) error {
	p.killed.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(bound):
		if err := p.kill(); err != nil {
			return err
		}
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, bound)
	}
}

// lineWriter hands each complete line to fn and copies everything to out (which may be nil).
type lineWriter struct {
	mu   sync.Mutex
	out  io.Writer
	fn   func(line []byte)
	part []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		if _, err := w.out.Write(b); err != nil {
			return 0, err
		}
	}
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if w.fn != nil {
			w.fn(w.part[:i])
		}
		w.part = w.part[i+1:]
	}
	if len(w.part) > 1<<20 { // a line without end: keep memory bounded
		w.part = w.part[:0]
	}
	return len(b), nil
}

// freePort picks a free loopback port for the NATS server, which keeps it across restarts.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// --- NATS ---

// startNATS runs natsd on h.natsPort and h's store and waits until it accepts connections.
func (h *harness) startNATS(ctx context.Context) error {
	ready := make(chan struct{}, 1)
	out := &lineWriter{out: h.natsLog, fn: func(line []byte) {
		if bytes.HasPrefix(line, []byte("ready ")) {
			select {
			case ready <- struct{}{}:
			default:
			}
		}
	}}
	p, err := spawn("natsd", h.bin.natsd, []string{
		"-port", fmt.Sprint(h.natsPort),
		"-store", filepath.Join(h.dir, "nats-store"),
		"-log", filepath.Join(h.dir, "natsd.log"),
	}, out, h.natsLog)
	if err != nil {
		return err
	}
	h.track(p)
	h.natsProc = p
	select {
	case <-ready:
		return nil
	case <-p.exited:
		return fmt.Errorf("natsd exited before it was ready: %v (see %s)", p.err, filepath.Join(h.dir, "natsd.out"))
	case <-time.After(procWait):
		return fmt.Errorf("natsd not ready within %v", procWait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- the Co-browse cluster ---

func (h *harness) startGCB(ctx context.Context) error {
	ready := make(chan control.Ready, 1)
	bad := make(chan error, 1)
	out := &lineWriter{out: h.gcbOut, fn: func(line []byte) {
		var r control.Ready
		if err := json.Unmarshal(line, &r); err != nil || r.Control == "" {
			select {
			case bad <- fmt.Errorf("gcbserver said %q", line):
			default:
			}
			return
		}
		select {
		case ready <- r:
		default:
		}
	}}
	args := []string{
		"-nodes", "3",
		"-connect-timeout", "1s",
		"-max-interval", "3s",
		"-log", filepath.Join(h.dir, "gcbserver.log"),
	}
	if h.opt.serverURL {
		args = append(args, "-server-url")
	}
	p, err := spawn("gcbserver", h.bin.gcbserver, args, out, h.gcbOut)
	if err != nil {
		return err
	}
	h.track(p)
	h.gcbProc = p
	select {
	case r := <-ready:
		h.gcb = r
		h.ctl = control.NewClient(r.Control)
		return nil
	case err := <-bad:
		return err
	case <-p.exited:
		return fmt.Errorf("gcbserver exited before it was ready: %v", p.err)
	case <-time.After(procWait):
		return fmt.Errorf("gcbserver not ready within %v", procWait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- the daemon ---

// daemonRun is one life of the daemon process.
type daemonRun struct {
	n     int
	p     *proc
	ready chan struct{} // closed when it logs that it runs
}

// readyMsg is what the daemon logs once it consumes (daemon.Run).
const readyMsg = "cobrowse-connector running"

// writeConfig writes the daemon's config: the project's defaults with the short timeouts
// test/e2e uses, so that losses, retries and sweeps happen within the run.
func (h *harness) writeConfig() error {
	cfg := fmt.Sprintf(`# Written by the chaos harness (test/chaos).
log:
  level: %s
  format: json
shutdown_timeout: 10s
nats:
  url: nats://127.0.0.1:%d
  inbound:
    ack_wait: 5s
    backoff: [200ms, 500ms, 1s]
genesys:
  url: %s
  request_timeout: 2s
  max_network_delay: 2s
  lost_after: 1s
controller:
  stop_wait: 2s
  join_timeout: 10s
  retry_delay: 500ms
  sweep: "@every 1s"
  breaker:
    open_for: 1s
`, h.opt.logLevel, h.natsPort, h.gcb.Front)
	h.configPath = filepath.Join(h.dir, "daemon.yaml")
	return os.WriteFile(h.configPath, []byte(cfg), 0o600)
}

// startDaemon starts the daemon and waits until it consumes. A daemon that exits before it is
// ready is started again, a few times (it refuses to start while NATS is unreachable).
func (h *harness) startDaemon(ctx context.Context) error {
	h.dmu.Lock()
	defer h.dmu.Unlock()
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			h.notef("daemon start %d failed (%v); starting it again", h.daemonRuns, last)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		h.daemonRuns++
		r := &daemonRun{n: h.daemonRuns, ready: make(chan struct{})}
		var once sync.Once
		fmt.Fprintf(h.daemonLog, "{\"chaos\":\"daemon run %d starts\",\"time\":%q}\n", r.n, time.Now().UTC().Format(time.RFC3339Nano))
		out := &lineWriter{out: h.daemonLog, fn: func(line []byte) {
			if bytes.Contains(line, []byte(readyMsg)) {
				var m struct{ Msg string }
				if json.Unmarshal(line, &m) == nil && m.Msg == readyMsg {
					once.Do(func() { close(r.ready) })
				}
			}
		}}
		p, err := spawn("cobrowse-connector", h.bin.daemon, []string{"run", "--config", h.configPath}, out, out)
		if err != nil {
			return err
		}
		h.track(p)
		r.p = p
		select {
		case <-r.ready:
			h.daemon = r
			go h.watchDaemon(ctx, r)
			return nil
		case <-p.exited:
			last = fmt.Errorf("exited before ready: %v", p.err)
		case <-time.After(procWait):
			_ = p.kill()
			last = fmt.Errorf("not ready within %v", procWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("daemon did not start: %w", last)
}

// killDaemon SIGKILLs the running daemon and reaps it.
func (h *harness) killDaemon() error {
	h.dmu.Lock()
	defer h.dmu.Unlock()
	if h.daemon == nil {
		return errors.New("no daemon running")
	}
	err := h.daemon.p.kill()
	h.daemon = nil
	return err
}

// watchDaemon reports a daemon that exits on its own (a crash, or giving up on NATS) and starts
// it again, as a supervisor would: the run goes on and the exit is listed as a finding.
func (h *harness) watchDaemon(ctx context.Context, r *daemonRun) {
	<-r.p.exited
	if r.p.killed.Load() || h.stopping.Load() || ctx.Err() != nil {
		return
	}
	h.daemonCrashes.Add(1)
	h.notef("FINDING: daemon run %d exited on its own: %v (last log lines below)\n%s", r.n, r.p.err, h.daemonLogTail(8))
	if h.daemonCrashes.Load() > 10 {
		h.notef("the daemon exited on its own more than 10 times; not restarting it")
		return
	}
	if err := h.startDaemon(ctx); err != nil {
		h.notef("restarting the daemon after its exit: %v", err)
	}
}

// daemonLogTail returns the last n lines of the daemon's log.
func (h *harness) daemonLogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(h.dir, "daemon.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
