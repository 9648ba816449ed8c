package bayeux

import (
	"encoding/json"
	"strings"
	"time"
)

// conn is what the server knows about the transport a batch came on.
type conn struct {
	browser string  // long-polling: the BAYEUX_BROWSER value sent (or issued by a handshake)
	issued  bool    // long-polling: the response must set the BAYEUX_BROWSER cookie
	ws      *wsConn // websocket: the connection
}

// batch is the outcome of processing one request's messages, in order.
type batch struct {
	replies     []out
	connect     *inMsg     // the /meta/connect, answered last (possibly held)
	connectSess *Session   // its session
	release     []*Session // websocket sessions whose held connect must be answered first
}

func (srv *Server) advice() map[string]any {
	return map[string]any{
		"reconnect":   "retry",
		"interval":    0,
		"timeout":     srv.opts.Timeout.Milliseconds(),
		"maxInterval": srv.opts.MaxInterval.Milliseconds(),
	}
}

// process handles every message of a batch but the /meta/connect, in order.
func (srv *Server) process(c *conn, msgs []inMsg) batch {
	var b batch
	for i := range msgs {
		m := &msgs[i]
		switch m.Channel {
		case "":
			b.replies = append(b.replies, failure(m, errChannelMissing))
		case MetaHandshake:
			b.replies = append(b.replies, srv.handshake(c, m))
		default:
			s := srv.lookup(c, m.ClientID)
			if s == nil {
				b.replies = append(b.replies, unknownClient(m))
				continue
			}
			switch m.Channel {
			case MetaConnect:
				if b.connect != nil { // two connects in one batch: the earlier is answered at once
					b.replies = append(b.replies, encode(reply(b.connect, true)))
				}
				b.connect, b.connectSess = m, s
			case MetaDisconnect:
				srv.mu.Lock()
				held := s.wsHeld && s.ws != nil
				srv.removeLocked(s, Disconnected)
				srv.mu.Unlock()
				if held {
					b.release = append(b.release, s)
				}
				b.replies = append(b.replies, encode(reply(m, true)))
				srv.notifyRemoved([]*Session{s}, Disconnected)
			case MetaSubscribe, MetaUnsubscribe:
				b.replies = append(b.replies, srv.subscribe(s, m))
			default:
				if IsMeta(m.Channel) {
					b.replies = append(b.replies, failure(m, errUnknownMeta))
					continue
				}
				b.replies = append(b.replies, srv.publish(s, m)...)
			}
		}
	}
	return b
}

func (srv *Server) handshake(c *conn, m *inMsg) out {
	now := time.Now()
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return unknownClient(m)
	}
	s := &Session{srv: srv, id: newID(), expireAt: now.Add(srv.opts.MaxInterval)}
	if c.ws != nil {
		if old := c.ws.sess; old != nil && old.ws == c.ws {
			srv.unbindLocked(old, now)
		}
		s.ws, c.ws.sess = c.ws, s
	} else {
		if c.browser == "" {
			c.browser, c.issued = newID(), true
		}
		s.browser = c.browser
	}
	srv.sessions[s.id] = s
	srv.mu.Unlock()
	srv.handshakes.Add(1)

	r := reply(m, true)
	r.Version, r.MinimumVersion = "1.0", "1.0"
	r.SupportedConnectionTypes = []string{WebSocket, LongPolling}
	r.ClientID = s.id
	r.Advice = srv.advice()
	return encode(r)
}

// lookup finds the session a message names, as the transport it came on may see it: a
// long-polling request must carry the BAYEUX_BROWSER cookie the session was bound to at
// handshake; a websocket session is bound to its connection (a new connection of the same
// client takes the session over). Anything else is an unknown client.
func (srv *Server) lookup(c *conn, clientID string) *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	s := srv.sessions[clientID]
	if s == nil || s.removed {
		return nil
	}
	if c.ws == nil {
		if s.browser == "" || s.browser != c.browser {
			return nil
		}
		return s
	}
	if s.browser != "" {
		return nil
	}
	if s.ws != c.ws {
		if s.ws != nil {
			srv.unbindLocked(s, time.Now())
		}
		if old := c.ws.sess; old != nil && old != s && old.ws == c.ws {
			srv.unbindLocked(old, time.Now())
		}
		s.ws, c.ws.sess = c.ws, s
		if len(s.queue) > 0 {
			srv.dirty[s] = struct{}{}
			select {
			case srv.kick <- struct{}{}:
			default:
			}
		}
	}
	return s
}

