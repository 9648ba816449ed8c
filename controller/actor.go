package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// actor owns one interaction: its state, its live co-browse session and its timers. The Controller
// makes it; it works on a goroutine that exists only while it has something to do (a message, a
// session event, a timer, the sweep's nudge, the end of a re-join, a stop or a hand-off), so an
// interaction whose session is only waiting costs no goroutine. At most one such goroutine runs at
// a time, and only it touches the actor's fields outside the mailbox.
//
// Every step follows one order: apply the input to the state (calling the co-browse server if the
// input asks for it), queue the outbound messages the step produced, publish them in order, save
// the state, and only then ack the inbound message that caused them. A step whose publishing or
// saving fails keeps its messages and state in memory and naks the inbound message; the redelivery
// finds its id in State.Seen and only finishes the publishing and saving.
type actor struct {
	c   *Controller
	id  string
	log *slog.Logger // made on first use (logger): most interactions never log

	// The mailbox, under qmu: what the actor has to do, and whether its goroutine runs.
	qmu     sync.Mutex
	inbox   []chat.Inbound // inbound messages handed to the actor, in stream order
	evq     []streamEvent  // the live session's events, in order (see attachSession)
	pending work           // the other things to do
	running bool           // a goroutine works for the actor
	// owesStop: the actor is counted in the Controller's stop lane (see lane.go).
	owesStop bool
	gone     bool          // the actor left: nothing starts it again
	gen      uint64        // the session whose events are taken; feeds of another are dropped
	evWake   chan struct{} // made while a stop waits for the session's word (stopLive)
	fwdStop  chan struct{} // ends the goroutine reading a session's Events channel (attachSession)
	// recovered is a state saved with a live session before a restart: the actor joins it again
	// before anything else.
	recovered *Saved

	// exited is closed when the actor left (Release waits for it); handingOff says the Controller
	// asked it to let go of the interaction (under the Controller's lock).
	exited     chan struct{}
	handingOff bool

	st     State
	loaded bool   // st was read from the store
	rev    uint64 // the state's revision in the store
	dirty  bool   // st differs from what the store holds
	outbox []Outbound
	// outboxSaved: the store holds outbox (st.Outbox) as it is now.
	outboxSaved bool
	// reserved is the attach seq a saved join marker holds for the join's attach (Joining.Seq),
	// until that attach takes it; reservedOnly says that every id in outbox was reserved before
	// the join call, so that commit may publish them before it saves (see join).
	reserved     uint64
	reservedOnly bool
	lastRun      time.Time // when the actor last did work, for reaping
	// vendorWarned: a cobrowseVendor different from the fixed one was logged already.
	vendorWarned bool

	sess connector.Session
	// listening: the session's events are taken (from attachSession until the stream ends or the
	// actor stops listening); streamed: the session has an event stream at all (Genesys), unlike
	// a session whose vendor reports through signals.
	listening bool
	streamed  bool

	deadline   *time.Timer // the next no-agent or inactivity deadline
	deadlineAt time.Time   // what deadline is set for
	retry      *time.Timer // the next attempt at an outbox or a save that failed
	stopRetry  *time.Timer // the next attempt at the pending stops
	stopTries  int         // attempts at the pending stops since they last changed, for backoff

	// lost is set when a save lost its compare-and-set: the actor lets go of the interaction.
	lost bool

	// liveIn is the live-session gauge the actor counts its session in (trackLive); nil: none.
	liveIn *Gauge
	// metered are the counts of the steps not saved yet (meter), made by the save that records them.
	metered []func(*meters)

	// rejoin is the re-join of a saved live session in flight (after a restart, or a session found
	// in the store), on a goroutine the actor owns: the vendor retries it within its window, which
	// may take longer than the actor may stop handling messages.
	rejoin *rejoinCall

	// shown is the live session as last read or saved, for Controller.LiveSessions (read from
	// any goroutine); nil: none.
	shown atomic.Pointer[SessionCount]
	// quietUntil, when not 0: when its goroutine last stopped, the actor held a live session with
	// its deadline timer set for this time (Unix ns, by the wall clock) and had nothing to retry,
	// so that the sweep's nudge finds nothing to do before then (see noteQuiet).
	quietUntil atomic.Int64
}

