package cometd_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

func i64(v int64) *int64 { return &v }

// connectSeen is one /meta/connect as the server saw it.
type connectSeen struct {
	clientID string
	zero     bool // carried advice {timeout: 0}
	at       time.Time
}

// recordConnects logs every /meta/connect the server receives.
func recordConnects(srv *bayeuxtest.Server) *log[connectSeen] {
	l := newLog[connectSeen]()
	prev := srv.OnBody
	srv.OnBody = func(c *bayeuxtest.Call) {
		if prev != nil {
			prev(c)
		}
		for _, m := range c.Body {
			if m.Channel == "/meta/connect" {
				zero := m.Advice != nil && m.Advice.Timeout != nil && *m.Advice.Timeout == 0
				l.add(connectSeen{clientID: m.ClientID, zero: zero, at: time.Now()})
			}
		}
	}
	return l
}

// TestFirstConnectAfterEveryHandshakeAsksTimeoutZero: the first /meta/connect of each session
// carries advice {timeout: 0}, later ones none, also after a re-handshake.
func TestFirstConnectAfterEveryHandshakeAsksTimeoutZero(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			connects := recordConnects(srv)
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			first := c.ClientID()
			for i, wantZero := range []bool{true, false, false} {
				s := connects.next(t)
				if s.clientID != first || s.zero != wantZero {
					t.Fatalf("connect %d: %+v, want clientId %s zero %v", i, s, first, wantZero)
				}
			}
			srv.Expire(first)
			rec.state(cometd.StateDisconnected)
			second := rec.state(cometd.StateReestablished).ClientID
			var seen []connectSeen
			for len(seen) < 2 {
				if s := connects.next(t); s.clientID == second {
					seen = append(seen, s)
				}
			}
			if !seen[0].zero || seen[1].zero {
				t.Fatalf("connects of the new session %+v: want timeout 0 on the first only", seen)
			}
		})
	}
}

// TestAdviceIntervalSpacesConnects: the client waits `interval` after a connect reply.
func TestAdviceIntervalSpacesConnects(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			const interval = 150 * time.Millisecond
			srv := &bayeuxtest.Server{Timeout: time.Millisecond, Interval: interval, WebSocket: true}
			connects := recordConnects(srv)
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			prev := connects.next(t)
			for range 3 {
				s := connects.next(t)
				if gap := s.at.Sub(prev.at); gap < interval {
					t.Fatalf("connects %v apart, advice interval %v", gap, interval)
				}
				prev = s
			}
			if got := c.Advice(); got.Interval == nil || *got.Interval != interval.Milliseconds() {
				t.Fatalf("advice %+v", got)
			}
		})
	}
}

// scriptConnect answers the nth /meta/connect (1-based) of the session with reply(m) instead
// of the default handling.
func scriptConnect(srv *bayeuxtest.Server, n int64, reply func(m cometd.Message) cometd.Message) {
	var count atomic.Int64
	srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
		if m.Channel != "/meta/connect" || count.Add(1) != n {
			return nil, false
		}
		return []cometd.Message{reply(m)}, true
	}
}

// TestAdviceTerminates: reconnect "none" (on a successful or a failed reply) and a negative
// interval stop the client: StateTerminated with ErrReconnectNone, Done closed.
func TestAdviceTerminates(t *testing.T) {
	cases := []struct {
		name  string
		reply func(m cometd.Message) cometd.Message
		code  int
	}{
		{"none on success", func(m cometd.Message) cometd.Message {
			r := bayeuxtest.OK(&m)
			r.Advice = &cometd.Advice{Reconnect: "none"}
			return r
		}, 0},
		{"none on failure", func(m cometd.Message) cometd.Message {
			return bayeuxtest.Fail(&m, "500::server going away", &cometd.Advice{Reconnect: "none"})
		}, 500},
		{"negative interval", func(m cometd.Message) cometd.Message {
			r := bayeuxtest.OK(&m)
			r.Advice = &cometd.Advice{Interval: i64(-1)}
			return r
		}, 0},
	}
	for _, tc := range cases {
		for _, tr := range bothTransports {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true}
				scriptConnect(srv, 2, tc.reply)
				c, rec := newClient(t, serve(t, srv), tr, nil)
				start(t, c, rec)
				e := rec.state(cometd.StateTerminated)
				if !errors.Is(e.Err, cometd.ErrReconnectNone) {
					t.Fatalf("terminated with %v, want ErrReconnectNone", e.Err)
				}
				var be *cometd.Error
				if tc.code != 0 && (!errors.As(e.Err, &be) || be.Code != tc.code) {
					t.Fatalf("terminated with %v, want a *Error %d", e.Err, tc.code)
				}
				select {
				case <-c.Done():
				case <-time.After(wait):
					t.Fatal("Done not closed")
				}
				if _, err := c.Publish(ctxT(t), "/x", 1); !errors.Is(err, cometd.ErrClosed) {
					t.Fatalf("publish after termination: %v", err)
				}
			})
		}
	}
}

