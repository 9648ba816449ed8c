package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The fakes below are tiny and in memory, so that the actor's timers run under testing/synctest.
// The real peers (NATS, gcbtest) are exercised by the end-to-end tests in test/e2e.

// fakeConn is a co-browse server that knows a set of tokens.
type fakeConn struct {
	mu        sync.Mutex
	joinErr   map[string]error // token -> error to return from Join
	rejoinErr error
	// rejoinGate, when set, holds every Rejoin until it is closed or the caller gives up, as a
	// server that still holds the old Controller would.
	rejoinGate chan struct{}
	// rejoinUsers are the participants a re-join reply lists; joinUsers a join reply.
	rejoinUsers []connector.Participant
	joinUsers   []connector.Participant
	stopHandle  []connector.Handle
	sessions    []*fakeSession
	next        int
	// silentStop: Stop does not produce a deactivated notification.
	silentStop bool
	// stopHold: the Stop of the session with that token waits until its channel is closed (or
	// the caller gives up), as a server slow to answer would.
	stopHold map[string]chan struct{}
	// stopErr: Stop and StopHandle fail with it (every route failed).
	stopErr error
	// activateOnStop: the agent's activation arrives just before the deactivation.
	activateOnStop bool
	// signalsOnly: the sessions have no event stream (their events come as signals) and end in
	// the pages: Stop sends nothing back, Handoffs(end) asks both pages.
	signalsOnly bool
	// channelEvents: the sessions give their events on their Events channel only (no Feed).
	channelEvents bool
	// ignoreReady: Join joins without calling Trigger.Ready (a broken connector).
	ignoreReady bool
	prefetched  []string // the tokens Prefetch was given
	// creates: a request (a join without a token) creates a pending session (connector.Pending)
	// that the test starts with fakeSession.start; a re-join of a handle without a session id
	// gives a pending session again.
	creates bool
}

func newFakeConn() *fakeConn { return &fakeConn{joinErr: map[string]error{}} }

func (f *fakeConn) Vendor() connector.Vendor { return connector.Genesys }

func (f *fakeConn) newSession(token string) *fakeSession {
	f.next++
	s := &fakeSession{
		conn:   f,
		handle: connector.Handle{Vendor: connector.Genesys, Token: token, SessionID: "hist-" + strconv.Itoa(f.next), Data: json.RawMessage(`{"userToken":"user-` + strconv.Itoa(f.next) + `"}`)},
		events: make(chan connector.Event, 8),
	}
	f.sessions = append(f.sessions, s)
	return s
}

// CallsReady: Join waits for Trigger.Ready before it joins, as the Genesys connector does.
func (f *fakeConn) CallsReady() {}

// Prefetch records the token (connector.Prefetcher).
func (f *fakeConn) Prefetch(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prefetched = append(f.prefetched, token)
}

// IndexesSessions: the fake's sessions are indexed, as a webhook vendor's are, so that the tests
// of the session index run on it.
func (f *fakeConn) IndexesSessions() {}

func (f *fakeConn) Join(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	f.mu.Lock()
	err := f.joinErr[t.Token]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if t.Ready != nil && !f.ignoreReady {
		if err := t.Ready(ctx); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.newSession(t.Token)
	s.users = f.joinUsers
	if t.Token == "" && f.creates {
		s.pending = true
		s.handle.Token, s.handle.SessionID = "BYOPPIN"+strconv.Itoa(f.next), ""
	}
	return f.wrap(s), nil
}

// wrap hides Feed from a session whose events come on its channel or as signals.
func (f *fakeConn) wrap(s *fakeSession) connector.Session {
	if f.signalsOnly || f.channelEvents {
		return chanSession{Session: s, s: s}
	}
	return s
}

func (f *fakeConn) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	f.mu.Lock()
	gate := f.rejoinGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, &connector.ServerError{Op: "rejoin", Kind: connector.ErrUnavailable, Err: ctx.Err()}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rejoinErr != nil {
		return nil, f.rejoinErr
	}
	s := f.newSession(h.Token)
	s.handle.SessionID = h.SessionID
	s.users = f.rejoinUsers
	s.pending = f.creates && h.SessionID == ""
	return f.wrap(s), nil
}

// EndHandoffs asks both pages to end a signals-only session stopped through its handle.
func (f *fakeConn) EndHandoffs(_ connector.Handle, agentID string) []connector.Handoff {
	if !f.signalsOnly {
		return nil
	}
	return []connector.Handoff{{Kind: connector.HandoffEnd, ToCustomer: true}, {Kind: connector.HandoffEnd, AgentID: agentID}}
}

func (f *fakeConn) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopErr != nil {
		return connector.Times{}, f.stopErr
	}
	f.stopHandle = append(f.stopHandle, h)
	return connector.Times{}, nil
}

func (f *fakeConn) session(i int) *fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[i]
}

// fakeSession is a joined session; the test plays the server through emit.
type fakeSession struct {
	conn    *fakeConn
	handle  connector.Handle
	events  chan connector.Event
	mu      sync.Mutex
	stopped int
	closed  bool
	users   []connector.Participant
	pending bool // created for a request, not started yet
	fed     func(connector.Event, bool)
}

