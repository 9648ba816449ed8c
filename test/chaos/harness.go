package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// The names the daemon uses by default (configs/default.yaml): the harness leaves them as they
// are and reads the outbound stream by its name.
const (
	prefix         = "cc"
	outboundStream = "CC_COBROWSE"
)

// harness owns the processes, the NATS connection of the platform and the observer.
type harness struct {
	opt    options
	dir    string
	bin    binaries
	stderr io.Writer
	outMu  sync.Mutex // serialises stderr

	children procs.Group // every process started, for the cleanup

	nats []*natsNode // one server in single mode, the three cluster nodes in replicas mode

	gcbProc *procs.Proc
	gcbOut  *os.File
	gcb     control.Ready
	ctl     *control.Client

	replicas      []*replica // the daemon in single mode, r1..r3 in replicas mode
	daemonCrashes atomic.Int32
	stopping      atomic.Bool

	nc  *nats.Conn
	js  jetstream.JetStream
	obs *observer

	inters   []*interaction
	progress progress

	faultMu sync.Mutex
	faults  []string        // what each fault did, for the report
	touched map[string]bool // tokens of sessions a node kill ended
	kills   []daemonKill    // every SIGKILL of a daemon
	owners  []ownerChange   // replicas mode: who owned which partition, and when that changed
}

// daemonKill is one SIGKILL of a daemon: when it was reaped, which member it was (replicas
// mode), and the Controller present in each live session just after (the dead daemon's, until
// its Bayeux session expires or the next owner takes over; in replicas mode, the live replicas'
// too).
type daemonKill struct {
	at          time.Time
	member      string            // "" in single mode
	controllers map[string]string // token -> user id of the Controller present
}

// replicated: the run is in replicas mode.
func (h *harness) replicated() bool { return h.opt.mode == modeReplicas }

func (h *harness) notef(format string, args ...any) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(h.stderr, "chaos: "+format+"\n", args...)
}

func (h *harness) verbosef(format string, args ...any) {
	if h.opt.verbose {
		h.notef(format, args...)
	}
}

// run starts the processes, plays the scenario with its faults, settles and counts.
func (h *harness) run(ctx context.Context) (*result, error) {
	defer h.cleanup()
	var err error
	if h.opt.bin != "" {
		h.bin, err = binariesIn(h.opt.bin)
	} else {
		h.notef("building the daemon, natsd and gcbserver")
		h.bin, err = buildBinaries(ctx, filepath.Join(h.dir, "bin"), h.opt.race)
	}
	if err != nil {
		return nil, err
	}
	if h.gcbOut, err = os.OpenFile(filepath.Join(h.dir, "gcbserver.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	if err := h.setupNATS(); err != nil {
		return nil, err
	}
	if err := h.startNATS(ctx, h.nats...); err != nil {
		return nil, err
	}
	if err := h.startGCB(ctx); err != nil {
		return nil, err
	}
	if err := h.setupReplicas(); err != nil {
		return nil, err
	}
	// The platform's connection: it rides out the NATS restarts like any client.
	h.nc, err = nats.Connect(h.natsURLs(),
		nats.Name("chaos-harness"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		return nil, err
	}
	// The daemon's first start creates the streams, the consumer group and the buckets; in
	// replicas mode r1 makes the group and the others join it.
	if h.replicated() {
		err = h.startReplicas(ctx)
	} else {
		_, err = h.startDaemon(ctx, h.replicas[0])
	}
	if err != nil {
		return nil, err
	}
	h.obs = newObserver()
	var obsOpts []jetstream.PullConsumeOpt
	if h.replicated() {
		// The node that serves the observer's consumer may be the one killed: quick heartbeats
		// notice it within seconds instead of the default's tens.
		obsOpts = append(obsOpts, jetstream.PullHeartbeat(time.Second))
	}
	stopObs, err := h.obs.start(ctx, h.js, outboundStream, obsOpts...)
	if err != nil {
		return nil, fmt.Errorf("outbound observer: %w", err)
	}
	defer stopObs()

	h.touched = make(map[string]bool)
	h.inters = make([]*interaction, h.opt.n)
	for i := range h.inters {
		h.inters[i] = newInteraction(i+1, h.opt.seed)
	}
	began := time.Now()
	faultErr := make(chan error, 1)
	go func() { faultErr <- h.runFaults(ctx) }()
	h.play(ctx)
	ferr := <-faultErr
	h.notef("scenario played in %v; closing what is open and settling", time.Since(began).Round(100*time.Millisecond))

	h.closeOpen(ctx)
	settled := h.settle(ctx)
	if cerr := h.obs.waitComplete(ctx, h.js, outboundStream, 30*time.Second); cerr != nil {
		return nil, cerr
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sessions, err := h.ctl.Sessions(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("listing the server's sessions: %w", err)
	}
	res := h.count(sessions)
	res.settled = settled
	if ferr != nil {
		return res, fmt.Errorf("fault schedule: %w", ferr)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("run bound reached: %w", ctx.Err())
	}
	return res, nil
}

// cleanup stops every process, the daemons first (gracefully, so that their logs end cleanly),
// and reaps them all, also when the run failed midway.
func (h *harness) cleanup() {
	h.stopping.Store(true)
	if h.nc != nil {
		h.nc.Close()
	}
	for _, rp := range h.replicas {
		rp.mu.Lock()
		if rp.run != nil {
			if err := rp.run.p.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
				h.notef("FINDING: %v", err)
			}
			rp.run = nil
		}
		rp.mu.Unlock()
	}
	h.children.StopAll(syscall.SIGTERM, 10*time.Second, func(err error) { h.notef("%v", err) })
	files := []*os.File{h.gcbOut}
	for _, n := range h.nats {
		files = append(files, n.out)
	}
	for _, rp := range h.replicas {
		files = append(files, rp.log)
	}
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}

// publish publishes one inbound message and retries until the stream PubAcks it: NATS may be
// down for a while. The msg id lets the inbound stream drop a retry whose first try was stored.
func (h *harness) publish(ctx context.Context, subject, msgID string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(h.opt.joinWait)
	var last error
	for attempt := 0; attempt < 1000; attempt++ {
		m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, last = h.js.PublishMsg(actx, m)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		select { // a short, growing pause between tries
		case <-time.After(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return fmt.Errorf("publish %s: not PubAck'd: %w", subject, errors.Join(last, ctx.Err()))
}

// progress counts the interactions begun; the fault schedule paces itself on it.
type progress struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
}

func (p *progress) add() {
	p.mu.Lock()
	p.n++
	if p.ch != nil {
		close(p.ch)
		p.ch = nil
	}
	p.mu.Unlock()
}

// wait waits until at least n interactions have begun.
func (p *progress) wait(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		if p.n >= n {
			p.mu.Unlock()
			return nil
		}
		if p.ch == nil {
			p.ch = make(chan struct{})
		}
		ch := p.ch
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *progress) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
