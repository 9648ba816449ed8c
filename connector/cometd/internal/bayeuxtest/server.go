// Package bayeuxtest is a small, scriptable Bayeux 1.0 server for the cometd package's tests and
// benchmarks: long-polling and websocket on one path, CometD-style BAYEUX_BROWSER cookies, parked
// /meta/connect, broadcast channels, advice sent only when it changes, and hooks to script any
// reply. It is an http.Handler: serve it with net/http/httptest.
package bayeuxtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// BrowserCookie is the cookie that finds long-polling sessions when Server.BrowserCookie is set.
const BrowserCookie = "BAYEUX_BROWSER"

// Call describes where an incoming message came from.
type Call struct {
	HTTP      *http.Request // the POST, or the websocket upgrade request
	Transport string        // cometd.TransportLongPolling or cometd.TransportWebSocket
	Body      []cometd.Message
}

// Server is a Bayeux server. Set the fields before serving.
type Server struct {
	Timeout       time.Duration // connect hold, advised to clients; default 30s
	Interval      time.Duration // advised interval
	WebSocket     bool          // accept websocket upgrades and offer "websocket"
	BrowserCookie bool          // find long-polling sessions through BAYEUX_BROWSER, like CometD
	// Hook sees every incoming message first. If handled, its replies (possibly none) are sent
	// instead of the default handling. It runs with no lock held.
	Hook func(c *Call, m cometd.Message) (replies []cometd.Message, handled bool)
	// OnBody observes every POST body and websocket frame, and every upgrade (with Body nil).
	OnBody func(c *Call)

	mu       sync.Mutex
	sessions map[string]*session
	seq      int
	browsers int
	parked   int
	closed   bool
	conns    map[*wsConn]struct{}
	done     chan struct{}
}

type session struct {
	id      string
	browser string
	subs    map[string]bool
	queue   []cometd.Message
	wake    chan struct{} // cap 1: queue not empty, or session removed
	gone    bool
	ws      *wsConn
	pending *cometd.Message // a websocket connect reply waiting for its timeout
	timer   *time.Timer
}

func (s *Server) init() {
	if s.sessions == nil {
		s.sessions = make(map[string]*session)
		s.conns = make(map[*wsConn]struct{})
		s.done = make(chan struct{})
	}
}

func (s *Server) timeout() time.Duration {
	if s.Timeout <= 0 {
		return 30 * time.Second
	}
	return s.Timeout
}

// Sessions is the number of live sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Parked is the number of /meta/connect requests being held.
func (s *Server) Parked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parked
}

// SessionIDs lists the live sessions.
func (s *Server) SessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ids
}

// Expire forgets a session as a CometD server does after maxInterval: its held connect is
// answered with 402 and later messages get 402 too. False if unknown.
func (s *Server) Expire(clientID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[clientID]
	if ss == nil {
		return false
	}
	s.removeLocked(ss)
	return true
}

func (s *Server) removeLocked(ss *session) {
	delete(s.sessions, ss.id)
	ss.gone = true
	select {
	case ss.wake <- struct{}{}:
	default:
	}
	if ss.pending != nil {
		ss.timer.Stop()
		r := unknown(ss.pending)
		ss.pending = nil
		s.parked--
		ss.ws.send([]cometd.Message{r})
	}
}

// DropConnections closes every websocket from the server side, as a network failure would.
// Sessions survive.
func (s *Server) DropConnections() {
	s.mu.Lock()
	s.init()
	conns := s.conns
	s.conns = map[*wsConn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		c.c.CloseNow()
	}
}

// Publish delivers data on a broadcast channel to its subscribers.
func (s *Server) Publish(channel string, data any) {
	raw, _ := json.Marshal(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcastLocked(cometd.Message{Channel: channel, Data: raw})
}

// Deliver queues m for one session.
func (s *Server) Deliver(clientID string, m cometd.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[clientID]
	if ss == nil {
		return false
	}
	s.deliverLocked(ss, m)
	return true
}

func (s *Server) broadcastLocked(m cometd.Message) {
	for _, ss := range s.sessions {
		if ss.subs[m.Channel] {
			s.deliverLocked(ss, m)
		}
	}
}

// deliverLocked pushes m at once on a websocket, else queues it for the held connect.
func (s *Server) deliverLocked(ss *session, m cometd.Message) {
	if ss.ws != nil {
		ss.ws.send([]cometd.Message{m})
		return
	}
	ss.queue = append(ss.queue, m)
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// Close answers every held connect and closes the websockets. Call before httptest.Server.Close.
func (s *Server) Close() {
	s.mu.Lock()
	s.init()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	conns := s.conns
	s.conns = map[*wsConn]struct{}{}
	for _, ss := range s.sessions {
		if ss.timer != nil {
			ss.timer.Stop()
		}
	}
	s.mu.Unlock()
	for c := range conns {
		c.c.CloseNow()
	}
}

// wsConn writes frames in order from one short-lived writer goroutine.
type wsConn struct {
	c       *websocket.Conn
	mu      sync.Mutex
	q       [][]cometd.Message
	running bool
	wg      sync.WaitGroup
}

func (w *wsConn) send(msgs []cometd.Message) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.q = append(w.q, msgs)
	if w.running {
		return
	}
	w.running = true
	w.wg.Add(1)
	go w.flush()
}

func (w *wsConn) flush() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		if len(w.q) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		msgs := w.q[0]
		w.q = w.q[1:]
		w.mu.Unlock()
		b, _ := json.Marshal(msgs)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = w.c.Write(ctx, websocket.MessageText, b)
		cancel()
	}
}