// Feed hands the events to f from now on (connector.Feeder), unless the connector plays a vendor
// whose sessions only have an Events channel (fakeConn.channelEvents).
func (s *fakeSession) Feed(f func(connector.Event, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fed = f
}

// chanSession is a fake session without Feed: its events come on its Events channel.
type chanSession struct {
	connector.Session
	s *fakeSession
}

func (c chanSession) Pending() bool { return c.s.Pending() }

// Pending reports whether the created session has not started yet.
func (s *fakeSession) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// start plays the customer's page starting a created session: EventStarted with its id.
func (s *fakeSession) start(id string) {
	s.mu.Lock()
	s.pending = false
	s.handle.SessionID = id
	h := s.handle
	s.mu.Unlock()
	s.emit(connector.Event{Kind: connector.EventStarted, Handle: h})
}

func (s *fakeSession) Handle() connector.Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handle
}
func (s *fakeSession) Participants() []connector.Participant { return s.users }
func (s *fakeSession) Events() <-chan connector.Event {
	if s.conn.signalsOnly && !s.Pending() {
		return nil
	}
	return s.events
}

// Signal: a signal of type "session_ended" ends the session (as a vendor whose events come as
// signals would say); the others mean nothing.
func (s *fakeSession) Signal(g connector.Signal) []connector.Event {
	if g.Type == "session_ended" {
		return []connector.Event{deactivated(time.Time{}, g.At)}
	}
	return nil
}
func (s *fakeSession) Handoffs(kind connector.HandoffKind, agentID string) []connector.Handoff {
	if kind == connector.HandoffEnd && s.conn.signalsOnly {
		return []connector.Handoff{{Kind: kind, ToCustomer: true}, {Kind: kind, AgentID: agentID}}
	}
	if kind == connector.HandoffStart && s.Pending() {
		return []connector.Handoff{{Kind: kind, ToCustomer: true, Token: "customer-jwt", PIN: s.Handle().Token}}
	}
	if s.Pending() {
		return nil
	}
	if kind != connector.HandoffView || agentID == "" {
		return nil
	}
	return []connector.Handoff{{Kind: kind, AgentID: agentID, URL: "http://node/slave.html#sid=" + s.handle.Token}}
}
func (s *fakeSession) emit(ev connector.Event) {
	s.mu.Lock()
	f := s.fed
	s.mu.Unlock()
	if f != nil {
		f(ev, true)
		return
	}
	s.events <- ev
}
func (s *fakeSession) activate(at time.Time) { s.emit(activatedAt(at)) }
func activatedAt(at time.Time) connector.Event {
	return connector.Event{Kind: connector.EventActivated, Times: connector.Times{Activation: at}}
}
func (s *fakeSession) deactivate(act, deact time.Time) { s.emit(deactivated(act, deact)) }
func deactivated(act, deact time.Time) connector.Event {
	return connector.Event{Kind: connector.EventDeactivated, Times: connector.Times{Activation: act, Deactivation: deact}}
}

func (s *fakeSession) Stop(ctx context.Context) (connector.Times, error) {
	s.mu.Lock()
	s.stopped++
	s.mu.Unlock()
	s.conn.mu.Lock()
	silent, stopErr, activate, hold := s.conn.silentStop, s.conn.stopErr, s.conn.activateOnStop, s.conn.stopHold[s.handle.Token]
	s.conn.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return connector.Times{}, ctx.Err()
		}
	}
	if stopErr != nil {
		return connector.Times{}, stopErr
	}
	if activate {
		s.emit(activatedAt(time.Now()))
	}
	if !silent && !s.conn.signalsOnly {
		s.emit(deactivated(time.Time{}, time.Now()))
	}
	return connector.Times{}, nil
}

func (s *fakeSession) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeSession) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *fakeSession) stops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// memStore is a Store in memory with revisions; failSaves makes the next n saves fail (after
// skipSaves more succeed).
type memStore struct {
	mu        sync.Mutex
	states    map[string]Saved
	failSaves int
	skipSaves int // saves that succeed before failSaves start failing
	// sessions is the session index: sessionKey -> interaction id; failIndex makes the next n
	// index writes fail.
	sessions  map[string]string
	failIndex int
	nLoads    int // states read
}

func newMemStore() *memStore {
	return &memStore{states: map[string]Saved{}, sessions: map[string]string{}}
}

func (m *memStore) IndexSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error {
	key, err := sessionKey(vendor, sessionID)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failIndex > 0 {
		m.failIndex--
		return errors.New("store unavailable")
	}
	m.sessions[key] = interactionID
	return nil
}

func (m *memStore) LookupSession(ctx context.Context, vendor connector.Vendor, sessionID string) (string, error) {
	key, err := sessionKey(vendor, sessionID)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.sessions[key]
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNoSession, key)
	}
	return id, nil
}

func (m *memStore) Load(ctx context.Context, id string) (State, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nLoads++
	s, ok := m.states[id]
	if !ok {
		return State{InteractionID: id}, 0, nil
	}
	return s.State.clone(), s.Rev, nil
}

