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
// It has no goroutine of its own. The CometD client runs its callbacks one at a time, in order,
// on a goroutine that exists only while it has callbacks to run, and they do the session's work:
// they turn deliveries into events, join again after a re-handshake (blocking there is fine:
// what comes next waits, in order), and end the event stream. What happens elsewhere joins that
// order through cometd.Client.Post: the timer (time.AfterFunc) that gives up on a connection that
// stays down, and the REST stop's end of the stream.
//
// The events go to the owner through Feed's function, or else through a channel made when first
// needed (Events, or an event before Feed).
type session struct {
	c             *Connector
	client        *cometd.Client // set once by connect, before the client starts
	sessionID     atomic.Pointer[string]
	token         string
	nodeURL       string // the route: sessionServerUrl, or the cluster URL under cookie stickiness
	sticky        string // the route's gcbSessionServer cookie value; "" when not used or not known
	agentID       string // the agent the Controller joined for
	interactionID string

	mu           sync.Mutex // the session's state and its event stream
	userToken    string     // the Controller's user token, from the latest join reply
	participants []connector.Participant
	times        connector.Times // the latest times the server gave
	lost         *time.Timer     // running while the connection is down (see LostAfter)
	leave        *time.Timer     // after deactivated: the client's own goodbye, unless Close comes first (LeaveGrace)
	feed         func(connector.Event, bool)
	events       chan connector.Event // made on first use unless fed
	unblock      chan struct{}        // made when an emit waits on a full channel; closed by Feed or Close
	cancel       *workCancel          // made when first needed; cancelled by Close
	lostGen      int32                // bumped when lost is stopped: a timer already firing sees it
	sending      int32                // emits waiting on the channel
	deactivated  bool                 // the server ended the session (deactivated seen, or a stop reply said so)
	clientDown   bool                 // the client's shutdown has begun
	closeLater   bool                 // the channel is closed by the last waiting emit
	ended        bool                 // the end was given (channel closed, or feed(Event{}, false))
	closed       bool                 // Close was called

	// Touched only on the client's callback goroutine (or by functions given to Post).
	begun bool // the join reply is recorded: callbacks are handled, not kept in early
	over  bool // the session is over for this daemon: nothing more to do
	// spare: the client was a spare (spare.go), started before the join; set once, before the
	// session is shared. Beside the bools above it takes no word of its own: a session is 288
	// bytes, a size class.
	spare   bool
	early   *[]item // callbacks that came before (while joining)
	downErr error   // why the connection is down
}

// workCancel is the session's own work's context (a re-join, a REST stop), cancelled by Close.
type workCancel struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// item is one thing for the session's work.
type item struct {
	msg     *cometd.Message
	state   *cometd.StateEvent
	stopped *connector.Times // a REST stop went through (its reply's times)
	lostGen int32            // the lost timer fired (with lost set)
	lost    bool
}

var (
	_ connector.Session = (*session)(nil)
	_ connector.Feeder  = (*session)(nil)
)

// closedEvents is the stream of a session that ended before anyone asked for it.
var closedEvents = func() chan connector.Event { c := make(chan connector.Event); close(c); return c }()

func newSession(c *Connector, r route, p params) *session {
	s := &session{
		c:             c,
		token:         p.token,
		nodeURL:       r.NodeURL,
		sticky:        r.Sticky,
		agentID:       p.agentID,
		interactionID: p.interactionID,
	}
	if p.sessionID != "" {
		id := p.sessionID
		s.sessionID.Store(&id)
	}
	return s
}

// clientLog is the logger for the session's CometD client: the session's attributes, without
// component (the client adds its own).
func (s *session) clientLog() *slog.Logger {
	return slog.New(sessionHandler{Handler: s.c.cfg.Logger.Handler(), s: s})
}

// route is where the session's calls go.
func (s *session) route() route { return route{NodeURL: s.nodeURL, Sticky: s.sticky} }

// joinName is the name sent on join: the agent's id, else Config.ControllerName ("" for none).
func (s *session) joinName() string {
	if s.agentID != "" {
		return s.agentID
	}
	return s.c.cfg.ControllerName
}

// log is the session's logger: the connector's, with the session's attributes added to each
// record (see sessionHandler) instead of a With clone kept per session.
func (s *session) log() *slog.Logger {
	return slog.New(sessionHandler{Handler: s.c.cfg.Logger.Handler(), s: s, gcb: true})
}