func ok(m *cometd.Message) cometd.Message {
	t := true
	return cometd.Message{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID, Successful: &t}
}

// Fail builds a successful:false reply to m.
func Fail(m *cometd.Message, err string, adv *cometd.Advice) cometd.Message {
	f := false
	return cometd.Message{Channel: m.Channel, ID: m.ID, Successful: &f, Error: err, Advice: adv}
}

// OK builds a successful:true reply to m.
func OK(m *cometd.Message) cometd.Message { return ok(m) }

func unknown(m *cometd.Message) cometd.Message {
	var adv *cometd.Advice
	if m.Channel == "/meta/connect" || m.Channel == "/meta/handshake" {
		zero := int64(0)
		adv = &cometd.Advice{Reconnect: "handshake", Interval: &zero}
	}
	return Fail(m, "402::Unknown client", adv)
}

func (s *Server) advice() *cometd.Advice {
	iv, to := s.Interval.Milliseconds(), s.timeout().Milliseconds()
	return &cometd.Advice{Reconnect: "retry", Interval: &iv, Timeout: &to}
}

// ServeHTTP serves long-polling POSTs and websocket upgrades.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	if r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveWS(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return
	}
	msgs, err := cometd.DecodeMessages(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	call := &Call{HTTP: r, Transport: cometd.TransportLongPolling, Body: msgs}
	if s.OnBody != nil {
		s.OnBody(call)
	}
	browser := ""
	if c, err := r.Cookie(BrowserCookie); err == nil {
		browser = c.Value
	}
	var replies []cometd.Message
	for i := range msgs {
		m := &msgs[i]
		if s.Hook != nil {
			if rs, handled := s.Hook(call, *m); handled {
				replies = append(replies, rs...)
				continue
			}
		}
		if m.Channel == "/meta/handshake" && s.BrowserCookie && browser == "" {
			s.mu.Lock()
			s.browsers++
			browser = "b" + strconv.Itoa(s.browsers) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			s.mu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: BrowserCookie, Value: browser, Path: "/", HttpOnly: true})
		}
		replies = append(replies, s.handle(r.Context(), m, browser, nil, len(msgs) == 1)...)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	if replies == nil {
		replies = []cometd.Message{}
	}
	_ = json.NewEncoder(w).Encode(replies)
}

// lookup finds the session of m; with BrowserCookie, only through the right browser.
func (s *Server) lookup(m *cometd.Message, browser string, ws *wsConn) *session {
	ss := s.sessions[m.ClientID]
	if ss == nil {
		return nil
	}
	if ws == nil && s.BrowserCookie && ss.browser != browser && ss.ws == nil {
		return nil
	}
	return ss
}

