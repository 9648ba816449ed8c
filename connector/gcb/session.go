package gcb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// session is one co-browse session joined as Controller over its own CometD client.
//
// The CometD client's callbacks only queue what they get (they must not block); one goroutine
// (run) handles the queue in order: it turns deliveries into events, re-joins after a
// re-handshake, times out a connection that stays down, and ends the event stream.
type session struct {
	c             *Connector
	log           *slog.Logger // interaction, token, node, and session_id once known
	clientLog     *slog.Logger // the same scope, for the session's CometD client
	sessionID     *atomic.Pointer[string]
	token         string
	route         route
	name          string // the name sent on join ("" for none)
	agentID       string // the agent the Controller joined for
	interactionID string

	ctx    context.Context // cancelled by Close: aborts a re-join or a REST stop in flight
	cancel context.CancelFunc

	client *cometd.Client // set once by connect, before the client starts

	mu           sync.Mutex
	handle       connector.Handle // its Data is handleData{userToken, the route}
	userToken    string           // the Controller's user token, from the latest join reply
	participants []connector.Participant
	viewURL      string
	times        connector.Times // the latest times the server gave
	deactivated  bool            // the server ended the session (deactivated seen, or a stop reply said so)
	clientDown   bool            // the client's shutdown has begun

	qmu   sync.Mutex
	queue []item
	wake  chan struct{} // capacity 1: "the queue has items"

	events     chan connector.Event
	eventsOnce sync.Once
	closeCh    chan struct{} // closed by Close
	closeOnce  sync.Once
	done       chan struct{} // closed when run returns
	started    bool          // run was started (only touched by connect/begin and Close)
}

// item is one thing for run to handle.
type item struct {
	msg     *cometd.Message
	state   *cometd.StateEvent
	stopped *connector.Times // a REST stop went through (its reply's times)
}

var _ connector.Session = (*session)(nil)

func newSession(c *Connector, r route, p params) *session {
	name := p.agentID
	if name == "" {
		name = c.cfg.ControllerName
	}
	ctx, cancel := context.WithCancel(context.Background())
	sid := new(atomic.Pointer[string])
	if p.sessionID != "" {
		sid.Store(&p.sessionID)
	}
	// The CometD client adds its own component; the session's lines are the connector's.
	scoped := slog.New(sessionIDHandler{Handler: c.cfg.Logger.Handler(), id: sid}).With(
		"interaction", p.interactionID, "token", connector.MaskToken(p.token), "node", r.node())
	return &session{
		c:             c,
		log:           scoped.With("component", "gcb"),
		clientLog:     scoped,
		sessionID:     sid,
		token:         p.token,
		route:         r,
		name:          name,
		agentID:       p.agentID,
		interactionID: p.interactionID,
		ctx:           ctx,
		cancel:        cancel,
		wake:          make(chan struct{}, 1),
		events:        make(chan connector.Event, c.cfg.EventBuffer),
		closeCh:       make(chan struct{}),
		done:          make(chan struct{}),
	}
}

// begin records the join reply and starts run.
func (s *session) begin(r joinReply) {
	s.mu.Lock()
	s.handle = connector.Handle{
		Vendor:        connector.Genesys,
		Token:         s.token,
		AgentID:       s.agentID,
		InteractionID: s.interactionID,
	}
	if p := s.sessionID.Load(); p != nil {
		s.handle.SessionID = *p
	}
	s.applyJoinLocked(r)
	s.viewURL = agentViewURL(s.route.NodeURL, s.c.cfg.AgentViewPath, s.c.cfg.AgentViewFragment, s.token, s.handle.SessionID)
	userToken := s.userToken
	s.mu.Unlock()
	s.log.Info("joined as Controller", "user_token", connector.MaskToken(userToken),
		"transport", s.client.Transport(), "sticky", s.route.Sticky != "", "participants", len(r.Users))
	s.started = true
	go s.run()
}

func (s *session) applyJoinLocked(r joinReply) {
	s.userToken = r.UserToken
	s.handle.Data = handleData{UserToken: r.UserToken, NodeURL: s.route.NodeURL, Sticky: s.route.Sticky}.encode()
	if r.SessionHistoryID != "" {
		s.handle.SessionID = r.SessionHistoryID
		id := r.SessionHistoryID
		s.sessionID.Store(&id)
	}
	s.participants = participants(r.Users)
}

// Handle returns what to save to find or stop the session later; it changes after EventRejoined.
func (s *session) Handle() connector.Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handle
}

