// The state machine of one interaction's co-browse session lives in this file. Every transition
// has one entry point, step: the actor's loop turns whatever happened (a chat message, an
// interaction event, an event of the live session, a deadline, the outcome of a re-join) into an
// input and hands it to step, which applies it to the state, calling the vendor where the input
// asks for it, and queues the outbound messages. The loop then commits (outbox.go): publish, save,
// and only then settle the inbound message.
//
//	detected -> joining -> joined -> active -> ended, with stopping between any live phase and ended
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// input is one thing that happened to the interaction; exactly one field is set.
type input struct {
	msg      *chat.Inbound    // a chat message or an interaction event, not seen before
	event    *connector.Event // an event of the live session
	closed   bool             // the live session's event stream closed
	deadline bool             // a timer or the sweep: check the no-agent and inactivity deadlines
	rejoin   *rejoinResult    // the outcome of a re-join in flight
}

// step applies one input to the state machine. An error means the input must be tried again later
// (errRetryLater: the co-browse server was unavailable); whatever the step produced is committed
// all the same.
func (a *actor) step(ctx context.Context, in input) error {
	switch {
	case in.msg != nil && in.msg.Chat != nil:
		return a.chatMessage(ctx, *in.msg)
	case in.msg != nil && in.msg.Event != nil:
		return a.interactionEvent(ctx, *in.msg)
	case in.msg != nil && in.msg.Signal != nil:
		a.signal(ctx, *in.msg)
	case in.event != nil:
		a.sessionEvent(ctx, *in.event, true)
	case in.closed:
		a.sessionEvent(ctx, connector.Event{}, false)
	case in.deadline:
		a.checkDeadline(ctx)
	case in.rejoin != nil:
		a.rejoined(ctx, *in.rejoin)
	}
	return nil
}

