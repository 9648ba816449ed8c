package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// Join and close latency, the daemon otherwise idle.
//
// Join, one interaction at a time, K rounds after the warm-up. Each round, in this order:
//   - the protocol floor: a bare Go client doing the four protocol steps against the same server
//     (REST Get Session with an Origin, then the cluster URL with the gcbSessionServer cookie it
//     set: Bayeux handshake and first /meta/connect, /service/session/join as the Controller),
//     with the project's own CometD client (connector/cometd, the one the daemon uses) over the
//     daemon's transport and with its own lean connections, as the daemon's sessions (a shared
//     HTTP transport for Get Session, as the daemon's REST calls); then it stops the
//     session (/service/session/stop, timed too) and leaves;
//   - the JS client: the official CometD JavaScript client doing the same four steps on the same
//     transport, in a node process of its own kept for the whole phase (jsanchor.mjs, timed there
//     the same way: Get Session to the join's reply), then the same stop and leave;
//   - the daemon: the customer's start message published (its PubAck awaited) -> the attach
//     update with the session's CoBrowseSessionId received on a subscription; then the
//     interaction's closed event published -> the session ended at the server (the server's own
//     deactivation time), and the final attach awaited.
// The three are interleaved within each round, so that the machine's noise falls on all of them,
// and take turns in each of their six orders, one order per round (joinOrder): none is always
// measured right after another's work, nor always first on a quiet machine.
//
// Close, C in flight (64): after the rounds, -close-batches times: C new sessions joined by the
// daemon (C start messages at once, every join attach awaited, the daemon idle), then C closed
// events published at once (PublishAsync, each stamped as it is handed to the client): each
// latency is from its publish to the server's end of its session.

type latencyResult struct {
	K          int     `json:"k"`
	Transport  string  `json:"transport"`
	Daemon     stats   `json:"daemon_join_ms"`
	Anchor     stats   `json:"floor_join_ms"` // the bare Go client: the protocol floor
	RatioP50   float64 `json:"ratio_p50"`     // daemon / floor
	RatioP99   float64 `json:"ratio_p99"`
	JS         *stats  `json:"js_join_ms,omitempty"`   // the official CometD JavaScript client; nil with -js=false
	JSRatioP50 float64 `json:"js_ratio_p50,omitempty"` // daemon / JS client
	JSRatioP99 float64 `json:"js_ratio_p99,omitempty"`
	JSStop     *stats  `json:"js_stop_ms,omitempty"`
	PubAck     stats   `json:"start_puback_ms"` // publishing the start message into CC_INBOUND
	// NATSPath: the NATS work of a join alone (natspath.go), start message published -> attach
	// received; FloorNATS: the floor's p50 plus the path's, and the daemon's p50 over it.
	NATSPath       stats   `json:"nats_path_ms"`
	FloorNATSP50   float64 `json:"floor_plus_nats_path_p50_ms"`
	RatioFloorNATS float64 `json:"ratio_p50_floor_plus_nats_path"`
	Close          stats   `json:"daemon_close_ms"` // closed event -> session ended at the server, one at a time
	Stop           stats   `json:"floor_stop_ms"`   // the floor's /service/session/stop round trip
	CloseP50       float64 `json:"close_ratio_p50"`
	CloseP99       float64 `json:"close_ratio_p99"`
	Final          stats   `json:"daemon_close_attach_ms"` // closed event -> the final attach (CoBrowseAssociated=No)

	InFlight      int   `json:"close_in_flight"`
	Batches       int   `json:"close_batches"`
	CloseBatch    stats `json:"daemon_close_in_flight_ms"`        // each closed event of a batch -> its session ended at the server
	FinalBatch    stats `json:"daemon_close_in_flight_attach_ms"` // ... -> its final attach
	CloseBatchAll stats `json:"close_batch_span_ms"`              // first publish of a batch -> last session ended
	// BareBatch: the floor's anchor for the close in flight: the bare Go client holding as many
	// sessions stops them all at once; each stop's call -> its session ended at the server.
	BareBatch stats `json:"floor_stop_in_flight_ms"`
	// NATSBatch: the NATS path of the close in flight: as many close messages published at once,
	// each one's publish -> its pull by the bare relay (natspath.go), which meanwhile does the
	// closes' NATS work.
	NATSBatch stats `json:"nats_path_close_in_flight_ms"`
	// BatchCPU: the CPU time each process used per batch, from the first publish to the last
	// session's end at the server (the window the goal measures) and to the daemon idle again
	// (everything the closes caused): what two cores had to do in that time.
	BatchCPU map[string]stats `json:"close_batch_cpu_ms"`

	EndedBy  map[string]int `json:"ended_by"`
	Warnings int            `json:"daemon_warnings"`
	Errors   int            `json:"daemon_errors"`
	top      []string
}