// begin records the join reply, then lets the callbacks work: those that came while joining are
// handled first, in order, on the client's callback goroutine.
func (s *session) begin(r joinReply) {
	s.mu.Lock()
	s.applyJoinLocked(r)
	userToken := s.userToken
	s.mu.Unlock()
	s.log().Info("joined as Controller", "user_token", connector.MaskToken(userToken),
		"transport", s.client.Transport(), "sticky", s.sticky != "", "spare", s.spare, "participants", len(r.Users))
	s.client.Post(func() {
		s.begun = true
		if early := s.early; early != nil {
			s.early = nil
			for _, it := range *early {
				s.work(it)
			}
		}
	})
}

func (s *session) applyJoinLocked(r joinReply) {
	s.userToken = r.UserToken
	if r.SessionHistoryID != "" {
		id := r.SessionHistoryID
		s.sessionID.Store(&id)
	}
	s.participants = participants(r.Users)
}

// Handle returns what to save to find or stop the session later; it changes after EventRejoined.
func (s *session) Handle() connector.Handle {
	s.mu.Lock()
	userToken := s.userToken
	s.mu.Unlock()
	h := connector.Handle{
		Vendor:        connector.Genesys,
		Token:         s.token,
		AgentID:       s.agentID,
		InteractionID: s.interactionID,
		Data:          handleData{UserToken: userToken, NodeURL: s.nodeURL, Sticky: s.sticky}.encode(),
	}
	if p := s.sessionID.Load(); p != nil {
		h.SessionID = *p
	}
	return h
}

// Participants returns the users listed in the latest join reply.
func (s *session) Participants() []connector.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]connector.Participant(nil), s.participants...)
}

// Events returns the session's event stream (nil once Feed was called). It is closed when the
// session is over for this daemon (after EventDeactivated or EventLost) or by Close.
func (s *session) Events() <-chan connector.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.feed != nil {
		return nil
	}
	return s.channelLocked()
}

func (s *session) channelLocked() chan connector.Event {
	if s.events == nil {
		if s.ended {
			s.events = closedEvents
		} else {
			s.events = make(chan connector.Event, s.c.cfg.EventBuffer)
		}
	}
	return s.events
}

// Feed hands the session's events to f from now on, in order and one call at a time (see
// connector.Feeder): first those already waiting in the channel, then each as it comes, and
// f(Event{}, false) once at the end of the stream (after EventDeactivated or EventLost, or at
// Close). No channel is made; Events returns nil from now on. Only the first Feed counts.
func (s *session) Feed(f func(ev connector.Event, ok bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.feed != nil || f == nil {
		return
	}
	if s.unblock != nil { // an emit waits on a full channel: it goes to f once the channel is drained
		close(s.unblock)
		s.unblock = nil
	}
	s.feed = f
	if ch := s.events; ch != nil {
		s.events = nil
		for {
			select {
			case ev, ok := <-ch:
				if ok {
					f(ev, true)
					continue
				}
				f(connector.Event{}, false) // the stream had ended
				return
			default:
			}
			break
		}
	}
	if s.ended {
		f(connector.Event{}, false)
	}
}

// emit gives ev to the owner unless the stream ended or the session is closed; it reports
// whether ev was given. On the channel it waits while the channel is full (the owner must read).
func (s *session) emit(ev connector.Event) bool {
	s.mu.Lock()
	for {
		if s.ended || s.closed {
			s.mu.Unlock()
			return false
		}
		if s.feed != nil {
			s.feed(ev, true)
			s.mu.Unlock()
			return true
		}
		ch := s.channelLocked()
		select {
		case ch <- ev:
			s.mu.Unlock()
			return true
		default:
		}
		if s.unblock == nil {
			s.unblock = make(chan struct{})
		}
		unblock := s.unblock
		s.sending++
		s.mu.Unlock()
		sent := false
		select {
		case ch <- ev:
			sent = true
		case <-unblock:
		}
		s.mu.Lock()
		s.sending--
		if s.sending == 0 && s.closeLater {
			s.closeLater = false
			close(ch)
		}
		if sent {
			s.mu.Unlock()
			return true
		}
	}
}

// end ends the stream: the channel closes (once no emit waits on it), or feed gets the end.
func (s *session) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

func (s *session) endLocked() {
	if s.ended {
		return
	}
	s.ended = true
	switch {
	case s.feed != nil:
		s.feed(connector.Event{}, false)
	case s.events == nil:
		s.events = closedEvents
	case s.sending > 0:
		s.closeLater = true
	default:
		close(s.events)
	}
}

// workCtx is cancelled by Close: it bounds a re-join or a REST stop of the session's own.
func (s *session) workCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = &workCancel{ctx, cancel}
		if s.closed {
			cancel()
		}
	}
	return s.cancel.ctx
}

