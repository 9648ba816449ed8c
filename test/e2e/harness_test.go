// Package e2e drives the real daemon, in-process, through the NATS contract alone: a real NATS
// server (embedded, JetStream on, random port, temp store), a real Co-browse Server cluster
// (gcbtest) and the daemon's own Run, with short real timeouts from its config.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// wait bounds every wait for something the daemon does; a test that needs it fails, it never
// sleeps.
const wait = 20 * time.Second

type env struct {
	t       *testing.T
	ns      *natstest.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	cluster *gcbtest.Cluster
	cfg     configs.Config
	logs    *logtest.Buffer

	run      *daemonRun
	procs    []*proc // the daemon processes started (replicas), for what a failure shows
	watching bool
	// outWait bounds the wait for an outbound message (default wait).
	outWait time.Duration
	// public is the daemon's public listener (http.public_listen), once it runs.
	public atomic.Pointer[string]
	// internal is the daemon's internal listener (http.listen), once it listens.
	internal atomic.Pointer[string]

	outMu sync.Mutex
	out   []outMsg // every message of the reporting stream (attach, lifecycle), in stream order
	pages []outMsg // every page message (agent and customer), in their stream's order
	outC  chan struct{}
	pos   int // the next message of out that expect looks at
	pgPos int // the next message of pages that expect looks at
	seq   int
}

type outMsg struct {
	subject string
	msgID   string
	data    []byte
}

type daemonRun struct {
	cancel context.CancelFunc
	abort  chan struct{}
	done   chan error
}

// newEnv starts NATS and a Co-browse cluster; mutate adjusts the daemon's config.
func newEnv(t *testing.T, gopts gcbtest.Options, mutate func(*configs.Config)) *env {
	t.Helper()
	if gopts.Nodes == 0 {
		gopts.Nodes = 3
	}
	if gopts.ConnectTimeout == 0 {
		gopts.ConnectTimeout = time.Second
	}
	if gopts.MaxInterval == 0 {
		gopts.MaxInterval = 3 * time.Second
	}
	e := &env{t: t, logs: &logtest.Buffer{}, outC: make(chan struct{}, 1)}
	e.ns = natstest.Start(t)
	e.nc = natstest.Connect(t, e.ns)
	var err error
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	e.cluster = gcbtest.NewCluster(gopts)
	t.Cleanup(e.cluster.Close)

	cfg := configs.Default()
	cfg.NATS.URL = e.ns.ClientURL()
	cfg.Genesys.URL = e.cluster.URL()
	cfg.Genesys.RequestTimeout = d(2 * time.Second)
	cfg.Genesys.MaxNetworkDelay = d(2 * time.Second)
	cfg.Genesys.LostAfter = d(time.Second)
	cfg.Controller.StopWait = d(2 * time.Second)
	cfg.Controller.JoinTimeout = d(10 * time.Second)
	cfg.Controller.RetryDelay = d(500 * time.Millisecond)
	cfg.Controller.Sweep = "@every 1s"
	// A restarted daemon (killed, not stopped) takes its partitions back once the dead one's pin
	// lapsed: short here, so that the old Controllers are still held when it re-joins.
	cfg.Cluster.PinnedTTL = d(time.Second)
	cfg.Controller.Breaker.OpenFor = d(time.Second)
	cfg.NATS.Inbound.AckWait = d(5 * time.Second)
	cfg.NATS.Inbound.Backoff = []configs.Duration{d(200 * time.Millisecond), d(500 * time.Millisecond), d(time.Second)}
	cfg.ShutdownTimeout = d(10 * time.Second)
	// Any free port for the internal listener: tests run side by side, never on the default :9180.
	cfg.HTTP.Listen = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	e.cfg = cfg
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", e.logs.Tail(12000))
		}
	})
	e.checkContract()
	return e
}

func d(v time.Duration) configs.Duration { return configs.Duration{Duration: v} }

// startDaemon runs the daemon and waits until it consumes; the outbound watcher starts with the
// first run (the daemon creates the outbound stream).
func (e *env) startDaemon() {
	e.t.Helper()
	e.waitReady(e.launchDaemon())
}

