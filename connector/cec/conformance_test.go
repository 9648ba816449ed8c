package cec

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/connectortest"
)

// TestConformance runs the vendor-neutral conformance suite against cectest, once with a release
// URL (the daemon ends a room at the server) and once without (the pages end it).
//
// CEC's sessions are made by the daemon on request (Creates), their events come as the pages'
// signals, and their end happens at the server (the release) or in the pages, so the harness plays
// what the daemon's other parts and the pages do around the connector:
//
//   - the customer's page: after a join, it opens the room with what the start message gave it
//     (cectest.Connect as recorder); it leaves with cectest.Disconnect and reports user_left on
//     the customer's signal subject;
//   - the agent's page: it opens the room with what its view gave it (Connect as replayer, which
//     checks the connectParam was handed out for that room and role) and reports user_joined;
//   - the controller around a stop: Stop (or StopHandle), then the end messages (Handoffs(
//     HandoffEnd), EndHandoffs). The pages report session_ended when the room was released (they
//     see it close) or when they obey an end message. "Ended by the daemon" is: a page reported
//     the end that the daemon caused;
//   - the controller's state across a restart: CEC has no call that finds a room, so Rejoin cannot
//     tell an ended room from a live one; the controller knows (it applied the pages' report of
//     the end) and never re-joins such a room. The harness's Rejoin answers ErrNotLive for it, as
//     the controller's state would; a live room is re-joined by the connector alone.
//
// The pages' signals are handed to the sessions the harness's controller holds for the room, and
// their events queued per session and read through the NextEvent hook.
func TestConformance(t *testing.T) {
	for _, release := range []bool{false, true} {
		name := "PagesEnd"
		if release {
			name = "Release"
		}
		t.Run(name, func(t *testing.T) {
			e := newConformanceEnv(t, release)
			connectortest.Run(t, connectortest.Harness{
				Vendor:     connector.CEC,
				New:        func(t *testing.T) connector.Connector { return e.connector(t, config(e.s, release)) },
				NewSession: e.newCustomer,
				Creates:    true,
				NotAToken:  "123456789", // nothing is a CEC start token
				Unreachable: func(t *testing.T) connector.Connector {
					cfg := config(e.s, release)
					dead := "http://" + connectortest.ClosedAddr(t)
					cfg.Domain = dead
					if release {
						cfg.ReleaseURL = dead + cectest.PathRelease
					}
					return e.connector(t, cfg)
				},
				NextEvent: e.nextEvent,
			})
		})
	}
}

// conformanceEnv is one cectest server, the pages of its rooms, and the sessions the harness's
// controller holds.
type conformanceEnv struct {
	s       *cectest.Server
	release bool

	mu      sync.Mutex
	held    map[string][]*heldSession // by room
	rooms   map[string]string         // room by interaction
	ended   map[string]bool           // rooms whose end the pages reported: true when the daemon caused it
	changed chan struct{}             // closed and replaced when ended changes
}

func newConformanceEnv(t *testing.T, release bool) *conformanceEnv {
	return &conformanceEnv{s: newCEC(t, cectest.Options{}), release: release, held: map[string][]*heldSession{},
		rooms: map[string]string{}, ended: map[string]bool{}, changed: make(chan struct{})}
}

func (e *conformanceEnv) connector(t *testing.T, cfg Config) connector.Connector {
	return &heldConnector{Connector: newConnector(t, cfg), env: e, t: t}
}

// heldConnector is the connector as the harness's controller uses it: the sessions it joins are
// held (they receive their room's signals) and their customer's page opens the room; a stop
// through a handle is followed by the pages' end; a room whose end was applied is not re-joined.
type heldConnector struct {
	*Connector
	env *conformanceEnv
	t   *testing.T
}

func (c *heldConnector) Join(ctx context.Context, tr connector.Trigger) (connector.Session, error) {
	s, err := c.Connector.Join(ctx, tr)
	if err != nil {
		return nil, err
	}
	room := s.Handle().SessionID
	c.env.mu.Lock()
	c.env.rooms[tr.InteractionID] = room
	c.env.mu.Unlock()
	// The customer's page gets the start message and opens the room.
	starts := s.Handoffs(connector.HandoffStart, "")
	if len(starts) != 1 || !starts[0].ToCustomer || starts[0].RoomID != room {
		c.t.Fatalf("start messages %d (to the customer: %v): want one to the customer for room %q", len(starts),
			len(starts) == 1 && starts[0].ToCustomer, room)
	}
	if err := c.env.s.Connect(cectest.RoleRecorder, starts[0].RoomID, starts[0].WSSURL, starts[0].ConnectParam); err != nil {
		c.t.Fatalf("the customer's page cannot open the room with its start message: %v", err)
	}
	return c.env.hold(s), nil
}

