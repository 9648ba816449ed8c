package connector

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// fakeNode is the tiny fake a breaker guards: it answers with the next error in its script and
// counts the calls that reached it.
type fakeNode struct {
	calls int
	err   error
}

func (f *fakeNode) call() error {
	f.calls++
	return f.err
}

func unavailable(node string) error {
	return &ServerError{Op: "join", Node: node, Kind: ErrUnavailable, Err: errors.New("dial tcp: connection refused")}
}

func TestBreakerOpensOnUnavailableOnly(t *testing.T) {
	b := NewBreakers(BreakerSettings{FailuresToTrip: 3, OpenFor: time.Hour})
	const node = "http://n1/cobrowse"

	// Refusals and not-found answers come from a healthy server: they never trip the breaker.
	healthy := &fakeNode{err: &ServerError{Op: "join", Node: node, Kind: ErrRefused, Reason: "agent busy"}}
	for range 10 {
		if err := b.Do(node, "join", healthy.call); !errors.Is(err, ErrRefused) {
			t.Fatalf("refusal not passed through: %v", err)
		}
	}
	healthy.err = fmt.Errorf("wrapped: %w", &ServerError{Kind: ErrNotFound})
	for range 10 {
		_ = b.Do(node, "join", healthy.call)
	}
	if got := b.State(node); got != BreakerClosed {
		t.Fatalf("state after refusals = %s, want closed", got)
	}

	// The caller's own cancellation counts neither way.
	cancelled := &fakeNode{err: fmt.Errorf("%w: %w", ErrUnavailable, context.Canceled)}
	for range 10 {
		_ = b.Do(node, "join", cancelled.call)
	}
	if got := b.State(node); got != BreakerClosed {
		t.Fatalf("state after cancellations = %s, want closed", got)
	}

	down := &fakeNode{err: unavailable(node)}
	for i := range 3 {
		err := b.Do(node, "join", down.call)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("call %d: want the node's own unavailable error, got %v", i, err)
		}
	}
	if got := b.State(node); got != BreakerOpen {
		t.Fatalf("state after 3 failures = %s, want open", got)
	}
	err := b.Do(node, "join", down.call)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("open breaker: want ErrUnavailable+ErrBreakerOpen, got %v", err)
	}
	se, ok := errors.AsType[*ServerError](err)
	if !ok || se.Node != node || se.Op != "join" {
		t.Fatalf("open breaker error is not a ServerError for the node: %#v", err)
	}
	if down.calls != 3 {
		t.Fatalf("open breaker let a call through: %d calls", down.calls)
	}

	// Breakers are per node: another node is unaffected.
	other := &fakeNode{}
	if err := b.Do("http://n2/cobrowse", "join", other.call); err != nil || other.calls != 1 {
		t.Fatalf("other node blocked: %v, %d calls", err, other.calls)
	}
}

func TestBreakerConsecutiveCountResetBySuccess(t *testing.T) {
	b := NewBreakers(BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour})
	f := &fakeNode{}
	for range 5 {
		f.err = unavailable("n")
		_ = b.Do("n", "op", f.call)
		f.err = nil
		_ = b.Do("n", "op", f.call)
	}
	if got := b.State("n"); got != BreakerClosed {
		t.Fatalf("alternating failures tripped the breaker: %s", got)
	}
}

func TestBreakerHalfOpenProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBreakers(BreakerSettings{FailuresToTrip: 1, OpenFor: 10 * time.Second, HalfOpenMaxRequests: 1})
		f := &fakeNode{err: unavailable("n")}
		_ = b.Do("n", "op", f.call)
		if b.State("n") != BreakerOpen {
			t.Fatal("not open")
		}
		time.Sleep(11 * time.Second) // fake time inside the bubble
		if got := b.State("n"); got != BreakerHalfOpen {
			t.Fatalf("after OpenFor: %s, want half-open", got)
		}
		// A failed probe opens it again.
		_ = b.Do("n", "op", f.call)
		if got := b.State("n"); got != BreakerOpen {
			t.Fatalf("after failed probe: %s, want open", got)
		}
		time.Sleep(11 * time.Second)
		f.err = nil
		if err := b.Do("n", "op", f.call); err != nil {
			t.Fatalf("probe: %v", err)
		}
		if got := b.State("n"); got != BreakerClosed {
			t.Fatalf("after good probe: %s, want closed", got)
		}
		if f.calls != 3 {
			t.Fatalf("calls = %d, want 3", f.calls)
		}
	})
}

func TestBreakerExecuteResult(t *testing.T) {
	b := NewBreakers(BreakerSettings{})
	v, err := Execute(b, "n", "get", func() (int, error) { return 42, nil })
	if v != 42 || err != nil {
		t.Fatalf("Execute = %d, %v", v, err)
	}
	var nilB *Breakers
	v, err = Execute(nilB, "n", "get", func() (int, error) { return 7, nil })
	if v != 7 || err != nil || nilB.State("n") != BreakerClosed || nilB.Len() != 0 {
		t.Fatalf("nil Breakers: %d, %v", v, err)
	}
}

func TestBreakerBoundedKeepsOpenOnes(t *testing.T) {
	b := NewBreakers(BreakerSettings{FailuresToTrip: 1, OpenFor: time.Hour, MaxNodes: 3})
	_ = b.Do("down", "op", (&fakeNode{err: unavailable("down")}).call)
	for i := range 10 {
		_ = b.Do(fmt.Sprintf("n%d", i), "op", (&fakeNode{}).call)
		if b.Len() > 3 {
			t.Fatalf("map grew past its bound: %d", b.Len())
		}
	}
	if got := b.State("down"); got != BreakerOpen {
		t.Fatalf("the open breaker was evicted before closed ones: %s", got)
	}
	// The most recently used closed breaker is still there; the oldest closed ones are gone.
	b.mu.Lock()
	_, recent := b.nodes["n9"]
	_, old := b.nodes["n0"]
	b.mu.Unlock()
	if !recent || old {
		t.Fatalf("eviction is not least-recently-used: n9 kept=%v n0 kept=%v", recent, old)
	}
}

// TestBreakerNodesReportsEachNode: Nodes lists every node that has a breaker, sorted, with its state
// and the failures in a row since its last success; a nil set has none.
func TestBreakerNodesReportsEachNode(t *testing.T) {
	if n := (*Breakers)(nil).Nodes(); n != nil {
		t.Fatalf("nil breakers: %v", n)
	}
	b := NewBreakers(BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour})
	const up, flaky, down = "http://a/cobrowse", "http://b/cobrowse", "http://c/cobrowse"
	_ = b.Do(up, "join", (&fakeNode{}).call)
	_ = b.Do(flaky, "join", (&fakeNode{err: unavailable(flaky)}).call)
	for range 2 {
		_ = b.Do(down, "join", (&fakeNode{err: unavailable(down)}).call)
	}
	want := []NodeBreaker{
		{Node: up, State: BreakerClosed},
		{Node: flaky, State: BreakerClosed, ConsecutiveFailures: 1},
		{Node: down, State: BreakerOpen}, // gobreaker clears the counts when the state changes
	}
	got := b.Nodes()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Nodes() = %+v, want %+v", got, want)
	}
}
