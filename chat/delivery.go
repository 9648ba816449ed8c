package chat

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is the fate of the JetStream message behind an Inbound. Ack only after the message's
// effects are durable. Exactly one of Ack, Nak and Term settles a delivery (a later call returns
// ErrSettled); a settle call that fails leaves it unsettled, so it may be retried.
//
// While Run runs, an unsettled delivery is kept alive with in-progress acks for up to
// Config.AckWait after it was handed over (or after the last InProgress); then the server
// redelivers it.
//
// Nak(delay) redelivers after delay, at once when delay <= 0. With a Backoff, the server will not
// redeliver a delayed nak sooner than Backoff[attempt-1]-Backoff[0] (it times a delayed nak from
// Backoff[0] but waits the attempt's rung), so the delay is max(delay, that floor).
type Delivery interface {
	Ack(ctx context.Context) error // double ack (AckSync): returns once the server has it
	// AckNoWait acks without waiting for the server's word: for a message whose redelivery after
	// a lost ack is handled the same way again (it caused nothing durable, or what it caused is
	// durable and its redelivery is recognized as seen).
	AckNoWait() error
	Nak(delay time.Duration) error // redeliver after delay (delayed nak)
	Term(reason string) error      // never redeliver
	InProgress() error             // extend the ack wait while slow work goes on
	Attempt() int                  // delivery count, from 1
	Last() bool                    // this delivery is the last the consumer allows (MaxDeliver reached): a failure now must be reported, not retried
	StreamSeq() uint64
}

// ErrSettled is returned by a Delivery method called after the delivery was settled.
var ErrSettled = errors.New("chat: delivery already settled")

// delivery is one JetStream message held by the consumer. Until it is settled, the consumer's
// lease keeper sends in-progress acks so that the server does not redeliver it: always while it
// waits for the handler, and for up to Config.AckWait after it was handed over (or after the
// handler's last InProgress).
type delivery struct {
	msg      inMsg  // nil for a pinLost marker
	pulled   pulled // what msg points to for a pulled message (one allocation for both)
	subject  string // the inbound subject (without the group stream's partition token)
	pin      string // the pin id the server sent it with (the group's consumer)
	seq      uint64
	attempt  int
	deadline time.Duration // the server's ack deadline for this attempt
	ackWait  time.Duration // the server's AckWait (Backoff[0] when a backoff is set)
	keeper   *leases
	counts   *kindCounters // the counters of its kind, set when it is handed over; nil: not counted
	// The flags sit together: a bool between two 8-byte fields takes 8 bytes.
	pinLost bool // no message: the server told this instance another holds the pin
	last    bool
	held    bool // in keeper.held (guarded by keeper.mu)
	settled bool // guarded by mu
	lapsed  bool // the keeper gave up on it: the server will redeliver it (guarded by mu)

	mu         sync.Mutex
	touched    time.Time // when the server's redelivery timer was last reset
	handedOver time.Time // when the handler got it, or last called InProgress; zero before
}

func (d *delivery) Attempt() int      { return d.attempt }
func (d *delivery) Last() bool        { return d.last }
func (d *delivery) StreamSeq() uint64 { return d.seq }

// settle marks d settled, runs send, and unmarks it if send fails; a settle that went out is
// counted as o.
func (d *delivery) settle(o outcome, send func() error) error {
	d.mu.Lock()
	if d.settled {
		d.mu.Unlock()
		return ErrSettled
	}
	d.settled = true
	d.mu.Unlock()
	err := send()
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		d.mu.Lock()
		d.settled = false
		d.mu.Unlock()
		d.keep()
	}
	if err == nil {
		d.counts.settledAs(o)
	}
	return err
}

func (d *delivery) Ack(ctx context.Context) error {
	return d.settle(outcomeAcked, func() error { return d.msg.DoubleAck(ctx) })
}

func (d *delivery) AckNoWait() error {
	return d.settle(outcomeAcked, d.msg.Ack)
}

// Nak sends a nak, correcting a delayed one for the server's backoff rule (see Delivery).
func (d *delivery) Nak(delay time.Duration) error {
	return d.settle(outcomeNacked, func() error {
		if delay <= 0 {
			return d.msg.Nak()
		}
		return d.msg.NakWithDelay(nakDelay(delay, d.ackWait, d.deadline))
	})
}

// nakDelay is the delay to send for a redelivery after delay, given the server's AckWait and
// this attempt's ack deadline.
func nakDelay(delay, ackWait, deadline time.Duration) time.Duration {
	return max(delay+ackWait-deadline, time.Nanosecond)
}

func (d *delivery) Term(reason string) error {
	return d.settle(outcomeTerminated, func() error {
		if reason == "" {
			return d.msg.Term()
		}
		return d.msg.TermWithReason(reason)
	})
}

// InProgress gives the handler a fresh budget. The server hears of it only when its redelivery
// timer is due for a reset (as keepAlive judges it), when the keeper let d go, or when d has no
// keeper: otherwise the keeper resets that timer in time while the budget lasts, and a message to
// the server per join or stop would be work for nothing on both sides.
func (d *delivery) InProgress() error {
	d.mu.Lock()
	if d.settled {
		d.mu.Unlock()
		return ErrSettled
	}
	now := time.Now()
	if d.keeper == nil || d.lapsed || now.Sub(d.touched) >= d.deadline/4 {
		if err := d.msg.InProgress(); err != nil {
			d.mu.Unlock()
			return err
		}
		d.touched = now
	}
	if !d.handedOver.IsZero() {
		d.handedOver = now
	}
	relapse := d.lapsed
	d.lapsed = false
	d.mu.Unlock()
	if relapse {
		d.keep()
	}
	return nil
}

