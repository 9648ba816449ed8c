package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// actor owns one interaction: its state, its live co-browse session and its timers. It is one
// goroutine, started and stopped by the Controller, and the only code that touches its fields.
//
// Every step follows one order: apply the input to the state (calling the co-browse server if the
// input asks for it), queue the outbound messages the step produced, publish them in order, save
// the state, and only then ack the inbound message that caused them. A step whose publishing or
// saving fails keeps its messages and state in memory and naks the inbound message; the redelivery
// finds its id in State.Seen and only finishes the publishing and saving.
type actor struct {
	c   *Controller
	id  string
	log *slog.Logger

	qmu   sync.Mutex
	inbox []chat.Inbound // inbound messages handed to the actor, in stream order
	wake  chan struct{}  // capacity 1: the queue is not empty
	poke  chan struct{}  // the sweep's nudge
	quit  chan struct{}  // closed by the Controller at shutdown

	st     State
	loaded bool   // st was read from the store
	rev    uint64 // the state's revision in the store
	dirty  bool   // st differs from what the store holds
	outbox []Outbound
	// outboxSaved: the store holds outbox (st.Outbox) as it is now.
	outboxSaved bool
	lastRun     time.Time // when the actor last did work, for reaping

	sess   connector.Session
	events <-chan connector.Event

	deadline  *time.Timer // the next no-agent or inactivity deadline
	retry     *time.Timer // the next attempt at an outbox or a save that failed
	stopRetry *time.Timer // the next attempt at the pending stops
	stopTries int         // attempts at the pending stops since they last changed, for backoff

	// rejoin is the re-join of a saved live session in flight (after a restart, or a session
	// found in the store), on a goroutine the actor owns: the vendor retries it within its
	// window, which may take longer than the actor may stop handling messages.
	rejoin *rejoinCall
}

// rejoinCall is a re-join in flight. Its goroutine sends exactly one result on done.
type rejoinCall struct {
	cancel context.CancelFunc
	done   chan rejoinResult
}

type rejoinResult struct {
	sess connector.Session
	err  error
}

// errRetryLater marks a step that must be tried again later (the co-browse server was
// unavailable): whatever the step did produce is committed, and the inbound message is nak'd.
var errRetryLater = errors.New("retry later")

func newActor(c *Controller, id string) *actor {
	return &actor{
		c:    c,
		id:   id,
		log:  c.log.With("interaction", id),
		wake: make(chan struct{}, 1),
		poke: make(chan struct{}, 1),
		quit: make(chan struct{}),
	}
}

// enqueue hands the actor an inbound message; the Controller calls it under its lock.
func (a *actor) enqueue(in chat.Inbound) {
	a.qmu.Lock()
	a.inbox = append(a.inbox, in)
	a.qmu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
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
	} else {
		select { // more to do: come back after whatever else is ready
		case a.wake <- struct{}{}:
		default:
		}
	}
	return in, true
}

func (a *actor) queued() int {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	return len(a.inbox)
}

