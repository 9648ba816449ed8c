package cometd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// subscribesSeen logs "clientId channel" for every /meta/subscribe the server receives.
func subscribesSeen(srv *bayeuxtest.Server) *log[string] {
	l := newLog[string]()
	prev := srv.OnBody
	srv.OnBody = func(c *bayeuxtest.Call) {
		if prev != nil {
			prev(c)
		}
		for _, m := range c.Body {
			if m.Channel == "/meta/subscribe" {
				l.add(m.ClientID + " " + m.Subscription)
			}
		}
	}
	return l
}

// TestUnknownSessionRehandshakes: 402 (CometD, with or without advice) and 401 (faye) on a
// connect make the client handshake again, restore its subscriptions in the new session, and
// say StateReestablished with the new clientId.
func TestUnknownSessionRehandshakes(t *testing.T) {
	cases := []struct {
		name   string
		code   int
		script func(srv *bayeuxtest.Server, c *cometd.Client) // makes the session unknown
	}{
		{"402 expired", 402, func(srv *bayeuxtest.Server, c *cometd.Client) { srv.Expire(c.ClientID()) }},
		{"402 without advice", 402, nil},
		{"401 faye", 401, nil},
	}
	for _, tc := range cases {
		for _, tr := range bothTransports {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true, BrowserCookie: true}
				subs := subscribesSeen(srv)
				var armed atomic.Bool
				if tc.script == nil {
					srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
						if m.Channel != "/meta/connect" || !armed.CompareAndSwap(true, false) {
							return nil, false
						}
						if tc.code == 401 {
							return []cometd.Message{bayeuxtest.Fail(&m, "401:"+m.ClientID+":Unknown client", nil)}, true
						}
						return []cometd.Message{bayeuxtest.Fail(&m, "402::Unknown client", nil)}, true
					}
				}
				c, rec := newClient(t, serve(t, srv), tr, nil)
				start(t, c, rec)
				first := c.ClientID()
				for _, ch := range []string{"/a", "/b"} {
					if err := c.Subscribe(ctxT(t), ch); err != nil {
						t.Fatal(err)
					}
					if got := subs.next(t); got != first+" "+ch {
						t.Fatalf("server saw subscribe %q", got)
					}
				}
				if tc.script != nil {
					tc.script(srv, c)
				} else {
					armed.Store(true)
				}
				e := rec.state(cometd.StateDisconnected)
				var be *cometd.Error
				if !errors.As(e.Err, &be) || be.Code != tc.code || !be.SessionUnknown() {
					t.Fatalf("disconnected with %v, want a *Error %d", e.Err, tc.code)
				}
				re := rec.state(cometd.StateReestablished)
				if re.ClientID == first || re.ClientID == "" || re.ClientID != c.ClientID() {
					t.Fatalf("reestablished as %q (client %q), first %q", re.ClientID, c.ClientID(), first)
				}
				got := []string{subs.next(t), subs.next(t)}
				if got[0] != re.ClientID+" /a" || got[1] != re.ClientID+" /b" {
					t.Fatalf("restored subscriptions %q", got)
				}
				srv.Publish("/b", "after")
				if m := rec.message(); m.Channel != "/b" || string(m.Data) != `"after"` {
					t.Fatalf("delivery %+v", m)
				}
				if n := srv.Sessions(); tc.script != nil && n != 1 {
					t.Fatalf("%d server sessions", n)
				}
			})
		}
	}
}

// flaky is a network that fails every request (through Options.Dial or Options.RoundTripper)
// while down, counting the failures; going down breaks the connections it made.
type flaky struct {
	rt       http.RoundTripper
	down     atomic.Bool
	failures *log[time.Time]
	mu       sync.Mutex
	conns    []net.Conn
}

var errNetworkDown = errors.New("network down (test)")

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.down.Load() {
		f.failures.add(time.Now())
		return nil, errNetworkDown
	}
	return f.rt.RoundTrip(r)
}

func (f *flaky) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.down.Load() {
		f.failures.add(time.Now())
		return nil, errNetworkDown
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
	}
	return c, err
}

// setDown takes the network down, breaking the connections it made, or brings it back.
func (f *flaky) setDown(down bool) {
	f.down.Store(down)
	if !down {
		return
	}
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// TestNetworkFailureBacksOff: while the network is down the client says StateDisconnected once,
// retries with growing backoff, and when it is back continues the same session (StateConnected,
// same clientId, no re-handshake). On each transport, and on long-polling through net/http
// (Options.RoundTripper).
func TestNetworkFailureBacksOff(t *testing.T) {
	for _, tc := range []struct{ name, tr string }{
		{cometd.TransportLongPolling, cometd.TransportLongPolling},
		{cometd.TransportWebSocket, cometd.TransportWebSocket},
		{"net-http", cometd.TransportLongPolling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr
			const inc = 30 * time.Millisecond
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			rt := &http.Transport{}
			t.Cleanup(rt.CloseIdleConnections)
			net := &flaky{rt: rt, failures: newLog[time.Time]()}
			handshakes := newLog[string]()
			srv.OnBody = func(c *bayeuxtest.Call) {
				for _, m := range c.Body {
					if m.Channel == "/meta/handshake" {
						handshakes.add(m.Channel)
					}
				}
			}
			c, rec := newClient(t, serve(t, srv), tr, func(o *cometd.Options) {
				if tc.name == "net-http" {
					o.RoundTripper = net
				} else {
					o.Dial = net.dial
				}
				o.BackoffIncrement = inc
				o.MaxBackoff = 10 * inc
			})
			start(t, c, rec)
			id := c.ClientID()
			net.setDown(true)
			srv.DropConnections() // websocket: the connection breaks too
			e := rec.state(cometd.StateDisconnected)
			if e.Err == nil || e.ClientID != id {
				t.Fatalf("disconnected %+v", e)
			}
			prev := net.failures.next(t)
			for i := 1; i <= 3; i++ {
				at := net.failures.next(t)
				if gap := at.Sub(prev); gap < time.Duration(i)*inc {
					t.Fatalf("retry %d after %v, want backoff of at least %v", i, gap, time.Duration(i)*inc)
				}
				prev = at
			}
			rec.noState() // one StateDisconnected per outage
			net.setDown(false)
			if e := rec.state(cometd.StateConnected); e.ClientID != id {
				t.Fatalf("reconnected as %q, want the same session %q", e.ClientID, id)
			}
			if got := c.Transport(); got != tr {
				t.Fatalf("transport %q after the outage, want %q", got, tr)
			}
			if n := len(handshakes.all()); n != 1 {
				t.Fatalf("%d handshakes, want 1", n)
			}
		})
	}
}

