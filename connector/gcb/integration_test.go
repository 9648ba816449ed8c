package gcb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// wait bounds every wait for something the server or the client does.
const wait = 10 * time.Second

type env struct {
	t       *testing.T
	cluster *gcbtest.Cluster
	conn    *Connector
	cfg     Config
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEnv starts a 3-node cluster and a connector on it with short real timeouts.
func newEnv(t *testing.T, serverURL bool, transport string, mod func(*Config)) *env {
	t.Helper()
	return newEnvOpts(t, gcbtest.Options{ServerURL: serverURL}, transport, mod)
}

func newEnvOpts(t *testing.T, opts gcbtest.Options, transport string, mod func(*Config)) *env {
	t.Helper()
	opts.Nodes = 3
	opts.ConnectTimeout = 500 * time.Millisecond
	opts.MaxInterval = 3 * time.Second
	opts.Logger = testLogger(t).With("side", "server")
	cl := gcbtest.NewCluster(opts)
	t.Cleanup(cl.Close)
	cfg := Config{
		ClusterURL:        cl.URL(),
		RequestTimeout:    2 * time.Second,
		MaxNetworkDelay:   2 * time.Second,
		BackoffIncrement:  50 * time.Millisecond,
		MaxBackoff:        200 * time.Millisecond,
		JoinTimeout:       5 * time.Second,
		StopTimeout:       500 * time.Millisecond,
		DisconnectTimeout: 500 * time.Millisecond,
		LostAfter:         time.Second,
		Logger:            testLogger(t).With("side", "connector"),
	}
	if transport != "" {
		cfg.Transports = []string{transport}
	}
	if mod != nil {
		mod(&cfg)
	}
	return &env{t: t, cluster: cl, conn: newConnector(t, cfg), cfg: cfg}
}

func (e *env) create(node int) *gcbtest.Session {
	e.t.Helper()
	gs, err := e.cluster.CreateSession(node)
	if err != nil {
		e.t.Fatalf("CreateSession(%d): %v", node, err)
	}
	return gs
}

func (e *env) join(gs *gcbtest.Session, agentID string) connector.Session {
	e.t.Helper()
	s, err := e.conn.Join(e.t.Context(), connector.Trigger{Token: gs.Token(), InteractionID: "i-" + gs.Token(), AgentID: agentID})
	if err != nil {
		e.t.Fatalf("Join: %v", err)
	}
	e.t.Cleanup(func() { closeSession(e.t, s) })
	return s
}

func closeSession(t *testing.T, s connector.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// next returns the session's next event; ok is false when the stream is closed.
func next(t *testing.T, s connector.Session) (connector.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		return ev, ok
	case <-time.After(wait):
		t.Fatalf("no event within %s", wait)
		return connector.Event{}, false
	}
}

func expect(t *testing.T, s connector.Session, kind connector.EventKind) connector.Event {
	t.Helper()
	ev, ok := next(t, s)
	if !ok {
		t.Fatalf("event stream closed, want %s", kind)
	}
	if ev.Kind != kind {
		t.Fatalf("event %s (%+v), want %s", ev.Kind, ev, kind)
	}
	return ev
}

func expectClosed(t *testing.T, s connector.Session) {
	t.Helper()
	if ev, ok := next(t, s); ok {
		t.Fatalf("event %s (%+v) after the end, want the stream closed", ev.Kind, ev)
	}
}

func waitDone(t *testing.T, gs *gcbtest.Session) {
	t.Helper()
	select {
	case <-gs.Done():
	case <-time.After(wait):
		t.Fatalf("server session %s did not end (state %v)", connector.MaskToken(gs.Token()), gs.State())
	}
}

func sameMillis(a, b time.Time) bool { return a.UnixMilli() == b.UnixMilli() }

// TestControllerLifecycle is the key test: on a 3-node cluster, for each stickiness route and each
// transport, join as Controller on a session owned by a node other than the first, see the agent
// join and the activation, and end the session by each route. Each is run on a cold join (the
// join's own client) and on a warm one (a spare client, started ahead; spare.go).
func TestControllerLifecycle(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
			for _, end := range []string{"cometd-stop", "rest-stop-fallback", "agent-exit"} {
				for _, warm := range []bool{false, true} {
					name := fmt.Sprintf("serverURL=%v/%s/%s/warm=%v", serverURL, tr, end, warm)
					t.Run(name, func(t *testing.T) { lifecycle(t, serverURL, tr, end, warm) })
				}
			}
		}
	}
}

