package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// daemon is one daemon of a measurement: the built binary (`cobrowse-connector run --config
// FILE`), with a config that sets only what the harness must (nats.url, genesys.url, the log level
// and format, and, for replicas, cluster.member; on long-polling, genesys.transports). Its JSON
// log goes to a file; the harness counts its warnings and errors by message.
type daemon struct {
	e       *env
	member  string // cluster.member; "" keeps the default (main)
	cfgPath string
	logPath string
	log     *os.File
	p       *procs.Proc
	runs    int

	quitting atomic.Bool // a SIGQUIT was sent: count the goroutines of the dump
	dumps    chan int    // -profile-daemon: the goroutine count of each heap profile written

	mu         sync.Mutex
	warnings   int
	errors     int
	byMsg      map[string]int // "WARN: msg" -> count
	goroutines int
}

// memberName is the daemon's member name in the consumer group.
func (d *daemon) memberName() string {
	if d.member == "" {
		return defaultMember
	}
	return d.member
}

func (d *daemon) name() string {
	if d.member == "" {
		return "daemon"
	}
	return "daemon " + d.member
}

// addDaemon writes a daemon's config; start runs it.
func (e *env) addDaemon(member string) (*daemon, error) {
	base := "daemon"
	if member != "" {
		base += "-" + member
	}
	d := &daemon{e: e, member: member, cfgPath: filepath.Join(e.dir, base+".yaml"), logPath: filepath.Join(e.dir, base+".log"),
		byMsg: map[string]int{}, dumps: make(chan int, 1)}
	var err error
	if d.log, err = e.openLog(base + ".log"); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the load harness (test/load): the daemon's defaults (configs/default.yaml), save
# what the harness must set.
log:
  level: %s
  format: json
nats:
  url: %s
http:
  listen: "127.0.0.1:0" # any free port: never the default one, taken by whatever else runs here
genesys:
  url: %s
`, e.h.opt.logLevel, e.natsURL, e.gcbR.Front)
	if e.transport == cometd.TransportLongPolling {
		b.WriteString("  transports: [long-polling]\n")
	}
	if member != "" {
		fmt.Fprintf(&b, "cluster:\n  member: %s\n", member)
	}
	if err := os.WriteFile(d.cfgPath, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	e.daemons = append(e.daemons, d)
	return d, nil
}

// goroutineHeader starts a goroutine in a SIGQUIT dump ("goroutine 12 gp=0x... m=nil [select]:"); the
// g0 stacks of the OS threads are "goroutine 0" and are not counted.
var goroutineHeader = regexp.MustCompile(`^goroutine [1-9][0-9]* .*\[`)

// onLine counts one line of the daemon's output.
func (d *daemon) onLine(line []byte) {
	if d.quitting.Load() && goroutineHeader.Match(line) {
		d.mu.Lock()
		d.goroutines++
		d.mu.Unlock()
		return
	}
	if bytes.Contains(line, []byte(`"msg":"profiled: heap written"`)) {
		var m struct {
			Goroutines int    `json:"goroutines"`
			Error      string `json:"error"`
		}
		if json.Unmarshal(line, &m) == nil {
			select {
			case d.dumps <- m.Goroutines:
			default:
			}
		}
		return
	}
	if !bytes.Contains(line, []byte(`"level":"WARN"`)) && !bytes.Contains(line, []byte(`"level":"ERROR"`)) {
		return
	}
	var m struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	if json.Unmarshal(line, &m) != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.Level == "ERROR" {
		d.errors++
	} else {
		d.warnings++
	}
	d.byMsg[m.Level+": "+m.Msg]++
}

// start runs the daemon; it returns once the process is started (see waitConsuming).
func (d *daemon) start() error {
	if d.p != nil && !d.p.Done() {
		return fmt.Errorf("%s is running already", d.name())
	}
	d.runs++
	fmt.Fprintf(d.log, "{\"load\":\"run %d starts\",\"time\":%q}\n", d.runs, time.Now().UTC().Format(time.RFC3339Nano))
	w := procs.NewLineWriter(d.log, d.onLine)
	bin, env := d.e.h.daemonBin, childEnv("GOTRACEBACK=all")
	if d.profiled() {
		base := filepath.Join(d.e.dir, strings.TrimSuffix(filepath.Base(d.logPath), ".log"))
		bin = d.e.h.profiledBin
		env = append(env, fmt.Sprintf("LOAD_CPU_PROFILE=%s-cpu-%d.pprof", base, d.runs), fmt.Sprintf("LOAD_HEAP_PROFILE=%s-heap-%d.pprof", base, d.runs))
	}
	p, err := procs.Spawn("cobrowse-connector "+d.memberName(), bin, []string{"run", "--config", d.cfgPath}, env, w, w)
	if err != nil {
		return err
	}
	d.e.h.children.Add(p)
	d.p = p
	return nil
}

// waitConsuming waits until the daemon pulls from its member's consumer (a pull request waits on
// it): the daemon is up and idle. On a store where the member consumed before, a stopped
// instance's pull requests linger for a few seconds: use it on a fresh store.
func (d *daemon) waitConsuming(ctx context.Context) error {
	return d.e.every(ctx, 20*time.Millisecond, procs.Wait, d.name()+" consuming", func(ctx context.Context) (bool, error) {
		info, err := d.e.consumerInfo(ctx, groupStream, d.memberName())
		if err != nil {
			return false, nil // NATS answers once the daemon's setup is done; keep polling
		}
		return info != nil && info.NumWaiting > 0, nil
	})
}

// waitIdle waits until the daemon has settled every inbound message: its member's consumer has
// nothing pending and nothing unacked (the ack rule: a message is acked once everything it caused
// is published and the state saved).
func (d *daemon) waitIdle(ctx context.Context, bound time.Duration) error {
	return d.e.every(ctx, 20*time.Millisecond, bound, d.name()+" settling every inbound message", func(ctx context.Context) (bool, error) {
		info, err := d.e.consumerInfo(ctx, groupStream, d.memberName())
		return err == nil && info != nil && info.NumPending == 0 && info.NumAckPending == 0, err
	})
}

// stop sends SIGTERM and waits for the daemon's clean exit (bounded: its shutdown_timeout is 15s).
func (d *daemon) stop() error {
	if d.p == nil || d.p.Done() {
		return nil
	}
	if err := d.p.Stop(syscall.SIGTERM, 45*time.Second); err != nil {
		return fmt.Errorf("FINDING: %w", err)
	}
	if d.p.Err() != nil {
		return fmt.Errorf("FINDING: %s exited with %v after SIGTERM (see %s)", d.name(), d.p.Err(), d.logPath)
	}
	return nil
}

// profiled: the daemon runs in test/load/profiled (-profile-daemon).
func (d *daemon) profiled() bool { return d.e.h.profiledBin != "" }

// heapDump asks a profiled daemon for a heap profile (SIGUSR1) and returns its goroutine count.
func (d *daemon) heapDump(ctx context.Context) (int, error) {
	if !d.profiled() || d.p == nil || d.p.Done() {
		return 0, fmt.Errorf("%s: no profiled daemon running", d.name())
	}
	_ = d.p.Signal(syscall.SIGUSR1)
	select {
	case g := <-d.dumps:
		return g, nil
	case <-d.p.Exited():
		return 0, fmt.Errorf("%s exited: %v", d.name(), d.p.Err())
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("%s wrote no heap profile within 30s of SIGUSR1", d.name())
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// quit sends SIGQUIT: the Go runtime prints every goroutine's stack (GOTRACEBACK=all) and exits.
// It returns how many goroutines the dump lists: the one way to count them from outside, since
// the daemon serves no metrics or pprof.
func (d *daemon) quit() (int, error) {
	if d.p == nil || d.p.Done() {
		return 0, fmt.Errorf("%s is not running", d.name())
	}
	d.quitting.Store(true)
	if err := d.p.Stop(syscall.SIGQUIT, 30*time.Second); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.goroutines == 0 {
		return 0, fmt.Errorf("%s printed no goroutine dump on SIGQUIT (see %s)", d.name(), d.logPath)
	}
	return d.goroutines, nil
}

// logged counts the lines the daemon logged at level with msg.
func (d *daemon) logged(level, msg string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byMsg[level+": "+msg]
}

// logSummary is what the daemon logged at warn and above: counts and the most frequent messages.
func (d *daemon) logSummary() (warnings, errors int, top []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range d.byMsg {
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	for i, x := range all {
		if i == 3 {
			break
		}
		top = append(top, fmt.Sprintf("%dx %q", x.n, x.k))
	}
	return d.warnings, d.errors, top
}

// runCommand runs the daemon binary once (a `cluster` action), bounded, and returns its stdout.
func (e *env) runCommand(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	p, err := procs.Spawn("cobrowse-connector "+args[0], e.h.daemonBin, args, childEnv(), &stdout, &stderr)
	if err != nil {
		return nil, err
	}
	e.h.children.Add(p)
	select {
	case <-p.Exited():
	case <-time.After(procs.Wait):
		_ = p.Kill()
		return nil, fmt.Errorf("cobrowse-connector %s: no exit within %v", strings.Join(args, " "), procs.Wait)
	case <-ctx.Done():
		_ = p.Kill()
		return nil, ctx.Err()
	}
	if p.Err() != nil {
		return nil, fmt.Errorf("cobrowse-connector %s: %v: %s", strings.Join(args, " "), p.Err(), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
