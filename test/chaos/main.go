// Command chaos is the project's chaos harness: it drives the BUILT daemon binary through NATS
// alone, against a gcbtest Co-browse cluster in a process of its own and a NATS server in a
// process of its own, while it kills the daemon, a Co-browse node and the NATS server; then it
// counts, from what an observer of the outbound stream and the Co-browse Server's control API
// see, what went wrong, and prints one line:
//
//	chaos: interactions=N lost=L doubled=D live_after_close=A ended_by_restart=R server_lost=K failed=F
//
// With -mode replicas it runs three daemons (members r1, r2, r3 of the inbound consumer group) on
// a 3-node NATS cluster, kills replicas (restarted at once, or moved out of the group and back),
// a NATS node and a Co-browse node, and the line ends with moved=M: the interactions that changed
// owner while in flight.
//
// It exits 0 only when lost, doubled, live_after_close and ended_by_restart are all 0; 1 when one
// is not (the offenders are listed on stderr); 2 when the harness itself could not do its job.
// See README.md for the scenario, the flags and how to read the line.
//
// The processes are separate on purpose: an in-process test cannot SIGKILL the daemon, nor show a
// NATS server coming back from its file store, nor keep the daemon from sharing memory, timers or
// a scheduler with the server it talks to.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// options are the harness's flags.
type options struct {
	mode         string // modeSingle or modeReplicas
	n            int
	concurrency  int
	seed         uint64
	daemonKills  int
	replicaKills int
	nodeKills    int
	natsRestarts int
	agentJoin    float64
	hold         time.Duration
	joinWait     time.Duration
	settle       time.Duration
	nodeDown     time.Duration
	natsDown     time.Duration
	timeout      time.Duration
	serverURL    bool
	logLevel     string
	bin          string
	race         bool
	dir          string
	keep         bool
	verbose      bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole harness; the test calls it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "mode", modeSingle, "single: one daemon on one NATS server; replicas: three daemons (r1, r2, r3) sharing the work on a 3-node NATS cluster")
	fs.IntVar(&o.n, "n", 200, "interactions (1000 for a long run)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "interactions in flight at once")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed for the endings, agent joins and fault order (0: from the clock; the seed used is printed)")
	fs.IntVar(&o.daemonKills, "daemon-kills", 3, "single mode: SIGKILLs of the daemon, each followed by a prompt restart")
	fs.IntVar(&o.replicaKills, "replica-kills", 4, "replicas mode: SIGKILLs of a random replica, in turn restarted at once under the same name, and removed from the group, restarted and added back")
	fs.IntVar(&o.nodeKills, "node-kills", 1, "Co-browse node kills, each followed by a restart after -node-down")
	fs.IntVar(&o.natsRestarts, "nats-restarts", 1, "NATS server kills (SIGKILL; replicas mode: of a random cluster node), each followed by a start on the same port and store after -nats-down")
	fs.Float64Var(&o.agentJoin, "agent-join", 0.85, "share of joined sessions the agent joins")
	fs.DurationVar(&o.hold, "hold", 1500*time.Millisecond, "longest time an interaction stays live before it ends (uniform in [0, hold))")
	fs.DurationVar(&o.joinWait, "join-wait", 45*time.Second, "bound on each wait for one interaction's join attach, and for its end")
	fs.DurationVar(&o.settle, "settle", 60*time.Second, "bound on the final wait until every interaction has its final attach or a failed event")
	fs.DurationVar(&o.nodeDown, "node-down", 2*time.Second, "how long a killed node stays down (longer than the daemon's lost_after)")
	fs.DurationVar(&o.natsDown, "nats-down", time.Second, "how long the killed NATS server stays down")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.serverURL, "server-url", false, "URL stickiness (nodes return sessionServerUrl); default cookie stickiness, every request through the front")
	fs.StringVar(&o.logLevel, "log-level", "debug", "the daemon's log level")
	fs.StringVar(&o.bin, "bin", "", "folder holding cobrowse-connector, natsd and gcbserver already built (default: build them into the work folder)")
	fs.BoolVar(&o.race, "race", false, "build the binaries with the race detector (a data race the daemon reports is listed as a finding)")
	fs.StringVar(&o.dir, "dir", "", "work folder: logs, store, config (default: a temporary folder, removed after a clean run)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder after a clean run too")
	fs.BoolVar(&o.verbose, "v", false, "say what each interaction does on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.n <= 0 || o.concurrency <= 0 || o.daemonKills < 0 || o.replicaKills < 0 || o.nodeKills < 0 || o.natsRestarts < 0 || o.agentJoin < 0 || o.agentJoin > 1 {
		fmt.Fprintln(stderr, "chaos: bad flags (see -h)")
		return 2
	}
	// A kill count given for the other mode would be ignored without a word: refuse it.
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case o.mode != modeSingle && o.mode != modeReplicas:
		fmt.Fprintf(stderr, "chaos: -mode %q: want %s or %s\n", o.mode, modeSingle, modeReplicas)
		return 2
	case o.mode == modeReplicas && set["daemon-kills"]:
		fmt.Fprintln(stderr, "chaos: -daemon-kills is for single mode; replicas mode kills replicas (-replica-kills)")
		return 2
	case o.mode == modeSingle && set["replica-kills"]:
		fmt.Fprintln(stderr, "chaos: -replica-kills is for -mode replicas; single mode kills its daemon (-daemon-kills)")
		return 2
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, temp, err := procs.WorkDir(o.dir, "cobrowse-chaos-")
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 2
	}
	if o.mode == modeReplicas {
		fmt.Fprintf(stderr, "chaos: mode=replicas seed=%d n=%d concurrency=%d replica-kills=%d node-kills=%d nats-restarts=%d stickiness=%s dir=%s\n",
			o.seed, o.n, o.concurrency, o.replicaKills, o.nodeKills, o.natsRestarts, stickiness(o.serverURL), dir)
	} else {
		fmt.Fprintf(stderr, "chaos: seed=%d n=%d concurrency=%d daemon-kills=%d node-kills=%d nats-restarts=%d stickiness=%s dir=%s\n",
			o.seed, o.n, o.concurrency, o.daemonKills, o.nodeKills, o.natsRestarts, stickiness(o.serverURL), dir)
	}

	h := &harness{opt: o, dir: dir, stderr: stderr}
	began := time.Now()
	res, err := h.run(ctx)
	code := 0
	if res != nil {
		fmt.Fprintln(stdout, res.line())
		res.explain(stderr, h)
		if !res.clean() {
			code = 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "chaos: harness error: %v\n", err)
		code = 2
	}
	fmt.Fprintf(stderr, "chaos: ran %v\n", time.Since(began).Round(100*time.Millisecond))
	if code == 0 && temp && !o.keep {
		_ = os.RemoveAll(dir)
	} else {
		logs := "daemon.log, gcbserver.log, natsd.log"
		if o.mode == modeReplicas {
			logs = "daemon-r1.log .. daemon-r3.log, gcbserver.log, natsd-n1.log .. natsd-n3.log"
		}
		fmt.Fprintf(stderr, "chaos: logs kept in %s (%s)\n", dir, logs)
	}
	return code
}

func stickiness(serverURL bool) string {
	if serverURL {
		return "url"
	}
	return "cookie"
}

// binaries are the three programs the harness runs.
type binaries struct{ daemon, natsd, gcbserver string }

// buildBinaries builds the daemon and the two helper processes into dir, from the module that
// holds the current folder, with the race detector when race is set.
func buildBinaries(ctx context.Context, dir string, race bool) (binaries, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return binaries{}, fmt.Errorf("the go command is needed to build the binaries (or pass -bin): %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return binaries{}, errors.New("not inside the module: run from the repository (or pass -bin)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return binaries{}, err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/cobrowse-connector", "./test/chaos/natsd", "./test/chaos/gcbserver")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("go build: %v\n%s", err, b)
	}
	return binariesIn(dir)
}

func binariesIn(dir string) (binaries, error) {
	b := binaries{
		daemon:    filepath.Join(dir, "cobrowse-connector"),
		natsd:     filepath.Join(dir, "natsd"),
		gcbserver: filepath.Join(dir, "gcbserver"),
	}
	for _, p := range []string{b.daemon, b.natsd, b.gcbserver} {
		if _, err := os.Stat(p); err != nil {
			return binaries{}, err
		}
	}
	return b, nil
}