func (a *actor) chatMessage(ctx context.Context, in chat.Inbound) error {
	if in.StartToken == "" {
		return nil
	}
	a.startVendor()
	conn := a.conn()
	if conn == nil {
		a.vendorUnavailable(inboundKey(in))
		return nil
	}
	// The vendor owns its start syntax: {start:X} is a start message only when X is a token of
	// the interaction's vendor.
	token, ok := conn.MatchStart(in.StartToken)
	if !ok {
		a.logger().Info("start message not in the vendor's form; ignored", "vendor", a.vendor(), "token", connector.MaskToken(in.StartToken))
		return nil
	}
	action, why := decideStart(&a.st, token)
	a.logger().Info("start message", "token", connector.MaskToken(token), "decision", why)
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
	a.logger().Debug("interaction event", "type", in.Event.Type, "decision", act.why)
	if act.request {
		a.startVendor()
		if a.conn() == nil {
			a.vendorUnavailable(inboundKey(in))
			return nil
		}
		inProgress(in)
		return a.join(ctx, "", inboundKey(in), in.Delivery.Last())
	}
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

// join joins the session as Controller and queues the joined event, the attach and the agent view.
func (a *actor) join(ctx context.Context, token, cause string, lastAttempt bool) error {
	begun := time.Now() // the decision to join: the join latency runs from here
	// Written ahead: a daemon that stops after the server took the join and before the outcome is
	// saved leaves its Controller in the session; the next attempt must know.
	marker := &Joining{Token: token, At: time.Now()}
	prior := a.st.Joining
	if prior != nil && prior.Token == token {
		marker.At = prior.At
	} else {
		prior = nil
	}
	a.reserve(marker, prior)
	defer func() { a.reserved = 0 }() // a reservation the join's attach did not take stays in the marker only
	a.st.Joining = marker
	a.dirty = true
	conn := a.conn()
	trigger := connector.Trigger{Token: token, InteractionID: a.id, AgentID: a.st.AgentID}
	var saved chan struct{}
	var savedErr error
	if _, ok := conn.(connector.ReadyCaller); ok {
		// The marker is saved while the connector does what comes before the join itself (find
		// the session's node, handshake, connect): the join waits for it at its last step. The
		// actor's goroutine only waits meanwhile, so the save may touch the actor's fields.
		saved = make(chan struct{})
		go func() {
			savedErr = a.commit(ctx)
			close(saved)
		}()
		trigger.Ready = func(rctx context.Context) error {
			select {
			case <-saved:
				return savedErr
			case <-rctx.Done():
				return rctx.Err()
			}
		}
	} else if err := a.commit(ctx); err != nil {
		return fmt.Errorf("%w: %w", errRetryLater, err)
	}
	jctx, cancel := context.WithTimeout(ctx, a.c.cfg.JoinTimeout)
	defer cancel()
	sess, err := conn.Join(jctx, trigger)
	if saved != nil {
		<-saved
		if savedErr != nil {
			// Ready refused the join, or the join failed before it: nothing was joined.
			if sess != nil {
				a.logger().Error("the connector joined without waiting for the join marker; leaving the session", "vendor", a.vendor())
				_ = sess.Close(context.WithoutCancel(ctx))
			}
			a.c.met.join(a.vendor(), retryResult)
			return fmt.Errorf("%w: %w", errRetryLater, savedErr)
		}
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errRetryLater, ctx.Err())
	}
	a.st.Joining = nil // the outcome is known: the step saves it
	if err != nil {
		outcome, why := decideJoinError(err, lastAttempt)
		if outcome == joinFailed && prior != nil && errors.Is(err, connector.ErrRefused) && !lastAttempt && time.Since(prior.At) < JoinWindow {
			a.st.Joining = marker
			a.logger().Warn("join refused while the Controller of an attempt that never finished may still be present, retrying later",
				"token", connector.MaskToken(token), "error", err)
			a.c.met.join(a.vendor(), retryResult)
			return fmt.Errorf("%w: %w", errRetryLater, err)
		}
		if outcome == joinRetry {
			// The call may have reached the server (a time-out): the marker stays.
			a.st.Joining = marker
			a.logger().Warn("join: server unavailable, retrying later", "token", connector.MaskToken(token), "error", err)
			a.c.met.join(a.vendor(), retryResult)
			return fmt.Errorf("%w: %w", errRetryLater, err)
		}
		// An attempt that stopped after publishing may have sent the join's attach.
		putBack := prior != nil && prior.Seq != 0 && prior.Seq == a.st.Seq
		a.unreserve(marker, prior)
		a.logger().Warn("join failed", "token", connector.MaskToken(token), "decision", why, "error", err)
		a.meter(func(m *meters) { m.join(a.vendor(), failedResult) })
		reason := string(connector.JoinFailed)
		switch {
		case errors.Is(err, connector.ErrUnsupported):
			reason = ReasonUnsupported
		case errors.Is(err, connector.ErrNotBound):
			reason = ReasonPINNotBound
		}
		a.queue(Outbound{Life: &attach.Lifecycle{
			Event:         attach.Failed,
			InteractionID: a.id,
			SessionToken:  token,
			Vendor:        string(a.vendor()),
			AgentID:       a.st.AgentID,
			Reason:        reason,
			Detail:        connector.ReasonOf(err),
			At:            time.Now(),
			MsgID:         a.id + ".failed." + cause,
		}})
		if putBack {
			// The attached data as saved, under the next seq, over what that attach said.
			a.queueUpdateFor(a.st.SessionID, attach.Data{}, time.Now())
		}
		return nil
	}
	h := sess.Handle()
	now := time.Now()
	if connector.IsPending(sess) {
		// A session the vendor created for the request: the customer's page starts it with what
		// the start message carries; it counts as joined when the vendor sees it live.
		a.unreserve(marker, prior)
		a.st.Live = &Live{Handle: h, Phase: PhaseStarting, JoinedAt: now}
		a.dirty = true
		a.attachSession(sess)
		a.logger().Info("session created; waiting for the customer's page to start it", "token", connector.MaskToken(h.Token))
		a.meter(func(m *meters) { m.join(a.vendor(), createdResult) })
		a.queueHandoffs(connector.HandoffStart)
		return nil
	}
	// The step's outbox is empty here (the marker's commit published what came before), so
	// what beginSession queues has only reserved ids unless it allocates a seq of its own.
	a.reservedOnly = len(a.outbox) == 0 && a.reserved != 0
	a.beginSession(sess, now)
	a.meter(func(m *meters) { m.joined(a.vendor(), begun) })
	return nil
}

