package bayeux

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// BrowserCookie is the cookie long-polling sessions are bound to.
const BrowserCookie = "BAYEUX_BROWSER"

const (
	maxBody      = 1 << 20
	writeTimeout = 5 * time.Second
)

// Abort is called when the server closes under a request that is still waiting (a held
// connect, a delayed or dropped reply). The default aborts the connection.
type Abort func(w http.ResponseWriter, r *http.Request)

func defaultAbort(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }

// ServeHTTP serves the CometD URL and anything under it (the JS client appends /handshake,
// /connect, ...): a websocket upgrade, or a long-polling POST.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv.Serve(w, r, defaultAbort)
}

// Serve is ServeHTTP with the caller's way to abort a request when the server closes.
func (srv *Server) Serve(w http.ResponseWriter, r *http.Request, abort Abort) {
	if abort == nil {
		abort = defaultAbort
	}
	select {
	case <-srv.closing:
		abort(w, r)
		return
	default:
	}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		srv.serveWebSocket(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "bayeux: POST a JSON array of messages, or upgrade to websocket", http.StatusBadRequest)
		return
	}
	srv.serveLongPoll(w, r, abort)
}

func (srv *Server) serveLongPoll(w http.ResponseWriter, r *http.Request, abort Abort) {
	srv.lpRequests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err == nil && r.PostForm.Get("message") != "" {
			body = []byte(r.PostForm.Get("message"))
		}
	}
	msgs, err := decodeMessages(body)
	if err != nil {
		http.Error(w, "bayeux: "+err.Error(), http.StatusBadRequest)
		return
	}
	c := &conn{}
	if ck, err := r.Cookie(BrowserCookie); err == nil {
		c.browser = ck.Value
	}
	b := srv.process(c, msgs)
	resp := b.replies
	if b.connect != nil {
		more, st := srv.longPollConnect(r, b.connectSess, b.connect)
		switch st {
		case gone:
			return
		case closing:
			abort(w, r)
			return
		}
		resp = append(resp, more...)
	}
	resp, ok := srv.applyFault(r.Context(), resp)
	if !ok {
		select {
		case <-srv.closing:
			abort(w, r)
		default:
		}
		return
	}
	if c.issued {
		http.SetCookie(w, &http.Cookie{Name: BrowserCookie, Value: c.browser, Path: "/", HttpOnly: true})
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_, _ = w.Write(joinArray(resp))
}

type status int

const (
	answered status = iota
	gone
	closing
)

// longPollConnect answers a /meta/connect at once (first connect, queued messages, or a
// client that asked for timeout 0), or parks it until messages arrive or it times out.
func (srv *Server) longPollConnect(r *http.Request, s *Session, m *inMsg) ([]out, status) {
	now := time.Now()
	hold := srv.hold(m)
	srv.mu.Lock()
	if s.removed {
		srv.mu.Unlock()
		return []out{removedConnect(m, s.removedWhy)}, answered
	}
	first := !s.connected
	s.connected = true
	if s.park != nil {
		s.park.wake(wokeReplaced)
		s.park = nil
	}
	if first || len(s.queue) > 0 || hold == 0 {
		msgs := s.queue
		s.queue = nil
		s.expireAt = now.Add(srv.opts.MaxInterval)
		srv.mu.Unlock()
		return append(msgs, srv.connectReply(m, first)), answered
	}
	p := &park{ch: make(chan struct{})}
	s.park = p
	s.expireAt = time.Time{}
	srv.mu.Unlock()

	timer := time.NewTimer(hold)
	defer timer.Stop()
	var why woke
	select {
	case <-p.ch:
	case <-timer.C:
		why = wokeTimeout
	case <-r.Context().Done():
		why = wokeGone
	case <-srv.closing:
		why = wokeClosing
	}

	srv.mu.Lock()
	defer srv.mu.Unlock()
	p.wake(why) // a no-op if something woke it first
	if s.park == p {
		s.park = nil
	}
	now = time.Now()
	switch {
	case p.why == wokeClosing:
		return nil, closing
	case s.removed:
		if p.why == wokeGone {
			return nil, gone
		}
		return []out{removedConnect(m, s.removedWhy)}, answered
	case p.why == wokeReplaced:
		return []out{srv.connectReply(m, false)}, answered
	case p.why == wokeGone:
		if s.park == nil {
			s.expireAt = now.Add(srv.opts.MaxInterval)
		}
		return nil, gone
	}
	msgs := s.queue
	s.queue = nil
	s.expireAt = now.Add(srv.opts.MaxInterval)
	return append(msgs, srv.connectReply(m, false)), answered
}

// fault applies the injected fault to a response: pushed messages on a dropped channel are
// taken out; a reply on a dropped channel withholds the whole response (drop); a message on a
// delayed channel delays it.
func (srv *Server) fault(msgs []out) (kept []out, delay time.Duration, drop bool) {
	if srv.opts.Fault == nil {
		return msgs, 0, false
	}
	kept = make([]out, 0, len(msgs))
	for _, m := range msgs {
		d, x := srv.opts.Fault(m.channel)
		if x && m.pushed {
			continue
		}
		drop = drop || x
		delay = max(delay, d)
		kept = append(kept, m)
	}
	return kept, delay, drop
}

// applyFault applies the fault to a long-polling response: it returns what to write, or
// false when nothing is to be written (a withheld response waits until the client goes or
// the server closes).
func (srv *Server) applyFault(ctx context.Context, msgs []out) ([]out, bool) {
	kept, delay, drop := srv.fault(msgs)
	if drop {
		select {
		case <-ctx.Done():
		case <-srv.closing:
		}
		return nil, false
	}
	return kept, srv.sleep(ctx, delay)
}