func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Signal returns no event: a Genesys session's joined, activated and deactivated come over its own
// CometD connection, which is authoritative; what the pages report adds nothing to it.
func (s *session) Signal(connector.Signal) []connector.Event { return nil }

// AgentViewURL returns <node>/slave.html#<fragment>, on the node the Controller joined through.
func (s *session) AgentViewURL() string {
	sid := ""
	if p := s.sessionID.Load(); p != nil {
		sid = *p
	}
	return agentViewURL(s.nodeURL, s.c.cfg.AgentViewPath, s.c.cfg.AgentViewFragment, s.token, sid)
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
// token. After a CometD stop, EventDeactivated arrives as the server sends it; after a REST stop,
// the session emits EventDeactivated itself with the REST reply's times (unless the server's came
// first). A session that already ended is not an error.
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
			s.log().InfoContext(ctx, "stop sent over CometD")
			return t, nil
		case isNotFound(err):
			s.log().InfoContext(ctx, "stop: session already ended", "reason", connector.ReasonOf(err))
			return connector.Times{}, nil
		case ctx.Err() != nil:
			return connector.Times{}, err
		}
		// The server may end the session and say so (deactivated) before the stop's own reply
		// comes; the client then disconnects, which fails the call in flight. That is a stop done.
		s.mu.Lock()
		done, t := s.deactivated, s.times
		s.mu.Unlock()
		if done {
			s.log().InfoContext(ctx, "stop sent over CometD; the session ended before its reply")
			return t, nil
		}
		s.log().WarnContext(ctx, "CometD stop failed; falling back to the REST stop", "error", err)
	}
	t, err := s.c.restStop(ctx, s.route(), userToken)
	if err != nil {
		if isNotFound(err) {
			s.log().InfoContext(ctx, "REST stop: session already ended", "reason", connector.ReasonOf(err))
			return connector.Times{}, nil
		}
		return connector.Times{}, err
	}
	s.log().InfoContext(ctx, "session stopped through REST")
	s.client.Post(func() { s.work(item{stopped: &t}) })
	return t, nil
}

func (s *session) cometdStop(ctx context.Context, userToken string) (connector.Times, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.StopTimeout)
	defer cancel()
	raw, err := s.client.Call(ctx, ChannelStop, map[string]string{"userToken": userToken})
	if err != nil {
		return connector.Times{}, redact(bayeuxError(opStop, s.nodeURL, err), userToken, s.token)
	}
	var reply timesJSON
	if len(raw) > 0 && json.Unmarshal(raw, &reply) == nil {
		if reply.Error != "" {
			return connector.Times{}, redact(bayeuxError(opStop, s.nodeURL, cometd.ParseError(ChannelStop, reply.Error)), userToken, s.token)
		}
		return reply.times(), nil
	}
	return connector.Times{}, nil // the documented reply is {}: the deactivated event carries the times
}

// Close leaves the server connection without stopping the session: it ends the event stream (the
// channel is closed, or Feed's function gets the end; nothing is given after Close returns),
// cuts short the session's own work in progress (a re-join, a REST stop), sends /meta/disconnect
// (bounded by DisconnectTimeout and ctx), closes the CometD client and waits for it, callbacks
// included. It is safe to call more than once.
//
// The client is always closed, also when ctx is already done: then the polite part
// (/meta/disconnect) is skipped and Close returns ctx's error.
func (s *session) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.endLocked()
	if s.unblock != nil {
		close(s.unblock)
		s.unblock = nil
	}
	wc := s.cancel
	if s.leave != nil {
		s.leave.Stop()
	}
	s.mu.Unlock()
	if wc != nil {
		wc.cancel()
	}
	s.stopLostTimer()
	return s.shutdownClient(ctx)
}

// shutdownClient disconnects (once) and closes the client, waiting for it: Close's part. The
// client is closed whatever ctx says: when ctx is already done the /meta/disconnect is skipped
// and ctx's error returned; Client.Close also cuts short a disconnect another goroutine has in
// flight.
func (s *session) shutdownClient(ctx context.Context) error {
	s.mu.Lock()
	first := !s.clientDown
	s.clientDown = true
	s.mu.Unlock()
	var skipped error
	if first {
		if err := ctx.Err(); err != nil {
			skipped = err // no time left for a polite /meta/disconnect
		} else {
			dctx, cancel := context.WithTimeout(ctx, s.c.cfg.DisconnectTimeout)
			if err := s.client.Disconnect(dctx); err != nil {
				s.log().Debug("disconnect failed", "error", err)
			}
			cancel()
		}
	}
	_ = s.client.Close()
	return skipped
}

