// The outbox: what a step of the state machine queued, saved with the state, published in order,
// and the state saved again; only then is the inbound message settled.
package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// queue adds a message to the step's outbox, keeping the routing fields its JSON leaves out.
func (a *actor) queue(o Outbound) {
	if o.Life != nil {
		o.LifeMsgID = o.Life.MsgID
	}
	if o.Page != nil {
		o.PageToCus = o.Page.ToCustomer
	}
	a.outbox = append(a.outbox, o)
	a.outboxSaved = false // a new message is not reserved until the next commit saves it (or a join marker did: see join)
}

func (a *actor) lifecycle(kind attach.LifecycleKind, at time.Time) *attach.Lifecycle {
	l := a.st.Live
	return &attach.Lifecycle{
		Event:         kind,
		InteractionID: a.id,
		SessionID:     l.Handle.SessionID,
		SessionToken:  l.Handle.Token,
		Vendor:        string(a.vendor()),
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
	seq := a.reserved
	if seq == 0 {
		a.st.Seq++
		seq = a.st.Seq
	}
	reserved := a.reservedOnly && seq == a.reserved
	a.reserved = 0
	a.queue(Outbound{Update: &attach.Update{
		InteractionID: a.id,
		Seq:           seq,
		SessionID:     sessionID,
		Vendor:        string(a.vendor()),
		Data:          after,
		Changed:       changedKeys(before, after),
		At:            at,
	}})
	a.reservedOnly = reserved
}

// queueAgentView queues the view of the live session for the interaction's agent.
func (a *actor) queueAgentView() { a.queueHandoffs(connector.HandoffView) }

// queueHandoffs queues what the pages get now for kind, as the session's vendor builds it (a view
// per agent, a start for the customer page, end requests).
func (a *actor) queueHandoffs(kind connector.HandoffKind) {
	l := a.st.Live
	if l == nil {
		return
	}
	if a.sess == nil {
		// Re-joining: the view is owed to the agent until the session is held again.
		if kind == connector.HandoffView && !l.ViewOwed {
			l.ViewOwed = true
			a.dirty = true
		}
		return
	}
	a.queuePages(a.sess.Handoffs(kind, a.st.AgentID), pageSessionID(a.st))
}

// pageSessionID is the sessionId of the live session's page messages (and of their msg ids): the
// vendor's session id, or, for a created session that has none yet (PhaseStarting),
// "pending-<n>" with n the number the session will have on the interaction.
func pageSessionID(st State) string {
	if l := st.Live; l != nil && l.Handle.SessionID != "" {
		return l.Handle.SessionID
	}
	return "pending-" + strconv.Itoa(st.Sessions+1)
}

// queuePages queues page messages of the session sessionID.
func (a *actor) queuePages(pages []connector.Handoff, sessionID string) {
	now := time.Now()
	for _, h := range pages {
		a.queue(Outbound{Page: &attach.Handoff{
			Kind:          attach.HandoffKind(h.Kind),
			ToCustomer:    h.ToCustomer,
			InteractionID: a.id,
			SessionID:     sessionID,
			Vendor:        string(a.vendor()),
			AgentID:       h.AgentID,
			URL:           h.URL,
			Token:         h.Token,
			PIN:           h.PIN,
			RoomID:        h.RoomID,
			WSSURL:        h.WSSURL,
			ConnectParam:  h.ConnectParam,
			At:            now,
		}})
	}
}

// commit saves the state with the step's outbound messages, publishes them in order, then saves
// the state again without them. Saving first reserves the messages' seq and ids: a daemon that
// stops after a publish and before a save would otherwise reuse a seq for a different message,
// and the stream's dedupe would drop that message. A join's messages were reserved by its marker,
// saved before the join call (reservedOnly): they go out first, and one save follows, which takes
// a round trip off the join's way to its attach. Should their publishing fail, the next commit
// saves them first.
func (a *actor) commit(ctx context.Context) error {
	if a.reservedOnly {
		a.reservedOnly = false
		if err := a.publishAll(ctx); err != nil {
			return err
		}
		a.dirty = true
		return a.save(ctx)
	}
	if len(a.outbox) > 0 && !a.outboxSaved {
		a.st.Outbox = a.outbox
		if err := a.save(ctx); err != nil {
			a.st.Outbox = nil
			return err
		}
		a.outboxSaved = true
	}
	if err := a.publishAll(ctx); err != nil {
		return err
	}
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

// publishAll publishes the outbox in order, dropping what is refused for good.
func (a *actor) publishAll(ctx context.Context) error {
	for len(a.outbox) > 0 {
		n, err := a.publishOutbox(ctx)
		clear(a.outbox[:n])
		a.outbox = a.outbox[n:]
		if err != nil {
			if !refused(err) {
				return err
			}
			// The stream or the contract refuses this message for good: retrying would block
			// every later message of the interaction behind it. Say so once and go on.
			a.logger().Error("outbound message refused for good; dropped", "error", err)
			a.outbox[0] = Outbound{}
			a.outbox = a.outbox[1:]
		}
	}
	a.outbox = nil
	return nil
}

// save writes the state. On a revision conflict (a write whose reply was lost, a key that
// expired, a second writer) the actor, which owns the interaction, takes the stored revision and
// writes its own state over it, never letting seq go back.
func (a *actor) save(ctx context.Context) error {
	rev, err := a.c.store.Save(ctx, a.st, a.rev)
	if errors.Is(err, ErrConflict) {
		// Someone else wrote the interaction's state since this actor read it: another replica
		// that owns the interaction now, or this replica's own write whose reply was lost. Either
		// way this actor's view is stale, and writing over it could undo the owner's work: the
		// actor lets go of the interaction (see letGo) and writes nothing.
		a.lost = true
		a.metered = nil // the owner counts what it does
		return fmt.Errorf("save state: %w: %w", errLost, err)
	}
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	a.rev, a.dirty = rev, false
	a.show()
	for _, f := range a.metered {
		f(a.c.met)
	}
	clear(a.metered)
	a.metered = a.metered[:0]
	return nil
}

// meter counts a step's outcome (a join, an end) once the state that records it is saved: a step
// redone after a failed save, or by the replica that took the interaction over after a lost
// compare-and-set, is then counted once.
func (a *actor) meter(f func(*meters)) {
	if a.c.met != nil {
		a.metered = append(a.metered, f)
	}
}

// errLost marks a save that lost its compare-and-set: the actor no longer acts for the interaction.
var errLost = errors.New("another writer holds the interaction's state")

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
	if err := a.commit(ctx); err != nil && !errors.Is(err, errLost) {
		a.logger().Warn("publishing or saving failed; retrying", "retry_in", a.c.cfg.RetryDelay, "error", err)
		a.scheduleRetry()
	}
}

func (a *actor) publish(ctx context.Context, o Outbound) error {
	pctx, cancel := context.WithTimeout(ctx, a.c.cfg.PublishTimeout)
	defer cancel()
	return publishTo(pctx, a.c.pub, o)
}

func publishTo(ctx context.Context, pub Publisher, o Outbound) error {
	switch {
	case o.Update != nil:
		return pub.Update(ctx, *o.Update)
	case o.Life != nil:
		l := *o.Life
		l.MsgID = o.LifeMsgID
		return pub.Lifecycle(ctx, l)
	case o.Page != nil:
		h := *o.Page
		h.ToCustomer = o.PageToCus
		return pub.Handoff(ctx, h)
	case o.View != nil:
		v := *o.View
		v.AgentID = o.ViewAgent
		return pub.AgentView(ctx, v)
	}
	return nil
}

// batchPublisher is a Publisher that sends several messages in one round trip (attach.Publisher).
type batchPublisher interface {
	Batch() *attach.Batch
}

// publishOutbox publishes the outbox in order and returns how many of its messages, from the
// first, the streams hold, and why the next one failed. Several go out in one round trip when the
// publisher can (a join's joined event and attach, an end's deactivated event and final attach):
// each is sent without waiting for the one before it to be acknowledged, so a failure may leave a
// later one stored before an earlier one, which its retry then follows (its dedupe id keeps it
// single).
func (a *actor) publishOutbox(ctx context.Context) (int, error) {
	bp, ok := a.c.pub.(batchPublisher)
	if !ok || len(a.outbox) == 1 {
		if err := a.publish(ctx, a.outbox[0]); err != nil {
			return 0, err
		}
		return 1, nil
	}
	b := bp.Batch()
	for _, o := range a.outbox {
		_ = publishTo(ctx, b, o) // an error comes out of Wait, in its place
	}
	return b.Wait(ctx)
}