// joinMayBePublished reports a saved join marker whose reserved messages may have been published
// by an attempt that stopped before it saved its outcome (see Joining).
func (a *actor) joinMayBePublished() bool {
	j := a.st.Joining
	return j != nil && j.Seq != 0 && j.Seq == a.st.Seq && a.st.Live == nil && !a.st.Closed
}

// redoJoin joins again, on the first message of an interaction whose state says that a join's
// messages may have gone out before its outcome was saved (the daemon stopped in between, or
// another replica took the interaction over): before that message is handled, so that a close or
// a transfer ends what the readers may have seen. The start message itself, when it comes back,
// joins again as any retry does. The join publishes the same ids again; one that fails for good
// puts the attached data back (see join); one that must wait is tried again by the next actor
// that reads the state, or by the start message's redelivery.
func (a *actor) redoJoin(ctx context.Context) {
	j := a.st.Joining
	if a.conn() == nil {
		a.logger().Warn("a join may have been published before its state was saved, but its vendor is not enabled", "vendor", a.vendor(), "token", connector.MaskToken(j.Token))
		return
	}
	a.logger().Info("joining again: the last join may have been published before its state was saved", "token", connector.MaskToken(j.Token))
	if err := a.join(ctx, j.Token, "join:"+j.Token, false); err != nil {
		a.logger().Warn("joining again failed", "token", connector.MaskToken(j.Token), "error", err)
	}
	a.commitOrRetry(ctx)
}

// reserve reserves the attach seq of a join's attach in its marker (see Joining). The seq of an
// earlier attempt at the same token is taken again while no other seq followed it: that attempt
// may have published the join's messages with it before it stopped.
func (a *actor) reserve(marker, prior *Joining) {
	if prior != nil && prior.Seq != 0 && prior.Seq == a.st.Seq {
		marker.Seq = prior.Seq
	} else {
		a.st.Seq++
		marker.Seq = a.st.Seq
	}
	a.reserved = marker.Seq
}

// unreserve gives the marker's seq back after a join that ended without using it (it failed for
// good, or made a session that has no attach yet): when no earlier attempt at the token can have
// used it, and nothing took a seq after it, the next attach takes it. Otherwise it stays a gap,
// which the contract allows (a reader applies any higher seq).
func (a *actor) unreserve(marker, prior *Joining) {
	a.reserved = 0
	if prior == nil && a.st.Seq == marker.Seq {
		a.st.Seq--
	}
}

// beginSession records the session as joined and queues the joined event, the attach, the
// customer page's start (a session the vendor created) and the agent's view.
func (a *actor) beginSession(sess connector.Session, now time.Time) {
	h := sess.Handle()
	before := a.st.data()
	a.st.Live = &Live{Handle: h, Phase: PhaseJoined, JoinedAt: now}
	a.st.Sessions++
	a.st.SessionID = h.SessionID
	a.st.Associated = "Yes"
	a.dirty = true
	a.attachSession(sess)
	a.logger().Info("joined as Controller", "session_id", h.SessionID, "token", connector.MaskToken(h.Token))
	a.queue(Outbound{Life: a.lifecycle(attach.Joined, now)})
	a.queueUpdate(before, now)
	a.queueHandoffs(connector.HandoffStart) // a session the vendor created for a request: its customer page starts it
	if a.st.AgentID != "" {
		a.queueAgentView()
	}
	// An agent already in the session when the daemon joined (Zoom: the agent joined by PIN
	// first) was activated before the daemon could hear it.
	a.agentMayHaveJoined()
}

