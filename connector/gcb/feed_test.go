package gcb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// fed records what a session's Feed function gets: one call at a time, in order.
type fed struct {
	t      *testing.T
	inside atomic.Int32
	mu     sync.Mutex
	calls  []fedCall
	read   int
	ch     chan struct{} // a signal per call
}

type fedCall struct {
	ev connector.Event
	ok bool
}

func newFed(t *testing.T) *fed { return &fed{t: t, ch: make(chan struct{}, 64)} }

func (f *fed) feed(ev connector.Event, ok bool) {
	if f.inside.Add(1) != 1 {
		f.t.Errorf("Feed's function called concurrently")
	}
	f.mu.Lock()
	if n := len(f.calls); n > 0 && !f.calls[n-1].ok {
		f.t.Errorf("Feed's function called after the end: %+v %v", ev, ok)
	}
	f.calls = append(f.calls, fedCall{ev, ok})
	f.mu.Unlock()
	f.inside.Add(-1)
	f.ch <- struct{}{}
}

// next waits for the next call and returns what it got (ok false: the end).
func (f *fed) next() (connector.Event, bool) {
	f.t.Helper()
	select {
	case <-f.ch:
	case <-time.After(wait):
		f.t.Fatal("Feed's function not called")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[f.read]
	f.read++
	return c.ev, c.ok
}

// counts returns how many events and ends were fed.
func (f *fed) counts() (events, ends int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c.ok {
			events++
		} else {
			ends++
		}
	}
	return events, ends
}

func (f *fed) expect(kind connector.EventKind) connector.Event {
	f.t.Helper()
	ev, ok := f.next()
	if !ok || ev.Kind != kind {
		f.t.Fatalf("fed %s (ok %v), want %s", ev.Kind, ok, kind)
	}
	return ev
}

func (f *fed) expectEnd() {
	f.t.Helper()
	if ev, ok := f.next(); ok {
		f.t.Fatalf("fed %s, want the end", ev.Kind)
	}
}

// TestFeed: a fed session hands its events to the function in order, then the end once; Events
// is nil; Close afterwards gives nothing more.
func TestFeed(t *testing.T) {
	for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, true, tr, nil)
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			f := newFed(t)
			s.(connector.Feeder).Feed(f.feed)
			if s.Events() != nil {
				t.Fatal("Events after Feed is not nil")
			}
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatal(err)
			}
			if ev := f.expect(connector.EventParticipantJoined); ev.Participant.Name != "Alice" {
				t.Fatalf("participant %+v", ev.Participant)
			}
			f.expect(connector.EventActivated)
			if _, err := s.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.expect(connector.EventDeactivated)
			f.expectEnd()
			waitDone(t, gs)
			closeSession(t, s)
			if n, ends := f.counts(); n != 3 || ends != 1 {
				t.Fatalf("%d events and %d ends, want 3 and 1", n, ends)
			}
		})
	}
}

// TestFeedClose: Close ends a fed stream once, and nothing comes after Close returns, even what
// the server sends next.
func TestFeedClose(t *testing.T) {
	e := newEnv(t, false, "", nil)
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	f := newFed(t)
	s.(connector.Feeder).Feed(f.feed)
	closeSession(t, s)
	if n, ends := f.counts(); n != 0 || ends != 1 {
		t.Fatalf("after Close: %d events, %d ends; want the end once", n, ends)
	}
	if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
		t.Fatal(err)
	}
	closeSession(t, s)
	if n, ends := f.counts(); n != 0 || ends != 1 {
		t.Fatalf("after the server's events: %d events, %d ends", n, ends)
	}
	if gs.State() == gcbtest.StateEnded {
		t.Fatal("Close ended the session")
	}
}

// TestFeedTakesWaitingEvents: events that came before Feed (in the channel, or waiting for room
// in a full one) are given first, in order, then the later ones.
func TestFeedTakesWaitingEvents(t *testing.T) {
	for _, buffer := range []int{16, 1} {
		t.Run(fmt.Sprintf("buffer=%d", buffer), func(t *testing.T) {
			e := newEnv(t, true, cometd.TransportWebSocket, func(c *Config) { c.EventBuffer = buffer })
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatal(err)
			}
			ss := s.(*session)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			deadline := time.After(wait)
			for { // both events emitted: in the channel, or one waiting for room
				ss.mu.Lock()
				n := int(ss.sending)
				if ss.events != nil {
					n += len(ss.events)
				}
				ss.mu.Unlock()
				if n == 2 {
					break
				}
				select {
				case <-tick.C:
				case <-deadline:
					t.Fatalf("%d events waiting, want 2", n)
				}
			}
			f := newFed(t)
			ss.Feed(f.feed)
			f.expect(connector.EventParticipantJoined)
			f.expect(connector.EventActivated)
			if _, err := s.Stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.expect(connector.EventDeactivated)
			f.expectEnd()
		})
	}
}

// TestFeedLost: a fed session whose node dies gets EventLost, then the end.
func TestFeedLost(t *testing.T) {
	e := newEnv(t, true, cometd.TransportWebSocket, nil)
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	f := newFed(t)
	s.(connector.Feeder).Feed(f.feed)
	gs.Node().Kill()
	if ev := f.expect(connector.EventLost); !errors.Is(ev.Err, connector.ErrLost) {
		t.Fatalf("lost with %v", ev.Err)
	}
	f.expectEnd()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
