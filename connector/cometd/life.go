package cometd

import (
	"context"
	"sync"
	"time"
)

// life is a client's lifetime as a context: cancelled once, when the client stops. Contexts
// derived from it (and context.AfterFunc on it) register a function here, removed when they
// end: no goroutine and no children map. It keeps no channel of its own: Done returns a shared
// channel, the closed one once cancelled, so it is for deriving contexts and AfterFunc only,
// never for a select of our own (a channel it returned before the cancellation never closes).
type life struct {
	mu   sync.Mutex
	over bool
	fns  []*lifeFn
}

type lifeFn struct{ f func() }

var neverCh = make(chan struct{})

func (l *life) Deadline() (time.Time, bool) { return time.Time{}, false }
func (l *life) Value(any) any               { return nil }

func (l *life) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.over {
		return closedCh
	}
	return neverCh
}

func (l *life) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.over {
		return context.Canceled
	}
	return nil
}

// AfterFunc arranges for f to run when the life ends (at once, on its own goroutine, if it has
// ended). stop unregisters f; it reports whether it did so before f ran.
func (l *life) AfterFunc(f func()) (stop func() bool) {
	l.mu.Lock()
	if l.over {
		l.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	e := &lifeFn{f: f}
	l.fns = append(l.fns, e)
	l.mu.Unlock()
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, x := range l.fns {
			if x == e {
				l.fns = append(l.fns[:i], l.fns[i+1:]...)
				if len(l.fns) == 0 {
					l.fns = nil
				}
				return true
			}
		}
		return false
	}
}

// cancel ends the life and runs the registered functions (on the caller's goroutine: they only
// cancel contexts and reset timers).
func (l *life) cancel() {
	l.mu.Lock()
	if l.over {
		l.mu.Unlock()
		return
	}
	l.over = true
	fns := l.fns
	l.fns = nil
	l.mu.Unlock()
	for _, e := range fns {
		e.f()
	}
}