// started takes a created session's EventStarted: the customer's page started it, so it is
// joined from now, with the session id the vendor now knows.
func (a *actor) started(ev connector.Event) {
	l := a.st.Live
	if l.Phase != PhaseStarting {
		return
	}
	// The pending session's stream ends with this event; its later events come as signals.
	a.stopListening()
	sess := a.sess
	h := ev.Handle
	h.InteractionID = a.id
	if sess == nil || h.SessionID == "" {
		a.notStarted(connector.ServerLost, "the vendor reported the session started without its id")
		return
	}
	a.st.Live = nil
	a.beginSession(startedSession{Session: sess, h: h}, time.Now())
	a.meter(func(m *meters) { m.join(a.vendor(), joinedResult) }) // the wait for the page is not the join's latency
}

// startedSession is a created session once started: its handle is the one EventStarted gave.
type startedSession struct {
	connector.Session
	h connector.Handle
}

func (s startedSession) Handle() connector.Handle { return s.h }

// Events is nil: a started session's events come as signals.
func (s startedSession) Events() <-chan connector.Event { return nil }

// notStarted ends a session the daemon created that never went live (the page did not start it
// within the vendor's bound, or the interaction ended first): nothing was attached or announced
// for it, so no deactivated event and no attach; a failed event (join_failed) says what happened,
// and the customer's page is asked to end whatever it may have started.
func (a *actor) notStarted(reason connector.EndReason, detail string) {
	l := a.st.Live
	if l == nil {
		return
	}
	a.queueEnds(l.Handle)
	pending := pageSessionID(a.st)
	a.st.Live = nil
	a.dirty = true
	a.logger().Warn("created session never started", "token", connector.MaskToken(l.Handle.Token), "reason", reason, "detail", detail)
	a.meter(func(m *meters) { m.join(a.vendor(), notStartedResult) })
	a.queue(Outbound{Life: &attach.Lifecycle{
		Event:         attach.Failed,
		InteractionID: a.id,
		SessionToken:  l.Handle.Token,
		Vendor:        string(a.vendor()),
		AgentID:       a.st.AgentID,
		Reason:        string(connector.JoinFailed),
		Detail:        "the customer's page did not start the session (" + string(reason) + "): " + detail,
		At:            time.Now(),
		MsgID:         a.id + ".failed." + pending,
	}})
	a.closeSession(context.Background())
}

// queueEnds queues the end requests to the pages of a session the vendor ends there (none for a
// vendor that stops its sessions at the server).
func (a *actor) queueEnds(h connector.Handle) {
	if a.sess != nil {
		a.queueHandoffs(connector.HandoffEnd)
		return
	}
	if conn := a.connFor(h); conn != nil {
		a.queuePages(conn.EndHandoffs(h, a.st.AgentID), pageSessionID(a.st))
	}
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
		a.logger().Info("finishing a stop that was under way before the restart", "session_id", l.Handle.SessionID, "reason", l.StopReason)
		times := a.stopByHandle(ctx, l.Handle)
		a.endSession(l.StopReason, times)
		a.commitOrRetry(ctx)
		return
	}
	l.StopReason = ""
	switch {
	case l.Phase == PhaseStarting:
	case !l.ActivatedAt.IsZero():
		l.Phase = PhaseActive
	default:
		l.Phase = PhaseJoined
	}
	h := l.Handle
	h.InteractionID = a.id
	conn := a.connFor(h)
	if conn == nil {
		a.logger().Error("the vendor of a live session is not enabled: it cannot be re-joined or stopped", "vendor", h.Vendor, "session_id", h.SessionID)
		a.endSession(connector.ServerLost, connector.Times{})
		a.commitOrRetry(ctx)
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	call := &rejoinCall{cancel: cancel, done: make(chan rejoinResult, 1)}
	a.rejoin = call
	a.logger().Info("re-joining a live session", "session_id", h.SessionID, "token", connector.MaskToken(h.Token))
	go func() {
		sess, err := conn.Rejoin(rctx, h)
		call.done <- rejoinResult{sess: sess, err: err}
		a.kick(workRejoined)
	}()
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
	if r.err != nil && l.Phase == PhaseStarting {
		a.notStarted(connector.ServerLost, "not found again after the restart: "+connector.ReasonOf(r.err))
		return
	}
	if r.err != nil {
		reason := connector.ServerLost
		if errors.Is(r.err, connector.ErrNotLive) {
			reason = connector.ParticipantExit
		}
		a.logger().Warn("re-join failed; stopping the session through its handle", "session_id", l.Handle.SessionID, "reason", reason, "error", r.err)
		times := a.stopByHandle(ctx, l.Handle)
		a.endSession(reason, times)
		return
	}
	l.Handle = r.sess.Handle()
	a.dirty = true
	a.attachSession(r.sess)
	a.logger().Info("re-joined a live session", "session_id", l.Handle.SessionID)
	a.sendOwedView()
	a.agentMayHaveJoined()
}