// Participants returns the users listed in the latest join reply.
func (s *session) Participants() []connector.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]connector.Participant(nil), s.participants...)
}

// Events returns the session's event stream.
func (s *session) Events() <-chan connector.Event { return s.events }

// Signal returns no event: a Genesys session's joined, activated and deactivated come over its own
// CometD connection, which is authoritative; what the pages report adds nothing to it.
func (s *session) Signal(connector.Signal) []connector.Event { return nil }

// AgentViewURL returns <node>/slave.html#<fragment>, on the node the Controller joined through.
func (s *session) AgentViewURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewURL
}

// Handoffs gives an agent the agent view URL (the same for every agent: the token is in it).
// Genesys has nothing else for the pages: the customer page starts the session itself, and the
// daemon ends it at the server.
func (s *session) Handoffs(kind connector.HandoffKind, agentID string) []connector.Handoff {
	if kind != connector.HandoffView || agentID == "" {
		return nil
	}
	return []connector.Handoff{{Kind: connector.HandoffView, AgentID: agentID, URL: s.AgentViewURL()}}
}

// Stop ends the session: /service/session/stop over CometD, and when that fails (no connection,
// time-out, any failure other than "session not found") the REST stop with the Controller's user
// token. After a CometD stop, EventDeactivated arrives on Events as the server sends it; after a
// REST stop, the session emits EventDeactivated itself with the REST reply's times (unless the
// server's came first). A session that already ended is not an error.
func (s *session) Stop(ctx context.Context) (connector.Times, error) {
	s.mu.Lock()
	if s.deactivated {
		t := s.times
		s.mu.Unlock()
		return t, nil
	}
	userToken := s.userToken
	live := !s.clientDown
	s.mu.Unlock()
	if live {
		select {
		case <-s.client.Done():
			live = false
		default:
		}
	}
	if live {
		t, err := s.cometdStop(ctx, userToken)
		switch {
		case err == nil:
			s.log.InfoContext(ctx, "stop sent over CometD")
			return t, nil
		case isNotFound(err):
			s.log.InfoContext(ctx, "stop: session already ended", "reason", connector.ReasonOf(err))
			return connector.Times{}, nil
		case ctx.Err() != nil:
			return connector.Times{}, err
		}
		s.log.WarnContext(ctx, "CometD stop failed; falling back to the REST stop", "error", err)
	}
	t, err := s.c.restStop(ctx, s.route, userToken)
	if err != nil {
		if isNotFound(err) {
			s.log.InfoContext(ctx, "REST stop: session already ended", "reason", connector.ReasonOf(err))
			return connector.Times{}, nil
		}
		return connector.Times{}, err
	}
	s.log.InfoContext(ctx, "session stopped through REST")
	s.enqueue(item{stopped: &t})
	return t, nil
}

func (s *session) cometdStop(ctx context.Context, userToken string) (connector.Times, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.StopTimeout)
	defer cancel()
	raw, err := s.client.Call(ctx, ChannelStop, map[string]string{"userToken": userToken})
	if err != nil {
		return connector.Times{}, redact(bayeuxError(opStop, s.route.NodeURL, err), userToken, s.token)
	}
	var reply timesJSON
	if len(raw) > 0 && json.Unmarshal(raw, &reply) == nil {
		if reply.Error != "" {
			return connector.Times{}, redact(bayeuxError(opStop, s.route.NodeURL, cometd.ParseError(ChannelStop, reply.Error)), userToken, s.token)
		}
		return reply.times(), nil
	}
	return connector.Times{}, nil // the documented reply is {}: the deactivated event carries the times
}

// Close leaves the server connection without stopping the session: it ends the event stream,
// sends /meta/disconnect (bounded by DisconnectTimeout and ctx), closes the CometD client and
// waits for its goroutines. It is safe to call more than once.
//
// The client is always closed, also when ctx is already done or runs out while Close waits for
// the session's goroutine: then the polite part (/meta/disconnect) is skipped or cut short, the
// goroutine ends the event stream itself, and Close returns ctx's error.
func (s *session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closeCh)
		s.cancel()
	})
	var waitErr error
	if s.started {
		select {
		case <-s.done:
		case <-ctx.Done():
			// run is still finishing (an emit, a re-join or a REST stop aborted by the closed
			// session, or its own bounded shutdown); it closes the event stream when it returns.
			waitErr = ctx.Err()
		}
	}
	if waitErr == nil {
		s.closeEvents()
	}
	err := s.shutdownClient(ctx, true)
	if waitErr != nil {
		return waitErr
	}
	return err
}