// run is the actor's goroutine. recovered is a state saved with a live session before a restart:
// the actor joins it again before anything else.
func (a *actor) run(ctx context.Context, recovered *Saved) {
	defer a.stopTimers()
	defer a.cancelRejoin()
	a.lastRun = time.Now()
	if recovered != nil {
		a.adopt(recovered.State, recovered.Rev)
		a.startRejoin(ctx)
	}
	for {
		a.armDeadline()
		var timerC, retryC, stopRetryC <-chan time.Time
		var rejoinC <-chan rejoinResult
		if a.deadline != nil {
			timerC = a.deadline.C
		}
		if a.retry != nil {
			retryC = a.retry.C
		}
		if a.stopRetry != nil {
			stopRetryC = a.stopRetry.C
		}
		if a.rejoin != nil {
			rejoinC = a.rejoin.done
		}
		select {
		case <-a.wake:
			in, ok := a.next()
			if !ok {
				continue
			}
			// The message may have waited behind slower work: its ack budget starts now.
			_ = in.Delivery.InProgress()
			a.inbound(ctx, in)
		case ev, ok := <-a.events:
			a.sessionEvent(ctx, ev, ok)
		case <-timerC:
			a.deadline = nil
			a.checkDeadline(ctx)
		case <-retryC:
			a.retry = nil
			a.commitOrRetry(ctx)
		case <-stopRetryC:
			a.stopRetry = nil
			a.retryPendingStops(ctx)
		case r := <-rejoinC:
			a.rejoin.cancel()
			a.rejoin = nil
			a.rejoined(ctx, r)
		case <-a.poke:
			a.checkDeadline(ctx)
			a.retryPendingStops(ctx)
			if a.idle() && time.Since(a.lastRun) >= a.c.cfg.IdleReap && a.c.remove(a) {
				return
			}
			continue
		case <-a.quit:
			a.shutdown(ctx)
			return
		case <-ctx.Done():
			// Out of time (or aborted): drop the connection without the polite disconnect.
			a.cancelRejoin()
			a.closeSession(ctx)
			return
		}
		a.lastRun = time.Now()
		if a.st.Closed && a.idle() && a.c.remove(a) {
			return
		}
	}
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

// --- inbound messages ---

func (a *actor) inbound(ctx context.Context, in chat.Inbound) {
	if err := a.load(ctx); err != nil {
		// Nothing can be decided without the state.
		a.c.notTaken(ctx, in, err)
		return
	}
	key := inboundKey(in)
	if a.st.seen(key) {
		// A redelivery or a duplicate: its effects are already applied. Finish publishing and
		// saving them if that is still pending, then ack.
		a.log.Debug("duplicate inbound message", "msg", key)
		a.finish(ctx, in, nil)
		return
	}
	a.st.LastActivity = time.Now()
	var err error
	switch {
	case in.Chat != nil:
		err = a.chatMessage(ctx, in)
	case in.Event != nil:
		err = a.interactionEvent(ctx, in)
	}
	if err == nil {
		a.st.remember(key)
		// Activity and the seen ids are saved with the next change, or now when a session is
		// live (its inactivity deadline depends on them); an interaction without a session is
		// not written to on every chat line.
		a.dirty = a.dirty || a.st.Live != nil
	}
	a.finish(ctx, in, err)
}

// inboundKey is the dedupe key of an inbound message within its interaction.
func inboundKey(in chat.Inbound) string {
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
		if err := d.Ack(ctx); err != nil {
			a.log.Warn("ack", "error", err)
		}
		return
	}
	if ctx.Err() != nil {
		// The daemon itself is stopping: no verdict on the message, which comes back later.
		_ = d.Nak(0)
		return
	}
	if !d.Last() {
		a.log.Warn("inbound message not done; redelivering later", "attempt", d.Attempt(), "delay", a.c.cfg.RetryDelay, "error", stepErr)
		if err := d.Nak(a.c.cfg.RetryDelay); err != nil {
			a.log.Warn("nak", "error", err)
		}
		return
	}
	// The last delivery: report it and terminate it. What could not be published stays in the
	// outbox and the actor's retry timer keeps trying, so the effects are not lost either.
	a.log.Error("inbound message failed on its last delivery", "attempt", d.Attempt(), "error", stepErr)
	a.queue(Outbound{Life: &attach.Lifecycle{
		Event:         attach.Failed,
		InteractionID: a.id,
		Vendor:        a.c.vendor,
		AgentID:       a.st.AgentID,
		Reason:        ReasonProcessingFailed,
		Detail:        stepErr.Error(),
		At:            time.Now(),
		MsgID:         a.id + ".failed." + inboundKey(in),
	}})
	a.st.remember(inboundKey(in))
	a.commitOrRetry(ctx)
	if err := d.Term("failed after the last delivery: " + stepErr.Error()); err != nil {
		a.log.Warn("term", "error", err)
	}
}