// joinOrders are the six orders of the floor (0), the JS client (1) and the daemon (2).
var joinOrders = [6][3]int{{0, 1, 2}, {2, 0, 1}, {1, 2, 0}, {0, 2, 1}, {1, 0, 2}, {2, 1, 0}}

// joinOrder is the order of the floor, the JS client and the daemon in round i: each of the six
// in turn.
func joinOrder(i int, floor, js, daemon func() error) [3]func() error {
	runs := [3]func() error{floor, js, daemon}
	o := joinOrders[i%len(joinOrders)]
	return [3]func() error{runs[o[0]], runs[o[1]], runs[o[2]]}
}

// transportList is what a bare client is configured with for transport, as the daemon is:
// websocket is genesys.transports' default (websocket, then long-polling), long-polling alone.
func transportList(transport string) []string {
	if transport == cometd.TransportLongPolling {
		return []string{cometd.TransportLongPolling}
	}
	return []string{cometd.TransportWebSocket, cometd.TransportLongPolling}
}

func (h *harness) joinLatency(ctx context.Context) (res *latencyResult, err error) {
	o := h.opt
	transport := o.transports[0]
	e, d, w, err := h.oneDaemon(ctx, "join", transport)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	defer w.stop()
	np, err := e.startNATSPath(ctx)
	if err != nil {
		return nil, fmt.Errorf("NATS path anchor: %w", err)
	}
	defer np.stop()
	rt := http.DefaultTransport.(*http.Transport).Clone() // what the daemon's connector makes for itself
	defer rt.CloseIdleConnections()
	var js *jsJoiner
	if h.js != nil {
		if js, err = e.startJSJoiner(ctx, transport); err != nil {
			return nil, err
		}
		defer js.stop()
	}

	var daemonJoin, bareJoin, jsJoin, jsStop, pubAck, closeLat, stopLat, finalLat, natsPath []time.Duration
	endedBy := map[string]int{}
	rounds := o.warmup + o.joins
	who := "floor and daemon"
	if js != nil {
		who = "floor, JS client and daemon"
	}
	h.notef("join: %d rounds (%d warm-up) over %s, %s in each of their orders in turn", rounds, o.warmup, transport, who)
	for i := range rounds {
		sess, err := e.ctl.create(ctx, 3)
		if err != nil {
			return nil, err
		}
		a, b, c := sess[0], sess[1], sess[2]
		iid := fmt.Sprintf("lat%05d", i)
		var aj, as, jj, js0, pa, dj time.Duration
		var out outcome
		floor := func() (err error) {
			if aj, as, err = anchorJoin(ctx, e.gcbR.Front, rt, a.Token, transportList(transport)); err != nil {
				return fmt.Errorf("round %d: bare client: %w", i, err)
			}
			return nil
		}
		jsClient := func() (err error) {
			if js == nil {
				return nil
			}
			if jj, js0, err = js.join(ctx, c.Token, transport, c.HistoryID); err != nil {
				return fmt.Errorf("round %d: JS client: %w", i, err)
			}
			return nil
		}
		// The daemon: start message -> join attach.
		daemon := func() error {
			t0 := time.Now()
			if err := e.publish(ctx, chatSubject(iid), startChat(iid, b.Token)); err != nil {
				return err
			}
			pa = time.Since(t0)
			if err := w.await(ctx, e, o.joinWait, "join attach of "+iid, func(c outcomeCounts, get func(string) *outcome) bool {
				x := get(iid)
				return !x.joinedAt.IsZero() || !x.failedAt.IsZero()
			}); err != nil {
				return err
			}
			out = w.outcome(iid)
			if !out.failedAt.IsZero() {
				return fmt.Errorf("round %d: the daemon published failed (%s: %s) for %s", i, out.failReason, out.failDetail, iid)
			}
			if out.sessionID != b.HistoryID {
				return fmt.Errorf("round %d: join attach of %s names session %q, the server's is %q", i, iid, out.sessionID, b.HistoryID)
			}
			dj = out.joinedAt.Sub(t0)
			return nil
		}
		// The three take turns in every order, one order per round: none is always measured
		// right after another's work (the JS client's process is still busy for a while after
		// its join returns), nor always first on a quiet machine.
		for _, run := range joinOrder(i, floor, jsClient, daemon) {
			if err := run(); err != nil {
				return nil, err
			}
		}

		// The NATS path of a join, alone.
		nl, _, err := np.round(ctx, fmt.Sprintf("np%05d", i), o.joinWait)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", i, err)
		}

		// Close: closed event -> the session ended at the server, and the final attach.
		tc := time.Now()
		if err := e.publish(ctx, eventSubject(iid), event(iid, "closed", "")); err != nil {
			return nil, err
		}
		wr, err := e.ctl.wait(ctx, []string{b.Token}, waitEnded, o.joinWait, true)
		if err != nil {
			return nil, err
		}
		if wr.Done != 1 || len(wr.Sessions) != 1 {
			return nil, fmt.Errorf("round %d: session of %s not ended at the server within %v after the closed event", i, iid, o.joinWait)
		}
		ended := time.Unix(0, wr.Sessions[0].DeactivationNs)
		if err := w.await(ctx, e, o.joinWait, "final attach of "+iid, func(c outcomeCounts, get func(string) *outcome) bool {
			return !get(iid).endedAt.IsZero()
		}); err != nil {
			return nil, err
		}
		out = w.outcome(iid)
		if out.endReason != "interaction_closed" {
			return nil, fmt.Errorf("round %d: final attach of %s says %q, want interaction_closed", i, iid, out.endReason)
		}
		// The next round begins with the daemon idle: every inbound message settled.
		if err := d.waitIdle(ctx, o.joinWait); err != nil {
			return nil, err
		}
		if i < o.warmup {
			continue
		}
		daemonJoin = append(daemonJoin, dj)
		bareJoin = append(bareJoin, aj)
		if js != nil {
			jsJoin = append(jsJoin, jj)
			jsStop = append(jsStop, js0)
		}
		pubAck = append(pubAck, pa)
		natsPath = append(natsPath, nl)
		closeLat = append(closeLat, ended.Sub(tc))
		stopLat = append(stopLat, as)
		finalLat = append(finalLat, out.endedAt.Sub(tc))
		endedBy[wr.Sessions[0].EndedBy]++
		if (i-o.warmup+1)%50 == 0 {
			h.verbosef("join: %d rounds done", i-o.warmup+1)
		}
	}
	res = &latencyResult{
		K: o.joins, Transport: transport,
		Daemon: summarize(daemonJoin), Anchor: summarize(bareJoin), PubAck: summarize(pubAck),
		Close: summarize(closeLat), Stop: summarize(stopLat), Final: summarize(finalLat), EndedBy: endedBy,
		InFlight: o.closeInFlight, Batches: o.closeBatches, NATSPath: summarize(natsPath),
	}
	res.RatioP50, res.RatioP99 = div(res.Daemon.P50, res.Anchor.P50), div(res.Daemon.P99, res.Anchor.P99)
	res.FloorNATSP50 = res.Anchor.P50 + res.NATSPath.P50
	res.RatioFloorNATS = div(res.Daemon.P50, res.FloorNATSP50)
	res.CloseP50, res.CloseP99 = div(res.Close.P50, res.Stop.P50), div(res.Close.P99, res.Stop.P99)
	if js != nil {
		s, st := summarize(jsJoin), summarize(jsStop)
		res.JS, res.JSStop = &s, &st
		res.JSRatioP50, res.JSRatioP99 = div(res.Daemon.P50, s.P50), div(res.Daemon.P99, s.P99)
	}

	if o.closeBatches > 0 {
		h.notef("join: closing %d interactions in flight, %d times", o.closeInFlight, o.closeBatches)
		var lat, final, span, bare, pulled []time.Duration
		cpu := map[string][]time.Duration{}
		for k := range o.closeBatches {
			l, f, sp, err := h.closeBatch(ctx, e, d, w, k, endedBy, cpu)
			if err != nil {
				return nil, fmt.Errorf("close batch %d: %w", k, err)
			}
			b, err := h.bareStopBatch(ctx, e, rt, transport)
			if err != nil {
				return nil, fmt.Errorf("close batch %d: bare client: %w", k, err)
			}
			pl, err := np.closeBatch(ctx, k, o.closeInFlight, o.joinWait)
			if err != nil {
				return nil, fmt.Errorf("close batch %d: %w", k, err)
			}
			h.verbosef("close batch %d: span %.2f ms, p99 %.2f ms; bare stops p99 %.2f ms; NATS path p99 %.2f ms", k, millis(sp), summarize(l).P99, summarize(b).P99, summarize(pl).P99)
			lat, final, span, bare, pulled = append(lat, l...), append(final, f...), append(span, sp), append(bare, b...), append(pulled, pl...)
		}
		res.CloseBatch, res.FinalBatch, res.CloseBatchAll = summarize(lat), summarize(final), summarize(span)
		res.BareBatch, res.NATSBatch = summarize(bare), summarize(pulled)
		res.BatchCPU = map[string]stats{}
		for k, v := range cpu {
			res.BatchCPU[k] = summarize(v)
		}
	}
	res.Warnings, res.Errors, res.top = d.logSummary()
	if odd := w.oddMessages(); len(odd) > 0 {
		return res, fmt.Errorf("unreadable outbound messages: %v", odd)
	}
	return res, nil
}