func lifecycle(t *testing.T, serverURL bool, tr, end string, warm bool) {
	e := newEnv(t, serverURL, tr, func(c *Config) { c.LostAfter = wait })
	if warm {
		warmSpare(t, e, 1)
	}
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	if got := s.(*session).spare; got != warm {
		t.Fatalf("joined on a spare client: %v, want %v", got, warm)
	}

	h := s.Handle()
	if h.Vendor != connector.Genesys || h.Token != gs.Token() || hd(h).UserToken == "" || h.AgentID != "agent-1" {
		t.Fatalf("handle = %+v", h)
	}
	if h.SessionID != gs.HistoryID() {
		t.Fatalf("SessionID = %q, want the history id %q", h.SessionID, gs.HistoryID())
	}
	if serverURL {
		if hd(h).NodeURL != gs.Node().URL() || hd(h).Sticky != "" {
			t.Fatalf("URL stickiness: node %q sticky %q, want %q and no cookie", hd(h).NodeURL, hd(h).Sticky, gs.Node().URL())
		}
	} else if hd(h).NodeURL != e.cluster.URL() || hd(h).Sticky == "" {
		t.Fatalf("cookie stickiness: node %q sticky set=%v, want the cluster URL %q and a cookie", hd(h).NodeURL, hd(h).Sticky != "", e.cluster.URL())
	}
	views := s.Handoffs(connector.HandoffView, "agent-1")
	if want := hd(h).NodeURL + "/slave.html#nosidinput=1&sid=" + gs.Token(); len(views) != 1 || views[0].URL != want || views[0].AgentID != "agent-1" || views[0].ToCustomer {
		t.Fatalf("agent view %+v, want the URL %q for agent-1", views, want)
	}
	if got := s.Handoffs(connector.HandoffStart, ""); len(got) != 0 {
		t.Fatalf("Genesys start handoffs %+v: the customer page starts its session itself", got)
	}
	if got := s.(*session).client.Transport(); got != tr {
		t.Fatalf("transport = %q, want %q", got, tr)
	}
	controllers := 0
	for _, u := range gs.Users() {
		if u.Role == int(connector.RoleController) {
			controllers++
		}
	}
	if controllers != 1 {
		t.Fatalf("server users %+v: want one Controller", gs.Users())
	}
	// The join reply listed the users already there: the customer.
	if ps := s.Participants(); len(ps) != 1 || ps[0].Role != connector.RoleCustomer || ps[0].ID != "1" {
		t.Fatalf("Participants = %+v, want the customer", ps)
	}

	if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
		t.Fatalf("AgentJoin: %v", err)
	}
	ev := expect(t, s, connector.EventParticipantJoined)
	if ev.Participant.Role != connector.RoleAgent || ev.Participant.Name != "Alice" || ev.Participant.ID == "" {
		t.Fatalf("joined participant = %+v", ev.Participant)
	}
	ev = expect(t, s, connector.EventActivated)
	act, _ := gs.Times()
	if ev.Times.Activation.IsZero() || !sameMillis(ev.Times.Activation, act) {
		t.Fatalf("activation = %v, server says %v", ev.Times.Activation, act)
	}

	ctx := t.Context()
	wantEndedBy := ""
	switch end {
	case "cometd-stop":
		if _, err := s.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		wantEndedBy = "controller"
	case "rest-stop-fallback":
		// The Bayeux side breaks: the node drops the Bayeux session and swallows every new
		// handshake, so the client has no session to send the CometD stop on (or gets
		// 402::Unknown client for it). Stop falls back to the REST stop with the user token.
		// (A dropped stop reply would not do: gcbtest still processes the stop.)
		gs.Node().SetFault(gcbtest.Fault{Channel: "/meta/handshake", Drop: true})
		gs.Node().ExpireBayeuxSessions()
		times, err := s.Stop(ctx)
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if _, dea := gs.Times(); !times.Deactivation.IsZero() && !sameMillis(times.Deactivation, dea) {
			t.Fatalf("REST stop deactivation = %v, server says %v", times.Deactivation, dea)
		}
		wantEndedBy = "controller-rest"
	case "agent-exit":
		if err := gs.AgentExit(); err != nil {
			t.Fatalf("AgentExit: %v", err)
		}
		wantEndedBy = "agent"
	}
	ev = expect(t, s, connector.EventDeactivated)
	expectClosed(t, s)
	waitDone(t, gs)
	if got := gs.EndedBy(); got != wantEndedBy {
		t.Fatalf("EndedBy = %q, want %q", got, wantEndedBy)
	}
	act, dea := gs.Times()
	if !sameMillis(ev.Times.Activation, act) || ev.Times.Deactivation.IsZero() || !sameMillis(ev.Times.Deactivation, dea) {
		t.Fatalf("deactivated times = %+v, server says %v / %v", ev.Times, act, dea)
	}
	// Stickiness, seen from the servers: every Bayeux request (handshakes, connects, the
	// websocket upgrade), direct or through the front, reached the owning node only.
	for _, n := range e.cluster.Nodes() {
		st := n.Stats()
		bayeux := st.Handshakes + st.LongPollRequests + st.WebSocketConns
		switch {
		case n == gs.Node() && st.Handshakes == 0:
			t.Fatalf("owning node %s saw no handshake", n.Name())
		case n != gs.Node() && bayeux != 0:
			t.Fatalf("node %s does not own the session but saw Bayeux traffic: %+v", n.Name(), st)
		}
	}
	// Stopping an ended session is not an error; Close is idempotent.
	if _, err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop after the end: %v", err)
	}
	closeSession(t, s)
	closeSession(t, s)
}

