package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// Join and close latency, one interaction at a time with the daemon otherwise idle.
//
// Daemon: the customer's start message published (its PubAck awaited) -> the attach update with
// the session's CoBrowseSessionId received on a subscription. Then the interaction's closed event
// published -> the session ended at the server (the server's own deactivation time).
//
// Anchor: a bare Go client doing the same four protocol steps against the same server (REST Get
// Session with an Origin, then the cluster URL with the gcbSessionServer cookie it set: Bayeux
// handshake and first /meta/connect, /service/session/join as the Controller), with the
// project's own CometD client (connector/cometd, the one the daemon uses) over the daemon's
// transport, and a shared HTTP transport as the daemon has. Its close anchor is its
// /service/session/stop round trip. Anchor and daemon alternate, one each per round, so that the
// machine's noise falls on both.

type latencyResult struct {
	K         int            `json:"k"`
	Transport string         `json:"transport"`
	Daemon    stats          `json:"daemon_join_ms"`
	Anchor    stats          `json:"bare_join_ms"`
	RatioP50  float64        `json:"ratio_p50"`
	RatioP99  float64        `json:"ratio_p99"`
	PubAck    stats          `json:"start_puback_ms"` // publishing the start message into CC_INBOUND
	Close     stats          `json:"daemon_close_ms"` // closed event -> session ended at the server
	Stop      stats          `json:"bare_stop_ms"`    // the anchor's /service/session/stop round trip
	CloseP50  float64        `json:"close_ratio_p50"`
	CloseP99  float64        `json:"close_ratio_p99"`
	Final     stats          `json:"daemon_close_attach_ms"` // closed event -> the final attach (CoBrowseAssociated=No)
	EndedBy   map[string]int `json:"ended_by"`
	Warnings  int            `json:"daemon_warnings"`
	Errors    int            `json:"daemon_errors"`
	top       []string
}

func (h *harness) transports() []string {
	if h.opt.longPolling {
		return []string{cometd.TransportLongPolling}
	}
	return []string{cometd.TransportWebSocket, cometd.TransportLongPolling} // genesys.transports' default
}

func (h *harness) transportName() string {
	if h.opt.longPolling {
		return cometd.TransportLongPolling
	}
	return cometd.TransportWebSocket
}

func (h *harness) joinLatency(ctx context.Context) (res *latencyResult, err error) {
	o := h.opt
	e, d, w, err := h.oneDaemon(ctx, "join")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	defer w.stop()
	rt := http.DefaultTransport.(*http.Transport).Clone() // what the daemon's connector makes for itself
	defer rt.CloseIdleConnections()

	var daemonJoin, bareJoin, pubAck, closeLat, stopLat, finalLat []time.Duration
	endedBy := map[string]int{}
	rounds := o.warmup + o.joins
	h.notef("join: %d rounds (%d warm-up) over %s, anchor and daemon in turn", rounds, o.warmup, h.transportName())
	for i := range rounds {
		sess, err := e.ctl.create(ctx, 2)
		if err != nil {
			return nil, err
		}
		a, b := sess[0], sess[1]

		// The anchor.
		aj, as, err := anchorJoin(ctx, e.gcbR.Front, rt, a.Token, h.transports())
		if err != nil {
			return nil, fmt.Errorf("round %d: bare client: %w", i, err)
		}

		// The daemon: start message -> join attach.
		iid := fmt.Sprintf("lat%05d", i)
		t0 := time.Now()
		if err := e.publish(ctx, chatSubject(iid), startChat(iid, b.Token)); err != nil {
			return nil, err
		}
		pa := time.Since(t0)
		if err := w.await(ctx, e, o.joinWait, "join attach of "+iid, func(c outcomeCounts, get func(string) *outcome) bool {
			x := get(iid)
			return !x.joinedAt.IsZero() || !x.failedAt.IsZero()
		}); err != nil {
			return nil, err
		}
		out := w.outcome(iid)
		if !out.failedAt.IsZero() {
			return nil, fmt.Errorf("round %d: the daemon published failed (%s: %s) for %s", i, out.failReason, out.failDetail, iid)
		}
		if out.sessionID != b.HistoryID {
			return nil, fmt.Errorf("round %d: join attach of %s names session %q, the server's is %q", i, iid, out.sessionID, b.HistoryID)
		}
		dj := out.joinedAt.Sub(t0)

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
		pubAck = append(pubAck, pa)
		closeLat = append(closeLat, ended.Sub(tc))
		stopLat = append(stopLat, as)
		finalLat = append(finalLat, out.endedAt.Sub(tc))
		endedBy[wr.Sessions[0].EndedBy]++
		if (i-o.warmup+1)%50 == 0 {
			h.verbosef("join: %d rounds done", i-o.warmup+1)
		}
	}
	res = &latencyResult{
		K: o.joins, Transport: h.transportName(),
		Daemon: summarize(daemonJoin), Anchor: summarize(bareJoin), PubAck: summarize(pubAck),
		Close: summarize(closeLat), Stop: summarize(stopLat), Final: summarize(finalLat), EndedBy: endedBy,
	}
	res.RatioP50, res.RatioP99 = div(res.Daemon.P50, res.Anchor.P50), div(res.Daemon.P99, res.Anchor.P99)
	res.CloseP50, res.CloseP99 = div(res.Close.P50, res.Stop.P50), div(res.Close.P99, res.Stop.P99)
	res.Warnings, res.Errors, res.top = d.logSummary()
	if odd := w.oddMessages(); len(odd) > 0 {
		return res, fmt.Errorf("unreadable outbound messages: %v", odd)
	}
	return res, nil
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
	c, err := cometd.New(cometd.Options{URL: node + "/cometd", Transports: transports, Cookies: cookies, RoundTripper: rt, OnMessage: onMessage})
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
