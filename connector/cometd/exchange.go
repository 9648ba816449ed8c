package cometd

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// pending is a request waiting for its reply (and, for a remote call, its delivery).
type pending struct {
	id        string
	channel   string
	call      bool          // a delivery on channel with id is the call's result
	replied   bool          // guarded by Client.mu
	delivered bool          // guarded by Client.mu
	ch        chan *Message // at most one reply, one delivery and a nil for a dead transport: sends never block
	got       *Message      // the reply, when there is no ch (guarded by Client.mu)
	t         transport     // armed heartbeats: the websocket it went on
	deadline  time.Time     // armed heartbeats: the reply deadline
}

// register assigns m an id if it has none and records it as waiting for a reply on t.
func (c *Client) register(m *Message, t transport, call bool) *pending {
	if m.ID == "" {
		m.ID = c.nextID()
	}
	p := &pending{id: m.ID, channel: m.Channel, call: call, t: t}
	switch {
	case call:
		p.ch = make(chan *Message, 3)
	case t.async():
		p.ch = make(chan *Message, 2)
	}
	// Else a reply to a request on long-polling: dispatched before send returns, into p.got.
	c.mu.Lock()
	c.pend = append(c.pend, p)
	c.mu.Unlock()
	return p
}

func (c *Client) unregister(ps ...*pending) {
	c.mu.Lock()
	c.pend = slices.DeleteFunc(c.pend, func(p *pending) bool { return slices.Contains(ps, p) })
	if len(c.pend) == 0 && cap(c.pend) > 8 {
		c.pend = nil
	}
	c.mu.Unlock()
}

// send encodes msgs as one JSON array and hands it to t. scope is the requests in msgs.
func (c *Client) send(ctx context.Context, t transport, scope []*pending, msgs []Message) error {
	if len(msgs) == 1 {
		if body, ok := appendConnect(nil, &msgs[0]); ok {
			return t.send(ctx, body, scope)
		}
	}
	body, err := json.Marshal(msgs)
	if err != nil {
		return err
	}
	return t.send(ctx, body, scope)
}

// exchange sends msgs in one request over t and waits for one reply each, bounded by ctx,
// MaxNetworkDelay and the client's life.
func (c *Client) exchange(ctx context.Context, t transport, msgs []Message) ([]Message, error) {
	ctx, done := c.bound(ctx)
	defer done()
	ps := make([]*pending, len(msgs))
	for i := range msgs {
		ps[i] = c.register(&msgs[i], t, false)
	}
	defer c.unregister(ps...)
	if err := c.send(ctx, t, ps, msgs); err != nil {
		return nil, c.ctxErr(err)
	}
	replies := make([]Message, len(msgs))
	for i, p := range ps {
		r, err := c.await(ctx, t, p, false)
		if err != nil {
			return nil, err
		}
		replies[i] = r
	}
	return replies, nil
}

// ctxErr reports ErrClosed instead of a cancellation caused by Close.
func (c *Client) ctxErr(err error) error {
	if c.life.Err() != nil && c.stopping() {
		return ErrClosed
	}
	return err
}

// await returns the next message for p. On long-polling the replies were dispatched before
// send returned, so unless mayBlock (a call waiting for its delivery) a missing reply is
// ErrNoReply at once.
func (c *Client) await(ctx context.Context, t transport, p *pending, mayBlock bool) (Message, error) {
	if p.ch == nil {
		c.mu.Lock()
		m := p.got
		c.mu.Unlock()
		if m == nil {
			return Message{}, ErrNoReply
		}
		return *m, nil
	}
	if !t.async() && !mayBlock {
		select {
		case m := <-p.ch:
			if m != nil {
				return *m, nil
			}
		default:
		}
		return Message{}, ErrNoReply
	}
	select {
	case m := <-p.ch:
		if m == nil { // the transport died (a reply read before it died came first)
			return Message{}, t.err()
		}
		return *m, nil
	case <-ctx.Done():
		return Message{}, c.ctxErr(ctx.Err())
	}
}

// transportGone tells the requests waiting for replies on t that none will come.
func (c *Client) transportGone(t transport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pend {
		if p.t == t && p.ch != nil {
			select {
			case p.ch <- nil:
			default:
			}
		}
	}
}

// dispatch routes the messages of one HTTP reply body or websocket frame: replies to the
// requests waiting for them, deliveries to OnMessage. scope, if not nil, is the requests of the
// HTTP request this body answers: a reply without an id is matched to the first of them on its
// channel.
func (c *Client) dispatch(msgs []Message, scope []*pending) {
	for i := range msgs {
		m := &msgs[i]
		c.mu.Lock()
		p := c.match(m, scope)
		heartbeat := p != nil && p == c.armed
		if heartbeat {
			c.armed = nil
			c.pend = slices.DeleteFunc(c.pend, func(q *pending) bool { return q == p })
		} else if p != nil {
			// msgs is the decoder's, fresh for each body or frame and never reused: the request
			// takes its message in place, without a copy.
			if p.ch == nil {
				p.got = m
			} else {
				p.ch <- m
			}
		}
		c.mu.Unlock()
		if heartbeat {
			c.resume(p, *m, nil)
			continue
		}
		if p != nil {
			continue
		}
		switch {
		case m.IsReply():
			if m.Channel == "/meta/disconnect" && m.OK() {
				c.log.Info("server disconnected the session", "bayeux_client_id", m.ClientID)
			} else {
				c.log.Debug("reply to no pending request dropped", "channel", m.Channel, "bayeux_id", m.ID)
			}
		case strings.HasPrefix(m.Channel, "/meta/"):
			c.log.Debug("meta message without successful dropped", "channel", m.Channel)
		default:
			c.ev.message(*m)
		}
	}
}

// match finds the request m answers, marking it. c.mu held.
func (c *Client) match(m *Message, scope []*pending) *pending {
	if m.IsReply() {
		if m.ID != "" {
			for _, p := range c.pend {
				if !p.replied && p.id == m.ID && p.channel == m.Channel {
					p.replied = true
					return p
				}
			}
			return nil
		}
		if scope == nil {
			scope = c.pend
		}
		for _, p := range scope {
			if !p.replied && p.channel == m.Channel && slices.Contains(c.pend, p) {
				p.replied = true
				return p
			}
		}
		return nil
	}
	if m.ID == "" {
		return nil
	}
	for _, p := range c.pend {
		if p.call && !p.delivered && p.id == m.ID && p.channel == m.Channel {
			p.delivered = true
			return p
		}
	}
	return nil
}
