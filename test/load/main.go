// Command load is the project's load harness: it measures the BUILT daemon from outside, through
// NATS and a gcbtest Co-browse Server, each party in a process of its own on loopback, and prints
// every figure beside an anchor measured in the same run, then one JSON line with all of them:
//
//   - ingestion: a backlog of ordinary chat messages drained by the daemon (one replica, then
//     two) against bare nats.go pull consumers acking asynchronously, on the daemon's own kind of
//     stream (a work queue sourcing CC_INBOUND by partition: the goal's anchor) and on CC_INBOUND;
//   - join latency, one interaction at a time: start message -> join attach, against the protocol
//     floor (a bare Go client doing the four protocol steps with connector/cometd) and against the
//     official CometD JavaScript client doing the same join; close latency, closed event ->
//     session ended at the server, one at a time and 64 in flight;
//   - memory and CPU per live session, on websocket and on long-polling: N sessions joined and
//     activated at once, the daemon's RSS and idle CPU beside the official CometD JavaScript
//     client and the bare Go client holding as many, then every one closed;
//   - the goals of the performance issue, each judged against its anchor: met or NOT met.
//
// The machine is shared and noisy: the figures are medians, percentiles and ratios, and nothing
// here asserts a timing (the goals block reports, it does not fail a run). The exit status says
// whether the run was CORRECT: 0 when every message was drained, every join attached and every
// session ended; 1 otherwise (the reason on stderr).
//
//	make load                                  # the defaults: a few minutes
//	make load LOAD_FLAGS='-live 10000'         # 10,000 live sessions
//	go run ./test/load -h                      # every flag
//
// See README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// options are the harness's flags.
type options struct {
	phases        string
	msgs          int
	interactions  int
	created       bool
	replicas2     bool
	ingestRuns    int
	joins         int
	warmup        int
	live          int
	transports    []string // the live measurement's transports, in order; the first is the join's
	js            bool
	closeBatches  int
	closeInFlight int
	gcbNodes      int
	joinWindow    int
	cpuWindow     time.Duration
	poll          time.Duration
	pollSlow      time.Duration
	profileNATS   time.Duration
	profileDaemon bool
	joinWait      time.Duration
	drainTimeout  time.Duration
	timeout       time.Duration
	logLevel      string
	daemon        string
	helper        string
	dir           string
	keep          bool
	verbose       bool
}