// loads is how many times a state was read.
func (m *memStore) loads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nLoads
}

func (m *memStore) Save(ctx context.Context, st State, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.skipSaves > 0 {
		m.skipSaves--
	} else if m.failSaves > 0 {
		m.failSaves--
		return 0, errors.New("store unavailable")
	}
	cur := m.states[st.InteractionID]
	if cur.Rev != rev {
		return 0, fmt.Errorf("%w: wrong revision %d, have %d", ErrConflict, rev, cur.Rev)
	}
	m.states[st.InteractionID] = Saved{State: st.clone(), Rev: rev + 1}
	return rev + 1, nil
}

func (m *memStore) Live(ctx context.Context) ([]Saved, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Saved
	for _, s := range m.states {
		if s.State.Live != nil {
			out = append(out, Saved{State: s.State.clone(), Rev: s.Rev})
		}
	}
	return out, nil
}

// write changes the stored state behind the actor's back, as another replica would.
func (m *memStore) write(id string, change func(*State)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.states[id]
	st := cur.State.clone()
	change(&st)
	m.states[id] = Saved{State: st, Rev: cur.Rev + 1}
}

func (m *memStore) get(id string) State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[id].State.clone()
}

// recorder is a Publisher that records what it was given, in order, and can fail on demand.
// Like the outbound stream, it drops a message whose id it already holds.
type recorder struct {
	mu        sync.Mutex
	msgs      []any
	ids       map[string]bool
	fail      int            // the next n publishes fail
	failOn    func(any) bool // publishes it matches fail
	published chan any
}

func newRecorder() *recorder {
	return &recorder{published: make(chan any, 256), ids: map[string]bool{}}
}

func msgID(m any) string {
	switch m := m.(type) {
	case attach.Update:
		return attach.UpdateMsgID(m.InteractionID, m.Seq)
	case attach.Lifecycle:
		if m.MsgID != "" {
			return m.MsgID
		}
		return attach.LifecycleMsgID(m.InteractionID, m.SessionID, m.Event)
	case attach.AgentView:
		return attach.AgentViewMsgID(m.InteractionID, m.SessionID, m.AgentID)
	case attach.Handoff:
		return m.MsgID()
	}
	return ""
}

func (r *recorder) add(m any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 || (r.failOn != nil && r.failOn(m)) {
		if r.fail > 0 {
			r.fail--
		}
		return errors.New("nats unavailable")
	}
	if id := msgID(m); r.ids[id] {
		return nil
	} else {
		r.ids[id] = true
	}
	r.msgs = append(r.msgs, m)
	r.published <- m
	return nil
}

func (r *recorder) Update(ctx context.Context, u attach.Update) error       { return r.add(u) }
func (r *recorder) Lifecycle(ctx context.Context, e attach.Lifecycle) error { return r.add(e) }
func (r *recorder) AgentView(ctx context.Context, v attach.AgentView) error { return r.add(v) }
func (r *recorder) Handoff(ctx context.Context, h attach.Handoff) error     { return r.add(h) }

func (r *recorder) all() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.msgs...)
}

// delivery is a chat.Delivery that records its fate.
type delivery struct {
	mu       sync.Mutex
	attempt  int
	last     bool
	fate     string // "ack", "nak", "term"
	nakDelay time.Duration
	settled  chan string
}

func newDelivery() *delivery { return &delivery{attempt: 1, settled: make(chan string, 4)} }

func (d *delivery) settle(f string) error {
	d.mu.Lock()
	d.fate = f
	d.mu.Unlock()
	d.settled <- f
	return nil
}
func (d *delivery) Ack(ctx context.Context) error { return d.settle("ack") }
func (d *delivery) AckNoWait() error              { return d.settle("ack") }
func (d *delivery) Nak(delay time.Duration) error {
	d.mu.Lock()
	d.nakDelay = delay
	d.mu.Unlock()
	return d.settle("nak")
}
func (d *delivery) Term(reason string) error { return d.settle("term") }
func (d *delivery) InProgress() error        { return nil }
func (d *delivery) Attempt() int             { return d.attempt }
func (d *delivery) Last() bool               { return d.last }
func (d *delivery) StreamSeq() uint64        { return 0 }

var _ chat.Delivery = (*delivery)(nil)

// clone returns a deep copy, so that the in-memory store keeps what was saved, not what the
// actor changes afterwards.
func (s State) clone() State {
	c := s
	c.Seen = slices.Clone(s.Seen)
	c.Outbox = slices.Clone(s.Outbox)
	c.PendingStops = slices.Clone(s.PendingStops)
	if s.Live != nil {
		l := *s.Live
		c.Live = &l
	}
	if s.Joining != nil {
		j := *s.Joining
		c.Joining = &j
	}
	return c
}

// MatchStart accepts nine ASCII digits, as Genesys does.
func (f *fakeConn) MatchStart(token string) (string, bool) {
	if len(token) != 9 || strings.Trim(token, "0123456789") != "" {
		return "", false
	}
	return token, true
}
