// Package connectortest is the conformance suite every vendor's connector passes against its own
// test server (gcbtest for Genesys, and the other vendors' stand-ins), as watermill has one suite
// for every pub/sub. It checks the contract of package connector as the controller relies on it:
// the vendor's start syntax, joining or creating a session, its events, stopping it, finding it
// again after a restart, and the sentinel errors that drive the controller's decisions.
//
// A vendor's test calls Run with a Harness that plays the vendor's customer and agent on its test
// server. Nothing here knows a vendor.
package connectortest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Wait bounds every wait of the suite; a step that needs it fails, it never sleeps.
const Wait = 20 * time.Second

// Customer is one co-browse session as the vendor's test server sees it, played by the harness.
type Customer interface {
	// Token is what the customer types in chat: the X of {start:X}. Empty for a vendor whose
	// sessions the daemon creates (the suite then starts with a request).
	Token() string
	// AgentJoins plays the agent opening what the connector gave it.
	AgentJoins(t *testing.T, s connector.Session)
	// Leaves plays the customer leaving: the session ends without the daemon.
	Leaves(t *testing.T)
	// Ended waits until the server says the session ended, and reports whether the daemon (the
	// Controller, the connector) ended it.
	Ended(t *testing.T) (byDaemon bool)
	// Live reports whether the server still holds the session.
	Live() bool
}

// Harness is what a vendor gives the suite.
type Harness struct {
	// Vendor is the connector's vendor.
	Vendor connector.Vendor
	// New returns a connector on the vendor's test server. The suite calls it again to play a
	// daemon restart (a new connector, same server).
	New func(t *testing.T) connector.Connector
	// NewSession makes the customer of interactionID start a session on the server (a vendor
	// may bind a session to its interaction: Zoom's customer token is minted for it), or, for a
	// vendor that creates sessions, prepares the interaction so that a request can.
	NewSession func(t *testing.T, interactionID string) Customer
	// Creates is true for a vendor whose sessions the daemon creates on request (the trigger
	// without a token); false for one whose customer starts them (Genesys).
	Creates bool
	// PageStarts, set for a vendor whose customer starts sessions (Creates false) but which also
	// creates one on request (Zoom's Bring Your Own PIN), plays the customer's page starting a
	// created, pending session (connector.Pending) with what the start page messages gave it
	// (Handoffs(HandoffStart)), and returns that customer. Nil: a request is ErrUnsupported.
	PageStarts func(t *testing.T, interactionID string, start []connector.Handoff) Customer
	// NotAToken is a start token the vendor refuses (wrong syntax).
	NotAToken string
	// UnknownToken is a token of the vendor's syntax that names no session.
	UnknownToken string
	// Unreachable returns a connector whose server cannot be reached (nothing listens there).
	Unreachable func(t *testing.T) connector.Connector
	// NextEvent returns the session's next event, or ok=false when its stream closed. Nil: read
	// the session's Events channel (a vendor whose events come as signals supplies its own).
	NextEvent func(t *testing.T, s connector.Session) (connector.Event, bool)
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	if h.NextEvent == nil {
		h.NextEvent = readEvents
	}
	t.Run("StartSyntax", func(t *testing.T) { testStartSyntax(t, h) })
	t.Run("LifeAndStop", func(t *testing.T) { testLifeAndStop(t, h) })
	t.Run("CustomerLeaves", func(t *testing.T) { testCustomerLeaves(t, h) })
	t.Run("Restart", func(t *testing.T) { testRestart(t, h) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, h) })
	if h.PageStarts != nil {
		t.Run("Request", func(t *testing.T) { testRequest(t, h) })
	}
}