// agentMayHaveJoined reports as activated (from now: the server's time is unknown) an agent the
// latest join reply lists while the session still counts as idle: the activated notification
// went to a Bayeux session the server no longer had (a restart, a re-handshake).
func (a *actor) agentMayHaveJoined() {
	if l := a.st.Live; l != nil && l.Phase == PhaseJoined && a.sess != nil && hasAgent(a.sess.Participants()) {
		a.activated(time.Now())
	}
}

// sessionEvent handles what the co-browse server says about the live session; ok is false when
// the session's event stream closed.
func (a *actor) sessionEvent(ctx context.Context, ev connector.Event, ok bool) {
	if !ok {
		// The stream closed without a deactivated or lost event: the vendor gave up on it.
		a.stopListening()
		if a.st.Live != nil && a.st.Live.Phase == PhaseStarting {
			a.notStarted(connector.ServerLost, "the vendor stopped waiting for the page without saying why")
			return
		}
		if a.st.Live != nil {
			a.logger().Warn("session stream closed unexpectedly; stopping it through its handle", "session_id", a.st.Live.Handle.SessionID)
			a.endSession(connector.ServerLost, a.stopByHandle(ctx, a.st.Live.Handle))
		}
		return
	}
	if a.st.Live == nil {
		return
	}
	switch ev.Kind {
	case connector.EventParticipantJoined:
		a.logger().Info("participant joined", "role", ev.Participant.Role.String(), "session_id", a.st.Live.Handle.SessionID)
	case connector.EventActivated:
		a.activated(activationOf(ev))
	case connector.EventDeactivated:
		a.endSession(endReason(a.st.Live), ev.Times)
	case connector.EventRejoined:
		a.logger().Info("re-joined after a Bayeux re-handshake", "session_id", a.st.Live.Handle.SessionID)
		a.st.Live.Handle = ev.Handle
		a.dirty = true
		a.agentMayHaveJoined()
	case connector.EventStarted:
		a.started(ev)
	case connector.EventLost:
		if a.st.Live.Phase == PhaseStarting {
			a.notStarted(connector.ServerLost, connector.ReasonOf(ev.Err))
			return
		}
		a.logger().Warn("co-browse server lost", "session_id", a.st.Live.Handle.SessionID, "error", ev.Err)
		if !ev.Stopped {
			a.addPendingStop(a.st.Live.Handle, ev.Err)
		}
		a.endSession(connector.ServerLost, connector.Times{})
	}
}