// ReasonProcessingFailed is the reason of a failed lifecycle event for an inbound message that
// kept failing for a transient cause (publishing or saving) until its last delivery. A start
// message whose join keeps failing is reported as join_failed instead.
const ReasonProcessingFailed = "processing_failed"

func (a *actor) chatMessage(ctx context.Context, in chat.Inbound) error {
	if in.StartToken == "" {
		return nil
	}
	token := in.StartToken
	action, why := decideStart(&a.st, token)
	a.log.Info("start message", "token", connector.MaskToken(token), "decision", why)
	switch action {
	case startIgnore:
		return nil
	case startReplaceJoin:
		inProgress(in)
		a.stopLive(ctx, connector.Replaced)
	}
	inProgress(in)
	return a.join(ctx, token, inboundKey(in), in.Delivery.Last())
}

func (a *actor) interactionEvent(ctx context.Context, in chat.Inbound) error {
	act := decideEvent(&a.st, in.Event)
	a.log.Debug("interaction event", "type", in.Event.Type, "decision", act.why)
	if act.stop != "" {
		inProgress(in)
		a.stopLive(ctx, act.stop)
	}
	if act.agentID != "" && act.agentID != a.st.AgentID {
		a.st.AgentID = act.agentID
		a.dirty = true
		if act.view && a.st.Live != nil {
			a.queueAgentView()
		}
	}
	if act.close && !a.st.Closed {
		a.st.Closed = true
		a.dirty = true
	}
	return nil
}

func inProgress(in chat.Inbound) {
	if in.Delivery != nil {
		_ = in.Delivery.InProgress()
	}
}

// --- the session's life ---

// join joins the session as Controller and queues the joined event, the attach and the agent view.
func (a *actor) join(ctx context.Context, token, cause string, lastAttempt bool) error {
	jctx, cancel := context.WithTimeout(ctx, a.c.cfg.JoinTimeout)
	defer cancel()
	sess, err := a.c.conn.Join(jctx, connector.Trigger{Token: token, InteractionID: a.id, AgentID: a.st.AgentID})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errRetryLater, ctx.Err())
	}
	if err != nil {
		outcome, why := decideJoinError(err, lastAttempt)
		if outcome == joinRetry {
			a.log.Warn("join: server unavailable, retrying later", "token", connector.MaskToken(token), "error", err)
			return fmt.Errorf("%w: %w", errRetryLater, err)
		}
		a.log.Warn("join failed", "token", connector.MaskToken(token), "why", why, "error", err)
		a.queue(Outbound{Life: &attach.Lifecycle{
			Event:         attach.Failed,
			InteractionID: a.id,
			SessionToken:  token,
			Vendor:        a.c.vendor,
			AgentID:       a.st.AgentID,
			Reason:        string(connector.JoinFailed),
			Detail:        connector.ReasonOf(err),
			At:            time.Now(),
			MsgID:         a.id + ".failed." + cause,
		}})
		return nil
	}
	h := sess.Handle()
	now := time.Now()
	before := a.st.data()
	a.st.Live = &Live{Handle: h, Phase: PhaseJoined, JoinedAt: now}
	a.st.Sessions++
	a.st.SessionID = h.SessionID
	a.st.Associated = "Yes"
	a.dirty = true
	a.attachSession(sess)
	a.log.Info("joined as Controller", "session_id", h.SessionID, "token", connector.MaskToken(token))
	a.queue(Outbound{Life: a.lifecycle(attach.Joined, now)})
	a.queueUpdate(before, now)
	if a.st.AgentID != "" {
		a.queueAgentView()
	}
	return nil
}

