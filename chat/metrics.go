package chat

import (
	"sync/atomic"
	"time"
)

// Counter is a count that only goes up; a prometheus.Counter is one.
type Counter interface{ Inc() }

// Metrics are the inbound consumer's counters, made by the caller on its own registry. Every
// function is called once per label value when the consumer is made, never per message, so that
// counting costs a pointer load and an atomic add on the hot path. A nil function leaves its
// metric out.
type Metrics struct {
	// Messages is the counter of inbound messages of kind (chat, event, signal, other) settled
	// with outcome: acked (handled), ignored (an event or signal type the daemon does not act on,
	// acked), nacked (handed back for redelivery), terminated (the handler gave up on it on its
	// last delivery) or malformed (terminated by the consumer: it cannot be read).
	Messages func(kind, outcome string) Counter
	// Redeliveries is the counter of deliveries of kind that are not the message's first.
	Redeliveries func(kind string) Counter
	// Terminated is the counter of terminated messages by reason: malformed (the consumer's) or
	// failed (the handler's, after the last delivery failed).
	Terminated func(reason string) Counter
}

// The label values Metrics are made with.
var (
	// MessageKinds are the kinds of inbound message, indexed by subjectKind (other: a subject
	// that matches no inbound pattern).
	MessageKinds = [...]string{subjectNone: "other", subjectChat: "chat", subjectEvent: "event", subjectSignal: "signal"}
	// MessageOutcomes are how an inbound message is settled.
	MessageOutcomes = [...]string{outcomeAcked: "acked", outcomeIgnored: "ignored", outcomeNacked: "nacked",
		outcomeTerminated: "terminated", outcomeMalformed: "malformed"}
	// TerminateReasons are why an inbound message was terminated.
	TerminateReasons = [...]string{termMalformed: "malformed", termFailed: "failed"}
)

type outcome int

const (
	outcomeAcked outcome = iota
	outcomeIgnored
	outcomeNacked
	outcomeTerminated
	outcomeMalformed
	nOutcomes
)

const (
	termMalformed = iota
	termFailed
	nTermReasons
)

// kindCounters are the counters of one kind of message, resolved once.
type kindCounters struct {
	settled     [nOutcomes]Counter
	redelivered Counter
	terminated  *[nTermReasons]Counter // shared by every kind
}

// settledAs counts a settled delivery; a nil receiver (no metrics) counts nothing.
func (k *kindCounters) settledAs(o outcome) {
	if k == nil {
		return
	}
	k.settled[o].Inc()
	if o == outcomeTerminated {
		k.terminated[termFailed].Inc()
	}
}

// meters are the resolved counters, per kind.
type meters struct {
	kinds      [len(MessageKinds)]kindCounters
	terminated [nTermReasons]Counter
}

// noCount counts nothing: the stand-in for a metric left out.
type noCount struct{}

func (noCount) Inc() {}

// newMeters resolves every counter of m; nil when m is nil.
func newMeters(m *Metrics) *meters {
	if m == nil {
		return nil
	}
	out := &meters{}
	for r, name := range TerminateReasons {
		out.terminated[r] = resolve(m.Terminated, name)
	}
	for k, kind := range MessageKinds {
		kc := &out.kinds[k]
		for o, name := range MessageOutcomes {
			kc.settled[o] = resolve2(m.Messages, kind, name)
		}
		kc.redelivered = resolve(m.Redeliveries, kind)
		kc.terminated = &out.terminated
	}
	return out
}

func resolve(f func(string) Counter, v string) Counter {
	if f == nil {
		return noCount{}
	}
	return f(v)
}

func resolve2(f func(string, string) Counter, a, b string) Counter {
	if f == nil {
		return noCount{}
	}
	return f(a, b)
}

// kind returns the counters of kind k; nil without metrics.
func (m *meters) kind(k subjectKind) *kindCounters {
	if m == nil {
		return nil
	}
	return &m.kinds[k]
}

// malformed counts a message of kind k the consumer terminated as malformed.
func (m *meters) malformed(k subjectKind) {
	if m == nil {
		return
	}
	m.kinds[k].settled[outcomeMalformed].Inc()
	m.terminated[termMalformed].Inc()
}

// PullState is what the consumer's pull loop is doing, for a readiness probe.
type PullState int32

// The pull states.
const (
	// PullStopped: Run is not running (not started yet, or returned).
	PullStopped PullState = iota
	// PullStarting: Run runs but pulls nothing yet: it sets up the member's consumer (reading the
	// membership, waiting for the partitions' previous owner to let go of them).
	PullStarting
	// PullIdle: the membership gives this member no partition, so there is nothing to pull until
	// an operator adds it (cobrowse-connector cluster add). Nothing is wrong with the consumer.
	PullIdle
	// PullPulling: pull requests go out and the last one that ended succeeded.
	PullPulling
	// PullFailing: the last pull request failed; the loop retries with backoff.
	PullFailing
)

func (s PullState) String() string {
	switch s {
	case PullStarting:
		return "starting"
	case PullIdle:
		return "idle"
	case PullPulling:
		return "pulling"
	case PullFailing:
		return "failing"
	}
	return "stopped"
}

// PullStatus is the state of the consumer's pull loop.
type PullStatus struct {
	State PullState
	// Failures counts the pull requests that failed in a row (0 once one succeeds).
	Failures int
	// LastError is why the last pull request failed; "" once one succeeds.
	LastError string
	// LastPull is when a pull request last ended without error (zero: none yet).
	LastPull time.Time
}

// pullHealth records the pull loop's state: written by the loop once per pull request (a batch
// of up to Config.FetchBatch messages, or an idle expiry), read by probes. Atomics only.
type pullHealth struct {
	state    atomic.Int32
	failures atomic.Int32
	last     atomic.Int64 // unix nanoseconds
	err      atomic.Pointer[string]
}

func (h *pullHealth) set(s PullState) { h.state.Store(int32(s)) }

// ok records a pull request that ended without error.
func (h *pullHealth) ok(now time.Time) {
	h.last.Store(now.UnixNano())
	if h.failures.Load() != 0 {
		h.failures.Store(0)
		h.err.Store(nil)
	}
	h.state.Store(int32(PullPulling))
}

// failed records a pull request that failed, the n-th in a row.
func (h *pullHealth) failed(err error, n int) {
	msg := err.Error()
	h.err.Store(&msg)
	h.failures.Store(int32(n))
	h.state.Store(int32(PullFailing))
}

// PullStatus reports what the pull loop is doing. Safe from any goroutine.
func (c *Consumer) PullStatus() PullStatus {
	h := &c.health
	st := PullStatus{State: PullState(h.state.Load()), Failures: int(h.failures.Load())}
	if p := h.err.Load(); p != nil {
		st.LastError = *p
	}
	if n := h.last.Load(); n != 0 {
		st.LastPull = time.Unix(0, n)
	}
	return st
}