func (s *session) closed() bool {
	select {
	case <-s.closeCh:
		return true
	default:
		return false
	}
}

// shutdownClient disconnects (once, if disconnect) and closes the client, then waits for it to
// finish, bounded by ctx. The client is closed whatever ctx says (Client.Close needs no ctx): when
// ctx is already done the /meta/disconnect is skipped, and when ctx runs out while another
// goroutine shuts the client down politely, that is cut short; either way ctx's error is returned.
func (s *session) shutdownClient(ctx context.Context, disconnect bool) error {
	s.mu.Lock()
	first := !s.clientDown
	s.clientDown = true
	s.mu.Unlock()
	var skipped error
	if first {
		if disconnect {
			if err := ctx.Err(); err != nil {
				skipped = err // no time left for a polite /meta/disconnect
			} else {
				dctx, cancel := context.WithTimeout(ctx, s.c.cfg.DisconnectTimeout)
				if err := s.client.Disconnect(dctx); err != nil {
					s.log.Debug("disconnect failed", "error", err)
				}
				cancel()
			}
		}
		_ = s.client.Close()
	}
	if done := s.client.Done(); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			// Another goroutine is still disconnecting: stop waiting for the server and close.
			_ = s.client.Close()
			return ctx.Err()
		}
	}
	return skipped
}

func (s *session) closeEvents() { s.eventsOnce.Do(func() { close(s.events) }) }

// The CometD client's callbacks: queue and return.

func (s *session) onMessage(m cometd.Message) { s.enqueue(item{msg: &m}) }

func (s *session) onState(e cometd.StateEvent) { s.enqueue(item{state: &e}) }