// TestAdviceRetryOnFailedConnect: a failed connect with reconnect "retry" keeps the session:
// StateDisconnected, backoff, then StateConnected with the same clientId.
func TestAdviceRetryOnFailedConnect(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true}
			scriptConnect(srv, 2, func(m cometd.Message) cometd.Message {
				return bayeuxtest.Fail(&m, "500::busy", &cometd.Advice{Reconnect: "retry"})
			})
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			id := c.ClientID()
			e := rec.state(cometd.StateDisconnected)
			var be *cometd.Error
			if !errors.As(e.Err, &be) || be.Code != 500 || be.Message != "busy" {
				t.Fatalf("disconnected with %v", e.Err)
			}
			if e := rec.state(cometd.StateConnected); e.ClientID != id {
				t.Fatalf("reconnected as %s, was %s", e.ClientID, id)
			}
		})
	}
}

// TestAdviceHandshake: reconnect "handshake" on a successful connect, or on a failure that is not
// an unknown-session error, makes the client handshake again and restore its subscriptions.
func TestAdviceHandshake(t *testing.T) {
	cases := map[string]func(m cometd.Message) cometd.Message{
		"on success": func(m cometd.Message) cometd.Message {
			r := bayeuxtest.OK(&m)
			r.Advice = &cometd.Advice{Reconnect: "handshake"}
			return r
		},
		"on failure": func(m cometd.Message) cometd.Message {
			return bayeuxtest.Fail(&m, "403::moved", &cometd.Advice{Reconnect: "handshake"})
		},
	}
	for name, reply := range cases {
		for _, tr := range bothTransports {
			t.Run(name+"/"+tr, func(t *testing.T) {
				srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true, BrowserCookie: true}
				gate := make(chan struct{})
				var count atomic.Int64
				srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
					if m.Channel != "/meta/connect" || m.Advice != nil {
						return nil, false
					}
					select {
					case <-gate:
					default:
						return nil, false
					}
					if count.Add(1) != 1 {
						return nil, false
					}
					return []cometd.Message{reply(m)}, true
				}
				c, rec := newClient(t, serve(t, srv), tr, nil)
				start(t, c, rec)
				first := c.ClientID()
				if err := c.Subscribe(ctxT(t), "/chat"); err != nil {
					t.Fatal(err)
				}
				close(gate)
				if name == "on failure" {
					rec.state(cometd.StateDisconnected)
				}
				e := rec.state(cometd.StateReestablished)
				if e.ClientID == first || e.ClientID == "" {
					t.Fatalf("reestablished as %q, first %q", e.ClientID, first)
				}
				srv.Publish("/chat", "again")
				if m := rec.message(); m.Channel != "/chat" {
					t.Fatalf("delivery %+v", m)
				}
			})
		}
	}
}