// startRejoin begins the re-join of the saved live session (after a restart, or a session found
// in the store that no actor held) on a goroutine the actor owns; rejoined takes the result. The
// session stays live meanwhile: its deadlines, a close or a new start message act on it as usual
// (stopLive cancels the re-join and stops the session through its handle).
//
// A stop that was under way when the daemon went down is finished through the handle instead:
// the server may already have ended the session, and the stop's reason is known.
func (a *actor) startRejoin(ctx context.Context) {
	l := a.st.Live
	if l.Phase == PhaseStopping && l.StopReason != "" {
		a.log.Info("finishing a stop that was under way before the restart", "session_id", l.Handle.SessionID, "reason", l.StopReason)
		times := a.stopByHandle(ctx, l.Handle)
		a.endSession(l.StopReason, times)
		a.commitOrRetry(ctx)
		return
	}
	l.StopReason = ""
	l.Phase = PhaseJoined
	if !l.ActivatedAt.IsZero() {
		l.Phase = PhaseActive
	}
	h := l.Handle
	h.InteractionID = a.id
	rctx, cancel := context.WithCancel(ctx)
	call := &rejoinCall{cancel: cancel, done: make(chan rejoinResult, 1)}
	a.rejoin = call
	a.log.Info("re-joining a live session", "session_id", h.SessionID, "token", connector.MaskToken(h.Token))
	go func() {
		sess, err := a.c.conn.Rejoin(rctx, h)
		call.done <- rejoinResult{sess: sess, err: err}
	}()
}

// cancelRejoin gives up a re-join in flight and waits for its goroutine; a session it returned
// anyway is left without being stopped (the caller decides the session's fate).
func (a *actor) cancelRejoin() {
	if a.rejoin == nil {
		return
	}
	a.rejoin.cancel()
	r := <-a.rejoin.done
	a.rejoin = nil
	if r.sess != nil {
		cctx, cancel := context.WithTimeout(context.Background(), a.c.cfg.StopWait)
		_ = r.sess.Close(cctx)
		cancel()
	}
}

// rejoined takes the outcome of a re-join. Joined: the session goes on (an agent who joined
// meanwhile is reported as activated now). The session ended at the server meanwhile (not live):
// it ends as participant_exit, since neither the daemon nor a fault ended it. Otherwise (not found,
// or still refused or unreachable when the vendor's window was over) it is stopped through its
// handle and ends as server_lost.
func (a *actor) rejoined(ctx context.Context, r rejoinResult) {
	if ctx.Err() != nil {
		// The daemon is stopping abruptly: the session stays saved as live for the next start.
		if r.sess != nil {
			a.attachSession(r.sess)
			a.closeSession(ctx)
		}
		return
	}
	l := a.st.Live
	if l == nil { // cannot happen: every end of the session cancels the re-join first
		if r.sess != nil {
			a.attachSession(r.sess)
			a.closeSession(ctx)
		}
		return
	}
	if r.err != nil {
		reason := connector.ServerLost
		if errors.Is(r.err, connector.ErrNotLive) {
			reason = connector.ParticipantExit
		}
		a.log.Warn("re-join failed; stopping the session through its handle", "session_id", l.Handle.SessionID, "reason", reason, "error", r.err)
		times := a.stopByHandle(ctx, l.Handle)
		a.endSession(reason, times)
		a.commitOrRetry(ctx)
		return
	}
	l.Handle = r.sess.Handle()
	a.dirty = true
	a.attachSession(r.sess)
	a.log.Info("re-joined a live session", "session_id", l.Handle.SessionID)
	a.agentMayHaveJoined()
	a.commitOrRetry(ctx)
}

// agentMayHaveJoined reports as activated (from now: the server's time is unknown) an agent the
// latest join reply lists while the session still counts as idle: the activated notification
// went to a Bayeux session the server no longer had (a restart, a re-handshake).
func (a *actor) agentMayHaveJoined() {
	if l := a.st.Live; l != nil && l.Phase == PhaseJoined && a.sess != nil && hasAgent(a.sess.Participants()) {
		a.activated(time.Now())
	}
}

