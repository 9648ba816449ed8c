package cometd

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// events queues the owner's callbacks (OnMessage, OnState) and runs them one at a time, in
// order, on a goroutine that exists only while the queue is not empty. So a callback never
// blocks a network reader or the connect loop, and may call any Client method.
type events struct {
	c       *Client
	mu      sync.Mutex
	q       []event
	running bool
	closed  bool
	wg      sync.WaitGroup
	gid     atomic.Uint64 // the goroutine running callbacks, 0 when none
}

type event struct {
	msg     Message
	state   StateEvent
	isState bool
}

func (e *events) message(m Message) {
	if e.c.opts.OnMessage == nil {
		return
	}
	e.push(event{msg: m})
}

func (e *events) state(s StateEvent) {
	if e.c.opts.OnState == nil {
		return
	}
	e.push(event{state: s, isState: true})
}

func (e *events) push(ev event) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.q = append(e.q, ev)
	if e.running {
		e.mu.Unlock()
		return
	}
	e.running = true
	e.wg.Add(1)
	e.mu.Unlock()
	go e.drain()
}

func (e *events) drain() {
	defer e.wg.Done()
	e.gid.Store(goid())
	defer e.gid.Store(0)
	var batch []event
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			e.running = false
			e.q = nil
			e.mu.Unlock()
			return
		}
		batch, e.q = e.q, batch[:0]
		e.mu.Unlock()
		for i := range batch {
			ev := &batch[i]
			switch {
			case ev.isState:
				e.c.opts.OnState(ev.state)
			case !e.c.stopping(): // no deliveries once the client is stopping
				e.c.opts.OnMessage(ev.msg)
			}
			batch[i] = event{}
		}
	}
}

// closeAndWait refuses further events and waits for the callbacks to finish, unless it is
// called from a callback (Close inside OnState): then the running queue finishes on its own.
func (e *events) closeAndWait() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	if id := e.gid.Load(); id != 0 && id == goid() {
		return
	}
	e.wg.Wait()
}

// goid returns the current goroutine's id, read from its stack header ("goroutine 42 [...").
// Used only to tell whether Close is called from a callback.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