func TestJoinRefusedForBusyAgent(t *testing.T) {
	e := newEnv(t, true, "", nil)
	first := e.create(0)
	e.join(first, "agent-7")
	second := e.create(1)
	_, err := e.conn.Join(t.Context(), connector.Trigger{Token: second.Token(), AgentID: "agent-7"})
	if !errors.Is(err, connector.ErrRefused) {
		t.Fatalf("second join for a busy agent: %v, want ErrRefused", err)
	}
	se := serverError(t, err)
	if se.Op != opJoin || se.Node != second.Node().URL() || !strings.Contains(se.Reason, "busy") {
		t.Fatalf("ServerError = op %q node %q reason %q", se.Op, se.Node, se.Reason)
	}
	if second.State() != gcbtest.StateIdle {
		t.Fatalf("refused join changed the session: %v", second.State())
	}
	// A refusal is an answer from a healthy node: its breaker stays closed.
	if st := e.conn.Breakers().State(second.Node().URL()); st != connector.BreakerClosed {
		t.Fatalf("breaker %s after a refusal", st)
	}
}

func TestJoinUnknownToken(t *testing.T) {
	e := newEnv(t, false, "", nil)
	_, err := e.conn.Join(t.Context(), connector.Trigger{Token: "000000000"})
	if !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("unknown token: %v, want ErrNotFound", err)
	}
	if se := serverError(t, err); se.Op != opGetSession || se.Node != e.cluster.URL() {
		t.Fatalf("ServerError = %+v", se)
	}
}

// TestJoinOnDeadOrSlowNode: a node that does not answer the handshake makes Join fail with
// ErrUnavailable; a killed node takes its sessions with it (Get Session then says not found);
// a saved handle that points at a killed node gives ErrUnavailable on Rejoin.
func TestJoinOnDeadOrSlowNode(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnv(t, serverURL, "", func(c *Config) { c.JoinTimeout, c.RejoinWindow = time.Second, 500*time.Millisecond })
			slow := e.create(1)
			slow.Node().SetFault(gcbtest.Fault{Channel: "/meta/handshake", Drop: true})
			_, err := e.conn.Join(t.Context(), connector.Trigger{Token: slow.Token()})
			if !errors.Is(err, connector.ErrUnavailable) {
				t.Fatalf("join on a node that swallows handshakes: %v, want ErrUnavailable", err)
			}
			if se := serverError(t, err); se.Op != opJoin || (serverURL && se.Node != slow.Node().URL()) || (!serverURL && se.Node != e.cluster.URL()) {
				t.Fatalf("ServerError = %+v", se)
			}

			gs := e.create(2)
			saved := e.join(gs, "agent-1").Handle()
			gs.Node().Kill()
			_, err = e.conn.Join(t.Context(), connector.Trigger{Token: gs.Token()})
			if !errors.Is(err, connector.ErrNotFound) {
				t.Fatalf("join after the owning node died: %v, want ErrNotFound", err)
			}
			_, err = e.conn.Rejoin(t.Context(), saved)
			if !errors.Is(err, connector.ErrUnavailable) {
				t.Fatalf("rejoin on a killed node: %v, want ErrUnavailable", err)
			}
			if se := serverError(t, err); se.Op != opRejoin || se.Node != hd(saved).NodeURL {
				t.Fatalf("ServerError = %+v", se)
			}
		})
	}
}