// shutdown is the work's own shutdown of the client (after the stream ended): /meta/disconnect
// (when disconnect is set) bounded by DisconnectTimeout, then the client stops. It runs on the
// client's callback goroutine, so it does not wait for the callbacks (cometd.Client.Stop).
func (s *session) shutdown(disconnect bool) {
	s.mu.Lock()
	first := !s.clientDown
	s.clientDown = true
	s.mu.Unlock()
	if !first {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.DisconnectTimeout)
	defer cancel()
	if err := s.client.Stop(ctx, disconnect); err != nil {
		s.log().Debug("disconnect failed", "error", err)
	}
}

// The CometD client's callbacks: they run one at a time, in order, and do the session's work.

func (s *session) onMessage(m cometd.Message) { s.handle(item{msg: &m}) }

func (s *session) onState(e cometd.StateEvent) { s.handle(item{state: &e}) }

func (s *session) handle(it item) {
	if !s.begun {
		if s.early == nil {
			s.early = new([]item)
		}
		*s.early = append(*s.early, it)
		return
	}
	s.work(it)
}

// work handles one item, in order with the others.
func (s *session) work(it item) {
	if s.over {
		return
	}
	if s.isClosed() {
		s.over = true
		return
	}
	switch {
	case it.stopped != nil:
		s.deactivate(*it.stopped)
	case it.lost:
		s.mu.Lock()
		current := s.lost != nil && s.lostGen == it.lostGen
		s.mu.Unlock()
		if current {
			s.lose(fmt.Errorf("%w: Bayeux connection down for more than %s: %w", connector.ErrLost, s.c.cfg.LostAfter, s.downErr))
		}
	case it.msg != nil:
		s.deliver(*it.msg)
	case it.state != nil:
		st := *it.state
		switch st.Kind {
		case cometd.StateConnected:
			s.stopLostTimer()
		case cometd.StateDisconnected:
			s.downErr = st.Err
			s.startLostTimer(st.Err)
		case cometd.StateReestablished:
			s.stopLostTimer()
			s.rejoin()
		case cometd.StateTerminated:
			err := st.Err
			if err == nil {
				err = fmt.Errorf("client stopped")
			}
			s.lose(fmt.Errorf("%w: Bayeux client terminated: %w", connector.ErrLost, err))
		}
	}
}

// startLostTimer starts the LostAfter timer unless it runs: when it fires, its work joins the
// callbacks' order.
func (s *session) startLostTimer(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost != nil {
		return
	}
	s.log().Warn("Bayeux connection down; retrying", "error", err, "lost_after", s.c.cfg.LostAfter)
	gen := s.lostGen
	s.lost = time.AfterFunc(s.c.cfg.LostAfter, func() {
		s.client.Post(func() { s.work(item{lost: true, lostGen: gen}) })
	})
}

func (s *session) stopLostTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost != nil {
		s.lost.Stop()
		s.lost = nil
		s.lostGen++
	}
}

// deliver handles one server delivery.
func (s *session) deliver(m cometd.Message) {
	switch m.Channel {
	case ChannelJoined:
		var u userJSON
		if err := json.Unmarshal(m.Data, &u); err != nil {
			s.log().Warn("undecodable joined notification; ignored", "error", err, "data", clip(string(m.Data)))
			return
		}
		p := u.participant()
		s.log().Info("participant joined", "role", p.Role.String(), "user_id", p.ID)
		s.emit(connector.Event{Kind: connector.EventParticipantJoined, Participant: p})
	case ChannelActivated:
		var t timesJSON
		if err := json.Unmarshal(m.Data, &t); err != nil {
			s.log().Warn("undecodable activated notification; times left empty", "error", err, "data", clip(string(m.Data)))
		}
		times := t.times()
		if times.Activation.IsZero() {
			times.Activation = time.Now().UTC() // the event must carry an activation time
		}
		s.mu.Lock()
		s.times.Activation = times.Activation
		s.mu.Unlock()
		s.log().Info("session activated", "activation_time", times.Activation)
		s.emit(connector.Event{Kind: connector.EventActivated, Times: connector.Times{Activation: times.Activation}})
	case ChannelDeactivated:
		var t timesJSON
		if err := json.Unmarshal(m.Data, &t); err != nil {
			s.log().Warn("undecodable deactivated notification; times left empty", "error", err, "data", clip(string(m.Data)))
		}
		s.deactivate(t.times())
	default:
		s.log().Debug("delivery ignored", "channel", m.Channel)
	}
}