// handle processes one message; for a long-polling connect it may hold the request.
func (s *Server) handle(ctx context.Context, m *cometd.Message, browser string, ws *wsConn, alone bool) []cometd.Message {
	s.mu.Lock()
	if m.Channel == "/meta/handshake" {
		s.seq++
		ss := &session{
			id:      "c" + strconv.Itoa(s.seq) + "x" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
			browser: browser, subs: map[string]bool{}, wake: make(chan struct{}, 1), ws: ws,
		}
		s.sessions[ss.id] = ss
		s.mu.Unlock()
		r := ok(m)
		r.ClientID = ss.id
		r.Version = "1.0"
		r.SupportedConnectionTypes = []string{cometd.TransportLongPolling}
		if s.WebSocket {
			r.SupportedConnectionTypes = append(r.SupportedConnectionTypes, cometd.TransportWebSocket)
		}
		r.Advice = s.advice()
		return []cometd.Message{r}
	}
	ss := s.lookup(m, browser, ws)
	if ss == nil {
		s.mu.Unlock()
		return []cometd.Message{unknown(m)}
	}
	switch m.Channel {
	case "/meta/connect":
		return s.connect(ctx, ss, m, ws, alone) // unlocks
	case "/meta/subscribe", "/meta/unsubscribe":
		for _, ch := range strings.Split(m.Subscription, ",") {
			if m.Channel == "/meta/subscribe" {
				ss.subs[ch] = true
			} else {
				delete(ss.subs, ch)
			}
		}
		s.mu.Unlock()
		r := ok(m)
		r.Subscription = m.Subscription
		return []cometd.Message{r}
	case "/meta/disconnect":
		s.removeLocked(ss)
		s.mu.Unlock()
		return []cometd.Message{ok(m)}
	}
	if strings.HasPrefix(m.Channel, "/meta/") {
		s.mu.Unlock()
		return []cometd.Message{Fail(m, "400::unknown meta channel", nil)}
	}
	if !strings.HasPrefix(m.Channel, "/service/") {
		s.broadcastLocked(cometd.Message{Channel: m.Channel, Data: m.Data})
	}
	s.mu.Unlock()
	return []cometd.Message{ok(m)}
}

// connect answers a /meta/connect, holding it while the queue is empty. Called with s.mu held;
// unlocks.
func (s *Server) connect(ctx context.Context, ss *session, m *cometd.Message, ws *wsConn, alone bool) []cometd.Message {
	hold := s.timeout()
	if m.Advice != nil && m.Advice.Timeout != nil {
		hold = time.Duration(*m.Advice.Timeout) * time.Millisecond
	}
	reply := ok(m)
	if m.Advice != nil {
		reply.Advice = s.advice() // advice only when the client asks (first connect), as CometD
	}
	if ws != nil {
		ss.ws = ws
		if len(ss.queue) > 0 {
			ws.send(ss.queue)
			ss.queue = nil
		}
		if hold <= 0 || s.closed {
			s.mu.Unlock()
			return []cometd.Message{reply}
		}
		if ss.pending != nil { // a newer connect replaces the held one
			ss.timer.Stop()
			s.parked--
			ws.send([]cometd.Message{*ss.pending})
		}
		ss.pending = &reply
		s.parked++
		ss.timer = time.AfterFunc(hold, func() {
			s.mu.Lock()
			if ss.pending != &reply {
				s.mu.Unlock()
				return
			}
			ss.pending = nil
			s.parked--
			ws.send([]cometd.Message{reply})
			s.mu.Unlock()
		})
		s.mu.Unlock()
		return nil
	}
	if hold > 0 && alone && len(ss.queue) == 0 && !s.closed {
		s.parked++
		s.mu.Unlock()
		t := time.NewTimer(hold)
		select {
		case <-ss.wake:
		case <-t.C:
		case <-ctx.Done():
		case <-s.done:
		}
		t.Stop()
		s.mu.Lock()
		s.parked--
	}
	if ss.gone {
		s.mu.Unlock()
		return []cometd.Message{unknown(m)}
	}
	out := append(ss.queue, reply)
	ss.queue = nil
	s.mu.Unlock()
	return out
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	call := &Call{HTTP: r, Transport: cometd.TransportWebSocket}
	if s.OnBody != nil {
		s.OnBody(call)
	}
	if !s.WebSocket {
		http.Error(w, "websocket not supported", http.StatusBadRequest)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	conn.SetReadLimit(8 << 20)
	c := &wsConn{c: conn}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		for _, ss := range s.sessions {
			if ss.ws == c {
				ss.ws = nil
				if ss.pending != nil {
					ss.timer.Stop()
					ss.pending = nil
					s.parked--
				}
			}
		}
		s.mu.Unlock()
		conn.CloseNow()
		c.wg.Wait()
	}()
	for {
		_, b, err := conn.Read(context.Background())
		if err != nil {
			return
		}
		msgs, err := cometd.DecodeMessages(b)
		if err != nil {
			return
		}
		fc := &Call{HTTP: r, Transport: cometd.TransportWebSocket, Body: msgs}
		if s.OnBody != nil {
			s.OnBody(fc)
		}
		var replies []cometd.Message
		for i := range msgs {
			m := &msgs[i]
			if s.Hook != nil {
				if rs, handled := s.Hook(fc, *m); handled {
					replies = append(replies, rs...)
					continue
				}
			}
			replies = append(replies, s.handle(r.Context(), m, "", c, false)...)
		}
		if len(replies) > 0 {
			c.send(replies)
		}
	}
}
