package cometd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// goNet runs fn on a goroutine counted in netWG, unless the client is stopping.
func (c *Client) goNet(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateStopping {
		return false
	}
	c.netWG.Add(1)
	go func() {
		defer c.netWG.Done()
		fn()
	}()
	return true
}

func (c *Client) emitState(kind StateKind, err error) {
	c.ev.state(StateEvent{Kind: kind, Err: err, ClientID: c.ClientID()})
}

// handshake negotiates a transport in preference order and installs the new session. A
// websocket that cannot be dialed or upgraded, or that the server does not offer, gives way to
// the next transport. A successful:false reply is returned as *Error.
func (c *Client) handshake(ctx context.Context) error {
	var errs []error
	for i, name := range c.transports {
		if name == TransportWebSocket && c.wsRefused.Load() && i < len(c.transports)-1 {
			continue // refused before (cometd-nodejs-server always answers 400): skip the round trip
		}
		t, err := c.open(ctx, name)
		if err != nil {
			c.log.Info("transport unavailable", "transport", name, "error", err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		hs := Message{
			Channel:                  "/meta/handshake",
			Version:                  "1.0",
			MinimumVersion:           "1.0",
			SupportedConnectionTypes: c.transports,
		}
		replies, err := c.exchange(ctx, t, []Message{hs})
		if err != nil {
			t.close()
			errs = append(errs, fmt.Errorf("%s: handshake: %w", name, err))
			if ctx.Err() != nil || c.stopping() {
				break
			}
			continue
		}
		r := &replies[0]
		if !r.OK() {
			t.close()
			c.mu.Lock()
			c.mergeAdvice(r.Advice, false)
			c.mu.Unlock()
			return replyError(r)
		}
		if len(r.SupportedConnectionTypes) > 0 && !slices.Contains(r.SupportedConnectionTypes, name) {
			t.close()
			c.log.Info("server does not offer transport", "transport", name, "offered", r.SupportedConnectionTypes)
			errs = append(errs, fmt.Errorf("%s: not offered by the server", name))
			continue
		}
		if r.ClientID == "" {
			t.close()
			return errors.New("cometd: handshake reply without clientId")
		}
		if !c.install(t, r.ClientID, r.Advice) {
			return ErrClosed
		}
		c.log.Debug("handshake", "bayeux_client_id", r.ClientID, "transport", name)
		return nil
	}
	if c.stopping() {
		return ErrClosed
	}
	return errors.Join(append([]error{ErrNoTransport}, errs...)...)
}

// connect sends one /meta/connect, with the messages of with after it in the same request or
// frame (their requests in scope), and waits for its reply up to advice.timeout+MaxNetworkDelay.
func (c *Client) connect(fresh bool, with []Message, scope []*pending) (Message, error) {
	t, id, err := c.session()
	if err != nil {
		return Message{}, err
	}
	m := Message{Channel: "/meta/connect", ClientID: id, ConnectionType: t.name()}
	if fresh {
		m.Advice = &Advice{Timeout: ptr(int64(0))}
	}
	ctx, cancel := context.WithTimeout(c.lifeCtx(), c.connectWait())
	defer cancel()
	p := c.register(&m, t, false)
	defer c.unregister(p)
	if err := c.send(ctx, t, append([]*pending{p}, scope...), append([]Message{m}, with...)); err != nil {
		return Message{}, c.ctxErr(err)
	}
	r, err := c.await(ctx, t, p, false)
	if err != nil {
		if t.async() {
			t.close() // a websocket that missed its heartbeat is not trusted again
		}
		return Message{}, err
	}
	c.mu.Lock()
	c.mergeAdvice(r.Advice, false)
	c.mu.Unlock()
	return r, nil
}

// connectWait is the HTTP (or frame) wait for a /meta/connect reply.
func (c *Client) connectWait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	timeout := DefaultConnectTimeout
	if c.advice.set&adviceTimeout != 0 && c.advice.timeout >= 0 {
		timeout = time.Duration(c.advice.timeout) * time.Millisecond
	}
	return timeout + c.opts.MaxNetworkDelay
}

// reopen replaces a dead websocket, keeping the session: by a new websocket, or, when the server
// now refuses the upgrade, by long-polling (if allowed). The server tells with 402 whether the
// session survived.
func (c *Client) reopen() error {
	c.mu.Lock()
	t := c.tr
	c.mu.Unlock()
	if t == nil || !t.async() {
		return nil
	}
	if !t.isDead() {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.lifeCtx(), c.opts.MaxNetworkDelay)
	defer cancel()
	var nt transport
	w, err := c.dialWS(ctx)
	if err == nil {
		nt = w
	} else {
		var he *HTTPError
		if !errors.As(err, &he) || !slices.Contains(c.transports, TransportLongPolling) {
			return err
		}
		c.log.Info("websocket upgrade refused, session continues on long-polling", "error", err)
		nt, _ = c.open(ctx, TransportLongPolling)
	}
	c.mu.Lock()
	if c.state == stateStopping || c.tr != t {
		c.mu.Unlock()
		nt.close()
		return ErrClosed
	}
	c.tr = nt
	c.mu.Unlock()
	return nil
}

// restore re-subscribes the tracked channels in one batch on the new session.
func (c *Client) restore() error {
	subs := c.Subscriptions()
	if len(subs) == 0 {
		return nil
	}
	msgs := make([]Message, len(subs))
	for i, s := range subs {
		msgs[i] = Message{Channel: "/meta/subscribe", Subscription: s}
	}
	replies, err := c.request(c.lifeCtx(), msgs)
	if err != nil {
		return err
	}
	for i := range replies {
		if err := replyError(&replies[i]); err != nil {
			var be *Error
			if errors.As(err, &be) && be.SessionUnknown() {
				return err
			}
			c.log.Warn("subscription not restored", "channel", subs[i], "error", err)
			c.forget(subs[i])
		}
	}
	return nil
}

// loop is the connect loop's state. Exactly one party owns it at a time: the loop goroutine, or,
// while a websocket heartbeat is armed (see arm), whoever completes that heartbeat: the reader
// with its reply, the reader when the connection dies, the heartbeat timer, or finish.
type loop struct {
	c             *Client
	timer         *time.Timer
	started       chan<- error // Start waits on it for the first connect
	running       bool         // the first connect succeeded
	fresh         bool         // the next connect is the first of its session: advice timeout 0
	needHandshake bool
	needRestore   bool
	reestablish   bool // a new session: StateReestablished on its first connect
	disconnected  bool // StateDisconnected sent, no success since
	multiple      bool // the last advice said multiple-clients
	backoff       time.Duration
	delay         time.Duration // wait before the next step
	out           *lpConnect    // a long-polling connect whose reply is coming
	// with is sent beside the first connect, in its request or frame (StartCall); withScope
	// holds their requests. Both are dropped once sent.
	with      []Message
	withScope []*pending
}

// errHeartbeat is a websocket /meta/connect that got no reply in time.
var errHeartbeat = errors.New("cometd: no /meta/connect reply in time")

// step is what a loop goroutine does after run: wait for a long-polling connect's reply, sleep
// the loop's delay, end (the loop went to an armed websocket heartbeat), or end the loop.
type step struct {
	wait  *lpConnect
	sleep bool
	armed bool
	err   error // the loop ends: nil when stopped from outside, else why
}

// runLoop is the body of a loop goroutine. A waiting long-polling session keeps it, parked in the
// read of its held connect's reply. Its steps run on its own stack, which they grow (JSON, the
// dispatch) and the garbage collector shrinks again while it waits. Running them on a short-lived
// goroutine instead (deep, as the websocket reader does) kept that stack at the minimum, but
// cost a goroutine, its stack's growth and one more wake-up per renewal: measured at 10,000
// long-polling sessions, idle CPU 5.9-6.2 % of a core against 4.0-4.3 % inline, for 10.7-11.0
// KiB per session against 12.7-13.1 (the goals: 5 % and 22 KiB). The rare end of the loop still
// goes through deep.
func (c *Client) runLoop(l *loop) {
	for {
		st := l.run()
		switch {
		case st.wait != nil:
			st.wait.q.await()
			l.out = st.wait
		case st.sleep:
			if !l.sleep(l.delay) {
				deep(func() { c.endLoop(l, nil) })
				return
			}
			l.delay = 0
		case st.armed:
			return
		default:
			deep(func() { c.endLoop(l, st.err) })
			return
		}
	}
}

// endLoop ends the connect loop: err nil when stopped from outside, else why the client
// terminates on its own (or, before the first connect succeeded, why Start fails).
func (c *Client) endLoop(l *loop, err error) {
	if l.timer != nil {
		l.timer.Stop()
	}
	if err != nil && !l.running {
		l.started <- err
		l.started = nil
		return // Start fails and closes the client; no events
	}
	if err != nil {
		c.log.Warn("client terminated", "error", err)
		c.beginStop(err)
		c.life.cancel()
		c.closeTransport()
	}
	c.mu.Lock()
	reason := c.termErr
	c.mu.Unlock()
	c.emitState(StateTerminated, reason)
	c.markDone()
}

// sleep waits d, false if the client stops first.
func (l *loop) sleep(d time.Duration) bool {
	if d <= 0 {
		return !l.c.stopping()
	}
	if l.timer == nil {
		l.timer = time.NewTimer(d)
	} else {
		l.timer.Reset(d)
	}
	stop := l.c.life.AfterFunc(func() { l.timer.Reset(0) })
	<-l.timer.C
	stop()
	return !l.c.stopping()
}

func (l *loop) nextBackoff() time.Duration {
	l.backoff = min(l.backoff+l.c.opts.BackoffIncrement, l.c.opts.MaxBackoff)
	return l.backoff
}

// failed reports an outage once.
func (l *loop) failed(err error) {
	if l.disconnected {
		l.c.log.Debug("still disconnected", "error", err)
		return
	}
	l.disconnected = true
	l.c.log.Warn("disconnected", "error", err)
	l.c.emitState(StateDisconnected, err)
}

// run advances the loop until it has to wait: for the reply to a long-polling connect it sent,
// for l.delay, or for nothing more (a websocket heartbeat took the loop over, or the loop ends).
func (l *loop) run() step {
	c := l.c
	for {
		if w := l.out; w != nil { // the reply to a long-polling connect is coming
			l.out = nil
			r, again, err := c.finishConnect(w)
			if again != nil {
				return step{wait: again}
			}
			if end, why := l.after(r, err); end {
				return step{err: why}
			}
			continue
		}
		if l.delay > 0 {
			return step{sleep: true}
		}
		if c.stopping() {
			return step{}
		}
		if l.needHandshake {
			c.mu.Lock()
			c.clientID = ""
			c.mu.Unlock()
			c.closeTransport()
			err := c.handshake(c.lifeCtx())
			if c.stopping() {
				return step{}
			}
			if err != nil {
				var be *Error
				if errors.As(err, &be) && c.Advice().Reconnect == ReconnectNone {
					return step{err: fmt.Errorf("%w: %w", ErrReconnectNone, err)}
				}
				l.failed(err)
				l.delay = l.nextBackoff()
				continue
			}
			l.needHandshake, l.needRestore, l.fresh, l.reestablish = false, true, true, true
			l.backoff = 0
		}
		if l.needRestore {
			if err := c.restore(); err != nil {
				if c.stopping() {
					return step{}
				}
				l.failed(err)
				var be *Error
				if errors.As(err, &be) && be.SessionUnknown() {
					l.needHandshake = true
					l.delay = c.adviceNow().delay()
				} else {
					l.delay = l.nextBackoff()
				}
				continue
			}
			l.needRestore = false
		}
		if err := c.reopen(); err != nil {
			if c.stopping() {
				return step{}
			}
			l.failed(err)
			l.delay = l.nextBackoff()
			continue
		}
		var r Message
		var err error
		switch {
		case l.running && c.canArm():
			if c.arm(l, &err) {
				return step{armed: true}
			}
		case c.longPolling() != nil:
			var w *lpConnect
			w, err = c.startConnect(l.fresh, l.with, l.withScope)
			l.with, l.withScope = nil, nil
			if err == nil {
				return step{wait: w}
			}
		default:
			with, scope := l.with, l.withScope
			l.with, l.withScope = nil, nil
			r, err = c.connect(l.fresh, with, scope)
		}
		if end, why := l.after(r, err); end {
			return step{err: why}
		}
	}
}

// after handles the outcome of a /meta/connect; end says the loop is over (why nil: stopped
// from outside). Otherwise l.delay and the flags say what comes next.
func (l *loop) after(r Message, err error) (end bool, why error) {
	c := l.c
	if c.stopping() {
		return true, nil
	}
	if err != nil {
		if !l.running {
			return true, err
		}
		l.failed(err)
		l.delay = l.nextBackoff()
		return false, nil
	}
	adv := c.adviceNow() // every renewal reads it: the client's own copy, without the pointers of Advice
	if !r.OK() {
		e := ParseError(r.Channel, r.Error)
		if !l.running {
			return true, e
		}
		switch {
		case adv.reconnect == ReconnectNone:
			return true, fmt.Errorf("%w: %w", ErrReconnectNone, e)
		case e.SessionUnknown() || adv.reconnect == ReconnectHandshake:
			l.failed(e)
			l.needHandshake = true
			l.delay = adv.delay()
		default:
			l.failed(e)
			l.delay = l.nextBackoff()
		}
		return false, nil
	}
	if !l.running {
		c.mu.Lock()
		abandoned := c.start == startAbandoned
		if !abandoned {
			c.start = startDone
		}
		c.mu.Unlock()
		if abandoned {
			return true, context.Canceled // Start gave up: end without events
		}
	}
	l.backoff = 0
	l.fresh = false
	switch {
	case !l.running:
		l.running = true
		c.log.Info("connected", "bayeux_client_id", c.ClientID(), "transport", c.Transport())
		c.emitState(StateConnected, nil)
		l.started <- nil
		l.started = nil // Start has its answer
	case l.reestablish:
		c.log.Info("session reestablished", "bayeux_client_id", c.ClientID(), "transport", c.Transport())
		c.emitState(StateReestablished, nil)
	case l.disconnected:
		c.log.Info("reconnected", "bayeux_client_id", c.ClientID())
		c.emitState(StateConnected, nil)
	}
	l.reestablish, l.disconnected = false, false
	if adv.multiple != l.multiple {
		l.multiple = adv.multiple
		if l.multiple {
			c.log.Warn("server reports several sessions sharing one browser cookie; it throttles connects")
		}
	}
	switch {
	case adv.reconnect == ReconnectNone:
		return true, ErrReconnectNone
	case adv.set&adviceInterval != 0 && adv.interval < 0:
		return true, fmt.Errorf("%w: negative interval %d", ErrReconnectNone, adv.interval)
	case adv.reconnect == ReconnectHandshake:
		l.needHandshake = true
	}
	l.delay = adv.delay()
	return false, nil
}

// canArm reports whether the transport in use is a live websocket.
func (c *Client) canArm() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.tr.(*wsTransport)
	return ok && !w.isDead()
}