// show publishes the live session of the state the actor holds as stored (see shown).
func (a *actor) show() {
	if l := a.st.Live; l != nil {
		v := l.Handle.Vendor
		if v == "" {
			v = a.vendor()
		}
		if cur := a.shown.Load(); cur == nil || cur.Vendor != v || cur.Phase != l.Phase {
			a.shown.Store(&SessionCount{Vendor: v, Phase: l.Phase, Count: 1}) // only when it changed: most saves do not
		}
		return
	}
	a.shown.Store(nil)
}

// work is a set of things for the actor to do besides its queues.
type work uint8

const (
	workHandoff   work = 1 << iota // the interaction's partition moved to another replica
	workQuit                       // the Controller shuts down
	workRecover                    // re-join the recovered state's session
	workRejoined                   // a re-join in flight ended
	workDeadline                   // the deadline timer fired
	workRetry                      // the retry timer fired
	workStopRetry                  // the pending stops' timer fired
	workPoke                       // the sweep's nudge: deadlines, pending stops, reaping
)

// streamEvent is one event of the live session's stream; ok false: the stream ended.
type streamEvent struct {
	ev connector.Event
	ok bool
}

// errRetryLater marks a step that must be tried again later (the co-browse server was
// unavailable): whatever the step produced is committed, and the inbound message is nak'd.
var errRetryLater = errors.New("retry later")

func newActor(c *Controller, id string) *actor {
	return &actor{c: c, id: id, exited: make(chan struct{})}
}

// logger is the actor's logger, with the interaction; made on first use, by the actor's goroutine.
func (a *actor) logger() *slog.Logger {
	if a.log == nil {
		a.log = a.c.log.With("interaction", a.id)
	}
	return a.log
}

// kick records w and starts the actor's goroutine if none runs. Safe from any goroutine.
func (a *actor) kick(w work) {
	a.qmu.Lock()
	a.pending |= w
	a.startLocked()
	a.qmu.Unlock()
}

// startLocked starts the actor's goroutine unless one runs or the actor left. a.qmu held.
func (a *actor) startLocked() {
	if a.running || a.gone {
		return
	}
	a.running = true
	a.c.wg.Go(a.work)
}

// recover hands the actor a state saved with a live session; the Controller calls it once, on a
// new actor.
func (a *actor) recover(s *Saved) {
	a.qmu.Lock()
	a.recovered = s
	a.qmu.Unlock()
	a.kick(workRecover)
}

// enqueue hands the actor an inbound message; the Controller calls it under its lock.
func (a *actor) enqueue(in chat.Inbound) {
	a.qmu.Lock()
	a.inbox = append(a.inbox, in)
	a.oweStopLocked(in)
	a.startLocked()
	a.qmu.Unlock()
}

// next takes the oldest queued message.
func (a *actor) next() (chat.Inbound, bool) {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if len(a.inbox) == 0 {
		return chat.Inbound{}, false
	}
	in := a.inbox[0]
	a.inbox[0] = chat.Inbound{}
	a.inbox = a.inbox[1:]
	if len(a.inbox) == 0 {
		a.inbox = nil
	}
	return in, true
}

func (a *actor) queued() int {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	return len(a.inbox)
}

// feed takes an event of the session attached as gen; the session calls it (connector.Feeder),
// or the goroutine that reads a session's channel. Safe from any goroutine; it never blocks.
func (a *actor) feed(gen uint64, ev connector.Event, ok bool) {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if gen != a.gen || a.gone {
		return // a session the actor no longer listens to
	}
	a.evq = append(a.evq, streamEvent{ev: ev, ok: ok})
	if a.evWake != nil {
		select {
		case a.evWake <- struct{}{}:
		default:
		}
	}
	a.startLocked()
}