// launchDaemon starts the daemon without waiting for it; waitReady waits.
func (e *env) launchDaemon() <-chan struct{} {
	ctx, cancel := context.WithCancel(context.Background())
	r := &daemonRun{cancel: cancel, abort: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan struct{})
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: daemon.DurationsAsText}))
	go func() {
		r.done <- daemon.Run(ctx, e.cfg, daemon.Options{Logger: log, Abort: r.abort, Ready: func(string) { close(ready) },
			PublicAddr: func(a string) { e.public.Store(&a) }, InternalAddr: func(a string) { e.internal.Store(&a) }})
	}()
	e.run = r
	e.t.Cleanup(func() { e.stopDaemon() })
	return ready
}

func (e *env) waitReady(ready <-chan struct{}) {
	e.t.Helper()
	select {
	case <-ready:
	case err := <-e.run.done:
		e.run = nil
		e.t.Fatalf("daemon did not start: %v", err)
	case <-time.After(wait):
		e.t.Fatal("daemon not ready in time")
	}
	e.watchOnce()
}

// stopDaemon shuts the daemon down gracefully (SIGTERM).
func (e *env) stopDaemon() {
	if e.run == nil {
		return
	}
	e.run.cancel()
	e.finish()
}

// abortDaemon stops the daemon as a crash would.
func (e *env) abortDaemon() {
	close(e.run.abort)
	e.finish()
}

func (e *env) finish() {
	select {
	case err := <-e.run.done:
		if err != nil {
			e.t.Errorf("daemon: %v", err)
		}
	case <-time.After(wait):
		e.t.Fatal("daemon did not stop in time")
	}
	e.run = nil
}

// watchOnce reads the outbound stream from its start, in order, into e.out.
func (e *env) watchOnce() {
	if e.watching {
		return
	}
	e.watching = true
	// Two streams: CC_COBROWSE (what reporting reads) and CC_HANDOFF (the pages). Each keeps its
	// own order; across them there is none to observe.
	e.watch(attach.DefaultStream, &e.out)
	e.watch(attach.DefaultHandoffStream, &e.pages)
	e.watchDaemonInbound()
}

func (e *env) watch(stream string, into *[]outMsg) {
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.outMu.Lock()
		*into = append(*into, outMsg{subject: m.Subject(), msgID: m.Headers().Get("Nats-Msg-Id"), data: m.Data()})
		e.outMu.Unlock()
		select {
		case e.outC <- struct{}{}:
		default:
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Stop(); cancel() })
}

// --- inbound ---

func (e *env) publish(subject string, v any, msgID string) {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	e.checkInbound(subject, b, msgID)
	e.publishRaw(subject, b, msgID)
}

func (e *env) publishRaw(subject string, b []byte, msgID string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	m := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set("Nats-Msg-Id", msgID)
	}
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
}

func (e *env) nextID(kind string) string { e.seq++; return fmt.Sprintf("%s-%d", kind, e.seq) }

func (e *env) say(iid string, role chat.Role, text string) string {
	id := e.nextID("chat")
	e.publish(chat.ChatSubject("cc", iid), chat.Message{ID: id, InteractionID: iid, From: chat.Sender{Role: role, ID: string(role) + "-1"}, Text: text, SentAt: time.Now().UTC()}, "")
	return id
}

func (e *env) startMsg(iid, token string) { e.say(iid, chat.RoleCustomer, "{start:"+token+"}") }

func (e *env) event(iid string, typ chat.EventType, agent string) {
	ev := chat.Event{ID: e.nextID("ev"), InteractionID: iid, Type: typ, At: time.Now().UTC()}
	if typ == chat.EventTransferred {
		ev.ToAgentID = agent
	} else {
		ev.AgentID = agent
	}
	e.publish(chat.EventSubject("cc", iid), ev, "")
}

// --- outbound ---