// activationOf is an EventActivated's activation time, or now when the vendor gave none.
func activationOf(ev connector.Event) time.Time {
	if at := ev.Times.Activation; !at.IsZero() {
		return at
	}
	return time.Now()
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
	a.logger().Info("session activated", "session_id", l.Handle.SessionID)
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
	if l.Phase == PhaseStopping && !l.StopBy.IsZero() {
		// Already stopping, waiting for the vendor's word: end it now, for the first reason.
		a.endSession(l.StopReason, connector.Times{})
		return
	}
	a.cancelRejoin() // a re-join in flight is moot now; the handle stops the session
	if l.Phase == PhaseStarting {
		// Not live yet: end the wait for the page, and ask the page to end what it may start.
		if a.sess != nil {
			sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
			_, _ = a.sess.Stop(sctx)
			cancel()
		}
		a.notStarted(reason, "the interaction's session was stopped before it started")
		return
	}
	l.Phase = PhaseStopping
	l.StopReason = reason
	a.dirty = true
	a.logger().Info("stopping session", "session_id", l.Handle.SessionID, "reason", reason)
	var times connector.Times
	if a.sess != nil {
		sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
		var err error
		times, err = a.sess.Stop(sctx)
		cancel()
		a.afterStop(ctx)
		a.queueHandoffs(connector.HandoffEnd) // the pages' end requests, for a vendor whose session ends there
		switch {
		case err != nil:
			a.addPendingStop(l.Handle, err)
			a.closeSession(context.WithoutCancel(ctx))
		case !a.streamed && times.Deactivation.IsZero():
			// The vendor's end comes back as a signal (an inbound message of this interaction):
			// wait for it without holding the interaction, up to the end wait; the final attach
			// follows the signal, or the deadline. (A vendor whose stop call ended the session,
			// CEC's release, says so with the deactivation time: it ends now.)
			l.StopBy = time.Now().Add(a.c.cfg.EndWait)
			return
		}
	} else {
		times = a.stopByHandle(ctx, l.Handle)
		a.afterStop(ctx)
	}
	wait := time.NewTimer(a.c.cfg.StopWait)
	defer wait.Stop()
	for a.listening {
		e, got, more := a.nextEvent()
		if !got {
			select {
			case <-more:
			case <-wait.C:
				a.logger().Warn("no deactivated notification within the stop wait", "session_id", l.Handle.SessionID, "wait", a.c.cfg.StopWait)
				a.stopListening()
			case <-ctx.Done():
				a.stopListening()
			}
			continue
		}
		if !e.ok {
			a.stopListening()
			continue
		}
		switch ev := e.ev; ev.Kind {
		case connector.EventActivated:
			// The agent joined just before the stop: it counts, for the duration and the
			// contract's activated event and attach.
			a.activated(activationOf(ev))
		case connector.EventDeactivated:
			a.endSession(reason, mergeTimes(ev.Times, times))
			return
		case connector.EventLost:
			a.stopListening()
		}
	}
	a.endSession(reason, times)
}

