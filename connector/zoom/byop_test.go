package zoom

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// create asks the connector to create a session for a request on iid.
func (f *connFixture) create(t *testing.T, iid, agent string) *pending {
	t.Helper()
	s, err := f.c.Join(ctxFor(t), connector.Trigger{InteractionID: iid, AgentID: agent})
	if err != nil {
		t.Fatalf("Join of a request: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	p, ok := s.(*pending)
	if !ok || !connector.IsPending(s) {
		t.Fatalf("Join of a request gave %T, want a pending session", s)
	}
	return p
}

func nextEvent(t *testing.T, s connector.Session) (connector.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return connector.Event{}, false
	}
}

// TestCreateBYOP: a request makes a pending session whose start page message carries a customer
// token with enable_byop 1, minted for the interaction, and a fresh 10-character PIN; the page's
// start with them is seen (EventStarted with Zoom's session id), and the session then goes on as
// a joined one: the agent's view, the agent's join as activation.
func TestCreateBYOP(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.BYOPPollInterval = 10 * time.Millisecond })
	p := f.create(t, "I1", "a1")
	if h := p.Handle(); h.SessionID != "" || len(h.Token) != BYOPPINLength || h.Vendor != connector.Zoom {
		t.Fatalf("pending handle %+v", h)
	}
	start := p.Handoffs(connector.HandoffStart, "")
	if len(start) != 1 || !start[0].ToCustomer || start[0].PIN != p.Handle().Token || start[0].URL != "" {
		t.Fatalf("start %+v", start)
	}
	o := f.z.Options()
	claims := checkJWT(t, start[0].Token, o.SDKKey, o.SDKSecret)
	if string(claims["enable_byop"]) != "1" || string(claims["role_type"]) != "1" ||
		string(claims["user_id"]) != `"`+DeriveUserID("I1", RoleCustomer, "")+`"` ||
		string(claims["user_name"]) != `"`+CustomerUserName("I1")+`"` {
		t.Fatalf("customer token claims %s", claims)
	}
	if v := p.Handoffs(connector.HandoffView, "a1"); v != nil {
		t.Fatalf("a pending session gave a view: %+v", v)
	}
	zs, err := f.z.CustomerStart(start[0].Token, strings.ToLower(start[0].PIN)) // any case
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := nextEvent(t, p)
	if !ok || ev.Kind != connector.EventStarted || ev.Handle.SessionID != zs.ID || ev.Handle.Token != zs.PIN {
		t.Fatalf("event %v %+v, want started with %s", ev.Kind, ev.Handle, zs.ID)
	}
	if _, ok := <-p.events; ok {
		t.Fatal("the pending stream did not close after EventStarted")
	}
	if connector.IsPending(p) || p.Events() != nil || p.Handle().SessionID != zs.ID {
		t.Fatalf("after the start: pending %v, handle %+v", connector.IsPending(p), p.Handle())
	}
	if s := p.Handoffs(connector.HandoffStart, ""); s != nil {
		t.Fatalf("a started session still gives the start: %+v", s)
	}
	views := p.Handoffs(connector.HandoffView, "a1")
	if len(views) != 1 || views[0].PIN != zs.PIN || views[0].URL == "" {
		t.Fatalf("views %+v", views)
	}
}

// TestCreateStartWaitOver: a page that never starts the session: EventLost (not found) once the
// start wait is over, then the stream closes.
func TestCreateStartWaitOver(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) {
		c.BYOPPollInterval = 10 * time.Millisecond
		c.BYOPStartWait = 100 * time.Millisecond
	})
	p := f.create(t, "I1", "a1")
	ev, ok := nextEvent(t, p)
	if !ok || ev.Kind != connector.EventLost || !errors.Is(ev.Err, connector.ErrNotFound) {
		t.Fatalf("event %v (%v), want lost: not found", ev.Kind, ev.Err)
	}
	if _, ok := nextEvent(t, p); ok {
		t.Fatal("the stream did not close after EventLost")
	}
}