// arm sends a websocket /meta/connect without waiting for its reply: the loop goes to whoever
// completes it (reply, dead connection, timeout; see claim) and arm returns true; the caller
// must not touch l again. On a send failure it returns false with *errp set, the caller still
// owning l. So a healthy websocket session keeps no goroutine parked besides its reader.
func (c *Client) arm(l *loop, errp *error) bool {
	t, id, err := c.session()
	if err != nil {
		*errp = err
		return false
	}
	m := Message{Channel: "/meta/connect", ClientID: id, ConnectionType: t.name(), ID: c.nextID()}
	if l.fresh {
		m.Advice = &Advice{Timeout: ptr(int64(0))}
	}
	p := &pending{id: m.ID, channel: m.Channel, t: t, deadline: time.Now().Add(c.connectWait())}
	c.mu.Lock()
	c.pend = append(c.pend, p)
	c.armed = p
	c.mu.Unlock()
	if w, ok := t.(*wsTransport); ok {
		w.setReadDeadline(p.deadline) // its reader times the heartbeat out (see heartbeatDue)
	}
	// No context: the write has a deadline (MaxNetworkDelay), and Close closes the connection.
	err = c.send(context.Background(), t, nil, []Message{m})
	if err == nil {
		return true
	}
	if !c.claim(p) {
		return true // completed already (the connection died and the reader took the loop)
	}
	t.close()
	*errp = c.ctxErr(err)
	return false
}