// stopByHandle stops a session without its connection (through the vendor's REST route). A stop
// that fails is kept as a pending stop, retried within seconds.
func (a *actor) stopByHandle(ctx context.Context, h connector.Handle) connector.Times {
	h.InteractionID = a.id
	sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
	times, err := a.c.conn.StopHandle(sctx, h)
	cancel()
	if err != nil {
		a.addPendingStop(h, err)
	}
	return times
}

// addPendingStop keeps a stop that failed by every route, to be retried by the stop timer.
func (a *actor) addPendingStop(h connector.Handle, err error) {
	a.log.Warn("stop failed by every route; retrying it shortly", "session_id", h.SessionID, "retry_in", a.c.cfg.StopRetry, "error", err)
	a.st.PendingStops = append(a.st.PendingStops, PendingStop{Handle: h, Since: time.Now()})
	a.dirty = true
	a.stopTries = 0
	a.armStopRetry()
}

func hasAgent(ps []connector.Participant) bool {
	for _, p := range ps {
		if p.Role == connector.RoleAgent {
			return true
		}
	}
	return false
}

func (a *actor) attachSession(sess connector.Session) {
	a.sess = sess
	a.events = sess.Events()
}

// sessionEvent handles what the co-browse server says about the live session.
func (a *actor) sessionEvent(ctx context.Context, ev connector.Event, ok bool) {
	if !ok {
		// The stream closed without a deactivated or lost event: the vendor gave up on it.
		a.events = nil
		if a.st.Live != nil {
			a.log.Warn("session stream closed unexpectedly; stopping it through its handle", "session_id", a.st.Live.Handle.SessionID)
			a.endSession(connector.ServerLost, a.stopByHandle(ctx, a.st.Live.Handle))
			a.commitOrRetry(ctx)
		}
		return
	}
	if a.st.Live == nil {
		return
	}
	switch ev.Kind {
	case connector.EventParticipantJoined:
		a.log.Info("participant joined", "role", ev.Participant.Role.String(), "session_id", a.st.Live.Handle.SessionID)
	case connector.EventActivated:
		at := ev.Times.Activation
		if at.IsZero() {
			at = time.Now()
		}
		a.activated(at)
	case connector.EventDeactivated:
		a.endSession(endReason(a.st.Live), ev.Times)
	case connector.EventRejoined:
		a.log.Info("re-joined after a Bayeux re-handshake", "session_id", a.st.Live.Handle.SessionID)
		a.st.Live.Handle = ev.Handle
		a.dirty = true
		a.agentMayHaveJoined()
	case connector.EventLost:
		a.log.Warn("co-browse server lost", "session_id", a.st.Live.Handle.SessionID, "error", ev.Err)
		if !ev.Stopped {
			a.addPendingStop(a.st.Live.Handle, ev.Err)
		}
		a.endSession(connector.ServerLost, connector.Times{})
	}
	a.commitOrRetry(ctx)
}

// activated records the session's activation and queues the activated event and the attach.
func (a *actor) activated(at time.Time) {
	l := a.st.Live
	if !l.ActivatedAt.IsZero() {
		return
	}
	before := a.st.data()
	if l.Phase == PhaseJoined {
		l.Phase = PhaseActive
	}
	l.ActivatedAt = at
	if a.st.FirstStart.IsZero() {
		a.st.FirstStart = at
	}
	a.dirty = true
	a.log.Info("session activated", "session_id", l.Handle.SessionID)
	now := time.Now()
	life := a.lifecycle(attach.Activated, now)
	life.ActivationTime = at.UnixMilli()
	a.queue(Outbound{Life: life})
	a.queueUpdate(before, now)
}