// closeBatch is one batch of the close in flight: -close-in-flight sessions joined by the daemon,
// then their closed events published at once. It returns each session's latency from its closed
// event's publish to its end at the server and to its final attach, and the batch's span. It adds
// each process's CPU time over the batch to cpu (keys: see cpuProcs).
func (h *harness) closeBatch(ctx context.Context, e *env, d *daemon, w *watcher, k int, endedBy map[string]int, cpu map[string][]time.Duration) (lat, final []time.Duration, span time.Duration, err error) {
	o := h.opt
	n := o.closeInFlight
	sess, err := e.ctl.create(ctx, n)
	if err != nil {
		return nil, nil, 0, err
	}
	iids := make([]string, n)
	tokens := make([]string, n)
	starts := make([]inbound, n)
	for i := range n {
		iids[i], tokens[i] = fmt.Sprintf("cls%03d-%03d", k, i), sess[i].Token
		starts[i] = inbound{subject: chatSubject(iids[i]), data: mustJSON(startChat(iids[i], sess[i].Token))}
	}
	if err := e.publishAll(ctx, starts); err != nil {
		return nil, nil, 0, err
	}
	if err := w.await(ctx, e, o.joinWait, fmt.Sprintf("%d join attaches", n), func(c outcomeCounts, get func(string) *outcome) bool {
		for _, iid := range iids {
			x := get(iid)
			if !x.failedAt.IsZero() {
				return true
			}
			if x.joinedAt.IsZero() {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, nil, 0, err
	}
	for i, iid := range iids {
		out := w.outcome(iid)
		if !out.failedAt.IsZero() {
			return nil, nil, 0, fmt.Errorf("the daemon published failed (%s: %s) for %s", out.failReason, out.failDetail, iid)
		}
		if out.sessionID != sess[i].HistoryID {
			return nil, nil, 0, fmt.Errorf("join attach of %s names session %q, the server's is %q", iid, out.sessionID, sess[i].HistoryID)
		}
	}
	if err := d.waitIdle(ctx, o.joinWait); err != nil {
		return nil, nil, 0, err
	}

	// Every closed event at once.
	closed := make([]inbound, n)
	for i, iid := range iids {
		closed[i] = inbound{subject: eventSubject(iid), data: mustJSON(event(iid, "closed", ""))}
	}
	meter := startCPU(d.p.Pid(), e.gcb.Pid(), e.nats.Pid(), 0)
	sent, err := e.publishTimed(ctx, closed)
	if err != nil {
		return nil, nil, 0, err
	}
	wr, err := e.ctl.wait(ctx, tokens, waitEnded, o.joinWait, true)
	if err != nil {
		return nil, nil, 0, err
	}
	_, toEnd := meter.shares()
	if wr.Done != n || len(wr.Sessions) != n {
		return nil, nil, 0, fmt.Errorf("%d of %d sessions ended at the server within %v of their closed events (not: %v)", wr.Done, n, o.joinWait, wr.Pending)
	}
	var last time.Time
	for i, s := range wr.Sessions {
		if s.Token != tokens[i] {
			return nil, nil, 0, fmt.Errorf("the server answered for session %s in place of %s", s.Token, tokens[i])
		}
		ended := time.Unix(0, s.DeactivationNs)
		lat = append(lat, ended.Sub(sent[i]))
		last = later(last, ended)
		endedBy[s.EndedBy]++
	}
	span = last.Sub(sent[0])
	if err := w.await(ctx, e, o.joinWait, fmt.Sprintf("%d final attaches", n), func(c outcomeCounts, get func(string) *outcome) bool {
		for _, iid := range iids {
			if get(iid).endedAt.IsZero() {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, nil, 0, err
	}
	for i, iid := range iids {
		out := w.outcome(iid)
		if out.endReason != "interaction_closed" {
			return nil, nil, 0, fmt.Errorf("final attach of %s says %q, want interaction_closed", iid, out.endReason)
		}
		final = append(final, out.endedAt.Sub(sent[i]))
	}
	if err := d.waitIdle(ctx, o.joinWait); err != nil {
		return nil, nil, 0, err
	}
	_, toIdle := meter.shares()
	for i, name := range cpuProcs {
		cpu[name+"_to_end"] = append(cpu[name+"_to_end"], toEnd[i])
		cpu[name+"_to_idle"] = append(cpu[name+"_to_idle"], toIdle[i])
	}
	return lat, final, span, nil
}

// cpuProcs names the processes a close batch's CPU is read from, in closeBatch's meter order.
var cpuProcs = []string{"daemon", "gcb", "natsd", "harness"}

// bareStopBatch is the anchor of a close batch: the bare client joins -close-in-flight sessions
// (one after the other), then stops them all at once, one goroutine each; it returns each
// stop's latency from just before its call to its session's end at the server (the server's
// time, as for the daemon).
func (h *harness) bareStopBatch(ctx context.Context, e *env, rt http.RoundTripper, transport string) ([]time.Duration, error) {
	n := h.opt.closeInFlight
	sess, err := e.ctl.create(ctx, n)
	if err != nil {
		return nil, err
	}
	clients := make([]*cometd.Client, n)
	users := make([]string, n)
	tokens := make([]string, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	for i := range n {
		tokens[i] = sess[i].Token
		if clients[i], users[i], err = bareJoin(ctx, e.gcbR.Front, rt, sess[i].Token, transportList(transport)); err != nil {
			return nil, err
		}
	}
	sent := make([]time.Time, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sent[i] = time.Now()
			_, errs[i] = clients[i].Call(ctx, "/service/session/stop", map[string]string{"userToken": users[i]})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	wr, err := e.ctl.wait(ctx, tokens, waitEnded, h.opt.joinWait, true)
	if err != nil {
		return nil, err
	}
	if wr.Done != n || len(wr.Sessions) != n {
		return nil, fmt.Errorf("%d of %d sessions ended at the server", wr.Done, n)
	}
	lat := make([]time.Duration, n)
	for i, s := range wr.Sessions {
		lat[i] = time.Unix(0, s.DeactivationNs).Sub(sent[i])
	}
	return lat, nil
}

// anchorJoin joins session token as Controller the shortest way the protocol allows and returns
// how long the four steps took; then it stops the session (timed too) and leaves.
func anchorJoin(ctx context.Context, front string, rt http.RoundTripper, token string, transports []string) (join, stop time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	began := time.Now()
	c, userToken, err := bareJoin(ctx, front, rt, token, transports)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = c.Close() }()
	join = time.Since(began)
	t := time.Now()
	if _, err := c.Call(ctx, "/service/session/stop", map[string]string{"userToken": userToken}); err != nil {
		return 0, 0, fmt.Errorf("stop: %w", err)
	}
	stop = time.Since(t)
	_ = c.Disconnect(ctx)
	return join, stop, nil
}

// bareJoin is the four steps: REST Get Session (with an Origin), then on the owning node (its
// sessionServerUrl, or the cluster URL with the gcbSessionServer cookie Get Session set) the
// Bayeux handshake and first /meta/connect, and /service/session/join as the Controller (role 3).
// It returns the running client and the Controller's user token.
func bareJoin(ctx context.Context, front string, rt http.RoundTripper, token string, transports []string) (*cometd.Client, string, error) {
	return bareJoinWith(ctx, front, rt, token, transports, nil)
}

// bareJoinWith is bareJoin with a callback for the server's deliveries.
func bareJoinWith(ctx context.Context, front string, rt http.RoundTripper, token string, transports []string, onMessage func(cometd.Message)) (*cometd.Client, string, error) {
	u, err := url.Parse(front)
	if err != nil {
		return nil, "", err
	}
	// 1. Get Session: which node owns the session (its stickiness cookie).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, front+"/rest/live/sessions/"+url.PathEscape(token), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("get session: %w", err)
	}
	var info struct {
		ServerName string `json:"sessionServerName"`
		ServerURL  string `json:"sessionServerUrl"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || info.ServerName == "" {
		return nil, "", fmt.Errorf("get session: HTTP %d (%v)", resp.StatusCode, err)
	}
	node, cookies := front, []*http.Cookie(nil)
	for _, ck := range resp.Cookies() {
		if ck.Name == "gcbSessionServer" {
			cookies = []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/"}}
		}
	}
	if info.ServerURL != "" {
		node, cookies = info.ServerURL, nil
	}

	// 2 and 3. Handshake and the first /meta/connect.
	// The client's own transports, as the daemon's sessions use them (rt serves Get Session only).
	c, err := cometd.New(cometd.Options{URL: node + "/cometd", Transports: transports, Cookies: cookies, OnMessage: onMessage})
	if err != nil {
		return nil, "", err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, "", fmt.Errorf("handshake: %w", err)
	}

	// 4. Join as the Controller.
	raw, err := c.Call(ctx, "/service/session/join", map[string]any{"sessionToken": token, "role": 3})
	if err != nil {
		_ = c.Close()
		return nil, "", fmt.Errorf("join: %w", err)
	}
	var joined struct {
		UserToken string `json:"userToken"`
		HistoryID string `json:"sessionHistoryId"`
	}
	if err := json.Unmarshal(raw, &joined); err != nil || joined.UserToken == "" || joined.HistoryID == "" {
		_ = c.Close()
		return nil, "", fmt.Errorf("join: unexpected reply %s", raw)
	}
	if c.Transport() != transports[0] {
		_ = c.Close()
		return nil, "", fmt.Errorf("the bare client runs on %s, not %s", c.Transport(), transports[0])
	}
	return c, joined.UserToken, nil
}
