package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// Memory and CPU per live session, once per transport (-transports: websocket, then long-polling),
// each on a fresh daemon, NATS and Co-browse Server: N sessions, each joined by the daemon as
// Controller and activated (the agent joined), held at once. Its idle CPU over a window (30 s by
// default: gcbtest holds a /meta/connect 30 s, so every session renews its connect once in it),
// and its RSS (VmRSS) before the joins and at the end of the window, without forcing a GC: per
// session (RSS at N - RSS before) / N, and the whole daemon in MB (10^6 bytes). Then every
// interaction is closed and every session must end at the server, and every final attach come.
//
// Anchors, each a process of its own holding as many sessions, joined with the same four protocol
// steps on the same transport and activated, measured the same way (RSS before and at N, idle CPU
// over the same window), one after the other once the daemon's sessions are gone and the server
// has closed the previous holder's connections:
//   - the official CometD JavaScript client in node (jsanchor.mjs --mode hold);
//   - a bare Go client (holderMain) with connector/cometd, the daemon's own CometD client.
// The Co-browse Server process holds the other end of the daemon's connections: its RSS and CPU
// are printed beside them too.
//
// Goroutines: the daemon serves no metrics and no pprof, so they cannot be read while it runs.
// After the close, once the server holds none of its Bayeux sessions, the harness sends SIGQUIT:
// the runtime's dump (GOTRACEBACK=all) lists every goroutine left, which shows whether the
// sessions' goroutines went with them. (-profile-daemon reads them at N too.)

type liveResult struct {
	N         int    `json:"n"`
	Transport string `json:"transport"`
	Config    string `json:"daemon_transports"` // the daemon's genesys.transports

	RSS0KiB       int64   `json:"rss0_kib"`
	RSSNKiB       int64   `json:"rssn_kib"`
	RSSClosedKiB  int64   `json:"rss_closed_kib"`
	PerSessionKiB float64 `json:"kib_per_session"` // (RSS at the end of the idle window - RSS before) / N
	RSSNMB        float64 `json:"rssn_mb"`         // RSS at the end of the idle window
	RSSActKiB     int64   `json:"rss_activated_kib"`
	// PerSessionActKiB is (RSS right after the last activation - RSS before) / N, for reference.
	PerSessionActKiB float64 `json:"kib_per_session_activated"`
	Threads0         int     `json:"threads0"`
	ThreadsN         int     `json:"threadsn"`
	FDs0             int     `json:"fds0"` // open files (sockets included)
	FDsN             int     `json:"fdsn"`
	IdleCPUPct       float64 `json:"idle_cpu_pct"`
	CPUWindowS       float64 `json:"cpu_window_s"`
	Goroutines       int     `json:"goroutines_after_close"` // from the SIGQUIT dump; -1 if not read
	GoroutinesN      int     `json:"goroutines_n,omitempty"` // -profile-daemon only: at N live

	JS         *holdResult `json:"js,omitempty"`                       // the official CometD JavaScript client holding as many; nil with -js=false
	JSMemRatio float64     `json:"kib_per_session_ratio_js,omitempty"` // daemon / JS client
	Bare       *holdResult `json:"bare"`                               // the bare Go client holding as many
	MemRatio   float64     `json:"kib_per_session_ratio_bare"`         // daemon / bare Go client
	CPURatio   float64     `json:"idle_cpu_ratio_bare"`

	GCBPerSessionKiB float64 `json:"gcb_kib_per_session"`
	GCBRSSNMB        float64 `json:"gcb_rssn_mb"`
	GCBIdleCPUPct    float64 `json:"gcb_idle_cpu_pct"`
	NATSIdleCPUPct   float64 `json:"natsd_idle_cpu_pct"`

	JoinS         float64        `json:"join_s"` // first start message -> every session joined and activated
	JoinRate      float64        `json:"joins_per_s"`
	CloseS        float64        `json:"close_s"`       // first closed event -> every final attach
	CloseAckedS   float64        `json:"close_acked_s"` // first closed event -> every closed event acked (state saved)
	Ended         int            `json:"ended"`
	EndedBy       map[string]int `json:"ended_by"`
	WebSockets    int64          `json:"server_websocket_conns"`
	LongPolls     int64          `json:"server_long_poll_requests"`
	LiveAfter     int            `json:"live_after_close"`
	Warnings      int            `json:"daemon_warnings"`
	Errors        int            `json:"daemon_errors"`
	top           []string
	goroutinesErr string
}