// nextEvent takes the session's oldest queued event. When there is none, it returns a channel
// that is signalled when one comes (for a wait inside a step: stopLive).
func (a *actor) nextEvent() (streamEvent, bool, <-chan struct{}) {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	if len(a.evq) == 0 {
		if a.evWake == nil {
			a.evWake = make(chan struct{}, 1)
		}
		return streamEvent{}, false, a.evWake
	}
	e := a.evq[0]
	a.evq[0] = streamEvent{}
	a.evq = a.evq[1:]
	if len(a.evq) == 0 {
		a.evq = nil
	}
	return e, true, nil
}

// stopListening drops the session's queued and later events: its stream ended, or the actor let
// go of the session.
func (a *actor) stopListening() {
	a.qmu.Lock()
	a.dropStreamLocked()
	a.qmu.Unlock()
	a.listening = false
}

// dropStreamLocked forgets the session's stream. a.qmu held.
func (a *actor) dropStreamLocked() {
	a.gen++
	a.evq, a.evWake = nil, nil
	if a.fwdStop != nil {
		close(a.fwdStop)
		a.fwdStop = nil
	}
}

// take picks the next thing to do, in this order: a hand-off or a shutdown, the recovered state,
// the session's events, the end of a re-join, the inbound messages, the timers, the sweep's nudge.
// With nothing to do it ends the goroutine's turn (ok false): the next kick starts another.
func (a *actor) take() (k took, w work, in chat.Inbound, ev streamEvent) {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	for _, first := range [...]work{workHandoff, workQuit, workRecover} {
		if a.pending&first != 0 {
			a.pending &^= first
			return tookWork, first, chat.Inbound{}, streamEvent{}
		}
	}
	if len(a.evq) > 0 {
		ev = a.evq[0]
		a.evq[0] = streamEvent{}
		if a.evq = a.evq[1:]; len(a.evq) == 0 {
			a.evq = nil
		}
		return tookEvent, 0, chat.Inbound{}, ev
	}
	if a.pending&workRejoined != 0 {
		a.pending &^= workRejoined
		return tookWork, workRejoined, chat.Inbound{}, streamEvent{}
	}
	if len(a.inbox) > 0 && !a.awaitsRejoin(a.inbox[0]) {
		in = a.inbox[0]
		a.inbox[0] = chat.Inbound{}
		if a.inbox = a.inbox[1:]; len(a.inbox) == 0 {
			a.inbox = nil
		}
		return tookInbound, 0, in, streamEvent{}
	}
	for _, later := range [...]work{workDeadline, workRetry, workStopRetry, workPoke} {
		if a.pending&later != 0 {
			a.pending &^= later
			return tookWork, later, chat.Inbound{}, streamEvent{}
		}
	}
	a.running = false
	return tookNothing, 0, chat.Inbound{}, streamEvent{}
}

// awaitsRejoin reports an inbound message that waits in the inbox, with those behind it, until
// the live session's re-join in flight (after a restart, or on the replica that took the
// interaction over) has its outcome: a vendor's signal, which only the session it is about can
// turn into events. Handled before, it would find no session and change nothing (an agent's
// user_joined lost, say), and a close behind it would end the session without it. The re-join's
// outcome kicks the actor (workRejoined), and the signal is handled then, with or without a
// session. An operator's stop does not wait: it stops the session through its handle. Any other
// message at the head of the inbox is handled at once (a close gives the re-join up). The
// vendors whose events come as signals (Zoom, CEC) re-join without a long wait. Called by the
// actor's goroutine (take), which alone touches rejoin and sess.
func (a *actor) awaitsRejoin(in chat.Inbound) bool {
	g := in.Signal
	return g != nil && a.rejoin != nil && a.sess == nil && !(g.Type == chat.SignalStop && g.Source == chat.SourceOperator)
}

// took says what take took.
type took int

const (
	tookNothing took = iota
	tookWork
	tookInbound
	tookEvent
)

