package cometd_test

import (
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// TestStartFailures: a refused handshake is a *Error from Start; an unreachable server an error;
// either way the client is done and sends no events. Start twice, Start after Close, and
// requests before Start are refused.
func TestStartFailures(t *testing.T) {
	t.Run("handshake denied", func(t *testing.T) {
		srv := &bayeuxtest.Server{WebSocket: true}
		srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
			if m.Channel != "/meta/handshake" {
				return nil, false
			}
			return []cometd.Message{bayeuxtest.Fail(&m, "403::Handshake denied", &cometd.Advice{Reconnect: "none"})}, true
		}
		c, rec := newClient(t, serve(t, srv), cometd.TransportWebSocket, nil)
		err := c.Start(ctxT(t))
		var be *cometd.Error
		if !errors.As(err, &be) || be.Code != 403 {
			t.Fatalf("Start: %v", err)
		}
		<-c.Done()
		rec.noState()
		if err := c.Start(ctxT(t)); !errors.Is(err, cometd.ErrClosed) {
			t.Fatalf("second Start: %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		hs := httptest.NewServer(nil)
		url := hs.URL + "/cometd"
		hs.Close()
		c, rec := newClient(t, url, "", func(o *cometd.Options) { o.Transports = nil })
		if err := c.Start(ctxT(t)); !errors.Is(err, cometd.ErrNoTransport) {
			t.Fatalf("Start: %v", err)
		}
		<-c.Done()
		rec.noState()
	})
	t.Run("misuse", func(t *testing.T) {
		srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond}
		c, rec := newClient(t, serve(t, srv), cometd.TransportLongPolling, nil)
		if err := c.Subscribe(ctxT(t), "/a"); !errors.Is(err, cometd.ErrNotConnected) {
			t.Fatalf("Subscribe before Start: %v", err)
		}
		start(t, c, rec)
		if err := c.Start(ctxT(t)); !errors.Is(err, cometd.ErrStarted) {
			t.Fatalf("second Start: %v", err)
		}
		c.Close()
		c.Close()
		if e := rec.state(cometd.StateTerminated); !errors.Is(e.Err, cometd.ErrClosed) {
			t.Fatalf("terminated with %v", e.Err)
		}
		if err := c.Subscribe(ctxT(t), "/a"); !errors.Is(err, cometd.ErrClosed) {
			t.Fatalf("Subscribe after Close: %v", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		for _, o := range []cometd.Options{{URL: "ftp://x"}, {URL: "http://"}, {URL: "http://x", Transports: []string{"carrier-pigeon"}}} {
			if _, err := cometd.New(o); err == nil {
				t.Fatalf("New(%+v) accepted", o)
			}
		}
	})
}

// TestCallbacksMayCallTheClient: OnMessage may publish (on websocket the reader is not blocked by
// it) and stop the client, and OnState may stop it again, from inside the callbacks without
// deadlock; Close from outside then returns once the last callback has run.
func TestCallbacksMayCallTheClient(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 500 * time.Millisecond, WebSocket: true}
			url := serve(t, srv)
			var c *cometd.Client
			var mu sync.Mutex
			published := make(chan error, 1)
			terminated := make(chan cometd.StateEvent, 1)
			rec := newRecorder(t)
			c, err := cometd.New(cometd.Options{
				URL: url, Transports: []string{tr}, MaxNetworkDelay: 2 * time.Second,
				OnMessage: func(m cometd.Message) {
					if m.Channel != "/ping" {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					_, err := c.Publish(ctxT(t), "/pong", "from the callback")
					published <- err
					c.Stop(ctxT(t), false) // from inside a callback
				},
				OnState: func(e cometd.StateEvent) {
					rec.onState(e)
					if e.Kind == cometd.StateTerminated {
						c.Stop(ctxT(t), true) // again, and from the last callback
						terminated <- e
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			start(t, c, rec)
			if err := c.Subscribe(ctxT(t), "/ping"); err != nil {
				t.Fatal(err)
			}
			srv.Publish("/ping", 1)
			select {
			case err := <-published:
				if err != nil {
					t.Fatalf("publish from OnMessage: %v", err)
				}
			case <-time.After(wait):
				t.Fatal("OnMessage did not publish")
			}
			select {
			case e := <-terminated:
				if !errors.Is(e.Err, cometd.ErrClosed) {
					t.Fatalf("terminated with %v", e.Err)
				}
			case <-time.After(wait):
				t.Fatal("no StateTerminated")
			}
			<-c.Done()
		})
	}
}

// TestUnsubscribeForgets: an unsubscribed channel is not restored after a re-handshake.
func TestUnsubscribeForgets(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, BrowserCookie: true}
	subs := subscribesSeen(srv)
	c, rec := newClient(t, serve(t, srv), cometd.TransportLongPolling, nil)
	start(t, c, rec)
	for _, ch := range []string{"/a", "/b"} {
		if err := c.Subscribe(ctxT(t), ch); err != nil {
			t.Fatal(err)
		}
		subs.next(t)
	}
	if err := c.Unsubscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	srv.Expire(c.ClientID())
	rec.state(cometd.StateDisconnected)
	id := rec.state(cometd.StateReestablished).ClientID
	if got := subs.next(t); got != id+" /b" {
		t.Fatalf("restored %q", got)
	}
	if got := c.Subscriptions(); len(got) != 1 || got[0] != "/b" {
		t.Fatalf("subscriptions %q", got)
	}
}