// stopLive stops the live session for reason and ends it: it asks the server to stop (CometD,
// with the vendor's REST fallback, within StopTimeout), then waits for the deactivated
// notification up to StopWait, and falls back on the stop reply's times, else now. A session
// that neither route could stop is kept as a pending stop, retried by the sweep.
func (a *actor) stopLive(ctx context.Context, reason connector.EndReason) {
	l := a.st.Live
	if l == nil {
		return
	}
	a.cancelRejoin() // a re-join in flight is moot now; the handle stops the session
	l.Phase = PhaseStopping
	l.StopReason = reason
	a.dirty = true
	a.log.Info("stopping session", "session_id", l.Handle.SessionID, "reason", reason)
	var times connector.Times
	if a.sess != nil {
		sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
		var err error
		times, err = a.sess.Stop(sctx)
		cancel()
		if err != nil {
			a.addPendingStop(l.Handle, err)
			a.closeSession(context.WithoutCancel(ctx))
		}
	} else {
		times = a.stopByHandle(ctx, l.Handle)
	}
	wait := time.NewTimer(a.c.cfg.StopWait)
	defer wait.Stop()
	for a.events != nil {
		select {
		case ev, ok := <-a.events:
			if !ok {
				a.events = nil
				continue
			}
			switch ev.Kind {
			case connector.EventActivated:
				// The agent joined just before the stop: it counts, for the duration and the
				// contract's activated event and attach.
				at := ev.Times.Activation
				if at.IsZero() {
					at = time.Now()
				}
				a.activated(at)
			case connector.EventDeactivated:
				a.endSession(reason, mergeTimes(ev.Times, times))
				return
			case connector.EventLost:
				a.events = nil
			}
		case <-wait.C:
			a.log.Warn("no deactivated notification within the stop wait", "session_id", l.Handle.SessionID, "wait", a.c.cfg.StopWait)
			a.events = nil
		case <-ctx.Done():
			a.events = nil
		}
	}
	a.endSession(reason, times)
}

// pendingStopFor bounds how long a stop that failed by every route keeps being retried.
const pendingStopFor = time.Hour

// maxStopRetry caps the backoff between two attempts at the pending stops.
const maxStopRetry = 30 * time.Second

// armStopRetry schedules the next attempt at the pending stops: StopRetry, doubled after each
// attempt that left some, at most maxStopRetry. The sweep retries them too.
func (a *actor) armStopRetry() {
	if a.stopRetry != nil || len(a.st.PendingStops) == 0 {
		return
	}
	d := a.c.cfg.StopRetry
	for range a.stopTries {
		if d >= maxStopRetry {
			break
		}
		d *= 2
	}
	a.stopRetry = time.NewTimer(min(d, maxStopRetry))
}

// retryPendingStops stops again, through their saved handles, the sessions no route could stop.
func (a *actor) retryPendingStops(ctx context.Context) {
	if len(a.st.PendingStops) == 0 {
		return
	}
	kept := a.st.PendingStops[:0]
	for _, p := range a.st.PendingStops {
		p.Handle.InteractionID = a.id
		sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
		_, err := a.c.conn.StopHandle(sctx, p.Handle)
		cancel()
		switch {
		case err == nil:
			a.log.Info("pending stop done", "session_id", p.Handle.SessionID)
		case time.Since(p.Since) >= pendingStopFor:
			a.log.Error("giving up a stop that failed for an hour; the server may still hold the session", "session_id", p.Handle.SessionID, "error", err)
		default:
			kept = append(kept, p)
		}
	}
	a.stopTries++
	if len(kept) != len(a.st.PendingStops) {
		a.st.PendingStops = slices.Clip(kept)
		if len(kept) == 0 {
			a.st.PendingStops = nil
		}
		a.dirty = true
		a.commitOrRetry(ctx)
	}
	a.armStopRetry()
}

// mergeTimes prefers the notification's times and fills gaps from the stop reply's.
func mergeTimes(ev, reply connector.Times) connector.Times {
	if ev.Activation.IsZero() {
		ev.Activation = reply.Activation
	}
	if ev.Deactivation.IsZero() {
		ev.Deactivation = reply.Deactivation
	}
	return ev
}