// deactivate ends the stream with EventDeactivated. The Bayeux client disconnects (no
// /service/session/exit: the docs say disconnect) when the owner closes the session, which the
// Controller does once it has recorded the end: after the stops that other interactions owe
// (controller/lane.go), so that in a burst of closes the goodbyes of the first ones do not
// compete with the stops of the last ones, in the daemon and at the server. Should the owner not
// close it within Config.LeaveGrace, the client leaves by itself.
func (s *session) deactivate(t connector.Times) {
	s.over = true
	s.stopLostTimer()
	s.mu.Lock()
	if t.Activation.IsZero() {
		t.Activation = s.times.Activation
	}
	s.times = t
	s.deactivated = true
	s.mu.Unlock()
	s.log().Info("session deactivated", "activation_time", t.Activation, "deactivation_time", t.Deactivation)
	s.emit(connector.Event{Kind: connector.EventDeactivated, Times: t})
	s.end()
	s.mu.Lock()
	if !s.closed {
		s.leave = time.AfterFunc(s.c.cfg.LeaveGrace, func() { s.client.Post(func() { s.shutdown(true) }) })
	}
	s.mu.Unlock()
}

// rejoin joins again as Controller on the new Bayeux session after a re-handshake. A refusal
// (the server may still hold the old membership) or a failed call is retried within the re-join
// window (Config.RejoinWindow); then the session is lost. The callbacks that come meanwhile wait:
// they are handled in order once the re-join is settled.
func (s *session) rejoin() {
	s.log().Warn("Bayeux session re-established; joining again as Controller", "bayeux_client_id", s.client.ClientID())
	adv := s.client.Advice()
	reply, err := s.joinUntil(s.workCtx(), opRejoin, &rejoinState{start: time.Now(), advice: &adv})
	if err != nil {
		s.lose(fmt.Errorf("%w: re-join after a Bayeux re-handshake failed: %w", connector.ErrLost, err))
		return
	}
	s.mu.Lock()
	s.applyJoinLocked(reply)
	s.mu.Unlock()
	s.log().Info("joined again as Controller", "user_token", connector.MaskToken(reply.UserToken), "participants", len(reply.Users))
	s.emit(connector.Event{Kind: connector.EventRejoined, Handle: s.Handle()})
}

// lose stops the session through REST with the saved user token (best effort), ends the stream
// with EventLost (Stopped says whether that stop went through) and closes the client.
func (s *session) lose(err error) {
	s.over = true
	s.stopLostTimer()
	if s.isClosed() {
		return
	}
	s.mu.Lock()
	userToken := s.userToken
	s.mu.Unlock()
	s.log().Warn("session lost; stopping it through REST", "error", err)
	stopped := false
	if t, serr := s.c.restStop(s.workCtx(), s.route(), userToken); serr != nil && !isNotFound(serr) {
		s.log().Warn("best-effort REST stop failed; the owner retries it", "error", serr)
	} else {
		stopped = true
		if serr == nil {
			s.mu.Lock()
			s.times = t
			s.mu.Unlock()
		}
	}
	s.emit(connector.Event{Kind: connector.EventLost, Err: err, Stopped: stopped})
	s.end()
	s.shutdown(false)
}

// sessionHandler adds the session's attributes to every record, before the record's own:
// interaction, token (masked) and node, component=gcb on the session's own lines (the CometD
// client adds component=cometd to its), and session_id last once the join reply has named the
// session. So no logger is cloned and kept per session.
type sessionHandler struct {
	slog.Handler
	s   *session
	gcb bool
}

func (h sessionHandler) Handle(ctx context.Context, r slog.Record) error {
	s := h.s
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(
		slog.String("interaction", s.interactionID),
		slog.String("token", connector.MaskToken(s.token)),
		slog.String("node", s.route().node()))
	if h.gcb {
		out.AddAttrs(slog.String("component", "gcb"))
	}
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	if p := s.sessionID.Load(); p != nil {
		out.AddAttrs(slog.String("session_id", *p))
	}
	return h.Handler.Handle(ctx, out)
}

func (h sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionHandler{Handler: h.Handler.WithAttrs(as), s: h.s, gcb: h.gcb}
}

func (h sessionHandler) WithGroup(name string) slog.Handler {
	return sessionHandler{Handler: h.Handler.WithGroup(name), s: h.s, gcb: h.gcb}
}
