package cec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

// TestJoin: a request makes a room with both sides' connection info; the handle names it; the
// customer's start and the agent's view are what CEC handed out, and open the room.
func TestJoin(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, false)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	sess := join(t, c, connector.Trigger{InteractionID: "0007Ka5TDDHJ0077", AgentID: "agent-4711"})
	h := sess.Handle()
	if h.Vendor != connector.CEC || h.Token != "" || h.AgentID != "agent-4711" || h.InteractionID != "0007Ka5TDDHJ0077" ||
		!strings.HasPrefix(h.SessionID, "0007Ka5TDDHJ0077-") {
		t.Fatalf("handle %+v", h)
	}
	if sess.Events() != nil {
		t.Fatal("Events is not nil: a CEC session's events come as signals")
	}
	r, ok := s.Room(h.SessionID)
	if !ok {
		t.Fatalf("CEC knows no room %q", h.SessionID)
	}
	recs, reps := r.Issues(cectest.RoleRecorder), r.Issues(cectest.RoleReplayer)
	if len(recs) != 1 || len(reps) != 1 || recs[0].WorkNo != "" || reps[0].WorkNo != "agent-4711" {
		t.Fatalf("issued %+v: want one recorder without workNo, one replayer for the agent", r.Issued)
	}

	starts := sess.Handoffs(connector.HandoffStart, "")
	want := connector.Handoff{Kind: connector.HandoffStart, ToCustomer: true, RoomID: h.SessionID, WSSURL: recs[0].WSSURLOut,
		ConnectParam: recs[0].ConnectParam}
	if len(starts) != 1 || starts[0] != want {
		t.Fatalf("start %+v, want %+v", starts, want)
	}
	views := sess.Handoffs(connector.HandoffView, "agent-4711")
	want = connector.Handoff{Kind: connector.HandoffView, AgentID: "agent-4711", RoomID: h.SessionID, WSSURL: reps[0].WSSURLOut,
		ConnectParam: reps[0].ConnectParam}
	if len(views) != 1 || views[0] != want {
		t.Fatalf("view %+v, want %+v", views, want)
	}
	if err := s.Connect(cectest.RoleRecorder, starts[0].RoomID, starts[0].WSSURL, starts[0].ConnectParam); err != nil {
		t.Fatalf("the start does not open the room: %v", err)
	}
	if err := s.Connect(cectest.RoleReplayer, views[0].RoomID, views[0].WSSURL, views[0].ConnectParam); err != nil {
		t.Fatalf("the view does not open the room: %v", err)
	}
	if err := s.Connect(cectest.RoleReplayer, starts[0].RoomID, starts[0].WSSURL, starts[0].ConnectParam); !errors.Is(err, cectest.ErrBadConnectParam) {
		t.Fatalf("the customer's connectParam opens the agent's side: %v", err)
	}
	// Another agent (after a transfer) gets nothing; no agent gets nothing.
	if v := sess.Handoffs(connector.HandoffView, "agent-9"); len(v) != 0 {
		t.Fatalf("a view for another agent: %+v", v)
	}
	if v := sess.Handoffs(connector.HandoffView, ""); len(v) != 0 {
		t.Fatalf("a view for no agent: %+v", v)
	}
	// Handle data: the room and both sides, for a restart.
	var d handleData
	if err := json.Unmarshal(h.Data, &d); err != nil || d.RoomID != h.SessionID || d.Customer == nil || d.Agent == nil ||
		d.Customer.ConnectParam != recs[0].ConnectParam || d.Agent.ConnectParam != reps[0].ConnectParam || d.WorkNo != "agent-4711" {
		t.Fatalf("handle data %s: %v", h.Data, err)
	}
	// Participants: the customer; the agent once its page joined.
	if p := sess.Participants(); len(p) != 1 || p[0].Role != connector.RoleCustomer {
		t.Fatalf("participants before the agent joined: %+v", p)
	}
	sess.Signal(connector.Signal{Source: SignalSourceAgent, Type: SignalUserJoined})
	if p := sess.Participants(); len(p) != 2 || p[1] != (connector.Participant{ID: "agent-4711", Role: connector.RoleAgent, Name: "agent-4711"}) {
		t.Fatalf("participants after the agent joined: %+v", p)
	}
}

