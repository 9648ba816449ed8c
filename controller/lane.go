// The stop lane: in a burst of closes, the stops go to the vendors before the bookkeeping of the
// first ones competes with them.
package controller

import (
	"context"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
)

// stopFirstWait bounds how long the work that follows one session's stop waits for the stops
// other actors owe. A stop ends what an agent sees of a customer's page, so it goes first; the
// work after it (the wait for the vendor's word, the saves and publishes of the session's end,
// the goodbye to the vendor) is bookkeeping. When 64 interactions close at once, that
// bookkeeping for the first ones would otherwise share the CPU (and NATS, and the vendor's
// server where they share a machine) with the stops of the last ones: in the load harness it
// took 0.5-0.7 ms of the daemon's CPU per close against 0.2-0.25 ms up to the stop (see
// docs/scaling.md, "Close in flight"). The bound keeps a stop that hangs (a vendor node that
// does not answer, up to StopTimeout) from holding up the rest: a close's final attach comes at
// most this much later than it would without the lane.
const stopFirstWait = 50 * time.Millisecond

// stopFirstHold is how long the lane stays closed after a burst of stops (more than one actor
// owed a stop at once) has gone out. A burst of closes reaches the daemon in clumps, as NATS
// delivers them: a lane that opened between two clumps would let the bookkeeping of the first in
// before the stops of the next. A close that comes meanwhile closes it again. A lone close does
// not wait for it.
const stopFirstHold = 3 * time.Millisecond

// stopLane counts the actors that owe a stop: an actor with a live session owes one from the
// moment a message that stops it (a transfer, a close, an interaction time-out, an operator's
// stop) reaches its inbox until its stop call returned, or the message turned out to stop
// nothing. Messages still in NATS are not counted: the lane orders what the daemon holds.
type stopLane struct {
	mu    sync.Mutex
	owing int
	burst bool          // more than one actor owed a stop since the lane was last open
	clear chan struct{} // closed when the lane opens; nil while it is open
	hold  *time.Timer   // opens the lane stopFirstHold after a burst went out
}

func (l *stopLane) add() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hold != nil {
		l.hold.Stop()
		l.hold = nil
		l.burst = true // a clump after the last one
	}
	if l.clear == nil {
		l.clear = make(chan struct{})
	}
	l.owing++
	if l.owing > 1 {
		l.burst = true
	}
}

func (l *stopLane) done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.owing--
	switch {
	case l.owing > 0:
	case !l.burst:
		l.openLocked()
	default:
		ch := l.clear
		l.hold = time.AfterFunc(stopFirstHold, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.owing == 0 && l.clear == ch {
				l.openLocked()
			}
		})
	}
}

// close stops a burst's hold timer, so that nothing of the lane runs after the Controller's
// shutdown; the lane is open then.
func (l *stopLane) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hold != nil {
		l.hold.Stop()
	}
	if l.clear != nil {
		l.openLocked()
	}
}

func (l *stopLane) openLocked() {
	close(l.clear)
	l.clear, l.burst, l.hold = nil, false, nil
}

// wait returns once the lane is open (no actor owes a stop, and a burst's hold is over), after d
// at most, or when ctx is done.
func (l *stopLane) wait(ctx context.Context, d time.Duration) {
	l.mu.Lock()
	ch := l.clear
	l.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// stopsSession reports a message that stops the interaction's live session, when it has one (see
// decideEvent and signal).
func stopsSession(in chat.Inbound) bool {
	if e := in.Event; e != nil {
		return e.Type == chat.EventTransferred || e.Type == chat.EventClosed || e.Type == chat.EventTimeout
	}
	g := in.Signal
	return g != nil && g.Type == chat.SignalStop && g.Source == chat.SourceOperator
}

// oweStopLocked notes, as it joins the inbox, a message that will stop the actor's live session.
// The caller holds qmu.
func (a *actor) oweStopLocked(in chat.Inbound) {
	if a.owesStop || a.shown.Load() == nil || !stopsSession(in) {
		return
	}
	a.owesStop = true
	a.c.lane.add()
}

// settleStop takes the actor out of the lane: its stop call returned (afterStop), it handled a
// message (work; with unlessQueued it stays in while another message that stops its session waits
// in the inbox), or it left (exit).
func (a *actor) settleStop(unlessQueued bool) {
	a.qmu.Lock()
	owed := a.owesStop
	if owed && unlessQueued {
		for _, in := range a.inbox {
			if stopsSession(in) {
				owed = false
				break
			}
		}
	}
	if owed {
		a.owesStop = false
	}
	a.qmu.Unlock()
	if owed {
		a.c.lane.done()
	}
}

// afterStop runs once the actor's stop call returned: the actor leaves the lane, then lets the
// stops that other actors owe go first, within stopFirstWait.
func (a *actor) afterStop(ctx context.Context) {
	a.settleStop(false)
	a.c.lane.wait(ctx, stopFirstWait)
}