// expect returns the next outbound message (after the previous expect's) whose subject ends with
// suffix and that belongs to interaction iid, failing the test after the bound.
func (e *env) expect(iid, suffix string) outMsg {
	e.t.Helper()
	bound := wait
	if e.outWait > 0 {
		bound = e.outWait
	}
	deadline := time.After(bound)
	for {
		e.outMu.Lock()
		if suffix == "cobrowse" { // a page message
			for e.pgPos < len(e.pages) {
				m := e.pages[e.pgPos]
				e.pgPos++
				if bytes.Contains(m.data, []byte(`"interactionId":"`+iid+`"`)) {
					e.outMu.Unlock()
					return m
				}
			}
		}
		for suffix != "cobrowse" && e.pos < len(e.out) {
			m := e.out[e.pos]
			e.pos++
			if strings.Contains(m.subject, "."+iid+".") && strings.HasSuffix(m.subject, suffix) {
				e.outMu.Unlock()
				return m
			}
		}
		e.outMu.Unlock()
		select {
		case <-e.outC:
		case <-deadline:
			e.t.Fatalf("no outbound %s message for %s within %v; what the daemons logged of it:\n%s\nseen:\n%s",
				suffix, iid, bound, e.logsOf(iid), e.dump())
		}
	}
}

func (e *env) expectUpdate(iid string) attach.Update {
	e.t.Helper()
	m := e.expect(iid, ".attach")
	var u attach.Update
	if err := json.Unmarshal(m.data, &u); err != nil {
		e.t.Fatal(err)
	}
	if m.msgID != attach.UpdateMsgID(iid, u.Seq) {
		e.t.Fatalf("attach msg id %q for seq %d", m.msgID, u.Seq)
	}
	return u
}

func (e *env) expectLifecycle(iid string, kind attach.LifecycleKind) attach.Lifecycle {
	e.t.Helper()
	m := e.expect(iid, "."+string(kind))
	var l attach.Lifecycle
	if err := json.Unmarshal(m.data, &l); err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *env) expectAgentView(iid string) (agent string, v attach.AgentView) {
	e.t.Helper()
	m := e.expect(iid, "cobrowse")
	if err := json.Unmarshal(m.data, &v); err != nil {
		e.t.Fatal(err)
	}
	return strings.Split(m.subject, ".")[2], v
}

// outbound returns every outbound message of interaction iid seen so far.
func (e *env) outbound(iid string) []outMsg {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	var out []outMsg
	for _, m := range append(slices.Clone(e.out), e.pages...) {
		if strings.Contains(m.subject, "."+iid+".") || bytes.Contains(m.data, []byte(`"interactionId":"`+iid+`"`)) {
			out = append(out, m)
		}
	}
	return out
}

// logsOf returns, for each daemon (the one in process, then each process by its member name), the
// last lines it logged about interaction iid, about its partitions (component chat) and its
// warnings and errors: enough for a failure on a cluster to say which replica had the interaction
// and what held it up, where the tail of the mixed logs may show another replica only.
func (e *env) logsOf(iid string) string {
	const most = 20
	var b strings.Builder
	section := func(name string, buf *logtest.Buffer) {
		var lines []string
		for line := range strings.Lines(buf.String()) {
			if strings.Contains(line, `"interaction":"`+iid+`"`) || strings.Contains(line, `"component":"chat"`) ||
				strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
				lines = append(lines, line)
			}
		}
		if len(lines) > most {
			lines = lines[len(lines)-most:]
		}
		if len(lines) > 0 {
			fmt.Fprintf(&b, "  %s:\n    %s", name, strings.Join(lines, "    "))
		}
	}
	section("in process", e.logs)
	for i, p := range e.procs {
		section(fmt.Sprintf("process %d (member %q)", i+1, p.name), p.logs)
	}
	return b.String()
}

func (e *env) dump() string {
	e.outMu.Lock()
	defer e.outMu.Unlock()
	var b strings.Builder
	for _, m := range append(slices.Clone(e.out), e.pages...) {
		fmt.Fprintf(&b, "  %s %s\n", m.subject, m.data)
	}
	return b.String()
}

// waitUntil polls cond (a cheap read of the Co-browse Server's state, or of the daemon's) until it holds.
func (e *env) waitUntil(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitEnded waits for the Co-browse Server to report the session ended.
func (e *env) waitEnded(s *gcbtest.Session) {
	e.t.Helper()
	select {
	case <-s.Done():
	case <-time.After(wait):
		e.t.Fatalf("session %s not ended at the server (state %v)", s.Token(), s.State())
	}
}