// TestJoinRefusals: a start token, a trigger without an agent or an interaction.
func TestJoinRefusals(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	c := newConnector(t, config(s, false))
	for _, tok := range []string{"", "123456789", "{start:1}", "ABC123"} {
		if got, ok := c.MatchStart(tok); ok || got != "" {
			t.Fatalf("MatchStart(%q) = %q, %v: CEC has no start token", tok, got, ok)
		}
	}
	_, err := c.Join(ctxFor(t), connector.Trigger{Token: "123456789", InteractionID: "i-1", AgentID: "a"})
	wantServerError(t, err, connector.ErrUnsupported, opJoin)
	_, err = c.Join(ctxFor(t), connector.Trigger{AgentID: "a"})
	wantServerError(t, err, connector.ErrRefused, opJoin)
	if n := s.Requests(cectest.RouteToken) + s.Requests(cectest.RouteConnectionInfo); n != 0 {
		t.Fatalf("%d calls for a join refused on its trigger", n)
	}
	_, err = c.Join(ctxFor(t), connector.Trigger{InteractionID: "i-1"})
	se := wantServerError(t, err, connector.ErrRefused, opJoin)
	if se.Reason != ReasonNoAgent {
		t.Fatalf("reason %q, want %q", se.Reason, ReasonNoAgent)
	}
	if s.Requests(cectest.RouteConnectionInfo) != 0 {
		t.Fatal("connection info was asked for a room without an agent")
	}
}