// testRequest: a request creates a pending session whose start page message the customer's page
// starts it with; the session then gives EventStarted with its id, goes on as any other (the
// agent joins, the daemon stops it), and a pending session found again after a restart is still
// pending.
func testRequest(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c := h.New(t)
	const iid = "i-request"
	s, err := c.Join(ctx, connector.Trigger{InteractionID: iid, AgentID: "agent-" + iid})
	if err != nil {
		t.Fatalf("Join of a request: %v", err)
	}
	t.Cleanup(func() { closeSession(t, s) })
	if !connector.IsPending(s) {
		t.Fatal("a created session is live before the customer's page started it")
	}
	if hd := s.Handle(); hd.Vendor != h.Vendor || hd.SessionID != "" || hd.Token == "" {
		t.Fatalf("pending handle %+v: want the vendor, its token and no session id", hd)
	}
	start := s.Handoffs(connector.HandoffStart, "")
	if len(start) != 1 || !start[0].ToCustomer || start[0].Kind != connector.HandoffStart {
		t.Fatalf("start page messages %+v: want one to the customer", start)
	}
	if v := s.Handoffs(connector.HandoffView, "agent-"+iid); len(v) != 0 {
		t.Fatalf("a pending session gives the agent a view: %+v", v)
	}
	// A restart while pending: the handle gives a pending session again.
	again, err := h.New(t).Rejoin(ctx, s.Handle())
	if err != nil || !connector.IsPending(again) {
		t.Fatalf("Rejoin of a pending handle: %v, pending %v", err, err == nil && connector.IsPending(again))
	}
	closeSession(t, again)

	cu := h.PageStarts(t, iid, start)
	var ev connector.Event
	select {
	case ev = <-s.Events():
	case <-time.After(Wait):
		t.Fatalf("no EventStarted within %s of the page's start", Wait)
	}
	if ev.Kind != connector.EventStarted || ev.Handle.SessionID == "" {
		t.Fatalf("event %s (%v), handle %+v: want started with the session id", ev.Kind, ev.Err, ev.Handle)
	}
	if connector.IsPending(s) || s.Handle().SessionID != ev.Handle.SessionID {
		t.Fatalf("after EventStarted: pending %v, handle %+v", connector.IsPending(s), s.Handle())
	}
	cu.AgentJoins(t, s)
	expect(t, h, s, connector.EventActivated)
	if _, err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	expect(t, h, s, connector.EventDeactivated)
	if !cu.Ended(t) {
		t.Error("the server says someone else ended the session")
	}
}

func readEvents(t *testing.T, s connector.Session) (connector.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		return ev, ok
	case <-time.After(Wait):
		t.Fatalf("no session event within %s", Wait)
		return connector.Event{}, false
	}
}

// expect skips participant-joined events (informative) and returns the next event of kind.
func expect(t *testing.T, h Harness, s connector.Session, kind connector.EventKind) connector.Event {
	t.Helper()
	for {
		ev, ok := h.NextEvent(t, s)
		if !ok {
			t.Fatalf("event stream closed, want %s", kind)
		}
		if ev.Kind == connector.EventParticipantJoined && kind != connector.EventParticipantJoined {
			continue
		}
		if ev.Kind != kind {
			t.Fatalf("event %s (%v), want %s", ev.Kind, ev.Err, kind)
		}
		return ev
	}
}