// unbindLocked detaches a websocket session from its connection; a held connect is forgotten
// (its connection is gone) and the expiry clock starts.
func (srv *Server) unbindLocked(s *Session, now time.Time) {
	s.ws = nil
	s.wsHeld = false
	delete(srv.dirty, s)
	if !s.removed && s.expireAt.IsZero() {
		s.expireAt = now.Add(srv.opts.MaxInterval)
	}
}

func (srv *Server) subscribe(s *Session, m *inMsg) out {
	subs, ok := subscriptions(m.Subscription)
	r := reply(m, ok)
	r.Subscription = m.Subscription
	if !ok {
		r.Error = errSubMissing
		return encode(r)
	}
	for _, sub := range subs {
		if !validChannel(sub) || IsMeta(sub) {
			r.Successful, r.Error = ptr(false), errSubInvalid
			return encode(r)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, sub := range subs {
		if IsService(sub) { // service subscriptions are not recorded: services deliver directly
			continue
		}
		at := -1
		for i, have := range s.subs {
			if have == sub {
				at = i
				break
			}
		}
		switch {
		case m.Channel == MetaSubscribe && at < 0:
			s.subs = append(s.subs, sub)
		case m.Channel == MetaUnsubscribe && at >= 0:
			s.subs = append(s.subs[:at], s.subs[at+1:]...)
		}
	}
	return encode(r)
}

func (srv *Server) publish(s *Session, m *inMsg) []out {
	if !validChannel(m.Channel) || strings.HasSuffix(m.Channel, "*") {
		return []out{failure(m, "400::channel invalid")}
	}
	if IsService(m.Channel) {
		if srv.opts.Service != nil {
			result, errText, handled := srv.opts.Service(s, m.Channel, m.Data)
			if handled {
				return serviceReplies(m, result, errText)
			}
		}
		return []out{encode(reply(m, true))}
	}
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	msg := encode(outMsg{Channel: m.Channel, Data: data})
	msg.pushed = true
	srv.mu.Lock()
	for _, other := range srv.sessions {
		for _, sub := range other.subs {
			if matches(sub, m.Channel) {
				srv.enqueueLocked(other, msg)
				break
			}
		}
	}
	srv.mu.Unlock()
	return []out{encode(reply(m, true))}
}

// serviceReplies answers a handled /service/ publish with two messages that share its id and
// channel: first the result, which carries data (what CometD's remoteCall and any client that
// matches replies by id read), then the plain publish acknowledgement without data (what a
// publish callback waits for, and what the JS websocket transport needs to clear its timer).
// A refusal is successful:false with the error string in both, and {"error": ...} as data.
func serviceReplies(m *inMsg, result any, errText string) []out {
	if errText != "" {
		data, _ := json.Marshal(map[string]string{"error": errText})
		res := reply(m, false)
		res.Error, res.Data = errText, data
		ack := reply(m, false)
		ack.Error = errText
		return []out{encode(res), encode(ack)}
	}
	if result == nil {
		result = struct{}{}
	}
	data, err := json.Marshal(result)
	if err != nil {
		panic(err)
	}
	res := reply(m, true)
	res.Data = data
	return []out{encode(res), encode(reply(m, true))}
}

// connectReply answers a /meta/connect; the first one of a session carries the advice.
func (srv *Server) connectReply(m *inMsg, first bool) out {
	r := reply(m, true)
	if first {
		r.Advice = srv.advice()
	}
	return encode(r)
}

// removedConnect answers a held connect whose session was removed.
func removedConnect(m *inMsg, why Reason) out {
	if why == Disconnected {
		r := reply(m, true)
		r.Advice = map[string]any{"reconnect": "none", "interval": 0}
		return encode(r)
	}
	return unknownClient(m)
}

// hold is how long a connect may be held: the server's timeout, or less if the client asked.
func (srv *Server) hold(m *inMsg) time.Duration {
	d := srv.opts.Timeout
	if m.Advice != nil && m.Advice.Timeout != nil {
		if t := time.Duration(*m.Advice.Timeout) * time.Millisecond; t < d {
			d = max(t, 0)
		}
	}
	return d
}
