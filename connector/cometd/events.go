package cometd

import "sync"

// events queues the owner's callbacks (OnMessage, OnState, and the functions given to Post) and
// runs them one at a time, in order, on a goroutine that exists only while the queue is not
// empty. So a callback never blocks a network reader or the connect loop, and may call any
// Client method but Close and Disconnect, which wait for the callbacks (see Client.Stop).
type events struct {
	c       *Client
	mu      sync.Mutex
	q       []event
	running bool
	closed  bool          // no more messages or states: the client has stopped
	idle    chan struct{} // made by a waiter while running; closed when the goroutine ends
}

type event struct {
	msg   Message
	state StateEvent
	fn    func()
	kind  uint8
}

const (
	evMessage = iota
	evState
	evFunc
)

func (e *events) message(m Message) {
	if e.c.opts.OnMessage == nil {
		return
	}
	e.push(event{msg: m, kind: evMessage})
}

func (e *events) state(s StateEvent) {
	if e.c.opts.OnState == nil {
		return
	}
	e.push(event{state: s, kind: evState})
}

func (e *events) push(ev event) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.appendLocked(ev)
}

// appendLocked queues ev and starts the goroutine if it is not running; it unlocks e.mu.
func (e *events) appendLocked(ev event) {
	e.q = append(e.q, ev)
	if e.running {
		e.mu.Unlock()
		return
	}
	e.running = true
	e.mu.Unlock()
	go e.drain()
}

// post queues fn behind the callbacks queued so far; once the client has stopped and its last
// callback has run, it runs fn on the caller's goroutine instead (false).
func (e *events) post(fn func()) bool {
	e.mu.Lock()
	if e.closed && !e.running {
		e.mu.Unlock()
		fn()
		return false
	}
	e.appendLocked(event{fn: fn, kind: evFunc})
	return true
}

func (e *events) drain() {
	var batch []event
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			e.q = nil
			if e.idle != nil {
				close(e.idle)
				e.idle = nil
			}
			e.mu.Unlock()
			return
		}
		batch, e.q = e.q, batch[:0]
		e.mu.Unlock()
		for i := range batch {
			ev := &batch[i]
			switch ev.kind {
			case evState:
				e.c.opts.OnState(ev.state)
			case evFunc:
				ev.fn()
			default:
				if !e.c.stopping() { // no deliveries once the client is stopping
					e.c.opts.OnMessage(ev.msg)
				}
			}
			batch[i] = event{}
		}
	}
}

// close refuses further messages and states; what is queued still runs.
func (e *events) close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}

// closeAndWait is close, then waits until the queue is empty and its goroutine has ended. It
// must not be called from a callback, which would wait for itself.
func (e *events) closeAndWait() {
	e.mu.Lock()
	e.closed = true
	if !e.running {
		e.mu.Unlock()
		return
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
	}
	idle := e.idle
	e.mu.Unlock()
	<-idle
}
