package cometd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// TestLongPollingKeepsItsConnections: a long-polling session uses two kept connections, one
// for its held connects and one for its other requests, however many requests it makes.
func TestLongPollingKeepsItsConnections(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 20 * time.Millisecond, BrowserCookie: true}
	connects := recordConnects(srv)
	cc := countConns(t, srv)
	c, rec := newClient(t, cc.url+"/cometd", cometd.TransportLongPolling, nil)
	start(t, c, rec)
	if err := c.Subscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.Publish(ctxT(t), "/a", 1); err != nil {
			t.Fatal(err)
		}
		rec.message()
	}
	for range 10 { // connects held and answered, one after the other
		connects.next(t)
	}
	if err := c.Disconnect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := cc.opened.Load(); n != 2 {
		t.Fatalf("%d connections opened, want 2 (connects, other requests)", n)
	}
}

// TestLongPollingClosesTheIdleOtherConnection: the connection for requests other than the held
// connect is closed once it has been idle a while, so that a session that only waits holds one
// file; the next request dials again.
func TestLongPollingClosesTheIdleOtherConnection(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 10 * time.Second, BrowserCookie: true}
	cc := countConns(t, srv)
	c, rec := newClient(t, cc.url+"/cometd", cometd.TransportLongPolling, nil)
	start(t, c, rec)
	if err := c.Subscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cc.closedCh: // the idle one, while the connect is held
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	if err := c.Subscribe(ctxT(t), "/b"); err != nil {
		t.Fatal(err)
	}
	if o, cl := cc.opened.Load(), cc.closed.Load(); o != 3 || cl != 1 {
		t.Fatalf("%d connections opened and %d closed, want 3 and 1", o, cl)
	}
}

// conns serves srv and counts the connections its clients open and close.
type conns struct {
	url            string
	opened, closed atomic.Int32
	closedCh       chan struct{} // a value per close, for the first few
}

func countConns(t *testing.T, srv *bayeuxtest.Server) *conns {
	t.Helper()
	cc := &conns{closedCh: make(chan struct{}, 16)}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			cc.opened.Add(1)
		case http.StateClosed:
			cc.closed.Add(1)
			select {
			case cc.closedCh <- struct{}{}:
			default:
			}
		}
	}
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	cc.url = hs.URL
	return cc
}

// chunked makes every reply of h chunked: it flushes before writing the body.
type chunked struct{ h http.Handler }

func (c chunked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.h.ServeHTTP(flushFirst{ResponseWriter: w}, r)
}

type flushFirst struct{ http.ResponseWriter }

func (f flushFirst) Write(b []byte) (int, error) {
	f.ResponseWriter.(http.Flusher).Flush()
	return f.ResponseWriter.Write(b)
}

// TestLongPollingReplyFraming: chunked replies, and replies that close the connection, work.
func TestLongPollingReplyFraming(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"chunked", func(h http.Handler) http.Handler { return chunked{h} }},
		{"connection close", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				h.ServeHTTP(w, r)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, BrowserCookie: true}
			c, rec := newClient(t, serveHandler(t, srv, tc.wrap(srv)), cometd.TransportLongPolling, nil)
			start(t, c, rec)
			if err := c.Subscribe(ctxT(t), "/a"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctxT(t), "/a", "x"); err != nil {
				t.Fatal(err)
			}
			rec.message()
			if err := c.Disconnect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLongPollingErrors: a redirect is not followed (*HTTPError), and a reply over
// MaxMessageSize fails its request.
func TestLongPollingErrors(t *testing.T) {
	t.Run("redirect", func(t *testing.T) {
		hs := httptest.NewServer(http.RedirectHandler("/elsewhere", http.StatusFound))
		t.Cleanup(hs.Close)
		c, _ := newClient(t, hs.URL+"/cometd", cometd.TransportLongPolling, nil)
		var he *cometd.HTTPError
		if err := c.Start(ctxT(t)); !errors.As(err, &he) || he.StatusCode != http.StatusFound {
			t.Fatalf("Start: %v, want *HTTPError 302", err)
		}
	})
	t.Run("too big", func(t *testing.T) {
		srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, BrowserCookie: true}
		srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
			if m.Channel != "/service/big" {
				return nil, false
			}
			r := bayeuxtest.OK(&m)
			r.Data = json.RawMessage(`"` + strings.Repeat("x", 4096) + `"`)
			return []cometd.Message{r}, true
		}
		c, rec := newClient(t, serve(t, srv), cometd.TransportLongPolling, func(o *cometd.Options) { o.MaxMessageSize = 2048 })
		start(t, c, rec)
		if _, err := c.Call(ctxT(t), "/service/big", nil); err == nil {
			t.Fatal("a reply over MaxMessageSize was taken")
		}
		if _, err := c.Publish(ctxT(t), "/a", 1); err != nil { // the session goes on
			t.Fatal(err)
		}
	})
}

// stale wraps the connections a client dials; once gone, a connection acts as one the server
// closed while it was idle: what is written is lost, and reading finds the end at once.
type stale struct {
	mu    sync.Mutex
	conns []*staleConn
}

type staleConn struct {
	net.Conn
	gone atomic.Bool
}

func (c *staleConn) Write(b []byte) (int, error) {
	if c.gone.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *staleConn) Read(b []byte) (int, error) {
	if c.gone.Load() {
		return 0, io.EOF
	}
	return c.Conn.Read(b)
}