// endSession ends the live session: totals, the deactivated event, the final attach, and the
// release of the session's connection.
func (a *actor) endSession(reason connector.EndReason, times connector.Times) {
	l := a.st.Live
	if l == nil {
		return
	}
	now := time.Now()
	before := a.st.data()
	act := l.ActivatedAt
	if act.IsZero() {
		act = times.Activation
	}
	deact := times.Deactivation
	if deact.IsZero() {
		deact = now
	}
	if !act.IsZero() {
		if d := deact.Sub(act).Milliseconds(); d > 0 {
			a.st.DurationMs += d
		}
		if a.st.FirstStart.IsZero() {
			a.st.FirstStart = act
		}
	}
	a.st.Ended++
	a.st.EndReason = reason
	a.st.Associated = "No"
	life := a.lifecycle(attach.Deactivated, now)
	if !act.IsZero() {
		life.ActivationTime = act.UnixMilli()
	}
	life.DeactivationTime = deact.UnixMilli()
	life.Reason = string(reason)
	a.st.Live = nil
	a.dirty = true
	a.log.Info("session ended", "session_id", l.Handle.SessionID, "reason", reason)
	a.queue(Outbound{Life: life})
	a.queueUpdateFor(l.Handle.SessionID, before, now)
	a.closeSession(context.Background())
}

// closeSession releases the session's connection without stopping the session.
func (a *actor) closeSession(ctx context.Context) {
	if a.sess == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopWait)
	if err := a.sess.Close(cctx); err != nil {
		a.log.Debug("close session connection", "error", err)
	}
	cancel()
	a.sess, a.events = nil, nil
}

// --- timers ---

func (a *actor) armDeadline() {
	next := nextDeadline(&a.st, a.c.cfg.Timers)
	if a.deadline != nil {
		a.deadline.Stop()
		a.deadline = nil
	}
	if !next.IsZero() {
		a.deadline = time.NewTimer(time.Until(next))
	}
}

func (a *actor) checkDeadline(ctx context.Context) {
	reason, due := decideDeadline(&a.st, a.c.cfg.Timers, time.Now())
	if !due {
		return
	}
	a.stopLive(ctx, reason)
	a.commitOrRetry(ctx)
}

func (a *actor) scheduleRetry() {
	if a.retry == nil {
		a.retry = time.NewTimer(a.c.cfg.RetryDelay)
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

// --- shutdown ---

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
		a.log.Error("state not saved at shutdown", "error", err)
	}
	// Within the shutdown bound the connection is left politely; past it (ctx done) it is
	// dropped, as a crash would.
	a.closeSession(ctx)
}

// --- outbound ---

// queue adds a message to the step's outbox, keeping the routing fields its JSON leaves out.
func (a *actor) queue(o Outbound) {
	if o.Life != nil {
		o.LifeMsgID = o.Life.MsgID
	}
	if o.View != nil {
		o.ViewAgent = o.View.AgentID
	}
	a.outbox = append(a.outbox, o)
	a.outboxSaved = false // a new message is not reserved until the next commit saves it
}

func (a *actor) lifecycle(kind attach.LifecycleKind, at time.Time) *attach.Lifecycle {
	l := a.st.Live
	return &attach.Lifecycle{
		Event:         kind,
		InteractionID: a.id,
		SessionID:     l.Handle.SessionID,
		SessionToken:  l.Handle.Token,
		Vendor:        a.c.vendor,
		AgentID:       a.st.AgentID,
		At:            at,
	}
}

func (a *actor) queueUpdate(before attach.Data, at time.Time) {
	a.queueUpdateFor(a.st.Live.Handle.SessionID, before, at)
}

// queueUpdateFor queues the attach that follows a change: the full key set and the keys changed.
func (a *actor) queueUpdateFor(sessionID string, before attach.Data, at time.Time) {
	after := a.st.data()
	a.st.Seq++
	a.queue(Outbound{Update: &attach.Update{
		InteractionID: a.id,
		Seq:           a.st.Seq,
		SessionID:     sessionID,
		Vendor:        a.c.vendor,
		Data:          after,
		Changed:       changedKeys(before, after),
		At:            at,
	}})
}