// TestSignal: what each page signal means.
func TestSignal(t *testing.T) {
	at := time.Date(2026, 3, 14, 11, 16, 0, 0, time.UTC)
	type sig = connector.Signal
	for _, tc := range []struct {
		name string
		sigs []sig
		want []connector.EventKind
	}{
		{"agent joins", []sig{{Source: "agent", Type: "user_joined", Role: connector.RoleAgent}}, []connector.EventKind{connector.EventActivated}},
		{"agent joins without a role", []sig{{Source: "agent", Type: "user_joined"}}, []connector.EventKind{connector.EventActivated}},
		{"agent joins twice", []sig{{Source: "agent", Type: "user_joined"}, {Source: "agent", Type: "user_joined"}},
			[]connector.EventKind{connector.EventActivated}},
		{"customer joins", []sig{{Source: "customer", Type: "user_joined", Role: connector.RoleCustomer}}, nil},
		{"the agent page says the customer joined", []sig{{Source: "agent", Type: "user_joined", Role: connector.RoleCustomer}}, nil},
		{"customer leaves", []sig{{Source: "customer", Type: "user_left"}}, []connector.EventKind{connector.EventDeactivated}},
		{"agent leaves", []sig{{Source: "agent", Type: "user_left", Role: connector.RoleAgent}}, []connector.EventKind{connector.EventDeactivated}},
		{"ended by the customer page", []sig{{Source: "customer", Type: "session_ended"}}, []connector.EventKind{connector.EventDeactivated}},
		{"ended by the agent page", []sig{{Source: "agent", Type: "session_ended"}}, []connector.EventKind{connector.EventDeactivated}},
		{"ended twice", []sig{{Source: "agent", Type: "session_ended"}, {Source: "customer", Type: "user_left"}},
			[]connector.EventKind{connector.EventDeactivated}},
		{"join after the end", []sig{{Source: "customer", Type: "session_ended"}, {Source: "agent", Type: "user_joined"}},
			[]connector.EventKind{connector.EventDeactivated}},
		{"life", []sig{{Source: "agent", Type: "user_joined"}, {Source: "customer", Type: "user_left"}},
			[]connector.EventKind{connector.EventActivated, connector.EventDeactivated}},
		{"session_started", []sig{{Source: "customer", Type: "session_started"}}, nil},
		{"another type", []sig{{Source: "agent", Type: "stop"}}, nil},
		{"another source", []sig{{Source: "zoom", Type: "session_ended"}, {Source: "operator", Type: "user_left"}}, nil},
		{"another room", []sig{{Source: "customer", Type: "session_ended", SessionID: "i-1-older"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCEC(t, cectest.Options{})
			c := newConnector(t, config(s, false))
			sess := join(t, c, trigger("i-1"))
			var got []connector.EventKind
			for _, g := range tc.sigs {
				if g.SessionID == "" {
					g.SessionID = sess.room
				}
				g.At = at
				for _, ev := range sess.Signal(g) {
					got = append(got, ev.Kind)
					switch ev.Kind {
					case connector.EventActivated:
						if !ev.Times.Activation.Equal(at) {
							t.Errorf("activation %v, want the signal's %v", ev.Times.Activation, at)
						}
					case connector.EventDeactivated:
						if !ev.Times.Deactivation.Equal(at) {
							t.Errorf("deactivation %v, want the signal's %v", ev.Times.Deactivation, at)
						}
					}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSignalTimes: a signal without At is timed by the clock; the deactivation carries the
// activation; nothing after Close.
func TestSignalTimes(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, false)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	sess := join(t, c, trigger("i-1"))
	act := clk.now()
	if evs := sess.Signal(connector.Signal{Source: "agent", Type: "user_joined"}); len(evs) != 1 || !evs[0].Times.Activation.Equal(act) {
		t.Fatalf("events %+v: want the activation at the clock's now", evs)
	}
	clk.add(time.Minute)
	evs := sess.Signal(connector.Signal{Source: "customer", Type: "user_left"})
	if len(evs) != 1 || !evs[0].Times.Activation.Equal(act) || !evs[0].Times.Deactivation.Equal(clk.now()) {
		t.Fatalf("events %+v: want both times", evs)
	}
	sess2 := join(t, c, trigger("i-2"))
	_ = sess2.Close(ctxFor(t))
	if evs := sess2.Signal(connector.Signal{Source: "agent", Type: "user_joined"}); len(evs) != 0 {
		t.Fatalf("events after Close: %+v", evs)
	}
}

// TestEndHandoffs: the end goes to the customer's page and the session's agent, and to the agent
// named when it is another; no credentials.
func TestEndHandoffs(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	c := newConnector(t, config(s, false))
	sess := join(t, c, trigger("i-1"))
	cust := connector.Handoff{Kind: connector.HandoffEnd, ToCustomer: true}
	end := func(a string) connector.Handoff { return connector.Handoff{Kind: connector.HandoffEnd, AgentID: a} }
	for _, tc := range []struct {
		agent string
		want  []connector.Handoff
	}{
		{"agent-i-1", []connector.Handoff{cust, end("agent-i-1")}},
		{"", []connector.Handoff{cust, end("agent-i-1")}},
		{"agent-new", []connector.Handoff{cust, end("agent-i-1"), end("agent-new")}},
	} {
		if got := sess.Handoffs(connector.HandoffEnd, tc.agent); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("ends for %q: %+v, want %+v", tc.agent, got, tc.want)
		}
		if got := c.EndHandoffs(sess.Handle(), tc.agent); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("EndHandoffs for %q: %+v, want %+v", tc.agent, got, tc.want)
		}
	}
	withRelease := newConnector(t, config(s, true))
	// With a release URL the pages are told too: nothing else tells them, and a release may fail.
	if got := withRelease.EndHandoffs(sess.Handle(), "agent-i-1"); !reflect.DeepEqual(got, []connector.Handoff{cust, end("agent-i-1")}) {
		t.Fatalf("EndHandoffs with a release URL: %+v, want the ends", got)
	}
	if got := sess.Handoffs("other", "agent-i-1"); got != nil {
		t.Fatalf("handoffs of an unknown kind: %+v", got)
	}
}

// TestStopWithoutRelease: Stop calls nothing and returns no times; no more start or view; the
// ends remain; stopping again is no error.
func TestStopWithoutRelease(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	c := newConnector(t, config(s, false))
	sess := join(t, c, trigger("i-1"))
	for range 2 {
		times, err := sess.Stop(ctxFor(t))
		if err != nil || !times.Activation.IsZero() || !times.Deactivation.IsZero() {
			t.Fatalf("Stop = %+v, %v; want no times, no error", times, err)
		}
	}
	if s.Requests(cectest.RouteRelease) != 0 {
		t.Fatal("Stop called release without a release URL")
	}
	if len(sess.Handoffs(connector.HandoffStart, "")) != 0 || len(sess.Handoffs(connector.HandoffView, "agent-i-1")) != 0 {
		t.Fatal("a start or a view after Stop")
	}
	if len(sess.Handoffs(connector.HandoffEnd, "agent-i-1")) != 2 {
		t.Fatal("no ends after Stop")
	}
	// The pages' report ends it.
	if evs := sess.Signal(connector.Signal{Source: "customer", Type: "session_ended"}); len(evs) != 1 {
		t.Fatalf("events %+v: want the deactivation", evs)
	}
	if times, err := sess.Stop(ctxFor(t)); err != nil || times.Deactivation.IsZero() {
		t.Fatalf("Stop of an ended session = %+v, %v; want its times, no error", times, err)
	}
}

// TestStopWithRelease: Stop releases the room once and returns the deactivation time; the pages'
// report still gives the deactivation event; stopping again calls nothing.
func TestStopWithRelease(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, true)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	sess := join(t, c, trigger("i-1"))
	clk.add(time.Minute)
	times, err := sess.Stop(ctxFor(t))
	if err != nil || !times.Deactivation.Equal(clk.now()) {
		t.Fatalf("Stop = %+v, %v; want the deactivation at now", times, err)
	}
	r, _ := s.Room(sess.room)
	if !r.Released || r.Releases != 1 {
		t.Fatalf("room %+v: want released once", r)
	}
	clk.add(time.Second)
	if again, err := sess.Stop(ctxFor(t)); err != nil || !again.Deactivation.Equal(times.Deactivation) {
		t.Fatalf("second Stop = %+v, %v", again, err)
	}
	if s.Requests(cectest.RouteRelease) != 1 {
		t.Fatal("a second Stop released again")
	}
	if evs := sess.Signal(connector.Signal{Source: "agent", Type: "session_ended"}); len(evs) != 1 || evs[0].Kind != connector.EventDeactivated {
		t.Fatalf("the pages' report after the release: %+v", evs)
	}
	if _, err := sess.Stop(ctxFor(t)); err != nil || s.Requests(cectest.RouteRelease) != 1 {
		t.Fatalf("Stop of an ended session: %v, %d releases", err, s.Requests(cectest.RouteRelease))
	}
	// A session that ended before any stop is not released.
	sess2 := join(t, c, trigger("i-2"))
	sess2.Signal(connector.Signal{Source: "customer", Type: "user_left"})
	if _, err := sess2.Stop(ctxFor(t)); err != nil || s.Requests(cectest.RouteRelease) != 1 {
		t.Fatalf("Stop of a session the customer left: %v, %d releases", err, s.Requests(cectest.RouteRelease))
	}
	// Close releases nothing.
	sess3 := join(t, c, trigger("i-3"))
	if err := sess3.Close(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Room(sess3.room); r.Released {
		t.Fatal("Close released the room")
	}
}

// TestRejoin: a restarted daemon's connector rebuilds the session from the saved handle without
// asking CEC, and its pages' messages are the ones handed out before.
func TestRejoin(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	sess := join(t, newConnector(t, config(s, false)), trigger("i-1"))
	saved, err := json.Marshal(sess.Handle())
	if err != nil {
		t.Fatal(err)
	}
	var h connector.Handle
	if err := json.Unmarshal(saved, &h); err != nil {
		t.Fatal(err)
	}
	calls := s.Requests(cectest.RouteToken) + s.Requests(cectest.RouteConnectionInfo)
	restarted := newConnector(t, config(s, false))
	got, err := restarted.Rejoin(ctxFor(t), h)
	if err != nil {
		t.Fatalf("Rejoin: %v", err)
	}
	if n := s.Requests(cectest.RouteToken) + s.Requests(cectest.RouteConnectionInfo); n != calls {
		t.Fatalf("Rejoin made %d calls, want none", n-calls)
	}
	if !reflect.DeepEqual(got.Handle(), sess.Handle()) {
		t.Fatalf("handle %+v, saved %+v", got.Handle(), sess.Handle())
	}
	for _, k := range []connector.HandoffKind{connector.HandoffStart, connector.HandoffView, connector.HandoffEnd} {
		if a, b := got.Handoffs(k, "agent-i-1"), sess.Handoffs(k, "agent-i-1"); !reflect.DeepEqual(a, b) || len(a) == 0 {
			t.Fatalf("%s after the re-join %+v, before %+v", k, a, b)
		}
	}
	if evs := got.Signal(connector.Signal{Source: "agent", Type: "user_joined"}); len(evs) != 1 {
		t.Fatalf("a re-joined session is not activated by its agent's join: %+v", evs)
	}

	// Refusals.
	_, err = restarted.Rejoin(ctxFor(t), connector.Handle{Vendor: connector.Zoom, SessionID: "x"})
	wantServerError(t, err, connector.ErrNotFound, opRejoin)
	_, err = restarted.Rejoin(ctxFor(t), connector.Handle{Vendor: connector.CEC})
	wantServerError(t, err, connector.ErrNotFound, opRejoin)
	// A handle without data still names the room: it can be stopped, its pages get no start or view.
	bare, err := restarted.Rejoin(ctxFor(t), connector.Handle{Vendor: connector.CEC, SessionID: sess.room, AgentID: "agent-i-1"})
	if err != nil || bare.Handle().SessionID != sess.room || len(bare.Handoffs(connector.HandoffView, "agent-i-1")) != 0 ||
		len(bare.Handoffs(connector.HandoffEnd, "agent-i-1")) != 2 {
		t.Fatalf("Rejoin of a bare handle: %v", err)
	}
	// Data that does not decode counts as none.
	junk, err := restarted.Rejoin(ctxFor(t), connector.Handle{Vendor: connector.CEC, SessionID: sess.room, Data: json.RawMessage(`[1]`)})
	if err != nil || len(junk.Handoffs(connector.HandoffStart, "")) != 0 {
		t.Fatalf("Rejoin with undecodable data: %v", err)
	}
}

// TestStopHandle: with a release URL the handle's room is released and the deactivation time
// returned; without one nothing is called.
func TestStopHandle(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, true)
	cfg.Now = clk.now
	sess := join(t, newConnector(t, cfg), trigger("i-1"))

	none := newConnector(t, config(s, false))
	if times, err := none.StopHandle(ctxFor(t), sess.Handle()); err != nil || times != (connector.Times{}) || s.Requests(cectest.RouteRelease) != 0 {
		t.Fatalf("StopHandle without a release URL = %+v, %v", times, err)
	}

	rel := newConnector(t, cfg)
	times, err := rel.StopHandle(ctxFor(t), sess.Handle())
	if err != nil || !times.Deactivation.Equal(clk.now()) {
		t.Fatalf("StopHandle = %+v, %v", times, err)
	}
	if r, _ := s.Room(sess.room); !r.Released {
		t.Fatal("the room was not released")
	}
	if _, err := rel.StopHandle(ctxFor(t), sess.Handle()); err != nil {
		t.Fatalf("StopHandle of a released room: %v", err)
	}
	_, err = rel.StopHandle(ctxFor(t), connector.Handle{Vendor: connector.CEC})
	wantServerError(t, err, connector.ErrNotFound, opStop)
	// A room CEC does not know: its refusal, with its words.
	_, err = rel.StopHandle(ctxFor(t), connector.Handle{Vendor: connector.CEC, SessionID: "no-such-room"})
	se := wantServerError(t, err, connector.ErrRefused, opStop)
	if !strings.Contains(se.Reason, "no co-browse connection for the callId") {
		t.Fatalf("reason %q", se.Reason)
	}
}

// TestNewRoomID: "<interaction>-<suffix>", unique per session, safe characters, at most 64 bytes.
func TestNewRoomID(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, false)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	seen := map[string]bool{}
	for range 1000 { // the same millisecond
		id := c.NewRoomID("0007Ka5TDDHJ0077")
		if seen[id] {
			t.Fatalf("room id %q made twice", id)
		}
		seen[id] = true
		if !strings.HasPrefix(id, "0007Ka5TDDHJ0077-") || len(id) != len("0007Ka5TDDHJ0077-")+12 || !validRoomID(id) {
			t.Fatalf("room id %q", id)
		}
	}
	for _, iid := range []string{"a b/c.d:é", strings.Repeat("x", 200), "i-1_2"} {
		id := c.NewRoomID(iid)
		if len(id) > maxRoomID || !validRoomID(id) || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			t.Fatalf("room id %q for %q", id, iid)
		}
	}
	if id := c.NewRoomID("a b/c"); !strings.HasPrefix(id, "a_b_c-") {
		t.Fatalf("room id %q: want the other characters as _", id)
	}
	// A long interaction id is cut; the room is accepted by a CEC that takes 64 bytes.
	sess := join(t, c, trigger(strings.Repeat("7", 100)))
	if len(sess.room) != maxRoomID {
		t.Fatalf("room %q: want it cut to %d bytes", sess.room, maxRoomID)
	}
}