// claim takes the armed heartbeat p back; false if someone else did.
func (c *Client) claim(p *pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed != p {
		return false
	}
	c.armed = nil
	c.pend = slices.DeleteFunc(c.pend, func(q *pending) bool { return q == p })
	return true
}

// heartbeatDue runs on w's reader when its read deadline passed: the deadline of the heartbeat
// armed on w. A heartbeat overdue is completed with errHeartbeat (w is not trusted again); a
// stale deadline (its heartbeat was answered) is moved to the current heartbeat's, or cleared.
func (c *Client) heartbeatDue(w *wsTransport) {
	c.mu.Lock()
	p := c.armed
	if p == nil || p.t != w || c.state == stateStopping {
		c.mu.Unlock()
		w.setReadDeadline(time.Time{})
		return
	}
	if d := p.deadline; time.Now().Before(d) {
		c.mu.Unlock()
		w.setReadDeadline(d)
		return
	}
	c.mu.Unlock()
	if c.claim(p) {
		w.close() // a websocket that missed its heartbeat is not trusted again
		c.resume(p, Message{}, errHeartbeat)
	}
}

// transportDied completes the heartbeat armed on t, if any. Called by t's reader as it ends.
func (c *Client) transportDied(t transport) {
	c.mu.Lock()
	p := c.armed
	c.mu.Unlock()
	if p != nil && p.t == t && c.claim(p) {
		c.resume(p, Message{}, t.err())
	}
}