// exit ends the actor for good: its timers stop, a re-join in flight is given up, its session's
// later events are dropped, and nothing starts it again.
func (a *actor) exit() {
	a.trackLive(true)
	a.stopTimers()
	a.cancelRejoin()
	a.qmu.Lock()
	a.gone, a.running = true, false
	a.dropStreamLocked()
	a.qmu.Unlock()
	a.settleStop(false)
	a.shown.Store(nil)
	close(a.exited)
}

// work is the body of the actor's goroutine: it does what is pending, then returns, leaving the
// actor for the next kick.
func (a *actor) work() {
	ctx := a.c.ctx
	for {
		if ctx.Err() != nil {
			// Out of time (or aborted): drop the connection without the polite disconnect.
			a.cancelRejoin()
			a.closeSession(ctx)
			a.exit()
			return
		}
		a.armDeadline()
		a.trackLive(false)
		a.noteQuiet() // before take: once take finds nothing, another goroutine may own the actor
		k, w, in, ev := a.take()
		switch {
		case k == tookNothing:
			return
		case w == workRecover:
			a.qmu.Lock()
			rec := a.recovered
			a.recovered = nil
			a.qmu.Unlock()
			a.lastRun = time.Now()
			a.adopt(rec.State, rec.Rev)
			a.startRejoin(ctx)
		case w == workQuit:
			a.shutdown(ctx)
			a.exit()
			return
		case w == workHandoff:
			a.handOff(ctx)
			a.exit()
			return
		case w == workRejoined:
			if a.rejoin == nil {
				continue // given up meanwhile (cancelRejoin took the result)
			}
			var r rejoinResult
			select {
			case r = <-a.rejoin.done:
			default:
				continue
			}
			a.rejoin.cancel()
			a.rejoin = nil
			_ = a.step(ctx, input{rejoin: &r})
			a.commitOrRetry(ctx)
		case w == workDeadline:
			a.deadline = nil
			_ = a.step(ctx, input{deadline: true})
			a.commitOrRetry(ctx)
		case w == workRetry:
			a.retry = nil
			a.commitOrRetry(ctx)
		case w == workStopRetry:
			a.stopRetry = nil
			a.retryPendingStops(ctx)
		case w == workPoke:
			_ = a.step(ctx, input{deadline: true})
			a.commitOrRetry(ctx)
			a.retryPendingStops(ctx)
			if a.idle() && time.Since(a.lastRun) >= a.c.cfg.IdleReap && a.c.remove(a) {
				a.exit()
				return
			}
			continue
		case k == tookInbound:
			// The message may have waited behind slower work: its ack budget starts now.
			_ = in.Delivery.InProgress()
			a.inbound(ctx, in)
			a.settleStop(true)
		case k == tookEvent:
			if ev.ok {
				_ = a.step(ctx, input{event: &ev.ev})
			} else {
				_ = a.step(ctx, input{closed: true})
			}
			a.commitOrRetry(ctx)
		}
		a.lastRun = time.Now()
		if a.lost {
			a.letGo(ctx)
			a.exit()
			return
		}
		// A closed interaction's actor leaves once idle; so does any idle actor while the registry
		// is crowded (a burst of interactions, a backlog), so that the bound refuses only
		// interactions that wait behind busy ones. Its state is read again on its next message.
		if (a.st.Closed || a.c.crowded()) && a.idle() && a.c.remove(a) {
			a.exit()
			return
		}
	}
}

// letGo stops acting for the interaction after a save lost its compare-and-set: it leaves the live
// session's connection without stopping the session (its owner, or a fresh actor of this replica,
// carries on with it), drops what it had not published (nothing of it was, since the state is saved
// before the first publish), hands the messages queued for it back to NATS for the owner, and leaves
// the registry. If this replica still owns the interaction, the Controller starts a fresh actor that
// reads the stored state (and re-joins its live session).
func (a *actor) letGo(ctx context.Context) {
	a.logger().Warn("the interaction's state was written by someone else (another replica, or a lost reply): letting go of it without stopping its session",
		"session_id", a.sessionID())
	a.cancelRejoin()
	a.closeSession(context.WithoutCancel(ctx))
	a.outbox, a.st.Outbox = nil, nil
	for _, in := range a.c.release(a) {
		if in.Delivery != nil {
			_ = in.Delivery.Nak(0)
		}
	}
	a.c.reown(a.id)
}

