package chat

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counts is a set of counters a test reads by name: "kind/outcome", "redelivered/kind",
// "terminated/reason".
type counts struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

type countOf struct{ n *atomic.Int64 }

func (c countOf) Inc() { c.n.Add(1) }

func (c *counts) counter(name string) Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*atomic.Int64{}
	}
	if c.m[name] == nil {
		c.m[name] = &atomic.Int64{}
	}
	return countOf{c.m[name]}
}

func (c *counts) get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.m[name]; n != nil {
		return n.Load()
	}
	return -1 // never made: the consumer did not resolve it
}

func (c *counts) metrics() *Metrics {
	return &Metrics{
		Messages:     func(kind, outcome string) Counter { return c.counter(kind + "/" + outcome) },
		Redeliveries: func(kind string) Counter { return c.counter("redelivered/" + kind) },
		Terminated:   func(reason string) Counter { return c.counter("terminated/" + reason) },
	}
}

// TestMetricsCountEachSettlement: every inbound message is counted once, by its kind and how it was
// settled, whoever settled it (the consumer for a malformed or ignored message, the handler for the
// rest); a redelivery is counted by kind; terminations by reason. Every label value is made when
// the consumer is, before any message.
func TestMetricsCountEachSettlement(t *testing.T) {
	e := newEnv(t)
	var n counts
	c := e.consumer(t, Config{Metrics: n.metrics(), Backoff: []time.Duration{time.Second}})
	for _, name := range []string{"chat/acked", "event/nacked", "signal/terminated", "other/malformed", "redelivered/chat", "terminated/failed"} {
		if n.get(name) != 0 {
			t.Fatalf("%s = %d before any message, want 0", name, n.get(name))
		}
	}

	e.publish(t, ChatSubject("cc", "I1"), []byte(`{"id":"bad"`))                     // malformed chat
	e.publish(t, EventSubject("cc", "I1"), eventJSON("e-unknown", "I1", "sneezed"))  // ignored event
	e.publishChat(t, "ack", "I1", "hello")                                           // acked chat
	e.publish(t, EventSubject("cc", "I1"), eventJSON("nak-once", "I1", EventClosed)) // nacked, then acked on redelivery
	e.publishChat(t, "term", "I1", "give up")                                        // terminated by the handler

	done := make(chan string, 10)
	start(t, c, HandlerFunc(func(ctx context.Context, in Inbound) {
		id := idOf(in)
		var err error
		switch {
		case id == "term":
			err = in.Delivery.Term("failed after the last delivery: test")
		case id == "nak-once" && in.Delivery.Attempt() == 1:
			err = in.Delivery.Nak(0)
		default:
			err = in.Delivery.Ack(ctx)
		}
		if err != nil {
			t.Errorf("settle %s: %v", id, err)
		}
		done <- id + "/" + string(rune('0'+in.Delivery.Attempt()))
	}))
	want := map[string]bool{"ack/1": true, "nak-once/1": true, "nak-once/2": true, "term/1": true}
	for len(want) > 0 {
		select {
		case got := <-done:
			delete(want, got)
		case <-time.After(wait):
			t.Fatalf("deliveries still expected: %v", want)
		}
	}
	for name, v := range map[string]int64{
		"chat/acked": 1, "chat/terminated": 1, "chat/malformed": 1, "chat/nacked": 0,
		"event/ignored": 1, "event/nacked": 1, "event/acked": 1,
		"redelivered/event": 1, "redelivered/chat": 0,
		"terminated/malformed": 1, "terminated/failed": 1,
		"signal/acked": 0, "other/malformed": 0,
	} {
		if got := n.get(name); got != v {
			t.Errorf("%s = %d, want %d", name, got, v)
		}
	}
}

// waitPull waits until the consumer's pull status satisfies ok.
func waitPull(t *testing.T, c *Consumer, what string, ok func(PullStatus) bool) PullStatus {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := c.PullStatus()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull status %+v (%s), want %s", st, st.State, what)
		}
		<-tick.C
	}
}

// TestPullStatusFollowsThePullLoop: stopped before Run, pulling while the server answers, failing
// (with the cause and the count) while it is gone, pulling again once it is back, stopped after
// Run. A member the membership gives no partition is idle.
func TestPullStatusFollowsThePullLoop(t *testing.T) {
	e := newEnv(t)
	// Pull requests expire after half the pinned TTL: short ones, so that each ends soon.
	c := e.consumer(t, Config{PinnedTTL: time.Second})
	if st := c.PullStatus(); st.State != PullStopped || !st.LastPull.IsZero() {
		t.Fatalf("before Run: %+v", st)
	}
	h, _ := collect(t, true)
	r := start(t, c, h)
	waitPull(t, c, "pulling, a pull done", func(st PullStatus) bool { return st.State == PullPulling && !st.LastPull.IsZero() })

	e.s.Shutdown()
	e.s.WaitForShutdown()
	st := waitPull(t, c, "failing", func(st PullStatus) bool { return st.State == PullFailing })
	if st.Failures < 1 || st.LastError == "" {
		t.Fatalf("failing without a cause: %+v", st)
	}
	e.s = e.s.Restart(t)
	st = waitPull(t, c, "pulling again", func(st PullStatus) bool { return st.State == PullPulling && st.Failures == 0 })
	if st.LastError != "" {
		t.Fatalf("pulling again, still an error: %+v", st)
	}

	// Another member name on the group made for "main" alone: no partition, nothing to pull.
	other := e.consumer(t, Config{Member: "r2", PinnedTTL: time.Second})
	ro := start(t, other, h)
	waitPull(t, other, "idle", func(st PullStatus) bool { return st.State == PullIdle })
	ro.stop(t)

	r.stop(t)
	if st := c.PullStatus(); st.State != PullStopped || st.State.String() != "stopped" {
		t.Fatalf("after Run: %+v", st)
	}
	if !strings.Contains(PullFailing.String(), "failing") {
		t.Fatal(PullFailing.String())
	}
}