// keep hands d (back) to the keeper.
func (d *delivery) keep() {
	if d.keeper != nil {
		d.keeper.add(d)
	}
}

// handOver records that the handler now has d: from here its time is bounded by the budget.
func (d *delivery) handOver() {
	d.mu.Lock()
	d.handedOver = time.Now()
	d.mu.Unlock()
}

// keepAlive resets the server's redelivery timer when due. It reports whether d still needs the
// keeper, and whether it just lapsed (its budget ran out: the keeper lets it go).
func (d *delivery) keepAlive(now time.Time, budget time.Duration) (keep, lapsed, sent bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled || d.lapsed {
		return false, false, false
	}
	if !d.handedOver.IsZero() && now.Sub(d.handedOver) >= budget {
		d.lapsed = true
		return false, true, false
	}
	if now.Sub(d.touched) < d.deadline/4 {
		return true, false, false
	}
	// Publish is buffered by the client (also while it reconnects), so holding d.mu is brief; it
	// orders this in-progress before any settle that follows.
	if err := d.msg.InProgress(); err != nil {
		return true, false, false
	}
	d.touched = now
	return true, false, true
}

// leases is the keeper: it holds the unsettled deliveries and keeps them alive.
type leases struct {
	budget time.Duration
	log    *slog.Logger
	onSent func(seq uint64) // test hook: an in-progress ack was sent

	// held is every delivery handed to the keeper and not let go by a tick yet (settled ones
	// included: the next tick drops them). A slice, not a set: every pulled message is added
	// once, and a tick goes through them all anyway. delivery.held says which are in it.
	mu   sync.Mutex
	held []*delivery
}

func newLeases(budget time.Duration, log *slog.Logger, onSent func(uint64)) *leases {
	return &leases{budget: budget, log: log, onSent: onSent}
}

func (l *leases) add(d *delivery) {
	l.mu.Lock()
	if !d.held {
		d.held = true
		l.held = append(l.held, d)
	}
	l.mu.Unlock()
}

// take takes the held deliveries out, for a tick.
func (l *leases) take() []*delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.held
	l.held = nil
	return out
}

// putBack returns what a tick kept, ahead of what was added meanwhile, and lets the rest go.
func (l *leases) putBack(kept, dropped []*delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range dropped {
		d.held = false
	}
	l.held = append(kept, l.held...)
}

// run ticks every period until ctx is done.
func (l *leases) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.tick(now)
		}
	}
}

func (l *leases) tick(now time.Time) {
	all := l.take()
	var kept, dropped []*delivery
	for _, d := range all {
		keep, lapsed, sent := d.keepAlive(now, l.budget)
		if sent && l.onSent != nil {
			l.onSent(d.seq)
		}
		if lapsed {
			l.log.Warn("delivery not settled within the ack wait: the server will redeliver it",
				"stream_seq", d.seq, "attempt", d.attempt, "ack_wait", l.budget)
		}
		if keep {
			kept = append(kept, d)
		} else {
			dropped = append(dropped, d)
		}
	}
	l.putBack(kept, dropped)
}

// queue holds the deliveries pulled ahead of the handler, in stream order.
type queue struct {
	mu      sync.Mutex
	items   []*delivery
	serving bool // an item popped is being handled (tryPop until served)
	added   chan struct{}
	removed chan struct{}
}

func newQueue() *queue {
	return &queue{added: make(chan struct{}, 1), removed: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (q *queue) push(d *delivery) {
	q.mu.Lock()
	q.items = append(q.items, d)
	q.mu.Unlock()
	signal(q.added)
}

// tryPop returns the oldest delivery, or nil when none is queued.
func (q *queue) tryPop() *delivery {
	q.mu.Lock()
	if len(q.items) == 0 {
		q.mu.Unlock()
		return nil
	}
	d := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	q.serving = true
	q.mu.Unlock()
	signal(q.removed)
	return d
}

// served records that the item tryPop returned last has been handled (or put back).
func (q *queue) served() {
	q.mu.Lock()
	q.serving = false
	q.mu.Unlock()
}

// idle reports whether nothing is queued or being handled: a delivery the only producer (the pull
// loop) hands over itself now keeps its place in stream order.
func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) == 0 && !q.serving
}

// pushFront puts d back at the head of the queue.
func (q *queue) pushFront(d *delivery) {
	q.mu.Lock()
	q.items = append([]*delivery{d}, q.items...)
	q.mu.Unlock()
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// waitBelow waits until fewer than n deliveries are queued and returns how many are; false when
// ctx is done.
func (q *queue) waitBelow(ctx context.Context, n int) (int, bool) {
	for {
		if k := q.len(); k < n {
			return k, true
		}
		select {
		case <-q.removed:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// drain empties the queue.
func (q *queue) drain() []*delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	return out
}