// handOff lets go of the interaction when its partition moved to another replica: the messages
// queued for it go back to NATS (for the new owner), what the actor did is saved, and the live
// session's connection is left without stopping the session, which the new owner takes up from
// the saved state.
func (a *actor) handOff(ctx context.Context) {
	a.cancelRejoin()
	for _, in := range a.c.release(a) {
		if in.Delivery != nil {
			_ = in.Delivery.Nak(0)
		}
	}
	if err := a.commit(ctx); err != nil {
		a.logger().Warn("state not saved when letting go of the interaction; its new owner reads the last saved state", "error", err)
	}
	a.closeSession(context.WithoutCancel(ctx))
	a.logger().Debug("let go of the interaction: its partition moved", "session_id", a.sessionID())
}

// sessionID is the live session's id, for logs; "" when none.
func (a *actor) sessionID() string {
	if a.st.Live == nil {
		return ""
	}
	return a.st.Live.Handle.SessionID
}

// idle reports whether the actor holds nothing that would be lost if it stopped now.
func (a *actor) idle() bool {
	if !a.loaded {
		return a.queued() == 0
	}
	return a.st.Live == nil && a.sess == nil && a.rejoin == nil && !a.dirty && len(a.outbox) == 0 &&
		len(a.st.PendingStops) == 0 && a.queued() == 0
}

// adopt takes a state read from the store, with the messages a previous run left unpublished.
func (a *actor) adopt(st State, rev uint64) {
	a.st, a.rev, a.loaded = st, rev, true
	a.outbox = slices.Clone(st.Outbox)
	a.outboxSaved = len(a.outbox) > 0
	a.show()
}

// load reads the interaction's state once, on the actor's first message.
func (a *actor) load(ctx context.Context) error {
	if a.loaded {
		return nil
	}
	st, rev, err := a.c.store.Load(ctx, a.id)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	st.InteractionID = a.id
	a.adopt(st, rev)
	if len(a.outbox) > 0 {
		a.commitOrRetry(ctx)
	}
	if st.Live != nil {
		// A live session in the store that no actor holds: another daemon instance left it, or
		// recovery could not reach it at start. Take it over as recovery would.
		a.startRejoin(ctx)
	}
	if len(st.PendingStops) > 0 {
		a.armStopRetry()
	}
	return nil
}

func (a *actor) inbound(ctx context.Context, in chat.Inbound) {
	fresh := !a.loaded
	if err := a.load(ctx); err != nil {
		// Nothing can be decided without the state.
		a.c.notTaken(ctx, in, err)
		return
	}
	if fresh && a.joinMayBePublished() && (in.Chat == nil || in.StartToken == "") {
		a.redoJoin(ctx)
	}
	key := inboundKey(in)
	if a.st.seen(key) {
		// A redelivery or a duplicate: its effects are already applied. Finish publishing and
		// saving them if that is still pending, then ack.
		a.logger().Debug("duplicate inbound message", "inbound_id", key)
		a.finish(ctx, in, nil)
		return
	}
	a.st.LastActivity = time.Now()
	a.fixVendor(in)
	err := a.step(ctx, input{msg: &in})
	if err == nil {
		a.st.remember(key)
		// Activity and the seen ids are saved with the next change, or now when a session is
		// live (its inactivity deadline depends on them); an interaction without a session is
		// not written to on every chat line.
		a.dirty = a.dirty || a.st.Live != nil
	}
	a.finish(ctx, in, err)
}

// prefetch lets the default vendor's connector begin a join's first, read-only step while a new
// actor starts and reads the state: most start messages come on an interaction without an actor,
// and most interactions have the default vendor. When the state names another vendor, or says not
// to join, the prefetch is not used and expires.
func (c *Controller) prefetch(token string) {
	conn := c.conns[c.vendor]
	p, ok := conn.(connector.Prefetcher)
	if !ok {
		return
	}
	if t, ok := conn.MatchStart(token); ok {
		p.Prefetch(t)
	}
}