func main() {
	if code, ok := helperMain(); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole harness; the test calls it in-process. Exit codes: 0 a correct run, 1 a
// correctness failure or a harness error, 2 bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.phases, "phases", "ingest,join,live", "the measurements to run, comma-separated: ingest, join, live")
	fs.IntVar(&o.msgs, "msgs", 60000, "ingestion: ordinary chat messages in the backlog (D)")
	fs.IntVar(&o.interactions, "interactions", 20000, "ingestion: interactions the chat messages are spread over (I)")
	fs.BoolVar(&o.created, "created", false, "ingestion: a created event per interaction too (the backlog is then D+I messages; the issue's data set has none)")
	fs.BoolVar(&o.replicas2, "replicas", true, "ingestion: also drain with two replicas (members r1, r2)")
	fs.IntVar(&o.ingestRuns, "ingest-runs", 1, "ingestion: drains by the daemon (each on a fresh store) per case, the median kept; the bare consumer drains 3 times as often")
	fs.IntVar(&o.joins, "joins", 200, "join latency: measured rounds (K), one interaction at a time")
	fs.IntVar(&o.warmup, "warmup", 5, "join latency: rounds before those measured")
	fs.IntVar(&o.live, "live", 2000, "live sessions held at once (N); 10000 for the big run")
	transports := fs.String("transports", "websocket,long-polling", "live: the transports measured, in order, each with a fresh daemon and server: websocket (the daemon's default genesys.transports) and long-polling (genesys.transports: [long-polling]); the join phase runs on the first")
	fs.BoolVar(&o.js, "js", true, "the JS anchors (the official CometD JavaScript client in node, with test/interop's npm packages); -js=false leaves them out")
	fs.IntVar(&o.closeBatches, "close-batches", 5, "close latency: batches of -close-in-flight closed events published at once, after the one-at-a-time rounds")
	fs.IntVar(&o.closeInFlight, "close-in-flight", 64, "close latency: closed events in flight in each batch")
	fs.IntVar(&o.gcbNodes, "gcb-nodes", 2, "nodes of the gcbtest Co-browse cluster (behind its front, cookie stickiness)")
	fs.IntVar(&o.joinWindow, "join-window", 64, "live: start messages in flight at most (published, join attach not yet seen)")
	fs.DurationVar(&o.cpuWindow, "cpu-window", 30*time.Second, "live: the window idle CPU is measured over, RSS read at its end; the default is gcbtest's connect hold, so that every session renews its /meta/connect once in it")
	fs.DurationVar(&o.poll, "poll", 10*time.Millisecond, "ingestion: how often the consumers' info is read until each has had its first delivery")
	fs.DurationVar(&o.pollSlow, "poll-slow", 250*time.Millisecond, "ingestion: how often it is read after that, until the backlog is gone (the end is the server's last-ack time)")
	fs.DurationVar(&o.profileNATS, "profile-natsd", 0, "ingestion: take a CPU profile of the NATS server over this long from the start of the first drain of each stream in each measurement (natsd-cpu-<stream>.pprof in the measurement's folder; -keep it)")
	fs.DurationVar(&o.joinWait, "join-wait", 2*time.Minute, "bound on each wait for an outbound message or a session's end (scaled up with -live)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 15*time.Minute, "bound on each drain")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.profileDaemon, "profile-daemon", false, "diagnosis: run the daemon as test/load/profiled (daemon.Run in a wrapper that writes CPU and heap profiles into the work folder; -keep it) instead of the built binary; the live measurement then also counts goroutines at N")
	fs.StringVar(&o.logLevel, "log-level", "warn", "the daemon's log.level")
	fs.StringVar(&o.daemon, "daemon", "", "the built daemon (make build: bin/cobrowse-connector); empty: build it into the work folder")
	fs.StringVar(&o.helper, "helper", "", "a build of this program to run the helper processes (NATS, the Co-browse Server, the bare client) with; empty: this program itself")
	fs.StringVar(&o.dir, "dir", "", "work folder: stores, configs, logs (default: a temporary folder, removed after a correct run)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder after a correct run too")
	fs.BoolVar(&o.verbose, "v", false, "more progress on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	phases := strings.Split(o.phases, ",")
	for _, p := range phases {
		if p != "ingest" && p != "join" && p != "live" {
			fmt.Fprintf(stderr, "load: -phases: unknown phase %q (want ingest, join, live)\n", p)
			return 2
		}
	}
	for _, t := range strings.Split(*transports, ",") {
		t = strings.TrimSpace(t)
		if t != cometd.TransportWebSocket && t != cometd.TransportLongPolling || slices.Contains(o.transports, t) {
			fmt.Fprintf(stderr, "load: -transports: %q (want websocket and/or long-polling, each once)\n", t)
			return 2
		}
		o.transports = append(o.transports, t)
	}
	if fs.NArg() > 0 || o.closeBatches < 0 || o.closeInFlight <= 0 || o.ingestRuns <= 0 || o.msgs <= 0 || o.interactions <= 0 || o.joins <= 0 || o.warmup < 0 || o.live <= 0 ||
		o.gcbNodes <= 0 || o.joinWindow <= 0 || o.cpuWindow <= 0 || o.poll <= 0 || o.pollSlow <= 0 {
		fmt.Fprintln(stderr, "load: bad flags (see -h)")
		return 2
	}
	if o.interactions > o.msgs {
		fmt.Fprintln(stderr, "load: -interactions must not exceed -msgs (every interaction gets chat lines)")
		return 2
	}
	// Each wait covers the slowest single step of a big run: 10,000 sessions closing at once.
	o.joinWait = max(o.joinWait, time.Duration(o.live)*20*time.Millisecond)

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, temp, err := procs.WorkDir(o.dir, "cobrowse-load-")
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	h := &harness{opt: o, dir: dir, stderr: stderr}
	defer procs.StopSpawner() // after h.run's cleanup reaped every child
	began := time.Now()
	rep := &report{Version: 2, Started: began.UTC().Format(time.RFC3339), WallS: map[string]float64{},
		Machine: machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadAvg()}}
	err = h.run(ctx, phases, rep)
	rep.WallS["total"] = time.Since(began).Seconds()
	rep.OK = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	rep.judge(o.js)
	rep.lines(stdout)
	if jerr := rep.jsonLine(stdout); jerr != nil {
		fmt.Fprintf(stderr, "load: the JSON line: %v\n", jerr)
		err = errors.Join(err, jerr)
	}
	code := 0
	if err != nil {
		fmt.Fprintf(stderr, "load: FAILED: %v\n", err)
		code = 1
	}
	if code == 0 && temp && !o.keep {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(stderr, "load: work folder kept: %s (daemon logs, configs, stores)\n", dir)
	}
	return code
}

// run runs the phases asked for, in order, each on processes of its own, filling rep.
func (h *harness) run(ctx context.Context, phases []string, rep *report) (err error) {
	defer h.cleanup()
	if h.self = h.opt.helper; h.self == "" {
		if h.self, err = os.Executable(); err != nil {
			return fmt.Errorf("%w: %v", errNoHelper, err)
		}
	}
	if h.daemonBin, err = h.findDaemon(ctx); err != nil {
		return err
	}
	if h.opt.profileDaemon {
		h.notef("building test/load/profiled: the daemon runs in it, with profiles (diagnosis)")
		if h.profiledBin, err = buildPackage(ctx, filepath.Join(h.dir, "bin"), "./test/load/profiled", "profiled"); err != nil {
			return err
		}
	}
	if h.opt.js {
		if h.js, err = setupJS(ctx); err != nil {
			return err
		}
	}
	h.notef("daemon %s; work folder %s; %d CPUs, load average %s", h.daemonBin, h.dir, runtime.NumCPU(), rep.Machine.LoadAvg)
	for _, phase := range []string{"ingest", "join", "live"} {
		if !slices.Contains(phases, phase) {
			continue
		}
		began := time.Now()
		switch phase {
		case "ingest":
			rep.Ingestion, err = h.ingest(ctx)
			rep.WallS["ingestion"] = time.Since(began).Seconds()
		case "join":
			rep.Join, err = h.joinLatency(ctx)
			rep.WallS["join"] = time.Since(began).Seconds()
		case "live":
			for _, t := range h.opt.transports {
				tb := time.Now()
				var l *liveResult
				l, err = h.live(ctx, t)
				if l != nil {
					rep.Live = append(rep.Live, l)
				}
				rep.WallS["live "+t] = time.Since(tb).Seconds()
				if err != nil {
					err = fmt.Errorf("%s: %w", t, err)
					break
				}
			}
			rep.WallS["live"] = time.Since(began).Seconds()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		h.notef("%s done in %.1f s", phase, time.Since(began).Seconds())
	}
	return nil
}

// findDaemon returns the daemon binary: -daemon, or one built now into the work folder.
func (h *harness) findDaemon(ctx context.Context) (string, error) {
	if h.opt.daemon != "" {
		p, err := filepath.Abs(h.opt.daemon)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("-daemon %s: not a built daemon (make build makes bin/cobrowse-connector): %v", h.opt.daemon, err)
		}
		return p, nil
	}
	h.notef("building the daemon")
	return buildDaemon(ctx, filepath.Join(h.dir, "bin"))
}

// buildDaemon builds ./cmd/cobrowse-connector of the module that holds the current folder into
// dir, as make build does (static, trimmed paths).
func buildDaemon(ctx context.Context, dir string) (string, error) {
	return buildPackage(ctx, dir, "./cmd/cobrowse-connector", "cobrowse-connector")
}

// buildPackage builds a main package of the module that holds the current folder into dir/name,
// without the race detector whatever the caller was built with.
func buildPackage(ctx context.Context, dir, pkg, name string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the daemon (or pass -daemon): %w", err)
	}
	out, err := runCmd(ctx, exec.Command(goBin, "env", "GOMOD"))
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module: run from the repository (or pass -daemon)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := runCmd(ctx, cmd); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return bin, nil
}

// runCmd runs a short command to its end, as a child that dies with the harness, killed if ctx
// ends first; it returns its stdout and stderr together.
func runCmd(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := procs.Start(cmd); err != nil {
		return nil, err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		return out.Bytes(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited //nolint:errcheck // waits for the killed process: its error says only that
		return out.Bytes(), ctx.Err()
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