func (a *actor) queueAgentView() {
	l := a.st.Live
	if l == nil || a.sess == nil || a.st.AgentID == "" {
		return
	}
	a.queue(Outbound{View: &attach.AgentView{
		AgentID:       a.st.AgentID,
		InteractionID: a.id,
		SessionID:     l.Handle.SessionID,
		URL:           a.sess.AgentViewURL(),
		At:            time.Now(),
	}})
}

// commit saves the state with the step's outbound messages, publishes them in order, then saves
// the state again without them. Saving first reserves the messages' seq and ids: a daemon that
// stops after a publish and before a save would otherwise reuse a seq for a different message,
// and the stream's dedupe would drop that message.
func (a *actor) commit(ctx context.Context) error {
	if len(a.outbox) > 0 && !a.outboxSaved {
		a.st.Outbox = a.outbox
		if err := a.save(ctx); err != nil {
			a.st.Outbox = nil
			return err
		}
		a.outboxSaved = true
	}
	for len(a.outbox) > 0 {
		if err := a.publish(ctx, a.outbox[0]); err != nil {
			if !refused(err) {
				return err
			}
			// The stream or the contract refuses this message for good: retrying would block
			// every later message of the interaction behind it. Say so once and go on.
			a.log.Error("outbound message refused for good; dropped", "error", err)
		}
		a.outbox[0] = Outbound{}
		a.outbox = a.outbox[1:]
	}
	a.outbox = nil
	if a.outboxSaved {
		a.st.Outbox = nil
		a.outboxSaved = false
		a.dirty = true
	}
	if !a.dirty {
		return nil
	}
	return a.save(ctx)
}

// save writes the state. On a revision conflict (a write whose reply was lost, a key that
// expired, a second writer) the actor, which owns the interaction, takes the stored revision and
// writes its own state over it, never letting seq go back.
func (a *actor) save(ctx context.Context) error {
	rev, err := a.c.store.Save(ctx, a.st, a.rev)
	if errors.Is(err, ErrConflict) {
		stored, srev, lerr := a.c.store.Load(ctx, a.id)
		if lerr != nil {
			return fmt.Errorf("save state: %w; reload: %w", err, lerr)
		}
		a.log.Warn("state changed in the store under the actor; writing over it", "had", a.rev, "stored", srev)
		a.st.Seq = max(a.st.Seq, stored.Seq)
		a.rev = srev
		rev, err = a.c.store.Save(ctx, a.st, a.rev)
	}
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	a.rev, a.dirty = rev, false
	return nil
}

// refused reports whether a publish failed for good: the message breaks the contract, or the
// stream rejected it. Anything else (a time-out, NATS away) is retried.
func refused(err error) bool {
	if errors.Is(err, attach.ErrInvalid) {
		return true
	}
	var pe *attach.PublishError
	return errors.As(err, &pe) && !pe.Transient
}

// commitOrRetry commits, and on failure tries again after the retry delay.
func (a *actor) commitOrRetry(ctx context.Context) {
	if err := a.commit(ctx); err != nil {
		a.log.Warn("publishing or saving failed; retrying", "delay", a.c.cfg.RetryDelay, "error", err)
		a.scheduleRetry()
	}
}

func (a *actor) publish(ctx context.Context, o Outbound) error {
	pctx, cancel := context.WithTimeout(ctx, a.c.cfg.PublishTimeout)
	defer cancel()
	switch {
	case o.Update != nil:
		return a.c.pub.Update(pctx, *o.Update)
	case o.Life != nil:
		l := *o.Life
		l.MsgID = o.LifeMsgID
		return a.c.pub.Lifecycle(pctx, l)
	case o.View != nil:
		v := *o.View
		v.AgentID = o.ViewAgent
		return a.c.pub.AgentView(pctx, v)
	}
	return nil
}