// fixVendor takes the vendor a created or assigned event names (cobrowseVendor): the first one
// named serves the interaction. A later, different one is logged once and ignored: the
// interaction's session, its state and its reporting stay with one vendor. An interaction whose
// events name none gets the default vendor when its first session starts (startVendor).
func (a *actor) fixVendor(in chat.Inbound) {
	ev := in.Event
	if ev == nil || (ev.Type != chat.EventCreated && ev.Type != chat.EventAssigned) || ev.Vendor == "" {
		return
	}
	named := connector.Vendor(ev.Vendor)
	switch {
	case a.st.Vendor == "":
		a.st.Vendor = named
		a.dirty = true
	case named != a.st.Vendor && !a.vendorWarned:
		a.vendorWarned = true
		a.logger().Warn("the interaction's vendor is fixed; a different cobrowseVendor is ignored", "vendor", a.st.Vendor, "named", named)
	}
}

// startVendor fixes the default vendor on an interaction whose events named none, when a session
// is about to start on it: from then on its vendor does not change, whatever the default becomes.
func (a *actor) startVendor() {
	if a.st.Vendor == "" {
		a.st.Vendor = a.c.vendor
		a.dirty = true
	}
}

// vendor is the interaction's vendor (see fixVendor).
func (a *actor) vendor() connector.Vendor {
	if a.st.Vendor != "" {
		return a.st.Vendor
	}
	return a.c.vendor
}

// conn is the connector of the interaction's vendor; nil when that vendor is not enabled.
func (a *actor) conn() connector.Connector { return a.c.conns[a.vendor()] }

// connFor is the connector of a saved session's vendor (states saved before vendors were chosen per
// interaction name it in the handle only).
func (a *actor) connFor(h connector.Handle) connector.Connector {
	if h.Vendor != "" {
		return a.c.conns[h.Vendor]
	}
	return a.conn()
}

// inboundKey is the dedupe key of an inbound message within its interaction.
func inboundKey(in chat.Inbound) string {
	if in.Signal != nil {
		return "s:" + in.Signal.ID
	}
	if in.Chat != nil {
		return "c:" + in.Chat.ID
	}
	return "e:" + in.Event.ID
}

// finish commits the step and settles the inbound message: ack on success, a delayed nak when the
// step must be retried, and on the last delivery a failed event and a term, so nothing is dropped
// silently.
func (a *actor) finish(ctx context.Context, in chat.Inbound, stepErr error) {
	d := in.Delivery
	// Whatever the step produced is published and saved even when the step itself must be
	// retried: a replaced session has ended although the join after it may have to wait.
	if err := a.commit(ctx); err != nil {
		a.scheduleRetry()
		if stepErr == nil {
			stepErr = err
		}
	}
	if stepErr == nil {
		// Without waiting for the server's word: what the message caused is durable, and a
		// redelivery after a lost ack finds its id among the seen ones (or, for a message that
		// changed nothing, changes nothing again) and is acked again. A double ack would cost the
		// server a reply and the actor a round trip per message.
		if err := d.AckNoWait(); err != nil {
			a.logger().Warn("ack", "error", err)
		}
		return
	}
	if ctx.Err() != nil || errors.Is(stepErr, errLost) {
		// The daemon itself is stopping, or the actor lets go of the interaction: no verdict on
		// the message, which comes back at once (to the owner, or to a fresh actor).
		_ = d.Nak(0)
		return
	}
	if !d.Last() {
		a.logger().Warn("inbound message not done; redelivering later", "attempt", d.Attempt(), "retry_in", a.c.cfg.RetryDelay, "error", stepErr)
		if err := d.Nak(a.c.cfg.RetryDelay); err != nil {
			a.logger().Warn("nak", "error", err)
		}
		return
	}
	// The last delivery: report it and terminate it. What could not be published stays in the
	// outbox and the actor's retry timer keeps trying, so the effects are not lost either.
	a.logger().Error("inbound message failed on its last delivery", "attempt", d.Attempt(), "error", stepErr)
	a.queue(Outbound{Life: &attach.Lifecycle{
		Event:         attach.Failed,
		InteractionID: a.id,
		Vendor:        string(a.vendor()),
		AgentID:       a.st.AgentID,
		Reason:        ReasonProcessingFailed,
		Detail:        stepErr.Error(),
		At:            time.Now(),
		MsgID:         a.id + ".failed." + inboundKey(in),
	}})
	a.st.remember(inboundKey(in))
	a.commitOrRetry(ctx)
	if err := d.Term("failed after the last delivery: " + stepErr.Error()); err != nil {
		a.logger().Warn("term", "error", err)
	}
}

