// Package bayeux is a small Bayeux (CometD 3.1 wire) server for gcbtest: handshake, connect,
// subscribe, unsubscribe, publish and disconnect over long-polling (HTTP POST) and websocket, with
// held /meta/connect, BAYEUX_BROWSER cookie binding, session expiry after maxInterval, and hooks
// for the application (service channels, session removal, injected faults).
//
// Costs: a Bayeux session is a small struct in a map. No goroutine exists per session: a parked
// long-poll /meta/connect is the HTTP handler's own goroutine, a websocket connection is its
// reader (the HTTP handler's goroutine), and one housekeeper goroutine per server expires
// sessions, releases held websocket connects and writes queued messages to websockets.
package bayeux

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a session was removed.
type Reason int

// Removal reasons.
const (
	Expired      Reason = iota + 1 // no /meta/connect within maxInterval
	Disconnected                   // the client sent /meta/disconnect
	Dropped                        // ExpireAll
)

func (r Reason) String() string {
	switch r {
	case Expired:
		return "expired"
	case Disconnected:
		return "disconnected"
	case Dropped:
		return "dropped"
	}
	return "unknown"
}

// Options configure a Server.
type Options struct {
	Timeout     time.Duration // how long a /meta/connect is held (advice timeout)
	MaxInterval time.Duration // a session expires when no /meta/connect arrives within this after the last reply
	Logger      *slog.Logger
	// Service handles a publish to a /service/ channel. handled=false means nobody handles that
	// channel: the publish is acknowledged and dropped, as CometD does. A non-empty errText makes
	// the call fail with that error ("403::agent busy").
	Service func(s *Session, channel string, data json.RawMessage) (result any, errText string, handled bool)
	// Removed is called, with no lock of this package held, after a session is removed for any
	// reason but Close.
	Removed func(s *Session, why Reason)
	// Fault says how a message on the channel is affected: a response (an HTTP response or a
	// websocket frame) carrying it is delayed; with drop, a reply is never sent (the response
	// that carries it is withheld: an HTTP request hangs), and a pushed message is discarded.
	Fault func(channel string) (delay time.Duration, drop bool)
}

// Stats count what a server did.
type Stats struct {
	Handshakes       int64 // successful handshakes
	WebSocketConns   int64 // websocket connections accepted
	LongPollRequests int64 // long-polling HTTP requests
	Sessions         int   // live Bayeux sessions now
	HeldConnects     int   // /meta/connect requests held now
}

// Server is a Bayeux server. Its zero value is not usable; call New.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session
	dirty    map[*Session]struct{} // websocket sessions with queued messages
	conns    map[*wsConn]struct{}
	closed   bool

	closing chan struct{} // closed by Close: parked requests give up, readers stop
	kick    chan struct{} // cap 1: the housekeeper has dirty sessions to write
	hkDone  chan struct{}

	handshakes, wsConns, lpRequests atomic.Int64
}

// Session is a Bayeux session.
type Session struct {
	srv     *Server
	id      string
	browser string // long-polling: the BAYEUX_BROWSER value it is bound to; "" for websocket

	// Value belongs to the application; this package never touches it.
	Value any

	// guarded by srv.mu
	queue       []out
	park        *park     // a parked long-poll /meta/connect
	ws          *wsConn   // the websocket connection the session is bound to
	wsHeld      bool      // a websocket /meta/connect is held
	wsConnectID []byte    // its id
	wsDeadline  time.Time // when it is released
	expireAt    time.Time // zero while a connect is held
	connected   bool      // a connect reply (with advice) was sent
	subs        []string  // broadcast subscriptions
	removed     bool
	removedWhy  Reason
}

// ID returns the session's clientId.
func (s *Session) ID() string { return s.id }

// Transport returns the connection type the session handshook with.
func (s *Session) Transport() string {
	if s.browser == "" {
		return WebSocket
	}
	return LongPolling
}

// New starts a server and its housekeeper; Close stops them.
func New(opts Options) *Server {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := &Server{
		opts:     opts,
		log:      opts.Logger,
		sessions: make(map[string]*Session),
		dirty:    make(map[*Session]struct{}),
		conns:    make(map[*wsConn]struct{}),
		closing:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		hkDone:   make(chan struct{}),
	}
	go srv.housekeeper()
	return srv
}

// Stats returns the server's counters.
func (srv *Server) Stats() Stats {
	srv.mu.Lock()
	n, held := len(srv.sessions), 0
	for _, s := range srv.sessions {
		if s.park != nil || s.wsHeld && s.ws != nil {
			held++
		}
	}
	srv.mu.Unlock()
	return Stats{
		Handshakes:       srv.handshakes.Load(),
		WebSocketConns:   srv.wsConns.Load(),
		LongPollRequests: srv.lpRequests.Load(),
		Sessions:         n,
		HeldConnects:     held,
	}
}

// Close drops every session without calling Removed, wakes parked requests (they give up
// without a reply), closes websocket connections and stops the housekeeper. The caller waits
// for its own HTTP handlers.
func (srv *Server) Close() {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		<-srv.hkDone
		return
	}
	srv.closed = true
	for _, s := range srv.sessions {
		s.removed = true
		s.queue = nil
	}
	clear(srv.sessions)
	clear(srv.dirty)
	conns := make([]*wsConn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	close(srv.closing)
	for _, c := range conns {
		c.c.CloseNow()
	}
	<-srv.hkDone
}

