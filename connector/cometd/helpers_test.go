package cometd_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// wait is the upper bound of every wait in these tests; nothing waits for it unless broken.
const wait = 5 * time.Second

var bothTransports = []string{cometd.TransportLongPolling, cometd.TransportWebSocket}

// serve runs srv on a loopback httptest server until the test ends.
func serve(t testing.TB, srv *bayeuxtest.Server) string {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return hs.URL + "/cometd"
}

// serveHandler runs h (a wrapper around a bayeuxtest server) until the test ends.
func serveHandler(t testing.TB, srv *bayeuxtest.Server, h http.Handler) string {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return hs.URL + "/cometd"
}

// recorder collects a client's callbacks.
type recorder struct {
	t      testing.TB
	states chan cometd.StateEvent
	msgs   chan cometd.Message
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, states: make(chan cometd.StateEvent, 64), msgs: make(chan cometd.Message, 256)}
}

func (r *recorder) onState(e cometd.StateEvent) {
	select {
	case r.states <- e:
	default:
		r.t.Errorf("state event queue full, dropped %+v", e)
	}
}

func (r *recorder) onMessage(m cometd.Message) {
	select {
	case r.msgs <- m:
	default:
		r.t.Errorf("message queue full, dropped %+v", m)
	}
}

// state waits for the next state event and checks its kind.
func (r *recorder) state(kind cometd.StateKind) cometd.StateEvent {
	r.t.Helper()
	select {
	case e := <-r.states:
		if e.Kind != kind {
			r.t.Fatalf("state %v (err %v), want %v", e.Kind, e.Err, kind)
		}
		return e
	case <-time.After(wait):
		r.t.Fatalf("no %v state within %v", kind, wait)
	}
	return cometd.StateEvent{}
}

// noState checks that no state event is queued now.
func (r *recorder) noState() {
	r.t.Helper()
	select {
	case e := <-r.states:
		r.t.Fatalf("unexpected state %v (err %v)", e.Kind, e.Err)
	default:
	}
}

// message waits for the next delivery.
func (r *recorder) message() cometd.Message {
	r.t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(wait):
		r.t.Fatalf("no message within %v", wait)
	}
	return cometd.Message{}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("COMETD_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newClient builds a client with short timings; mod may change the options.
func newClient(t testing.TB, url, transport string, mod func(*cometd.Options)) (*cometd.Client, *recorder) {
	t.Helper()
	rec := newRecorder(t)
	opts := cometd.Options{
		URL:              url,
		Transports:       []string{transport},
		MaxNetworkDelay:  2 * time.Second,
		BackoffIncrement: 20 * time.Millisecond,
		MaxBackoff:       100 * time.Millisecond,
		Logger:           testLogger(t),
		OnState:          rec.onState,
		OnMessage:        rec.onMessage,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := cometd.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rec
}

// start starts c and checks the StateConnected event.
func start(t testing.TB, c *cometd.Client, rec *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if e := rec.state(cometd.StateConnected); e.ClientID != c.ClientID() || e.ClientID == "" {
		t.Fatalf("connected event clientId %q, client %q", e.ClientID, c.ClientID())
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// log records what a test server saw, safely across goroutines.
type log[T any] struct {
	mu    sync.Mutex
	items []T
	ch    chan T
}

func newLog[T any]() *log[T] { return &log[T]{ch: make(chan T, 1024)} }

func (l *log[T]) add(v T) {
	l.mu.Lock()
	l.items = append(l.items, v)
	l.mu.Unlock()
	select {
	case l.ch <- v:
	default:
	}
}

func (l *log[T]) all() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// next waits for the next item.
func (l *log[T]) next(t testing.TB) T {
	t.Helper()
	select {
	case v := <-l.ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing seen within %v", wait)
	}
	var zero T
	return zero
}