func TestLiveSessionNodeKilledIsLost(t *testing.T) {
	for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, true, tr, nil)
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			gs.Node().Kill()
			ev := expect(t, s, connector.EventLost)
			if !errors.Is(ev.Err, connector.ErrLost) || !strings.Contains(ev.Err.Error(), "Bayeux connection down for more than") {
				t.Fatalf("EventLost.Err = %v, want ErrLost after LostAfter", ev.Err)
			}
			expectClosed(t, s)
		})
	}
}

// TestClientTerminatedIsLost: the Bayeux client stops for good while the session is live (not by
// Close): the session is stopped through REST and ends as lost.
func TestClientTerminatedIsLost(t *testing.T) {
	e := newEnv(t, false, "", nil)
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	_ = s.(*session).client.Close()
	ev := expect(t, s, connector.EventLost)
	if !errors.Is(ev.Err, connector.ErrLost) || !errors.Is(ev.Err, cometd.ErrClosed) {
		t.Fatalf("EventLost.Err = %v", ev.Err)
	}
	expectClosed(t, s)
	waitDone(t, gs)
	if got := gs.EndedBy(); got != "controller-rest" {
		t.Fatalf("EndedBy = %q, want controller-rest", got)
	}
}

// TestConcurrentStops: several Stops at once end the session once, none fails.
func TestConcurrentStops(t *testing.T) {
	e := newEnv(t, true, cometd.TransportLongPolling, nil)
	gs := e.create(1)
	s := e.join(gs, "")
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := s.Stop(t.Context())
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	expect(t, s, connector.EventDeactivated)
	expectClosed(t, s)
	waitDone(t, gs)
	if got := gs.EndedBy(); got != "controller" {
		t.Fatalf("EndedBy = %q", got)
	}
}

func TestRehandshakeRejoins(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
			t.Run(fmt.Sprintf("serverURL=%v/%s", serverURL, tr), func(t *testing.T) {
				e := newEnv(t, serverURL, tr, nil)
				gs := e.create(1)
				s := e.join(gs, "agent-1")
				old := s.Handle()
				gs.Node().ExpireBayeuxSessions()
				ev := expect(t, s, connector.EventRejoined)
				if hd(ev.Handle).UserToken == "" || hd(ev.Handle).UserToken == hd(old).UserToken {
					t.Fatalf("rejoined user token %q, old %q: want a new one", hd(ev.Handle).UserToken, hd(old).UserToken)
				}
				if ev.Handle.Token != old.Token || hd(ev.Handle).NodeURL != hd(old).NodeURL || hd(ev.Handle).Sticky != hd(old).Sticky || !handlesEqual(ev.Handle, s.Handle()) {
					t.Fatalf("rejoined handle %+v, old %+v, current %+v", ev.Handle, old, s.Handle())
				}
				// The session goes on over the new Bayeux session.
				activateAndStop(t, gs, s)
				expect(t, s, connector.EventDeactivated)
				expectClosed(t, s)
				waitDone(t, gs)
				if got := gs.EndedBy(); got != "controller" {
					t.Fatalf("EndedBy = %q", got)
				}
			})
		}
	}
}

