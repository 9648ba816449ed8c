package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// childEnv is the environment of a child: the harness's own, with every goroutine's stack in a
// crash's trace.
func childEnv() []string { return append(os.Environ(), "GOTRACEBACK=all") }

// --- NATS ---

// natsNode is one NATS server process: the only one in single mode, one of a 3-node JetStream
// cluster in replicas mode. A kill leaves its ports and store to the next start.
type natsNode struct {
	name        string // n1, n2, n3 in a cluster; "" for the server on its own
	port        int
	clusterPort int    // 0 for the server on its own
	routes      string // the other nodes' route URLs
	store       string
	logPath     string
	out         *os.File // its stdout and stderr
	proc        *procs.Proc
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsNode) procName() string {
	if n.name == "" {
		return "natsd"
	}
	return "natsd " + n.name
}

// setupNATS picks the ports and files of the NATS servers: one in single mode (natsd.log and
// nats-store, as ever), three cluster nodes n1..n3 in replicas mode (natsd-n1.log, nats-store-n1).
func (h *harness) setupNATS() error {
	count, perNode := 1, 1
	if h.replicated() {
		count, perNode = 3, 2 // a client port and a route port each
	}
	ports, err := procs.FreePorts(perNode * count)
	if err != nil {
		return err
	}
	for i := range count {
		n := &natsNode{port: ports[i], store: filepath.Join(h.dir, "nats-store"), logPath: filepath.Join(h.dir, "natsd.log")}
		outName := "natsd.out"
		if h.replicated() {
			n.name = fmt.Sprintf("n%d", i+1)
			n.clusterPort = ports[count+i]
			var routes []string
			for j := range count {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[count+j]))
				}
			}
			n.routes = strings.Join(routes, ",")
			n.store = filepath.Join(h.dir, "nats-store-"+n.name)
			n.logPath = filepath.Join(h.dir, "natsd-"+n.name+".log")
			outName = "natsd-" + n.name + ".out"
		}
		if n.out, err = os.OpenFile(filepath.Join(h.dir, outName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		h.nats = append(h.nats, n)
	}
	return nil
}

// natsURLs is what the daemons and the platform connect to: every server's URL.
func (h *harness) natsURLs() string {
	urls := make([]string, len(h.nats))
	for i, n := range h.nats {
		urls[i] = n.url()
	}
	return strings.Join(urls, ",")
}