// ReasonProcessingFailed is the reason of a failed lifecycle event for an inbound message that
// kept failing for a transient cause (publishing or saving) until its last delivery. A start
// message whose join keeps failing is reported as join_failed instead.
const ReasonProcessingFailed = "processing_failed"

func inProgress(in chat.Inbound) {
	if in.Delivery != nil {
		_ = in.Delivery.InProgress()
	}
}

// noteQuiet tells the sweep until when this actor, should it stop now, has nothing for it to do: a
// live session with its deadline timer set, and nothing to retry (see Controller.sweep). An actor
// that goes on working meanwhile notes it again before it stops.
func (a *actor) noteQuiet() {
	var until int64
	if a.st.Live != nil && a.deadline != nil && a.retry == nil && a.stopRetry == nil &&
		!a.dirty && len(a.outbox) == 0 && len(a.st.PendingStops) == 0 && a.rejoin == nil {
		until = a.deadlineAt.UnixNano()
	}
	a.quietUntil.Store(until)
}

// armDeadline sets the deadline timer for the state's next deadline. It runs before every piece
// of the actor's work, also the sweep's nudges of every actor: a timer already set for that
// deadline is left alone, and a changed one is reset rather than made again.
func (a *actor) armDeadline() {
	next := nextDeadline(&a.st, a.c.cfg.Timers)
	switch {
	case a.deadline != nil && next.Equal(a.deadlineAt):
	case next.IsZero():
		if a.deadline != nil {
			a.deadline.Stop()
			a.deadline = nil
		}
	case a.deadline != nil:
		// A timer that fired meanwhile kicks the actor once more: the deadline step checks
		// what is due.
		a.deadline.Reset(time.Until(next))
	default:
		a.deadline = time.AfterFunc(time.Until(next), func() { a.kick(workDeadline) })
	}
	a.deadlineAt = next
}

func (a *actor) scheduleRetry() {
	if a.retry == nil {
		a.retry = time.AfterFunc(a.c.cfg.RetryDelay, func() { a.kick(workRetry) })
	}
}

func (a *actor) stopTimers() {
	if a.deadline != nil {
		a.deadline.Stop()
	}
	if a.retry != nil {
		a.retry.Stop()
	}
	if a.stopRetry != nil {
		a.stopRetry.Stop()
	}
}

// shutdown finishes what was handed to the actor, then leaves the live session to the next start
// (which re-joins it) or, when configured, stops it with reason shutdown.
func (a *actor) shutdown(ctx context.Context) {
	// A re-join in flight is abandoned: the session stays saved as live for the next start.
	a.cancelRejoin()
	for {
		in, ok := a.next()
		if !ok {
			break
		}
		a.inbound(ctx, in)
	}
	if a.st.Live != nil && a.c.cfg.StopOnShutdown {
		a.stopLive(ctx, connector.Shutdown)
	}
	if err := a.commit(ctx); err != nil {
		a.logger().Error("state not saved at shutdown", "error", err)
	}
	// Within the shutdown bound the connection is left politely; past it (ctx done) it is
	// dropped, as a crash would.
	a.closeSession(ctx)
}