// sleep waits d, unless ctx ends or the server closes first.
func (srv *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-srv.closing:
		return false
	}
}

// wsConn is a websocket connection; writeMu orders every frame written to it, so that queued
// messages are written in queue order whoever writes them.
type wsConn struct {
	c       *websocket.Conn
	writeMu sync.Mutex
	sess    *Session // guarded by srv.mu: the session bound to this connection
}

func (srv *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	wc := &wsConn{c: c}
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		c.CloseNow()
		return
	}
	srv.conns[wc] = struct{}{}
	srv.mu.Unlock()
	srv.wsConns.Add(1)
	defer srv.wsClosed(wc)
	c.SetReadLimit(maxBody)
	for {
		typ, data, err := c.Read(context.Background()) // Close unblocks it with CloseNow
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			c.Close(websocket.StatusUnsupportedData, "bayeux: text frames only")
			return
		}
		msgs, err := decodeMessages(data)
		if err != nil {
			c.Close(websocket.StatusPolicyViolation, "bayeux: "+err.Error())
			return
		}
		b := srv.process(&conn{ws: wc}, msgs)
		srv.wsRespond(wc, b)
	}
}

func (srv *Server) wsClosed(wc *wsConn) {
	srv.mu.Lock()
	delete(srv.conns, wc)
	if s := wc.sess; s != nil && s.ws == wc {
		srv.unbindLocked(s, time.Now())
	}
	srv.mu.Unlock()
	wc.c.CloseNow()
}

// wsRespond writes the replies to one frame's messages: first the answers to connects that
// a disconnect ended, then the replies, queued messages and the connect reply (unless held).
func (srv *Server) wsRespond(wc *wsConn, b batch) {
	wc.writeMu.Lock()
	defer wc.writeMu.Unlock()
	for _, s := range b.release {
		srv.releaseWSLocked(wc, s)
	}
	resp := b.replies
	if b.connect != nil {
		resp = append(resp, srv.wsConnect(b.connectSess, b.connect)...)
	}
	if len(resp) > 0 {
		srv.wsWrite(wc, resp)
	}
}

// wsConnect answers a websocket /meta/connect at once, or holds it: the housekeeper answers
// it at its deadline. Messages queued meanwhile are written without it, as CometD does.
func (srv *Server) wsConnect(s *Session, m *inMsg) []out {
	now := time.Now()
	hold := srv.hold(m)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if s.removed {
		return []out{removedConnect(m, s.removedWhy)}
	}
	var resp []out
	if s.wsHeld { // a newer connect replaces the held one, which is answered now
		resp = append(resp, srv.connectReply(&inMsg{Channel: MetaConnect, ID: s.wsConnectID}, false))
		s.wsHeld = false
	}
	first := !s.connected
	s.connected = true
	if first || len(s.queue) > 0 || hold == 0 {
		resp = append(resp, s.queue...)
		s.queue = nil
		delete(srv.dirty, s)
		s.expireAt = now.Add(srv.opts.MaxInterval)
		return append(resp, srv.connectReply(m, first))
	}
	s.wsHeld, s.wsConnectID, s.wsDeadline = true, m.ID, now.Add(hold)
	s.expireAt = time.Time{}
	return resp
}

// releaseWS answers a held websocket connect: at its deadline, or because the session was
// removed.
func (srv *Server) releaseWS(s *Session) {
	srv.mu.Lock()
	wc := s.ws
	srv.mu.Unlock()
	if wc == nil {
		return
	}
	wc.writeMu.Lock()
	defer wc.writeMu.Unlock()
	srv.releaseWSLocked(wc, s)
}

func (srv *Server) releaseWSLocked(wc *wsConn, s *Session) {
	srv.mu.Lock()
	if !s.wsHeld || s.ws != wc {
		srv.mu.Unlock()
		return
	}
	s.wsHeld = false
	m := &inMsg{Channel: MetaConnect, ID: s.wsConnectID}
	var resp []out
	if s.removed {
		resp = []out{removedConnect(m, s.removedWhy)}
	} else {
		resp = append(s.queue, srv.connectReply(m, false))
		s.queue = nil
		delete(srv.dirty, s)
		s.expireAt = time.Now().Add(srv.opts.MaxInterval)
	}
	srv.mu.Unlock()
	srv.wsWrite(wc, resp)
}

// flushWS writes a websocket session's queued messages.
func (srv *Server) flushWS(s *Session) {
	srv.mu.Lock()
	wc := s.ws
	srv.mu.Unlock()
	if wc == nil {
		return
	}
	wc.writeMu.Lock()
	defer wc.writeMu.Unlock()
	srv.mu.Lock()
	if s.ws != wc || s.removed || len(s.queue) == 0 {
		srv.mu.Unlock()
		return
	}
	msgs := s.queue
	s.queue = nil
	srv.mu.Unlock()
	srv.wsWrite(wc, msgs)
}

// wsWrite writes one frame; the caller holds wc.writeMu. A fault delays the frame (the
// writer sleeps), drops it (a reply: the frame is lost) or takes pushed messages out of it. A failed write
// closes the connection: its reader then cleans up.
func (srv *Server) wsWrite(wc *wsConn, msgs []out) {
	msgs, delay, drop := srv.fault(msgs)
	if drop || len(msgs) == 0 || !srv.sleep(context.Background(), delay) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := wc.c.Write(ctx, websocket.MessageText, joinArray(msgs)); err != nil {
		srv.log.Debug("bayeux websocket write failed", "error", err)
		wc.c.CloseNow()
	}
}