// TestRehandshakeRejoinRefused: the server keeps refusing the re-join after a re-handshake; when
// the re-join window is over the session is stopped through REST with the saved user token and
// ends as lost.
func TestRehandshakeRejoinRefused(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnvOpts(t, gcbtest.Options{ServerURL: serverURL, RefuseControllerRejoin: true}, "", func(c *Config) {
				c.RejoinWindow = time.Second
			})
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatal(err)
			}
			expect(t, s, connector.EventParticipantJoined)
			expect(t, s, connector.EventActivated)
			gs.Node().ExpireBayeuxSessions()
			ev := expect(t, s, connector.EventLost)
			if !errors.Is(ev.Err, connector.ErrLost) || !errors.Is(ev.Err, connector.ErrRefused) {
				t.Fatalf("EventLost.Err = %v, want ErrLost and the refusal", ev.Err)
			}
			if !strings.Contains(ev.Err.Error(), "rejoin not allowed") {
				t.Fatalf("EventLost.Err lacks the server's words: %v", ev.Err)
			}
			expectClosed(t, s)
			waitDone(t, gs)
			if got := gs.EndedBy(); got != "controller-rest" {
				t.Fatalf("EndedBy = %q, want controller-rest (REST stop with the saved user token)", got)
			}
			// Stop after the loss: the session is gone, not an error.
			if _, err := s.Stop(t.Context()); err != nil {
				t.Fatalf("Stop after loss: %v", err)
			}
		})
	}
}

// TestRehandshakeRejoinTimesOut: no re-join gets an answer (the node swallows join replies); when
// the re-join window is over the session ends as lost after the REST stop.
func TestRehandshakeRejoinTimesOut(t *testing.T) {
	e := newEnv(t, true, "", func(c *Config) { c.JoinTimeout, c.RejoinWindow = time.Second, 1500*time.Millisecond })
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	// The node now swallows the replies to joins; no re-join's reply ever comes.
	gs.Node().SetFault(gcbtest.Fault{Channel: ChannelJoin, Drop: true})
	gs.Node().ExpireBayeuxSessions()
	ev := expect(t, s, connector.EventLost)
	if !errors.Is(ev.Err, connector.ErrLost) || !errors.Is(ev.Err, connector.ErrUnavailable) {
		t.Fatalf("EventLost.Err = %v", ev.Err)
	}
	expectClosed(t, s)
	waitDone(t, gs)
	if got := gs.EndedBy(); got != "controller-rest" {
		t.Fatalf("EndedBy = %q, want controller-rest", got)
	}
}

// TestOriginChecked: Get Session carries the configured Origin, and a cluster that does not
// allow it refuses with its own words.
func TestOriginChecked(t *testing.T) {
	e := newEnvOpts(t, gcbtest.Options{ServerURL: true, AllowedOrigins: []string{"https://agents.example"}}, "", nil)
	gs := e.create(0)
	_, err := e.conn.Join(t.Context(), connector.Trigger{Token: gs.Token()})
	if !errors.Is(err, connector.ErrRefused) {
		t.Fatalf("join with a foreign origin: %v, want ErrRefused", err)
	}
	if se := serverError(t, err); se.Op != opGetSession || !strings.Contains(se.Reason, "is not allowed") {
		t.Fatalf("ServerError = %+v", se)
	}
	cfg := e.cfg
	cfg.Origin = "https://agents.example"
	s, err := newConnector(t, cfg).Join(t.Context(), connector.Trigger{Token: gs.Token()})
	if err != nil {
		t.Fatalf("join with an allowed origin: %v", err)
	}
	closeSession(t, s)
}

func TestRejoinFromHandle(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnv(t, serverURL, "", nil)
			gs := e.create(2)
			s := e.join(gs, "agent-1")
			h := s.Handle()
			closeSession(t, s) // the daemon goes away without stopping
			if gs.State() == gcbtest.StateEnded {
				t.Fatal("Close stopped the session")
			}

			restarted := newConnector(t, e.cfg)
			s2, err := restarted.Rejoin(t.Context(), h)
			if err != nil {
				t.Fatalf("Rejoin: %v", err)
			}
			t.Cleanup(func() { closeSession(t, s2) })
			h2 := s2.Handle()
			if hd(h2).UserToken == "" || hd(h2).UserToken == hd(h).UserToken || hd(h2).NodeURL != hd(h).NodeURL || h2.SessionID != h.SessionID || h2.AgentID != h.AgentID {
				t.Fatalf("rejoined handle %+v, saved %+v", h2, h)
			}
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatalf("AgentJoin: %v", err)
			}
			expect(t, s2, connector.EventParticipantJoined)
			expect(t, s2, connector.EventActivated)
			if _, err := s2.Stop(t.Context()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			expect(t, s2, connector.EventDeactivated)
			waitDone(t, gs)
		})
	}
}