// Rejoin: a room whose end the controller applied is not re-joined (ErrNotLive, as the
// controller's state says); any other is the connector's.
func (c *heldConnector) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	c.env.mu.Lock()
	_, ended := c.env.ended[h.SessionID]
	c.env.mu.Unlock()
	if ended {
		return nil, &connector.ServerError{Op: opRejoin, Node: c.api.node, Kind: connector.ErrNotLive,
			Reason: "the controller applied the pages' report of the room's end"}
	}
	s, err := c.Connector.Rejoin(ctx, h)
	if err != nil {
		return nil, err
	}
	return c.env.hold(s), nil
}

// StopHandle stops through the handle, then the pages end: they see the room released, or obey
// the end messages the controller sends (EndHandoffs).
func (c *heldConnector) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	times, err := c.Connector.StopHandle(ctx, h)
	if err != nil {
		return times, err
	}
	if c.env.release && times.Deactivation.IsZero() {
		c.t.Error("StopHandle released the room without a deactivation time")
	}
	c.env.pagesEnd(h.SessionID, c.Connector.EndHandoffs(h, h.AgentID))
	return times, nil
}

// heldSession is a session the harness's controller holds, with its queue of events.
type heldSession struct {
	connector.Session
	env    *conformanceEnv
	events chan connector.Event
}

func (e *conformanceEnv) hold(s connector.Session) *heldSession {
	h := &heldSession{Session: s, env: e, events: make(chan connector.Event, 64)}
	room := s.Handle().SessionID
	e.mu.Lock()
	e.held[room] = append(e.held[room], h)
	e.mu.Unlock()
	return h
}

// Stop is the controller's stop: the vendor's Stop, then the end messages, which the pages obey.
func (h *heldSession) Stop(ctx context.Context) (connector.Times, error) {
	times, err := h.Session.Stop(ctx)
	if err != nil {
		return times, err
	}
	h.env.pagesEnd(h.Handle().SessionID, h.Session.Handoffs(connector.HandoffEnd, h.Handle().AgentID))
	return times, nil
}