// startNATS runs natsd for each node on its port and store and waits until each is ready. The
// nodes of a cluster are started together: each says it is ready only once it has joined the
// others (natsd waits for its routes and the JetStream meta leader).
func (h *harness) startNATS(ctx context.Context, nodes ...*natsNode) error {
	readies := make([]chan struct{}, len(nodes))
	for i, n := range nodes {
		ready := make(chan struct{}, 1)
		readies[i] = ready
		out := procs.NewLineWriter(n.out, func(line []byte) {
			if bytes.HasPrefix(line, []byte("ready ")) {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		})
		args := []string{"-port", fmt.Sprint(n.port), "-store", n.store, "-log", n.logPath}
		if n.name != "" {
			args = append(args, "-name", n.name, "-cluster-port", fmt.Sprint(n.clusterPort), "-routes", n.routes)
		}
		p, err := procs.Spawn(n.procName(), h.bin.natsd, args, childEnv(), out, n.out)
		if err != nil {
			return err
		}
		h.children.Add(p)
		n.proc = p
	}
	timeout := time.After(procs.Wait)
	for i, n := range nodes {
		select {
		case <-readies[i]:
		case <-n.proc.Exited():
			return fmt.Errorf("%s exited before it was ready: %v (see %s)", n.procName(), n.proc.Err(), n.out.Name())
		case <-timeout:
			return fmt.Errorf("%s not ready within %v", n.procName(), procs.Wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// --- the Co-browse cluster ---

func (h *harness) startGCB(ctx context.Context) error {
	ready := make(chan control.Ready, 1)
	bad := make(chan error, 1)
	out := procs.NewLineWriter(h.gcbOut, func(line []byte) {
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
	})
	args := []string{
		"-nodes", "3",
		"-connect-timeout", "1s",
		"-max-interval", "3s",
		"-log", filepath.Join(h.dir, "gcbserver.log"),
	}
	if h.opt.serverURL {
		args = append(args, "-server-url")
	}
	p, err := procs.Spawn("gcbserver", h.bin.gcbserver, args, childEnv(), out, h.gcbOut)
	if err != nil {
		return err
	}
	h.children.Add(p)
	h.gcbProc = p
	select {
	case r := <-ready:
		h.gcb = r
		h.ctl = control.NewClient(r.Control)
		return nil
	case err := <-bad:
		return err
	case <-p.Exited():
		return fmt.Errorf("gcbserver exited before it was ready: %v", p.Err())
	case <-time.After(procs.Wait):
		return fmt.Errorf("gcbserver not ready within %v", procs.Wait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- the daemon ---

// replica is one daemon: the only one in single mode (the config's default member), or one of
// the members r1, r2, r3 in replicas mode. Each life of its process is a daemonRun.
type replica struct {
	member     string // "" in single mode
	configPath string
	logPath    string
	log        *os.File
	mu         sync.Mutex // guards run, runs; held across a start
	run        *daemonRun
	runs       int
}

// name is how the harness speaks of the replica.
func (rp *replica) name() string {
	if rp.member == "" {
		return "daemon"
	}
	return "replica " + rp.member
}

// current is the replica's running life, nil while it is down.
func (rp *replica) current() *daemonRun {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.run
}

// daemonRun is one life of a daemon process, with what its log said about its partitions.
type daemonRun struct {
	n     int
	p     *procs.Proc
	ready chan struct{} // closed when it logs that it runs

	mu      sync.Mutex
	parts   []int         // the partitions it last said it acts for; nil: none (yet), or standing by
	idle    bool          // it said the membership gives it no partition
	changed chan struct{} // closed and replaced at each of those log lines
}

// The daemon's log messages the harness follows (the "msg" of its JSON lines).
const (
	// readyMsg: the process consumes (daemon.Run).
	readyMsg = "cobrowse-connector running"
	// The member acts for its partitions: at start or after a membership change, and when a
	// standing-by instance is handed the pin (both with "partitions").
	consumingMsg = "consuming the member's partitions"
	takeOverMsg  = "this instance holds the member's partitions now: taking up their interactions"
	// The member acts for nothing.
	standByMsg = "another instance of this member is active: standing by"
	pinLostMsg = "another instance of this member holds its partitions now: letting go of its interactions"
	noPartsMsg = "this member has no partitions: it consumes nothing until an operator adds it (cobrowse-connector cluster add)"
)

// logged takes what one line of the daemon's log says about the process.
func (r *daemonRun) logged(line []byte, ready func()) {
	if !bytes.Contains(line, []byte(`"msg":"`)) {
		return
	}
	var m struct {
		Msg        string `json:"msg"`
		Partitions []int  `json:"partitions"`
	}
	// Cheap test first: most lines are none of these.
	for _, s := range []string{readyMsg, consumingMsg, takeOverMsg, standByMsg, pinLostMsg, noPartsMsg} {
		if bytes.Contains(line, []byte(s)) {
			if json.Unmarshal(line, &m) != nil {
				return
			}
			break
		}
	}
	switch m.Msg {
	case "":
		return
	case readyMsg:
		ready()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m.Msg {
	case consumingMsg, takeOverMsg:
		r.parts, r.idle = m.Partitions, false
	case standByMsg, pinLostMsg:
		r.parts = nil
	case noPartsMsg:
		r.parts, r.idle = nil, true
	default:
		return
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// await waits, within bound, until cond (called under r.mu) holds for this life of the daemon.
func (r *daemonRun) await(ctx context.Context, bound time.Duration, cond func() bool) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-r.p.Exited():
			return fmt.Errorf("run %d exited: %v", r.n, r.p.Err())
		case <-t.C:
			return fmt.Errorf("not within %v", bound)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// writeConfig writes a daemon's config: the project's defaults with the short timeouts
// test/e2e uses, so that losses, retries and sweeps happen within the run. A replica gets its
// member name, every NATS node, replicas 3 and a short pinned TTL, so that a killed member
// restarted takes its partitions back within seconds.
func (h *harness) writeConfig(rp *replica) error {
	natsExtra, cluster := "", ""
	if rp.member != "" {
		natsExtra = fmt.Sprintf("  name: cobrowse-connector-%s\n  replicas: 3\n", rp.member)
		cluster = fmt.Sprintf("cluster:\n  member: %s\n  pinned_ttl: %v\n", rp.member, pinnedTTL)
	}
	cfg := fmt.Sprintf(`# Written by the chaos harness (test/chaos).
log:
  level: %s
  format: json
shutdown_timeout: 10s
nats:
  url: %s
%s  inbound:
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
http:
  listen: "127.0.0.1:0" # any free port: the replicas run side by side
%s`, h.opt.logLevel, h.natsURLs(), natsExtra, h.gcb.Front, cluster)
	return os.WriteFile(rp.configPath, []byte(cfg), 0o600)
}

// setupReplicas names the daemons and opens their logs: daemon.yaml and daemon.log in single
// mode, as ever; daemon-r1.yaml and daemon-r1.log and so on in replicas mode (one log each: lines
// of three processes would interleave mid-line in one file).
func (h *harness) setupReplicas() error {
	members := []string{""}
	if h.replicated() {
		members = []string{"r1", "r2", "r3"}
	}
	for _, m := range members {
		base := "daemon"
		if m != "" {
			base += "-" + m
		}
		rp := &replica{member: m, configPath: filepath.Join(h.dir, base+".yaml"), logPath: filepath.Join(h.dir, base+".log")}
		var err error
		if rp.log, err = os.OpenFile(rp.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return err
		}
		h.replicas = append(h.replicas, rp)
		if err := h.writeConfig(rp); err != nil {
			return err
		}
	}
	return nil
}

// daemonLogs are the daemons' log files.
func (h *harness) daemonLogs() []string {
	paths := make([]string, len(h.replicas))
	for i, rp := range h.replicas {
		paths[i] = rp.logPath
	}
	return paths
}

// startDaemon starts a replica's daemon and waits until it consumes. A daemon that exits before
// it is ready is started again, a few times (it refuses to start while NATS is unreachable).
func (h *harness) startDaemon(ctx context.Context, rp *replica) (*daemonRun, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			h.notef("%s start %d failed (%v); starting it again", rp.name(), rp.runs, last)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		rp.runs++
		r := &daemonRun{n: rp.runs, ready: make(chan struct{}), changed: make(chan struct{})}
		var once sync.Once
		fmt.Fprintf(rp.log, "{\"chaos\":\"daemon run %d starts\",\"time\":%q}\n", r.n, time.Now().UTC().Format(time.RFC3339Nano))
		out := procs.NewLineWriter(rp.log, func(line []byte) {
			r.logged(line, func() { once.Do(func() { close(r.ready) }) })
		})
		name := "cobrowse-connector"
		if rp.member != "" {
			name += " " + rp.member
		}
		p, err := procs.Spawn(name, h.bin.daemon, []string{"run", "--config", rp.configPath}, childEnv(), out, out)
		if err != nil {
			return nil, err
		}
		h.children.Add(p)
		r.p = p
		select {
		case <-r.ready:
			rp.run = r
			go h.watchDaemon(ctx, rp, r)
			return r, nil
		case <-p.Exited():
			last = fmt.Errorf("exited before ready: %v", p.Err())
		case <-time.After(procs.Wait):
			_ = p.Kill()
			last = fmt.Errorf("not ready within %v", procs.Wait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%s did not start: %w", rp.name(), last)
}

// killDaemon SIGKILLs a replica's running daemon and reaps it.
func (h *harness) killDaemon(rp *replica) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.run == nil {
		return fmt.Errorf("%s is not running", rp.name())
	}
	err := rp.run.p.Kill()
	rp.run = nil
	return err
}

// watchDaemon reports a daemon that exits on its own (a crash, or giving up on NATS) and starts
// it again, as a supervisor would: the run goes on and the exit is listed as a finding. In
// replicas mode its interactions changed owner (the process that owned them died).
func (h *harness) watchDaemon(ctx context.Context, rp *replica, r *daemonRun) {
	<-r.p.Exited()
	if r.p.Signaled() || h.stopping.Load() || ctx.Err() != nil {
		return
	}
	rp.mu.Lock()
	if rp.run == r {
		rp.run = nil
	}
	rp.mu.Unlock()
	h.noteOwnerDied(rp.member, time.Now())
	h.daemonCrashes.Add(1)
	h.notef("FINDING: %s run %d exited on its own: %v (last log lines below)\n%s", rp.name(), r.n, r.p.Err(), procs.LogTail(rp.logPath, 8))
	if h.daemonCrashes.Load() > 10 {
		h.notef("the daemons exited on their own more than 10 times; not restarting %s", rp.name())
		return
	}
	if _, err := h.startDaemon(ctx, rp); err != nil {
		h.notef("restarting %s after its exit: %v", rp.name(), err)
	}
}