func TestRejoinEndedSession(t *testing.T) {
	e := newEnv(t, true, "", nil)
	gs := e.create(0)
	s := e.join(gs, "")
	h := s.Handle()
	closeSession(t, s)
	if err := gs.CustomerExit(); err != nil {
		t.Fatalf("CustomerExit: %v", err)
	}
	waitDone(t, gs)
	_, err := e.conn.Rejoin(t.Context(), h)
	if !errors.Is(err, connector.ErrNotLive) {
		t.Fatalf("Rejoin of an ended session: %v, want ErrNotLive", err)
	}
	// The owner then stops it through StopHandle: an ended session is not an error.
	if _, err := e.conn.StopHandle(t.Context(), h); err != nil {
		t.Fatalf("StopHandle of an ended session: %v", err)
	}
}

func TestStopHandleFromSavedHandle(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnv(t, serverURL, "", nil)
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatalf("AgentJoin: %v", err)
			}
			expect(t, s, connector.EventParticipantJoined)
			expect(t, s, connector.EventActivated)
			h := s.Handle()
			closeSession(t, s)
			expectClosed(t, s)

			times, err := e.conn.StopHandle(t.Context(), h)
			if err != nil {
				t.Fatalf("StopHandle: %v", err)
			}
			waitDone(t, gs)
			if got := gs.EndedBy(); got != "controller-rest" {
				t.Fatalf("EndedBy = %q, want controller-rest", got)
			}
			act, dea := gs.Times()
			if !sameMillis(times.Activation, act) || !sameMillis(times.Deactivation, dea) {
				t.Fatalf("REST stop times %+v, server %v / %v", times, act, dea)
			}
		})
	}
}

func TestCloseDoesNotStop(t *testing.T) {
	e := newEnv(t, false, cometd.TransportLongPolling, nil)
	gs := e.create(1)
	s := e.join(gs, "")
	closeSession(t, s)
	expectClosed(t, s)
	if st := gs.State(); st != gcbtest.StateIdle {
		t.Fatalf("state after Close = %v, want idle", st)
	}
	if _, err := e.conn.StopHandle(t.Context(), s.Handle()); err != nil {
		t.Fatalf("StopHandle: %v", err)
	}
	waitDone(t, gs)
}

// bayeuxTraffic counts the Bayeux requests a node received: long-polling requests and websocket
// connections (directly or through the front).
func bayeuxTraffic(n *gcbtest.Node) int64 {
	st := n.Stats()
	return st.LongPollRequests + st.WebSocketConns
}

// TestBreakerOpensOnDeadNode: one breaker per real node, under both stickiness routes (under cookie
// stickiness the cookie names the node, not the cluster URL): failed new joins open it and then new
// joins on that node are refused at once, while a live session's re-join and stop still go out.
func TestBreakerOpensOnDeadNode(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) { testBreakerOpensOnDeadNode(t, serverURL) })
	}
}

