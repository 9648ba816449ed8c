package controller

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
)

// endPublished reports whether the deactivated event of iid's session was published.
func endPublished(h *harness, iid string) bool {
	for _, m := range h.pub.all() {
		if l, ok := m.(attach.Lifecycle); ok && l.Event == attach.Deactivated && l.InteractionID == iid {
			return true
		}
	}
	return false
}

// owing is how many actors owe a stop.
func owing(h *harness) int {
	n, _ := laneState(h)
	return n
}

// laneState is how many actors owe a stop, and whether the lane is open with no hold timer set.
func laneState(h *harness) (owing int, open bool) {
	l := &h.c.lane
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owing > 0 && l.clear == nil {
		h.t.Errorf("lane: %d owing, and open", l.owing)
	}
	return l.owing, l.clear == nil && l.hold == nil
}

// TestStopsGoBeforeTheBookkeeping: while another interaction owes its stop, a session whose stop
// went out holds the work that follows (its end's saves and publishes, the ack, the goodbye to
// the vendor) until that stop returned and stopFirstHold passed, or for stopFirstWait at most.
func TestStopsGoBeforeTheBookkeeping(t *testing.T) {
	for _, returns := range []bool{true, false} {
		name := "until the owed stop returned"
		if !returns {
			name = "for stopFirstWait at most"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				mustFate(t, h.start_("i1", "111111111"), "ack")
				mustFate(t, h.start_("i2", "222222222"), "ack")
				hold := make(chan struct{})
				h.conn.mu.Lock()
				h.conn.stopHold = map[string]chan struct{}{"111111111": hold}
				h.conn.mu.Unlock()

				d1 := h.event("i1", chat.EventClosed, "") // its stop hangs
				d2 := h.event("i2", chat.EventClosed, "") // its stop returns at once
				if h.conn.session(1).stops() != 1 {
					t.Fatal("the second interaction's stop did not go out")
				}
				held := func(d *delivery, iid string, s int) bool {
					return fate(d) == "" && !endPublished(h, iid) && !h.conn.session(s).isClosed()
				}
				if !held(d2, "i2", 1) {
					t.Fatalf("the second session's end was recorded (settled %q) while the first stop was owed", fate(d2))
				}
				if owing(h) != 1 {
					t.Fatalf("%d actors owe a stop, want the first", owing(h))
				}

				if returns {
					close(hold)
					synctest.Wait()
					if !held(d2, "i2", 1) || !held(d1, "i1", 0) {
						t.Fatal("the end of a burst's stops was recorded before stopFirstHold passed")
					}
					time.Sleep(stopFirstHold)
				} else {
					time.Sleep(stopFirstWait)
				}
				synctest.Wait()
				mustFate(t, d2, "ack")
				if !endPublished(h, "i2") || !h.conn.session(1).isClosed() {
					t.Fatal("the second session's end not recorded, or its connection not left")
				}
				if !returns {
					if !held(d1, "i1", 0) || owing(h) != 1 {
						t.Fatal("the hanging stop was given up")
					}
					close(hold)
					time.Sleep(stopFirstHold)
					synctest.Wait()
				}
				mustFate(t, d1, "ack")
				if !endPublished(h, "i1") || owing(h) != 0 {
					t.Fatalf("the first session's end not recorded, or the lane not empty (%d owing)", owing(h))
				}
			})
		})
	}
}

// TestLoneCloseDoesNotWait: a close while no other stop is owed, and a close of an interaction
// without a live session, go through the lane without waiting.
func TestLoneCloseDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		before := time.Now()
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		mustFate(t, h.event("i2", chat.EventClosed, ""), "ack") // never had a session
		if !endPublished(h, "i1") || time.Since(before) != 0 {
			t.Fatalf("a lone close waited %v", time.Since(before))
		}
		if owing(h) != 0 {
			t.Fatalf("%d actors owe a stop", owing(h))
		}
	})
}

// TestStopLaneHoldsAfterABurst: the lane opens at once after a lone stop, stopFirstHold after a
// burst, and a clump that comes during the hold closes it again.
func TestStopLaneHoldsAfterABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l stopLane
		burst := func() { // two actors owe a stop at once, then both stops return
			l.add()
			l.add()
			l.done()
			l.done()
		}
		waited := func() time.Duration {
			start := time.Now()
			l.wait(t.Context(), stopFirstWait)
			return time.Since(start)
		}
		l.add()
		l.done()
		if d := waited(); d != 0 {
			t.Fatalf("after a lone stop the lane opened after %v", d)
		}
		burst()
		if d := waited(); d != stopFirstHold {
			t.Fatalf("after a burst the lane opened after %v, want %v", d, stopFirstHold)
		}
		burst()
		time.Sleep(stopFirstHold / 2)
		l.add() // the next clump
		go func() {
			time.Sleep(time.Millisecond)
			l.done()
		}()
		if d, want := waited(), time.Millisecond+stopFirstHold; d != want {
			t.Fatalf("with a clump during the hold the lane opened after %v, want %v", d, want)
		}
		l.add()
		if d := waited(); d != stopFirstWait {
			t.Fatalf("a stop that hangs held the lane %v, want the bound %v", d, stopFirstWait)
		}
		l.done()

		// The Controller's shutdown closes a lane in its hold: the timer stops, the lane opens.
		burst()
		l.close()
		if l.hold != nil || l.clear != nil {
			t.Fatal("the lane's hold outlived close")
		}
		if d := waited(); d != 0 {
			t.Fatalf("after close the lane held %v", d)
		}
	})
}