// refuser refuses websocket upgrades when set, as cometd-nodejs-server always does.
type refuser struct {
	srv    *bayeuxtest.Server
	refuse atomic.Bool
}

func (r *refuser) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.refuse.Load() && strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "no websocket here", http.StatusBadRequest)
		return
	}
	r.srv.ServeHTTP(w, req)
}

// TestWebSocketFallsBackToLongPolling: a refused upgrade, a server that does not offer
// websocket, and an upgrade refused when reconnecting mid-session all end on long-polling.
func TestWebSocketFallsBackToLongPolling(t *testing.T) {
	both := func(o *cometd.Options) {
		o.Transports = []string{cometd.TransportWebSocket, cometd.TransportLongPolling}
	}
	t.Run("upgrade refused", func(t *testing.T) {
		srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, BrowserCookie: true} // no websocket: 400
		upgrades := newLog[string]()
		srv.OnBody = func(c *bayeuxtest.Call) { upgrades.add(c.Transport) }
		c, rec := newClient(t, serve(t, srv), "", both)
		start(t, c, rec)
		if got := c.Transport(); got != cometd.TransportLongPolling {
			t.Fatalf("transport %q", got)
		}
		if first := upgrades.next(t); first != cometd.TransportWebSocket {
			t.Fatalf("first request %q, want the upgrade attempt", first)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true}
		srv.Hook = func(c *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
			if m.Channel != "/meta/handshake" || c.Transport != cometd.TransportWebSocket {
				return nil, false
			}
			r := bayeuxtest.OK(&m) // a server that upgrades but offers long-polling only
			r.ClientID, r.Version = "ws-session", "1.0"
			r.SupportedConnectionTypes = []string{cometd.TransportLongPolling}
			return []cometd.Message{r}, true
		}
		c, rec := newClient(t, serve(t, srv), "", both)
		start(t, c, rec)
		if got := c.Transport(); got != cometd.TransportLongPolling || c.ClientID() == "ws-session" {
			t.Fatalf("transport %q, session %q", got, c.ClientID())
		}
	})
	t.Run("refused mid-session", func(t *testing.T) {
		srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true, BrowserCookie: true}
		h := &refuser{srv: srv}
		c, rec := newClient(t, serveHandler(t, srv, h), "", both)
		start(t, c, rec)
		id := c.ClientID()
		if got := c.Transport(); got != cometd.TransportWebSocket {
			t.Fatalf("transport %q", got)
		}
		h.refuse.Store(true)
		srv.DropConnections()
		rec.state(cometd.StateDisconnected)
		if e := rec.state(cometd.StateConnected); e.ClientID != id {
			t.Fatalf("reconnected as %q, want %q", e.ClientID, id)
		}
		if got := c.Transport(); got != cometd.TransportLongPolling {
			t.Fatalf("transport %q", got)
		}
	})
}

// refuseHandshakes answers the next n handshake attempts (long-polling POSTs with a handshake,
// websocket upgrades) with HTTP 503, logging when each came.
type refuseHandshakes struct {
	srv      *bayeuxtest.Server
	left     atomic.Int64
	attempts *log[time.Time]
}

func (h *refuseHandshakes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.left.Load() > 0 {
		upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
		var body []byte
		if !upgrade {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if upgrade || bytes.Contains(body, []byte(`"/meta/handshake"`)) {
			h.left.Add(-1)
			h.attempts.add(time.Now())
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
	}
	h.srv.ServeHTTP(w, r)
}

// TestRehandshakeBacksOff: when the session is lost and handshakes fail, they are retried with
// growing backoff until one succeeds; then StateReestablished.
func TestRehandshakeBacksOff(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			const inc = 30 * time.Millisecond
			srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			h := &refuseHandshakes{srv: srv, attempts: newLog[time.Time]()}
			c, rec := newClient(t, serveHandler(t, srv, h), tr, func(o *cometd.Options) {
				o.BackoffIncrement = inc
				o.MaxBackoff = 10 * inc
			})
			start(t, c, rec)
			first := c.ClientID()
			h.left.Store(4)
			srv.Expire(first)
			rec.state(cometd.StateDisconnected)
			prev := h.attempts.next(t)
			for i := 1; i <= 3; i++ {
				at := h.attempts.next(t)
				if gap := at.Sub(prev); gap < time.Duration(i)*inc {
					t.Fatalf("handshake retry %d after %v, want backoff of at least %v", i, gap, time.Duration(i)*inc)
				}
				prev = at
			}
			if e := rec.state(cometd.StateReestablished); e.ClientID == first || e.ClientID == "" {
				t.Fatalf("reestablished as %q, first %q", e.ClientID, first)
			}
		})
	}
}