func testBreakerOpensOnDeadNode(t *testing.T, serverURL bool) {
	e := newEnv(t, serverURL, "", func(c *Config) {
		c.Breaker = connector.BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour}
		c.RejoinWindow = 300 * time.Millisecond
		c.JoinTimeout = time.Second
		c.SpareClients = -1 // every new join handshakes, so the dropped handshakes fail them
	})
	gs := e.create(2)
	s := e.join(gs, "")
	saved := s.Handle()
	closeSession(t, s)
	node := gs.Node().URL()
	if !serverURL {
		node = e.cluster.URL() + "#" + StickyCookie + "=" + gs.Node().Name()
	}
	// Two more sessions on the node, then the node stops answering handshakes: their new joins
	// time out and open its breaker.
	a, b := e.create(2), e.create(2)
	gs.Node().SetFault(gcbtest.Fault{Channel: "/meta/handshake", Drop: true})
	for _, x := range []*gcbtest.Session{a, b} {
		_, err := e.conn.Join(t.Context(), connector.Trigger{Token: x.Token()})
		if !errors.Is(err, connector.ErrUnavailable) {
			t.Fatalf("join on a dead node: %v", err)
		}
	}
	if st := e.conn.Breakers().State(node); st != connector.BreakerOpen {
		t.Fatalf("breaker %s after 2 failed joins", st)
	}
	if _, err := e.conn.Join(t.Context(), connector.Trigger{Token: a.Token()}); !errors.Is(err, connector.ErrBreakerOpen) {
		t.Fatalf("new join with the node's breaker open: %v, want ErrBreakerOpen", err)
	}

	// A live session's own recovery and stop are not refused by that breaker: they reach the node.
	// The re-join times out there (handshakes are dropped) within its window.
	before := bayeuxTraffic(gs.Node())
	if _, err := e.conn.Rejoin(t.Context(), saved); !errors.Is(err, connector.ErrUnavailable) || errors.Is(err, connector.ErrBreakerOpen) {
		t.Fatalf("rejoin with the node's breaker open: %v, want the node's own time-out", err)
	}
	if bayeuxTraffic(gs.Node()) == before {
		t.Fatal("rejoin sent no request to the node: refused by the breaker")
	}
	// The REST stop goes through and stops the session.
	if _, err := e.conn.StopHandle(t.Context(), saved); err != nil {
		t.Fatalf("stop handle with the node's breaker open: %v", err)
	}
	waitDone(t, gs)
	if got := gs.EndedBy(); got != gcbtest.EndedByControllerREST {
		t.Fatalf("EndedBy = %q", got)
	}
	// The cluster URL and the other nodes have their own breakers: their sessions still join.
	if st := e.conn.Breakers().State(e.cluster.URL()); st != connector.BreakerClosed {
		t.Fatalf("cluster breaker %s", st)
	}
	other := e.create(0)
	e.join(other, "")
}

// TestEndedSessionLeavesOnClose: after deactivated the Bayeux client stays connected until the
// owner closes the session, whose Close sends the /meta/disconnect (the Controller closes it once
// the session's end is recorded, after the stops other interactions owe); an owner that does not
// close it within LeaveGrace finds it gone by itself.
func TestEndedSessionLeavesOnClose(t *testing.T) {
	for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
		for _, closes := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/owner-closes=%v", tr, closes), func(t *testing.T) {
				grace := time.Hour
				if !closes {
					grace = 100 * time.Millisecond
				}
				e := newEnv(t, true, tr, func(c *Config) { c.SpareClients, c.LeaveGrace = -1, grace })
				gs := e.create(1)
				s := e.join(gs, "")
				client := s.(*session).client
				if _, err := s.Stop(t.Context()); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				expect(t, s, connector.EventDeactivated)
				expectClosed(t, s)
				waitDone(t, gs)
				if closes {
					// The callbacks run one at a time, in order: once a later one ran, whatever
					// the end itself set off on the callback goroutine is done.
					ran := make(chan struct{})
					if !client.Post(func() { close(ran) }) {
						t.Fatal("the client takes no callback after the end: it left")
					}
					select {
					case <-ran:
					case <-time.After(wait):
						t.Fatalf("a callback did not run within %s", wait)
					}
					select {
					case <-client.Done():
						t.Fatal("the client left before its owner closed the session")
					default:
					}
					if got := gs.Node().Stats().BayeuxSessions; got != 1 {
						t.Fatalf("node holds %d Bayeux sessions before Close, want the ended session's", got)
					}
					closeSession(t, s)
				} else {
					select {
					case <-client.Done():
					case <-time.After(wait):
						t.Fatalf("the client of an ended session was still there %s after its grace", wait)
					}
				}
				// Gone through its /meta/disconnect: the server's expiry (MaxInterval 3 s) is far off.
				if got := gs.Node().Stats().BayeuxSessions; got != 0 {
					t.Fatalf("node holds %d Bayeux sessions after the goodbye, want 0", got)
				}
				closeSession(t, s)
			})
		}
	}
}