// TestCreateStoppedWhilePending: Stop ends the wait (the stream closes with no event) and no
// start is given any more.
func TestCreateStoppedWhilePending(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	p := f.create(t, "I1", "a1")
	if _, err := p.Stop(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if ev, ok := nextEvent(t, p); ok {
		t.Fatalf("event %v after Stop, want the stream closed", ev.Kind)
	}
	if s := p.Handoffs(connector.HandoffStart, ""); s != nil {
		t.Fatalf("start after Stop: %+v", s)
	}
	if e := p.Handoffs(connector.HandoffEnd, "a1"); len(e) != 2 {
		t.Fatalf("end page messages %+v, want the customer's and the agent's", e)
	}
}

// TestCreateUnavailable: a Zoom whose REST API fails cannot be asked whether the PIN is free:
// the request is retried later (ErrUnavailable), and nothing is handed out.
func TestCreateUnavailable(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	f.z.SetFault(zoomtest.RouteLiveSessions, zoomtest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	_, err := f.c.Join(ctxFor(t), connector.Trigger{InteractionID: "I1", AgentID: "a1"})
	wantJoinError(t, err, connector.ErrUnavailable)
}

// createdBeforeRestart creates a session for a request on I1 and closes it, as a daemon that
// stops does: it returns the fixture, the session's start page message and its saved handle.
func createdBeforeRestart(t *testing.T) (*connFixture, []connector.Handoff, connector.Handle) {
	t.Helper()
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.BYOPPollInterval = 10 * time.Millisecond })
	p := f.create(t, "I1", "a1")
	start := p.Handoffs(connector.HandoffStart, "")
	saved := p.Handle()
	saved.InteractionID = "I1"
	_ = p.Close(ctxFor(t))
	return f, start, saved
}

// TestCreateRejoinStartedMeanwhile: a pending handle whose session the page started while the
// daemon was down: the rejoined session finds it started at its first look, and its events still
// give EventStarted to a caller who asks for them after that.
func TestCreateRejoinStartedMeanwhile(t *testing.T) {
	f, start, saved := createdBeforeRestart(t)
	zs, err := f.z.CustomerStart(start[0].Token, start[0].PIN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.c.Rejoin(ctxFor(t), saved)
	if err != nil {
		t.Fatalf("Rejoin: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	rp, ok := s.(*pending)
	if !ok {
		t.Fatalf("Rejoin gave %T, want the pending session", s)
	}
	select {
	case <-rp.done: // its first look found the session started: the poll is over
	case <-time.After(10 * time.Second):
		t.Fatal("the rejoined session did not see the start within 10s")
	}
	ev, ok := nextEvent(t, s)
	if !ok || ev.Kind != connector.EventStarted || ev.Handle.SessionID != zs.ID {
		t.Fatalf("event %v %+v, want started with %s", ev.Kind, ev.Handle, zs.ID)
	}
	if s.Events() != nil {
		t.Fatal("the events of a started session whose start was taken are not nil")
	}
}

// TestCreateRejoinPending: a pending handle (after a restart) gives a pending session that still
// sees the page's start, without a start page message (the page has its token).
func TestCreateRejoinPending(t *testing.T) {
	f, start, saved := createdBeforeRestart(t)
	s, err := f.c.Rejoin(ctxFor(t), saved)
	if err != nil || !connector.IsPending(s) {
		t.Fatalf("Rejoin: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	if st := s.Handoffs(connector.HandoffStart, ""); st != nil {
		t.Fatalf("start again after a restart: %+v", st)
	}
	zs, err := f.z.CustomerStart(start[0].Token, start[0].PIN)
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok := nextEvent(t, s); !ok || ev.Kind != connector.EventStarted || ev.Handle.SessionID != zs.ID {
		t.Fatalf("event %v %+v", ev.Kind, ev.Handle)
	}
}

// TestAgentSDKView: with AgentSDK the agent's view is the agent JWT and the PIN, no desk URL.
func TestAgentSDKView(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.AgentSDK = true })
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	s := f.join(t, zs.PIN, "I1", "a1")
	v := s.Handoffs(connector.HandoffView, "a1")
	if len(v) != 1 || v[0].URL != "" || v[0].Token == "" || v[0].PIN != zs.PIN {
		t.Fatalf("views %+v", v)
	}
	o := f.z.Options()
	if c := checkJWT(t, v[0].Token, o.SDKKey, o.SDKSecret); string(c["role_type"]) != "2" {
		t.Fatalf("agent token claims %s", c)
	}
	if _, err := f.z.AgentJoin(v[0].Token, v[0].PIN); err != nil {
		t.Fatalf("the agent SDK's join with the view: %v", err)
	}
}