// Close releases the session and stops handing it signals.
func (h *heldSession) Close(ctx context.Context) error {
	room := h.Handle().SessionID
	h.env.mu.Lock()
	list := h.env.held[room]
	for i, x := range list {
		if x == h {
			h.env.held[room] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	h.env.mu.Unlock()
	return h.Session.Close(ctx)
}

// pagesEnd plays the pages after the daemon stopped a room: if CEC released it they see it close,
// else they obey the end messages (when there are any for the customer); either way they close
// their side and report session_ended. A room already ended is left alone.
func (e *conformanceEnv) pagesEnd(room string, ends []connector.Handoff) {
	r, _ := e.s.Room(room)
	toCustomer := false
	for _, h := range ends {
		toCustomer = toCustomer || (h.ToCustomer && h.Kind == connector.HandoffEnd)
	}
	if !r.Released && !toCustomer {
		return
	}
	e.mu.Lock()
	_, already := e.ended[room]
	e.mu.Unlock()
	if already {
		return
	}
	_ = e.s.Disconnect(cectest.RoleRecorder, room)
	_ = e.s.Disconnect(cectest.RoleReplayer, room)
	e.report(room, SignalSourceCustomer, SignalSessionEnded, connector.RoleCustomer, true)
}

// report plays a page's signal about room: handed to every session held for the room. An end is
// recorded as the controller's state would record it.
func (e *conformanceEnv) report(room, source, typ string, role connector.Role, byDaemon bool) {
	sig := connector.Signal{Source: source, Type: typ, Role: role, SessionID: room, At: time.Now()}
	e.mu.Lock()
	held := append([]*heldSession(nil), e.held[room]...)
	if typ == SignalSessionEnded || typ == SignalUserLeft {
		if _, ok := e.ended[room]; !ok {
			e.ended[room] = byDaemon
			close(e.changed)
			e.changed = make(chan struct{})
		}
	}
	e.mu.Unlock()
	for _, h := range held {
		for _, ev := range h.Session.Signal(sig) {
			h.events <- ev // 64 deep: a session gives at most two events
		}
	}
}

func (e *conformanceEnv) nextEvent(t *testing.T, s connector.Session) (connector.Event, bool) {
	t.Helper()
	h, ok := s.(*heldSession)
	if !ok {
		t.Fatalf("session %T is not one the harness holds", s)
	}
	timer := time.NewTimer(connectortest.Wait)
	defer timer.Stop()
	select {
	case ev := <-h.events:
		return ev, true
	case <-timer.C:
		t.Fatalf("no session event within %s", connectortest.Wait)
		return connector.Event{}, false
	}
}

// newCustomer prepares interaction iid for a request: nothing is needed before the join, which
// makes the room; the customer's page opens it then (heldConnector.Join).
func (e *conformanceEnv) newCustomer(t *testing.T, iid string) connectortest.Customer {
	return &cecCustomer{env: e, iid: iid}
}

// cecCustomer plays the pages of the room made for one interaction.
type cecCustomer struct {
	env *conformanceEnv
	iid string
}

func (c *cecCustomer) Token() string { return "" }

func (c *cecCustomer) room(t *testing.T) string {
	t.Helper()
	c.env.mu.Lock()
	defer c.env.mu.Unlock()
	room, ok := c.env.rooms[c.iid]
	if !ok {
		t.Fatalf("no room was made for %s", c.iid)
	}
	return room
}

// AgentJoins plays the agent's page opening the view the session gives the interaction's agent
// (the replayer's connection info, which CEC checks), then reporting user_joined.
func (c *cecCustomer) AgentJoins(t *testing.T, s connector.Session) {
	t.Helper()
	h := s.Handle()
	views := s.Handoffs(connector.HandoffView, h.AgentID)
	if len(views) != 1 || views[0].AgentID != h.AgentID || views[0].RoomID != h.SessionID {
		t.Fatalf("views %d for %q: want one for the room %q", len(views), h.AgentID, h.SessionID)
	}
	v := views[0]
	if err := c.env.s.Connect(cectest.RoleReplayer, v.RoomID, v.WSSURL, v.ConnectParam); err != nil {
		t.Fatalf("the agent's view cannot open the room: %v", err)
	}
	r, _ := c.env.s.Room(v.RoomID)
	if reps := r.Issues(cectest.RoleReplayer); len(reps) == 0 || reps[len(reps)-1].WorkNo != h.AgentID {
		t.Fatalf("the replayer's connection info was not asked for the agent %q (workNo)", h.AgentID)
	}
	c.env.report(v.RoomID, SignalSourceAgent, SignalUserJoined, connector.RoleAgent, false)
}

// Leaves plays the customer's page leaving: it closes its side and reports user_left.
func (c *cecCustomer) Leaves(t *testing.T) {
	t.Helper()
	room := c.room(t)
	if err := c.env.s.Disconnect(cectest.RoleRecorder, room); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	c.env.report(room, SignalSourceCustomer, SignalUserLeft, connector.RoleCustomer, false)
}

// Ended waits until the pages reported the room's end, and says whether the daemon caused it;
// with a release URL, the daemon's end must have released the room at CEC.
func (c *cecCustomer) Ended(t *testing.T) bool {
	t.Helper()
	room := c.room(t)
	timer := time.NewTimer(connectortest.Wait)
	defer timer.Stop()
	for {
		c.env.mu.Lock()
		byDaemon, ok := c.env.ended[room]
		ch := c.env.changed
		c.env.mu.Unlock()
		if ok {
			if r, _ := c.env.s.Room(room); byDaemon && c.env.release && !r.Released {
				t.Error("the daemon ended the room without releasing it, though a release URL is configured")
			}
			return byDaemon
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("room %s not ended within %s", room, connectortest.Wait)
		}
	}
}

// Live: CEC holds the room (connection info issued, not released) and no page reported its end.
func (c *cecCustomer) Live() bool {
	c.env.mu.Lock()
	room, ok := c.env.rooms[c.iid]
	_, ended := c.env.ended[room]
	c.env.mu.Unlock()
	if !ok || ended {
		return false
	}
	r, known := c.env.s.Room(room)
	return known && !r.Released
}