func (s *stale) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	sc := &staleConn{Conn: c}
	s.mu.Lock()
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	return sc, nil
}

func (s *stale) dialed() []*staleConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*staleConn(nil), s.conns...)
}

// TestLongPollingServerClosedKeptConnection: a request on a kept connection that the server
// closed meanwhile is sent again on a new one; the session sees no outage.
func TestLongPollingServerClosedKeptConnection(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 5 * time.Second, BrowserCookie: true}
	var net stale
	c, rec := newClient(t, serve(t, srv), cometd.TransportLongPolling, func(o *cometd.Options) { o.Dial = net.dial })
	start(t, c, rec)
	if err := c.Subscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	conns := net.dialed()
	if len(conns) != 2 {
		t.Fatalf("%d connections dialed, want 2", len(conns))
	}
	conns[0].gone.Store(true) // the handshake's: the one for requests other than connects
	if _, err := c.Publish(ctxT(t), "/a", 1); err != nil {
		t.Fatalf("publish after the server closed the kept connection: %v", err)
	}
	rec.message()
	if n := len(net.dialed()); n != 3 {
		t.Fatalf("%d connections dialed, want 3", n)
	}
	rec.noState()
}

// TestTLS: both transports over TLS with Options.TLSConfig; without it (system roots) the
// test server's certificate is refused.
func TestTLS(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			hs := httptest.NewTLSServer(srv)
			t.Cleanup(func() {
				srv.Close()
				hs.Close()
			})
			roots := x509.NewCertPool()
			roots.AddCert(hs.Certificate())
			cfg := &tls.Config{RootCAs: roots}
			c, rec := newClient(t, hs.URL+"/cometd", tr, func(o *cometd.Options) { o.TLSConfig = cfg })
			start(t, c, rec)
			if got := c.Transport(); got != tr {
				t.Fatalf("transport %q", got)
			}
			if err := c.Subscribe(ctxT(t), "/a"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctxT(t), "/a", "over TLS"); err != nil {
				t.Fatal(err)
			}
			if m := rec.message(); string(m.Data) != `"over TLS"` {
				t.Fatalf("delivery %+v", m)
			}
			if err := c.Disconnect(ctxT(t)); err != nil {
				t.Fatal(err)
			}

			untrusting, _ := newClient(t, hs.URL+"/cometd", tr, nil)
			var ue x509.UnknownAuthorityError
			if err := untrusting.Start(ctxT(t)); !errors.As(err, &ue) {
				t.Fatalf("Start with the system roots: %v, want an unknown authority", err)
			}
		})
	}
}

// TestCloseWaitsForCallbacks: Close from outside returns only once the callback running has
// returned and StateTerminated has been delivered; nothing runs after it.
func TestCloseWaitsForCallbacks(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			entered, gate := make(chan struct{}), make(chan struct{})
			var inside, after atomic.Int32
			var closed atomic.Bool
			var terminated atomic.Bool
			c, rec := newClient(t, serve(t, srv), tr, func(o *cometd.Options) {
				onState := o.OnState
				o.OnState = func(e cometd.StateEvent) {
					if closed.Load() {
						after.Add(1)
					}
					if e.Kind == cometd.StateTerminated {
						terminated.Store(true)
					}
					onState(e)
				}
				o.OnMessage = func(cometd.Message) {
					inside.Add(1)
					close(entered)
					<-gate
					inside.Add(-1)
				}
			})
			start(t, c, rec)
			if err := c.Subscribe(ctxT(t), "/a"); err != nil {
				t.Fatal(err)
			}
			srv.Publish("/a", 1)
			<-entered
			done := make(chan struct{})
			go func() {
				c.Close()
				closed.Store(true)
				if inside.Load() != 0 || !terminated.Load() {
					t.Errorf("Close returned with a callback running (%d) or before StateTerminated (%v)", inside.Load(), terminated.Load())
				}
				close(done)
			}()
			close(gate)
			select {
			case <-done:
			case <-time.After(wait):
				t.Fatal("Close did not return")
			}
			if c.Post(func() { after.Add(1) }) {
				t.Fatal("Post after Close queued a function")
			}
			if n := after.Load(); n != 1 { // only the function run by Post itself
				t.Fatalf("%d runs after Close", n)
			}
		})
	}
}

// TestPost: functions given to Post run in order with the callbacks, on their goroutine, and
// may stop the client there with Stop.
func TestPost(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, WebSocket: true}
	order := newLog[string]()
	var c *cometd.Client
	c, rec := newClient(t, serve(t, srv), cometd.TransportWebSocket, func(o *cometd.Options) {
		o.OnMessage = func(m cometd.Message) { order.add("message " + string(m.Data)) }
	})
	start(t, c, rec)
	if err := c.Subscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctxT(t), "/a", 1); err != nil {
		t.Fatal(err)
	}
	if got := order.next(t); got != "message 1" {
		t.Fatalf("%q", got)
	}
	if !c.Post(func() {
		order.add("posted")
		c.Stop(ctxT(t), true) // from the callbacks' goroutine: no deadlock
		order.add("stopped")
	}) {
		t.Fatal("Post on a live client ran the function itself")
	}
	if a, b := order.next(t), order.next(t); a != "posted" || b != "stopped" {
		t.Fatalf("%q %q", a, b)
	}
	if e := rec.state(cometd.StateTerminated); e.Err != nil {
		t.Fatalf("terminated with %v", e.Err)
	}
	<-c.Done()
}