// resume continues the loop after an armed heartbeat completed, on the completer's goroutine:
// in the usual case (success, no interval) it arms the next heartbeat right away; otherwise it
// starts a loop goroutine, or ends the loop.
func (c *Client) resume(p *pending, r Message, err error) {
	l := c.lp
	if err == nil {
		c.mu.Lock()
		c.mergeAdvice(r.Advice, false)
		c.mu.Unlock()
	}
	for {
		if end, why := l.after(r, err); end {
			c.endLoop(l, why)
			return
		}
		if l.delay > 0 || l.needHandshake || l.needRestore || !c.canArm() {
			break
		}
		if c.arm(l, &err) {
			return
		}
		r = Message{}
	}
	if !c.goNet(func() { c.runLoop(l) }) {
		c.endLoop(l, nil)
	}
}

// longPolling returns the transport in use if it is our own long-polling.
func (c *Client) longPolling() *longPolling {
	c.mu.Lock()
	defer c.mu.Unlock()
	lp, _ := c.tr.(*longPolling)
	return lp
}

// lpConnect is a long-polling /meta/connect in flight; the loop goroutine awaits its reply.
type lpConnect struct {
	lp       *longPolling
	q        *lpRequest
	p        *pending
	with     []*pending // the requests sent beside it (StartCall)
	body     []byte
	deadline time.Time
}