func (s *session) enqueue(it item) {
	s.qmu.Lock()
	s.queue = append(s.queue, it)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) take() []item {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// run handles the queue until the session is over for this daemon.
func (s *session) run() {
	defer close(s.done)
	defer s.closeEvents()

	var lostTimer *time.Timer
	var lostC <-chan time.Time
	var downErr error
	stopTimer := func() {
		if lostTimer != nil {
			lostTimer.Stop()
			lostTimer, lostC = nil, nil
		}
	}
	defer stopTimer()

	for {
		select {
		case <-s.closeCh:
			return
		case <-lostC:
			s.lose(fmt.Errorf("%w: Bayeux connection down for more than %s: %w", connector.ErrLost, s.c.cfg.LostAfter, downErr))
			return
		case <-s.wake:
		}
		for _, it := range s.take() {
			switch {
			case it.stopped != nil:
				s.deactivate(*it.stopped)
				return
			case it.msg != nil:
				if s.deliver(*it.msg) {
					return
				}
			case it.state != nil:
				st := *it.state
				switch st.Kind {
				case cometd.StateConnected:
					stopTimer()
				case cometd.StateDisconnected:
					downErr = st.Err
					if lostTimer == nil {
						s.log.Warn("Bayeux connection down; retrying", "error", st.Err, "lost_after", s.c.cfg.LostAfter)
						lostTimer = time.NewTimer(s.c.cfg.LostAfter)
						lostC = lostTimer.C
					}
				case cometd.StateReestablished:
					stopTimer()
					if !s.rejoin() {
						return
					}
				case cometd.StateTerminated:
					if s.closed() {
						return
					}
					err := st.Err
					if err == nil {
						err = fmt.Errorf("client stopped")
					}
					s.lose(fmt.Errorf("%w: Bayeux client terminated: %w", connector.ErrLost, err))
					return
				}
			}
		}
	}
}

// deliver handles one server delivery; it reports whether the session is over.
func (s *session) deliver(m cometd.Message) bool {
	switch m.Channel {
	case ChannelJoined:
		var u userJSON
		if err := json.Unmarshal(m.Data, &u); err != nil {
			s.log.Warn("undecodable joined notification; ignored", "error", err, "data", clip(string(m.Data)))
			return false
		}
		p := u.participant()
		s.log.Info("participant joined", "role", p.Role.String(), "user_id", p.ID)
		return !s.emit(connector.Event{Kind: connector.EventParticipantJoined, Participant: p})
	case ChannelActivated:
		var t timesJSON
		if err := json.Unmarshal(m.Data, &t); err != nil {
			s.log.Warn("undecodable activated notification; times left empty", "error", err, "data", clip(string(m.Data)))
		}
		times := t.times()
		if times.Activation.IsZero() {
			times.Activation = time.Now().UTC() // the event must carry an activation time
		}
		s.mu.Lock()
		s.times.Activation = times.Activation
		s.mu.Unlock()
		s.log.Info("session activated", "activation_time", times.Activation.UnixMilli())
		return !s.emit(connector.Event{Kind: connector.EventActivated, Times: connector.Times{Activation: times.Activation}})
	case ChannelDeactivated:
		var t timesJSON
		if err := json.Unmarshal(m.Data, &t); err != nil {
			s.log.Warn("undecodable deactivated notification; times left empty", "error", err, "data", clip(string(m.Data)))
		}
		s.deactivate(t.times())
		return true
	}
	s.log.Debug("delivery ignored", "channel", m.Channel)
	return false
}

// deactivate ends the stream with EventDeactivated, then disconnects the Bayeux client (no
// /service/session/exit: the docs say disconnect).
func (s *session) deactivate(t connector.Times) {
	s.mu.Lock()
	if t.Activation.IsZero() {
		t.Activation = s.times.Activation
	}
	s.times = t
	s.deactivated = true
	s.mu.Unlock()
	s.log.Info("session deactivated", "activation_time", millis(t.Activation), "deactivation_time", millis(t.Deactivation))
	s.emit(connector.Event{Kind: connector.EventDeactivated, Times: t})
	s.closeEvents()
	s.shutdown(true)
}

// rejoin joins again as Controller on the new Bayeux session after a re-handshake. A refusal
// (the server may still hold the old membership) or a failed call is retried within the re-join
// window (Config.RejoinWindow); then the session is lost. It reports whether the session goes on.
// Queued deliveries wait meanwhile: they are handled in order once the re-join is settled.
func (s *session) rejoin() bool {
	if s.closed() {
		return false
	}
	s.log.Warn("Bayeux session re-established; joining again as Controller", "client_id", s.client.ClientID())
	adv := s.client.Advice()
	reply, err := s.joinUntil(s.ctx, opRejoin, &rejoinState{start: time.Now(), advice: &adv})
	if err != nil {
		s.lose(fmt.Errorf("%w: re-join after a Bayeux re-handshake failed: %w", connector.ErrLost, err))
		return false
	}
	s.mu.Lock()
	s.applyJoinLocked(reply)
	h := s.handle
	s.mu.Unlock()
	s.log.Info("joined again as Controller", "user_token", connector.MaskToken(reply.UserToken), "participants", len(reply.Users))
	return s.emit(connector.Event{Kind: connector.EventRejoined, Handle: h})
}

// lose stops the session through REST with the saved user token (best effort), ends the stream
// with EventLost (Stopped says whether that stop went through) and closes the client.
func (s *session) lose(err error) {
	if s.closed() {
		return
	}
	s.mu.Lock()
	userToken := s.userToken
	s.mu.Unlock()
	s.log.Warn("session lost; stopping it through REST", "error", err)
	stopped := false
	if t, serr := s.c.restStop(s.ctx, s.route, userToken); serr != nil && !isNotFound(serr) {
		s.log.Warn("best-effort REST stop failed; the owner retries it", "error", serr)
	} else {
		stopped = true
		if serr == nil {
			s.mu.Lock()
			s.times = t
			s.mu.Unlock()
		}
	}
	s.emit(connector.Event{Kind: connector.EventLost, Err: err, Stopped: stopped})
	s.closeEvents()
	s.shutdown(false)
}

// shutdown releases the client from run. It is bounded by DisconnectTimeout but not cut short
// by Close (which waits for it), so that the server hears /meta/disconnect after deactivated.
func (s *session) shutdown(disconnect bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.c.cfg.DisconnectTimeout)
	defer cancel()
	_ = s.shutdownClient(ctx, disconnect)
}

// emit sends ev unless the session is closed first; it reports whether ev was sent.
func (s *session) emit(ev connector.Event) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.closeCh:
		return false
	}
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// sessionIDHandler adds session_id to every record once the join reply has named the session:
// the session's and its CometD client's loggers are made before the id is known.
type sessionIDHandler struct {
	slog.Handler
	id *atomic.Pointer[string]
}

func (h sessionIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if p := h.id.Load(); p != nil {
		r = r.Clone()
		r.AddAttrs(slog.String("session_id", *p))
	}
	return h.Handler.Handle(ctx, r)
}

func (h sessionIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionIDHandler{Handler: h.Handler.WithAttrs(as), id: h.id}
}

func (h sessionIDHandler) WithGroup(name string) slog.Handler {
	return sessionIDHandler{Handler: h.Handler.WithGroup(name), id: h.id}
}