func (h *harness) live(ctx context.Context, transport string) (res *liveResult, err error) {
	o := h.opt
	n := o.live
	e, d, w, err := h.oneDaemon(ctx, "live-"+transport, transport)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	defer w.stop()
	res = &liveResult{N: n, Transport: transport, Config: strings.Join(transportList(transport), ","), Goroutines: -1, EndedBy: map[string]int{}}
	gcbFDs0, err := readFDs(e.gcb.Pid())
	if err != nil {
		return nil, err
	}

	sess, err := e.ctl.create(ctx, n)
	if err != nil {
		return nil, err
	}
	iid := func(i int) string { return fmt.Sprintf("live%05d", i) }
	index := make(map[string]int, n)
	for i := range n {
		index[iid(i)] = i
	}
	m0, err := readProcMem(d.p.Pid())
	if err != nil {
		return nil, err
	}
	g0, err := readProcMem(e.gcb.Pid())
	if err != nil {
		return nil, err
	}
	res.RSS0KiB, res.Threads0 = m0.RSSKiB, m0.Threads
	if res.FDs0, err = readFDs(d.p.Pid()); err != nil {
		return nil, err
	}

	// Each interaction has its agent (the view goes to it, and the Controller joins in its name).
	created := make([]inbound, n)
	for i := range n {
		created[i] = inbound{subject: eventSubject(iid(i)), data: mustJSON(event(iid(i), "created", "agent-"+iid(i)))}
	}
	if err := e.publishAll(ctx, created); err != nil {
		return nil, err
	}

	// Start messages, at most -join-window joins in flight; each joined session's agent joins
	// at once (no_agent_join is 3 minutes; 10,000 joins may take longer than that).
	h.notef("live %s: the daemon joins %d sessions (%d in flight at most)", transport, n, o.joinWindow)
	began := time.Now()
	published, seen, agentJoined := 0, 0, 0
	for agentJoined < n {
		c := w.snapshot()
		if c.failed > 0 {
			return nil, fmt.Errorf("the daemon published %d failed events while joining (first: %s)", c.failed, w.firstFailure())
		}
		for published < n && published-c.joined < o.joinWindow {
			i := published
			if err := e.publish(ctx, chatSubject(iid(i)), startChat(iid(i), sess[i].Token)); err != nil {
				return nil, err
			}
			published++
		}
		var fresh []string
		fresh, seen = w.joinedSince(seen)
		if len(fresh) > 0 {
			joins := make([]agentJoin, 0, len(fresh))
			for _, x := range fresh {
				i, ok := index[x]
				if !ok {
					return nil, fmt.Errorf("a join attach for %s, which the harness never started", x)
				}
				joins = append(joins, agentJoin{Token: sess[i].Token, AgentID: "agent-" + x})
			}
			r, err := e.ctl.agentJoin(ctx, joins)
			if err != nil {
				return nil, err
			}
			if len(r.Failed) > 0 {
				return nil, fmt.Errorf("%d agents could not join (first: %s)", len(r.Failed), r.Failed[0])
			}
			agentJoined += r.Joined
			continue
		}
		want := c.joined + 1
		if err := w.await(ctx, e, o.joinWait, "the next join attach", func(c outcomeCounts, _ func(string) *outcome) bool {
			return c.joined >= want || c.failed > 0
		}); err != nil {
			return nil, err
		}
	}
	if err := w.await(ctx, e, o.joinWait, fmt.Sprintf("%d activated events", n), func(c outcomeCounts, _ func(string) *outcome) bool {
		return c.activated >= n || c.failed > 0
	}); err != nil {
		return nil, err
	}
	if c := w.snapshot(); c.failed > 0 || c.activated != n || c.joined != n {
		return nil, fmt.Errorf("after the joins: %d joined, %d activated, %d failed (first failure: %s)", c.joined, c.activated, c.failed, w.firstFailure())
	}
	res.JoinS = time.Since(began).Seconds()
	res.JoinRate = div(float64(n), res.JoinS)
	for i := range n {
		if out := w.outcome(iid(i)); out.sessionID != sess[i].HistoryID {
			return nil, fmt.Errorf("join attach of %s names session %q, the server's is %q", iid(i), out.sessionID, sess[i].HistoryID)
		}
	}
	tokens := make([]string, n)
	for i := range n {
		tokens[i] = sess[i].Token
	}
	wc, err := e.ctl.wait(ctx, tokens, waitController, 10*time.Second, false)
	if err != nil {
		return nil, err
	}
	if wc.Done != n {
		return nil, fmt.Errorf("the server sees the Controller in %d of %d sessions (not in %v)", wc.Done, n, wc.Pending)
	}
	st, err := e.ctl.stats(ctx)
	if err != nil {
		return nil, err
	}
	res.WebSockets, res.LongPolls = st.websocketConns(), st.longPollRequests()
	if st.Live != n {
		return nil, fmt.Errorf("the server holds %d live sessions, want %d", st.Live, n)
	}
	if err := d.waitIdle(ctx, o.joinWait); err != nil {
		return nil, err
	}
	h.notef("live %s: %d sessions joined and activated in %.1f s; measuring", transport, n, res.JoinS)

	// The measurements, nothing else happening: RSS now, CPU over the window (by default one
	// whole connect period: every session renews its /meta/connect once in it), and RSS again at
	// its end, the figure: every session held through a connect renewal.
	ma, err := readProcMem(d.p.Pid())
	if err != nil {
		return nil, err
	}
	res.RSSActKiB = ma.RSSKiB
	if d.profiled() {
		// The profiled daemon starts a CPU profile at each dump: this one covers the idle window
		// (the figures of a profiled run are for diagnosis, not for comparing).
		if _, err := d.heapDump(ctx); err != nil {
			return nil, err
		}
	}
	meter := startCPU(d.p.Pid(), e.gcb.Pid(), e.nats.Pid())
	window := time.NewTimer(o.cpuWindow)
	select {
	case <-window.C:
	case <-d.p.Exited():
		window.Stop()
		if err := e.checkDaemons(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s exited during the CPU window: %v", d.name(), d.p.Err())
	case <-ctx.Done():
		window.Stop()
		return nil, ctx.Err()
	}
	pct, _ := meter.shares()
	res.IdleCPUPct, res.GCBIdleCPUPct, res.NATSIdleCPUPct = pct[0], pct[1], pct[2]
	res.CPUWindowS = o.cpuWindow.Seconds()
	if err := e.checkDaemons(); err != nil {
		return nil, err
	}
	mn, err := readProcMem(d.p.Pid())
	if err != nil {
		return nil, err
	}
	gn, err := readProcMem(e.gcb.Pid())
	if err != nil {
		return nil, err
	}
	res.RSSNKiB, res.ThreadsN = mn.RSSKiB, mn.Threads
	if res.FDsN, err = readFDs(d.p.Pid()); err != nil {
		return nil, err
	}
	res.PerSessionKiB = float64(mn.RSSKiB-m0.RSSKiB) / float64(n)
	res.PerSessionActKiB = float64(ma.RSSKiB-m0.RSSKiB) / float64(n)
	res.RSSNMB = float64(mn.RSSKiB) * 1024 / 1e6
	res.GCBPerSessionKiB = float64(gn.RSSKiB-g0.RSSKiB) / float64(n)
	res.GCBRSSNMB = float64(gn.RSSKiB) * 1024 / 1e6
	if d.profiled() { // after the measurements: writing a heap profile is work
		if res.GoroutinesN, err = d.heapDump(ctx); err != nil {
			return nil, err
		}
	}

	// Close every interaction; every session must end at the server, and every final attach come.
	h.notef("live %s: closing %d interactions", transport, n)
	closed := make([]inbound, n)
	for i := range n {
		closed[i] = inbound{subject: eventSubject(iid(i)), data: mustJSON(event(iid(i), "closed", ""))}
	}
	began = time.Now()
	if err := e.publishAll(ctx, closed); err != nil {
		return nil, err
	}
	we, err := e.ctl.wait(ctx, tokens, waitEnded, o.joinWait, true)
	if err != nil {
		return nil, err
	}
	for _, s := range we.Sessions {
		if s.EndedBy != "" {
			res.EndedBy[s.EndedBy]++
		}
	}
	res.Ended = we.Done
	if we.Done != n {
		return nil, fmt.Errorf("%d of %d sessions ended at the server after their closed event (still live: %v)", we.Done, n, we.Pending)
	}
	if err := w.await(ctx, e, o.joinWait, fmt.Sprintf("%d final attaches", n), func(c outcomeCounts, _ func(string) *outcome) bool {
		return c.ended >= n
	}); err != nil {
		return nil, err
	}
	res.CloseS = time.Since(began).Seconds()
	if err := d.waitIdle(ctx, o.joinWait); err != nil {
		return nil, err
	}
	res.CloseAckedS = time.Since(began).Seconds()
	for i := range n {
		if out := w.outcome(iid(i)); out.endReason != "interaction_closed" {
			return nil, fmt.Errorf("final attach of %s says %q, want interaction_closed", iid(i), out.endReason)
		}
	}
	if st, err = e.ctl.stats(ctx); err != nil {
		return nil, err
	}
	res.LiveAfter = st.Live
	if st.Live != 0 {
		return nil, fmt.Errorf("%d sessions still live at the server after every interaction closed", st.Live)
	}
	// After its final attach each session disconnects its Bayeux client: once the server holds no
	// Bayeux session but the daemon's spares (genesys.spare_clients, left at its default: one per
	// node its joins went to), the daemon has let go of every session's connection, and what is left
	// is what stays.
	if err := e.every(ctx, 50*time.Millisecond, o.joinWait, "the daemon's Bayeux sessions gone from the server", func(ctx context.Context) (bool, error) {
		st, err := e.ctl.stats(ctx)
		if err != nil {
			return false, err
		}
		left := 0
		for _, n := range st.Nodes {
			left += n.BayeuxSessions
		}
		return left <= len(st.Nodes)*configs.Default().Genesys.SpareClients, nil
	}); err != nil {
		return nil, err
	}
	// And its connections closed (a few idle keep-alive connections may stay): only then are the
	// sessions' goroutines expected gone.
	if err := e.every(ctx, 50*time.Millisecond, o.joinWait, "the daemon's connections closed", func(context.Context) (bool, error) {
		fds, err := readFDs(d.p.Pid())
		return fds <= res.FDs0+16, err
	}); err != nil {
		return nil, err
	}
	mc, err := readProcMem(d.p.Pid())
	if err != nil {
		return nil, err
	}
	res.RSSClosedKiB = mc.RSSKiB
	res.Warnings, res.Errors, res.top = d.logSummary()
	if d.profiled() {
		// A profiled daemon writes its CPU profile at exit: it is stopped (SIGTERM) with the rest.
		if res.Goroutines, err = d.heapDump(ctx); err != nil {
			return nil, err
		}
	} else if g, err := d.quit(); err != nil {
		res.goroutinesErr = err.Error()
	} else {
		res.Goroutines = g
	}
	if odd := w.oddMessages(); len(odd) > 0 {
		return res, fmt.Errorf("unreadable outbound messages: %v", odd)
	}

	// The anchors: the JS client, then the bare Go client, each holding as many sessions on the
	// same server, now that the daemon's are gone and the server closed its connections.
	if h.js != nil {
		if err := e.serverConnsClosed(ctx, gcbFDs0); err != nil {
			return res, err
		}
		h.notef("live %s: the JS client joins and holds %d sessions", transport, n)
		if res.JS, err = e.hold(ctx, n, "jsclient-hold", h.js.node, e.jsArgs("hold", transport), childEnv("NODE_NO_WARNINGS=1")); err != nil {
			return res, fmt.Errorf("JS client: %w", err)
		}
		res.JSMemRatio = div(res.PerSessionKiB, res.JS.PerSessionKiB)
	}
	if err := e.serverConnsClosed(ctx, gcbFDs0); err != nil {
		return res, err
	}
	h.notef("live %s: the bare Go client joins and holds %d sessions", transport, n)
	if res.Bare, err = e.hold(ctx, n, roleHolder, h.self, []string{"-front", e.gcbR.Front, "-transports", strings.Join(transportList(transport), ",")},
		childEnv(helperEnv+"="+roleHolder)); err != nil {
		return res, fmt.Errorf("bare client: %w", err)
	}
	res.MemRatio = div(res.PerSessionKiB, res.Bare.PerSessionKiB)
	res.CPURatio = div(res.IdleCPUPct, res.Bare.IdleCPUPct)
	return res, nil
}

// serverConnsClosed waits until the Co-browse Server process is back to about as many open
// files as it had before the measurement: the previous holder's connections closed at its end,
// so that the next holder has the whole open-file limit (20,000 a process here).
func (e *env) serverConnsClosed(ctx context.Context, fds0 int) error {
	return e.every(ctx, 50*time.Millisecond, e.h.opt.joinWait, "the Co-browse Server closing the previous client's connections", func(context.Context) (bool, error) {
		fds, err := readFDs(e.gcb.Pid())
		return fds <= fds0+32, err
	})
}

// holdResult is what an anchor holding N sessions measured.
type holdResult struct {
	PerSessionKiB    float64 `json:"kib_per_session"`           // RSS at the end of the idle window, as the daemon's
	PerSessionActKiB float64 `json:"kib_per_session_activated"` // RSS right after the last activation
	RSS0MB           float64 `json:"rss0_mb"`
	RSSNMB           float64 `json:"rssn_mb"`
	IdleCPUPct       float64 `json:"idle_cpu_pct"`
	JoinS            float64 `json:"join_s"` // tokens handed over -> every session joined and activated
	FDsN             int     `json:"fdsn"`
}

// hold runs an anchor holder in a process of its own (path args, env): it says "ready", reads
// session tokens on its stdin until EOF, joins them as Controller with the four steps, says
// "joined N", the agents join, it says "activated N"; its RSS before and after and its CPU over
// the same window as the daemon's and again at its end (the figure, as the daemon's) are read;
// then it is stopped (SIGTERM).
func (e *env) hold(ctx context.Context, n int, name, path string, args, env []string) (res *holdResult, err error) {
	h := e.h
	sess, err := e.ctl.create(ctx, n)
	if err != nil {
		return nil, err
	}
	out, err := e.openLog(name + ".out")
	if err != nil {
		return nil, err
	}
	lines := make(chan string, 8)
	w := procs.NewLineWriter(out, func(line []byte) {
		select {
		case lines <- string(line):
		default: // the harness waits for three lines only
		}
	})
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdinW.Close()
	p, err := procs.SpawnIO(name, path, args, env, stdinR, w, out)
	stdinR.Close()
	if err != nil {
		return nil, err
	}
	h.children.Add(p)
	defer func() {
		if serr := p.Stop(syscall.SIGTERM, 30*time.Second); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	next := func(want string, bound time.Duration) error {
		t := time.NewTimer(bound)
		defer t.Stop()
		for {
			select {
			case l := <-lines:
				if strings.HasPrefix(l, want) {
					return nil
				}
				if strings.HasPrefix(l, "failed") {
					return errors.New(l)
				}
			case <-p.Exited():
				return fmt.Errorf("exited: %v (see %s)", p.Err(), out.Name())
			case <-t.C:
				return fmt.Errorf("no %q within %v (see %s)", want, bound, out.Name())
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if err := next("ready", procs.Wait); err != nil {
		return nil, err
	}
	m0, err := readProcMem(p.Pid())
	if err != nil {
		return nil, err
	}
	res = &holdResult{RSS0MB: float64(m0.RSSKiB) * 1024 / 1e6}
	began := time.Now()
	var tokens strings.Builder
	for _, s := range sess {
		tokens.WriteString(s.Token + "\n")
	}
	if _, err := io.WriteString(stdinW, tokens.String()); err != nil {
		return nil, err
	}
	stdinW.Close()
	if err := next("joined", h.opt.joinWait); err != nil {
		return nil, err
	}
	joins := make([]agentJoin, n)
	for i, s := range sess {
		joins[i] = agentJoin{Token: s.Token, AgentID: fmt.Sprintf("%s-agent-%d", name, i)}
	}
	r, err := e.ctl.agentJoin(ctx, joins)
	if err != nil {
		return nil, err
	}
	if r.Joined != n {
		return nil, fmt.Errorf("%d of %d agents joined (first failure: %v)", r.Joined, n, r.Failed)
	}
	if err := next("activated", h.opt.joinWait); err != nil {
		return nil, err
	}
	res.JoinS = time.Since(began).Seconds()
	ma, err := readProcMem(p.Pid())
	if err != nil {
		return nil, err
	}
	res.PerSessionActKiB = float64(ma.RSSKiB-m0.RSSKiB) / float64(n)
	meter := startCPU(p.Pid())
	window := time.NewTimer(h.opt.cpuWindow)
	select {
	case <-window.C:
	case <-p.Exited():
		window.Stop()
		return nil, fmt.Errorf("exited: %v (see %s)", p.Err(), out.Name())
	case <-ctx.Done():
		window.Stop()
		return nil, ctx.Err()
	}
	pct, _ := meter.shares()
	res.IdleCPUPct = pct[0]
	mn, err := readProcMem(p.Pid())
	if err != nil {
		return nil, err
	}
	res.PerSessionKiB = float64(mn.RSSKiB-m0.RSSKiB) / float64(n)
	res.RSSNMB = float64(mn.RSSKiB) * 1024 / 1e6
	if res.FDsN, err = readFDs(p.Pid()); err != nil {
		return nil, err
	}
	return res, nil
}

// firstFailure describes a failed event seen, for an error.
func (w *watcher) firstFailure() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for iid, o := range w.byIID {
		if !o.failedAt.IsZero() {
			return fmt.Sprintf("%s: %s: %s", iid, o.failReason, o.failDetail)
		}
	}
	return "none"
}