// startConnect sends a /meta/connect on the long-polling transport without waiting for its reply,
// with the messages of with after it in the same request (their requests in scope).
func (c *Client) startConnect(fresh bool, with []Message, scope []*pending) (*lpConnect, error) {
	t, id, err := c.session()
	if err != nil {
		return nil, err
	}
	lp, ok := t.(*longPolling)
	if !ok {
		return nil, ErrNotConnected
	}
	m := Message{Channel: "/meta/connect", ClientID: id, ConnectionType: t.name()}
	if fresh {
		m.Advice = &Advice{Timeout: ptr(int64(0))}
	}
	// No context: the connection's deadline bounds the wait, and Close closes the connection.
	w := &lpConnect{lp: lp, deadline: time.Now().Add(c.connectWait()), with: scope}
	w.p = c.register(&m, t, false)
	var plain bool
	if len(with) > 0 {
		w.body, err = json.Marshal(append([]Message{m}, with...))
	} else if w.body, plain = appendConnect(make([]byte, 0, 160), &m); !plain {
		w.body, err = json.Marshal([]Message{m})
	}
	if err == nil {
		w.q, err = lp.start(nil, w.deadline, w.body, slotConnect) //nolint:staticcheck // nil is the transport's "no context": the deadline bounds the call, Close ends it
	}
	if err != nil {
		c.unregister(w.p)
		return nil, c.ctxErr(err)
	}
	return w, nil
}

// finishConnect reads the reply to w and returns it (merging its advice), or again when the
// request had to be sent again (see errSendAgain): await that one.
func (c *Client) finishConnect(w *lpConnect) (r Message, again *lpConnect, err error) {
	rep, err := w.q.finish()
	if errors.Is(err, errSendAgain) {
		if w.q, err = w.lp.start(nil, w.deadline, w.body, slotConnect); err == nil { //nolint:staticcheck // nil is the transport's "no context": the deadline bounds the call, Close ends it
			return Message{}, w, nil
		}
	}
	defer c.unregister(w.p)
	if err != nil {
		return Message{}, nil, c.ctxErr(err)
	}
	msgs, err := DecodeMessages(rep.body)
	if err != nil {
		return Message{}, nil, err
	}
	c.dispatch(msgs, append([]*pending{w.p}, w.with...))
	if r, err = c.await(nil, w.lp, w.p, false); err != nil { //nolint:staticcheck // nil is the transport's "no context": the deadline bounds the call, Close ends it
		return Message{}, nil, err
	}
	c.mu.Lock()
	c.mergeAdvice(r.Advice, false)
	c.mu.Unlock()
	return r, nil, nil
}

// finishArmed completes a heartbeat still armed when the client stops.
func (c *Client) finishArmed() {
	c.mu.Lock()
	p := c.armed
	c.mu.Unlock()
	if p != nil && c.claim(p) {
		c.endLoop(c.lp, nil)
	}
}