// TestAdviceTimeoutBoundsConnectWait: a connect is waited for advice.timeout + MaxNetworkDelay:
// a reply later than MaxNetworkDelay but within the sum is accepted; none at all is an outage
// found no sooner than the sum.
//
// The test drives the timing itself: the server holds connect 2 until the test releases it, and
// the test releases it only after a call the server never answers has failed on MaxNetworkDelay,
// so the client has been waiting for connect 2 longer than MaxNetworkDelay (causality, no
// window). While connect 2 is held the advised timeout is far beyond any wait of the test; its
// reply advises a short one, which bounds connect 3: the only time assertion is a lower bound.
func TestAdviceTimeoutBoundsConnectWait(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			const long, short, mnd = 4 * wait, 300 * time.Millisecond, 100 * time.Millisecond
			srv := &bayeuxtest.Server{Timeout: long, WebSocket: true}
			var count atomic.Int64
			held := make(chan struct{})         // connect 2 reached the server
			release := make(chan struct{})      // the test lets the server answer connect 2
			replied := make(chan time.Time, 1)  // the server is answering connect 2
			swallowed := make(chan struct{}, 1) // connect 3 reached the server
			srv.Hook = func(call *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				switch m.Channel {
				case "/service/probe": // never answered
					if call.Transport == cometd.TransportLongPolling {
						<-call.HTTP.Context().Done()
					}
					return nil, true
				case "/meta/connect":
				default:
					return nil, false
				}
				switch count.Add(1) {
				case 2: // held until the test releases it
					close(held)
					select {
					case <-release:
					case <-call.HTTP.Context().Done():
						return nil, true
					}
					r := bayeuxtest.OK(&m)
					r.Advice = &cometd.Advice{Timeout: i64(short.Milliseconds())}
					replied <- time.Now()
					return []cometd.Message{r}, true
				case 3: // never answered
					swallowed <- struct{}{}
					if call.Transport == cometd.TransportLongPolling {
						<-call.HTTP.Context().Done()
					}
					return nil, true
				case 4: // answered at once: the session survives the outage
					return []cometd.Message{bayeuxtest.OK(&m)}, true
				}
				return nil, false
			}
			c, rec := newClient(t, serve(t, srv), tr, func(o *cometd.Options) { o.MaxNetworkDelay = mnd })
			start(t, c, rec)
			select {
			case <-held:
			case <-time.After(wait):
				t.Fatal("second connect never came")
			}
			// The probe starts after connect 2 reached the server and fails on MaxNetworkDelay.
			if _, err := c.Call(ctxT(t), "/service/probe", "x"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("probe call: %v, want it to time out on MaxNetworkDelay", err)
			}
			rec.noState() // connect 2 is still awaited
			close(release)
			var at time.Time
			select {
			case at = <-replied:
			case <-time.After(wait):
				t.Fatal("connect 2 was not answered")
			}
			select {
			case <-swallowed:
			case <-time.After(wait):
				t.Fatal("third connect never came")
			}
			// The client took the late reply: connect 3 follows it, and its advice is in use.
			if got := c.Advice(); got.Timeout == nil || *got.Timeout != short.Milliseconds() {
				t.Fatalf("advice %+v after the late reply to connect 2, want its timeout %v", got, short)
			}
			rec.state(cometd.StateDisconnected) // connect 3 given up: the first state since start
			// The client began waiting for connect 3 after the reply to connect 2 was sent, so
			// the time since then is at least the whole wait: timeout plus MaxNetworkDelay.
			if waited := time.Since(at); waited < short+mnd {
				t.Fatalf("gave up on connect 3 %v after the reply to connect 2, want at least %v", waited, short+mnd)
			}
			rec.state(cometd.StateConnected) // the session survived
		})
	}
}

// TestAdviceKeptWhenRepliesCarryNone: advice is remembered field by field; later replies without
// advice (or with part of it) do not reset it, and the remembered timeout still bounds connects.
func TestAdviceKeptWhenRepliesCarryNone(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 60 * time.Millisecond, WebSocket: true}
			var count atomic.Int64
			connects := newLog[int64]()
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				if m.Channel != "/meta/connect" {
					return nil, false
				}
				n := count.Add(1)
				connects.add(n)
				if n == 3 { // a partial advice: only reconnect
					r := bayeuxtest.OK(&m)
					r.Advice = &cometd.Advice{Reconnect: "retry"}
					return []cometd.Message{r}, true
				}
				return nil, false
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			for connects.next(t) < 5 {
			}
			got := c.Advice()
			if got.Reconnect != "retry" || got.Timeout == nil || *got.Timeout != 60 || got.Interval == nil || *got.Interval != 0 {
				t.Fatalf("advice after replies without advice: reconnect %q timeout %v interval %v", got.Reconnect, deref(got.Timeout), deref(got.Interval))
			}
			rec.noState()
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