// endSession ends the live session: totals, the deactivated event, the final attach, and the
// release of the session's connection.
func (a *actor) endSession(reason connector.EndReason, times connector.Times) {
	l := a.st.Live
	if l == nil {
		return
	}
	if l.Phase == PhaseStarting {
		a.notStarted(reason, "the session ended before it started")
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
	a.logger().Info("session ended", "session_id", l.Handle.SessionID, "reason", reason)
	v := l.Handle.Vendor
	if v == "" {
		v = a.vendor()
	}
	a.meter(func(m *meters) { m.ended(v, reason) })
	a.queue(Outbound{Life: life})
	a.queueUpdateFor(l.Handle.SessionID, before, now)
	a.leaveSession()
}

func (a *actor) checkDeadline(ctx context.Context) {
	reason, due := decideDeadline(&a.st, a.c.cfg.Timers, time.Now())
	if !due {
		return
	}
	if a.st.Live.Phase == PhaseStopping {
		a.logger().Warn("no word from the vendor that the session ended within the end wait; ending it",
			"session_id", a.st.Live.Handle.SessionID, "wait", a.c.cfg.EndWait)
		a.endSession(reason, connector.Times{})
		return
	}
	a.stopLive(ctx, reason)
}

// signal handles an inbound signal about the interaction's co-browse session. An operator's stop
// ends the live session as operator_stop (and writes an audit line). The other signals report
// what the pages or the vendor's webhooks saw: the live session's vendor turns them into events
// (a Genesys session's events come from its own CometD connection, so it takes none).
func (a *actor) signal(ctx context.Context, in chat.Inbound) {
	g := in.Signal
	switch {
	case g.Type == chat.SignalStop && g.Source == chat.SourceOperator:
		if a.st.Live == nil {
			a.logger().Info("operator stop: no live session", "signal", g.ID)
			return
		}
		// The one audit line of an operator's stop: here, where the stop is done, whoever
		// published the signal (the micro service's sessions.stop, or an operator's own publish).
		who := OperatorOf(g.Raw)
		a.logger().Warn("audit: operator stop", "signal", g.ID, "session_id", a.st.Live.Handle.SessionID,
			"vendor", a.vendor(), "agent", a.st.AgentID, "token", connector.MaskToken(a.st.Live.Handle.Token),
			"requested_by", who.RequestedBy, "reason", who.Reason, "via", who.Via)
		inProgress(in)
		a.stopLive(ctx, connector.OperatorStop)
	case a.sess == nil:
		a.logger().Debug("signal without a live session", "signal_source", g.Source, "type", g.Type, "vendor", a.vendor())
	default:
		// The vendor turns what the signal says into session events, applied as those of its
		// live connection are.
		events := a.sess.Signal(connector.Signal{Source: g.Source, Type: string(g.Type), Role: signalRole(g.Role),
			SessionID: g.SessionID, At: g.At, Raw: g.Raw})
		if len(events) == 0 {
			a.logger().Debug("signal without effect on the session", "signal_source", g.Source, "type", g.Type, "vendor", a.vendor())
		}
		for _, ev := range events {
			a.sessionEvent(ctx, ev, true)
		}
	}
}

// Operator is what an operator's stop signal says of its request, in its raw field (all
// optional): who asked, why, and which replica's micro service took the request. The daemon only
// logs it, on the stop's audit line.
type Operator struct {
	RequestedBy string `json:"requestedBy,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Via         string `json:"via,omitempty"`
}

// maxOperatorText bounds each field of Operator as the audit line shows it.
const maxOperatorText = 200

// OperatorOf reads an operator's stop signal's raw field. Anything else than an object of
// strings gives empty fields; each is cut to maxOperatorText characters and stripped of control
// characters, so that a log line stays one line.
func OperatorOf(raw json.RawMessage) Operator {
	var o Operator
	if len(raw) == 0 || json.Unmarshal(raw, &o) != nil {
		return Operator{}
	}
	return Operator{RequestedBy: plainText(o.RequestedBy), Reason: plainText(o.Reason), Via: plainText(o.Via)}
}

// plainText cuts s to maxOperatorText characters and drops its control characters.
func plainText(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxOperatorText {
			break
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			continue
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// signalRole maps a signal's role onto the connector's.
func signalRole(r chat.Role) connector.Role {
	switch r {
	case chat.RoleCustomer:
		return connector.RoleCustomer
	case chat.RoleAgent:
		return connector.RoleAgent
	}
	return 0
}

// vendorUnavailable reports a start or a request on an interaction whose vendor is not enabled
// in this daemon.
func (a *actor) vendorUnavailable(cause string) {
	a.logger().Warn("the interaction's co-browse vendor is not enabled", "vendor", a.vendor())
	a.queue(Outbound{Life: &attach.Lifecycle{
		Event:         attach.Failed,
		InteractionID: a.id,
		Vendor:        string(a.vendor()),
		AgentID:       a.st.AgentID,
		Reason:        ReasonVendorUnavailable,
		Detail:        "vendor " + string(a.vendor()) + " is not enabled in this daemon",
		At:            time.Now(),
		MsgID:         a.id + ".failed." + cause,
	}})
}

// The reasons of failed lifecycle events besides join_failed and processing_failed.
const (
	ReasonVendorUnavailable = "vendor_unavailable" // the interaction's vendor is not enabled
	ReasonUnsupported       = "unsupported"        // the vendor cannot do it (Genesys cannot create a session)
	ReasonPINNotBound       = "pin_not_bound"      // the PIN names a session not bound to this interaction
)