// start joins (or asks the vendor to create) the customer's session for interaction iid.
func start(t *testing.T, h Harness, c connector.Connector, cu Customer, iid string) connector.Session {
	t.Helper()
	tok := cu.Token()
	if tok != "" {
		var ok bool
		if tok, ok = c.MatchStart(tok); !ok {
			t.Fatalf("MatchStart refuses the server's own token %q", cu.Token())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	s, err := c.Join(ctx, connector.Trigger{Token: tok, InteractionID: iid, AgentID: "agent-" + iid})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	t.Cleanup(func() { closeSession(t, s) })
	hd := s.Handle()
	if hd.Vendor != h.Vendor || hd.SessionID == "" || (tok != "" && hd.Token != tok) {
		t.Fatalf("handle %+v: want vendor %s, a session id and the token", hd, h.Vendor)
	}
	return s
}

func closeSession(t *testing.T, s connector.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testStartSyntax(t *testing.T, h Harness) {
	c := h.New(t)
	if _, ok := c.MatchStart(h.NotAToken); ok {
		t.Errorf("MatchStart(%q) accepted a token not of the vendor's syntax", h.NotAToken)
	}
	if _, ok := c.MatchStart(""); ok {
		t.Error("MatchStart accepted an empty token")
	}
	if h.UnknownToken != "" {
		if _, ok := c.MatchStart(h.UnknownToken); !ok {
			t.Errorf("MatchStart(%q) refused a token of the vendor's syntax", h.UnknownToken)
		}
	}
	if !h.Creates && h.PageStarts == nil {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if _, err := c.Join(ctx, connector.Trigger{InteractionID: "i-request"}); !errors.Is(err, connector.ErrUnsupported) {
			t.Errorf("a request on a vendor that cannot create sessions: %v, want ErrUnsupported", err)
		}
	}
}

// testLifeAndStop: join, the agent joins (activated), the daemon stops the session
// (deactivated), and the server says the daemon ended it. Stopping again is not an error.
func testLifeAndStop(t *testing.T, h Harness) {
	c := h.New(t)
	cu := h.NewSession(t, "i-life")
	s := start(t, h, c, cu, "i-life")
	cu.AgentJoins(t, s)
	act := expect(t, h, s, connector.EventActivated)
	if act.Times.Activation.IsZero() {
		t.Error("activated without an activation time")
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if _, err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	expect(t, h, s, connector.EventDeactivated)
	if !cu.Ended(t) {
		t.Error("the server says someone else ended the session")
	}
	if _, err := s.Stop(ctx); err != nil {
		t.Errorf("Stop of an ended session: %v, want no error", err)
	}
}

// testCustomerLeaves: the session ends without the daemon: deactivated, then the stream closes.
func testCustomerLeaves(t *testing.T, h Harness) {
	c := h.New(t)
	cu := h.NewSession(t, "i-leaves")
	s := start(t, h, c, cu, "i-leaves")
	cu.Leaves(t)
	expect(t, h, s, connector.EventDeactivated)
	if cu.Ended(t) {
		t.Error("the server says the daemon ended a session the customer left")
	}
}

// testRestart: the daemon goes away without stopping (Close), a new connector finds the session
// again from its handle and goes on with it; a saved handle also stops a session without a live
// connection; a handle of a session that ended meanwhile gives ErrNotLive (or ErrNotFound).
func testRestart(t *testing.T, h Harness) {
	cu := h.NewSession(t, "i-restart")
	s := start(t, h, h.New(t), cu, "i-restart")
	saved := s.Handle()
	closeSession(t, s)
	if !cu.Live() {
		t.Fatal("Close stopped the session")
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	restarted := h.New(t)
	s2, err := restarted.Rejoin(ctx, saved)
	if err != nil {
		t.Fatalf("Rejoin: %v", err)
	}
	t.Cleanup(func() { closeSession(t, s2) })
	if s2.Handle().SessionID != saved.SessionID {
		t.Fatalf("re-joined session id %q, saved %q", s2.Handle().SessionID, saved.SessionID)
	}
	cu.AgentJoins(t, s2)
	expect(t, h, s2, connector.EventActivated)
	closeSession(t, s2)

	// Stop through the saved handle, as the controller does when no connection is left.
	if _, err := h.New(t).StopHandle(ctx, s2.Handle()); err != nil {
		t.Fatalf("StopHandle: %v", err)
	}
	if !cu.Ended(t) {
		t.Error("the server says someone else ended the session stopped through its handle")
	}
	if _, err := h.New(t).StopHandle(ctx, s2.Handle()); err != nil {
		t.Errorf("StopHandle of an ended session: %v, want no error", err)
	}
	if _, err := h.New(t).Rejoin(ctx, s2.Handle()); !errors.Is(err, connector.ErrNotFound) {
		t.Errorf("Rejoin of an ended session: %v, want ErrNotLive or ErrNotFound", err)
	}
}

// testErrors: the sentinel errors the controller's decisions rest on.
func testErrors(t *testing.T, h Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if h.UnknownToken != "" {
		_, err := h.New(t).Join(ctx, connector.Trigger{Token: h.UnknownToken, InteractionID: "i-unknown"})
		if !errors.Is(err, connector.ErrNotFound) {
			t.Errorf("Join of an unknown token: %v, want ErrNotFound", err)
		}
		var se *connector.ServerError
		if !errors.As(err, &se) || se.Op == "" {
			t.Errorf("Join of an unknown token: %v, want a *connector.ServerError with its operation", err)
		}
	}
	cu := h.NewSession(t, "i-unreachable")
	tok := cu.Token()
	if tok != "" {
		tok, _ = h.New(t).MatchStart(tok)
	}
	_, err := h.Unreachable(t).Join(ctx, connector.Trigger{Token: tok, InteractionID: "i-unreachable"})
	if !errors.Is(err, connector.ErrUnavailable) {
		t.Errorf("Join on an unreachable server: %v, want ErrUnavailable", err)
	}
	if errors.Is(err, connector.ErrNotFound) || errors.Is(err, connector.ErrRefused) {
		t.Errorf("Join on an unreachable server: %v, wraps a final sentinel too", err)
	}
}

// ClosedAddr is a loopback address where nothing listens, for a Harness's Unreachable connector.
func ClosedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