// Closing is closed when the server closes.
func (srv *Server) Closing() <-chan struct{} { return srv.closing }

// ExpireAll removes every session now, as if each had expired: a held connect is answered
// with 402::Unknown client and advice to handshake, later requests get the same.
func (srv *Server) ExpireAll() {
	srv.mu.Lock()
	var removed []*Session
	var heldWS []*Session
	for _, s := range srv.sessions {
		if s.wsHeld && s.ws != nil {
			heldWS = append(heldWS, s)
		}
		srv.removeLocked(s, Dropped)
		removed = append(removed, s)
	}
	srv.mu.Unlock()
	srv.notifyRemoved(removed, Dropped)
	for _, s := range heldWS {
		srv.releaseWS(s)
	}
}

// Sessions returns the live sessions.
func (srv *Server) Sessions() []*Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]*Session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		out = append(out, s)
	}
	return out
}

// Deliver queues a message on channel for the session, as a server-side deliver: the client
// gets it without a subscription. It never blocks: a parked long-poll connect is woken, a
// websocket session is written by the housekeeper. It reports whether the session was live.
func (s *Session) Deliver(channel string, data any) bool {
	raw, err := json.Marshal(data)
	if err != nil {
		panic(err) // the application's payloads are plain data
	}
	m := encode(outMsg{Channel: channel, Data: raw})
	m.pushed = true
	srv := s.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.enqueueLocked(s, m)
}

func (srv *Server) enqueueLocked(s *Session, m out) bool {
	if s.removed {
		return false
	}
	s.queue = append(s.queue, m)
	if s.park != nil {
		s.park.wake(wokeMessages)
	} else if s.ws != nil {
		srv.dirty[s] = struct{}{}
		select {
		case srv.kick <- struct{}{}:
		default:
		}
	}
	return true
}

func (srv *Server) removeLocked(s *Session, why Reason) {
	if s.removed {
		return
	}
	s.removed = true
	s.removedWhy = why
	delete(srv.sessions, s.id)
	delete(srv.dirty, s)
	s.queue = nil
	s.subs = nil
}

// notifyRemoved runs the Removed hook for sessions removeLocked took out, and only then wakes
// their parked connects (which answer 402). In that order a client that re-handshakes at once
// finds the application already done with its old session: a Controller re-joining after a
// re-handshake must not find itself still a member. Callers release held websocket connects after
// it for the same reason.
func (srv *Server) notifyRemoved(ss []*Session, why Reason) {
	for _, s := range ss {
		srv.log.Debug("bayeux session removed", "bayeux_client_id", s.id, "reason", why.String())
		if srv.opts.Removed != nil {
			srv.opts.Removed(s, why)
		}
	}
	srv.mu.Lock()
	for _, s := range ss {
		if s.park != nil {
			s.park.wake(wokeRemoved)
		}
	}
	srv.mu.Unlock()
}

// tick is how often the housekeeper looks for expired sessions and held websocket connects.
func (srv *Server) tick() time.Duration {
	d := min(srv.opts.Timeout, srv.opts.MaxInterval) / 10
	return max(5*time.Millisecond, min(d, 250*time.Millisecond))
}

func (srv *Server) housekeeper() {
	defer close(srv.hkDone)
	t := time.NewTicker(srv.tick())
	defer t.Stop()
	for {
		select {
		case <-srv.closing:
			return
		case <-srv.kick:
			srv.writeDirty()
		case now := <-t.C:
			srv.sweep(now)
		}
	}
}

func (srv *Server) sweep(now time.Time) {
	srv.mu.Lock()
	var expired, release []*Session
	for _, s := range srv.sessions {
		switch {
		case !s.expireAt.IsZero() && now.After(s.expireAt):
			srv.removeLocked(s, Expired)
			expired = append(expired, s)
		case s.wsHeld && s.ws != nil && !now.Before(s.wsDeadline):
			release = append(release, s)
		}
	}
	srv.mu.Unlock()
	srv.notifyRemoved(expired, Expired)
	for _, s := range release {
		srv.releaseWS(s)
	}
}

func (srv *Server) writeDirty() {
	srv.mu.Lock()
	ss := make([]*Session, 0, len(srv.dirty))
	for s := range srv.dirty {
		ss = append(ss, s)
	}
	clear(srv.dirty)
	srv.mu.Unlock()
	for _, s := range ss {
		srv.flushWS(s)
	}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// park is a long-poll /meta/connect waiting for messages or its timeout.
type park struct {
	ch  chan struct{}
	why woke // set once, under srv.mu, before ch is closed
}

type woke int

const (
	wokeMessages woke = iota + 1
	wokeReplaced
	wokeRemoved
	wokeTimeout
	wokeGone    // the client went away
	wokeClosing // the server closed
)

func (p *park) wake(why woke) {
	if p.why != 0 {
		return
	}
	p.why = why
	close(p.ch)
}
