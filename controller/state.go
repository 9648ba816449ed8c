package controller

import (
	"slices"
	"strconv"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Phase is where a live co-browse session stands. A session that has ended is no longer live:
// the interaction's State keeps only its totals.
//
//	detected -> joining -> joined -> active -> ended, with stopping between any live phase and ended
//	requested -> starting -> joined ..., for a session the daemon created (connector.Pending)
//
// detected and joining last only inside one actor step (the join call), so only starting, joined,
// active and stopping are ever saved.
type Phase string

// The phases of a live session.
const (
	// PhaseStarting: the daemon created the session for a request and gave the customer's page
	// what it needs to start it (Zoom's Bring Your Own PIN); it is not live at the server yet, so
	// nothing is attached and no agent is told. The vendor's EventStarted makes it joined.
	PhaseStarting Phase = "starting"
	PhaseJoined   Phase = "joined"   // the Controller joined; no agent yet (the session is idle)
	PhaseActive   Phase = "active"   // an agent joined: the server activated the session
	PhaseStopping Phase = "stopping" // the daemon asked the server to stop it and waits for deactivated
)

// Live is the interaction's live co-browse session.
type Live struct {
	Handle      connector.Handle    `json:"handle"`
	Phase       Phase               `json:"phase"`
	JoinedAt    time.Time           `json:"joinedAt"`
	ActivatedAt time.Time           `json:"activatedAt,omitzero"` // the server's activation time
	StopReason  connector.EndReason `json:"stopReason,omitempty"` // why the daemon is stopping it
	// StopBy is set while the daemon waits for the vendor's word that a session it asked the
	// pages to end has ended (a vendor whose end comes as a signal): at StopBy it ends anyway.
	StopBy time.Time `json:"stopBy,omitzero"`
	// ViewOwed: an agent was assigned while no connection to the session was held (it was being
	// re-joined): the agent's view goes out once the session is joined again.
	ViewOwed bool `json:"viewOwed,omitempty"`
}

// Joining marks a join in flight. It is saved before the vendor's join call and cleared with the
// step that took the call's outcome, so that a state that still holds it tells the next attempt
// (after a crash, or on the replica that took the interaction over) that the server may already
// hold the Controller of the attempt that never finished: a refusal then means "not yet", not
// "no", until JoinWindow after the first attempt.
//
// The marker also reserves the attach seq of the join's attach (Seq): with it saved, every id of
// the messages a successful join publishes is fixed before the call (the lifecycle and page
// messages' ids are the session's), so they are published as soon as the call succeeds and the
// state is saved after them. An attempt that stopped in between published them with these ids;
// the next attempt at the same token uses them again, and the streams drop the copies. That next
// attempt comes with the start message's redelivery, or before the interaction's next message if
// that comes first (redoJoin), so that a close ends what the readers saw.
type Joining struct {
	Token string    `json:"token"`
	At    time.Time `json:"at"`            // the first attempt at this token
	Seq   uint64    `json:"seq,omitempty"` // the attach seq reserved for the join (0: none, an older daemon's marker)
}

// JoinWindow bounds how long after a join that did not finish a refusal of the same join is taken
// for that attempt's Controller still being present (the server lets it go after its maxInterval,
// seconds to a minute), and retried.
const JoinWindow = 2 * time.Minute

// State is everything the daemon keeps about one interaction, saved in the key-value bucket
// before the inbound message that changed it is acked.
type State struct {
	InteractionID string `json:"interactionId"`
	// Seq is the last attach sequence number published; it only grows, across restarts.
	Seq uint64 `json:"seq"`
	// Sessions counts the co-browse sessions the Controller joined on this interaction.
	Sessions int `json:"sessions"`
	// SessionID is the history id of the latest session (CoBrowseSessionId).
	SessionID string `json:"sessionId,omitempty"`
	// Associated is what CoBrowseAssociated says: "Yes" while a session is live, "No" after.
	Associated string `json:"associated,omitempty"`
	// FirstStart is the first session's activation time (CoBrowseStartTime).
	FirstStart time.Time `json:"firstStart,omitzero"`
	// Ended counts ended sessions; DurationMs sums their active time.
	Ended      int   `json:"ended"`
	DurationMs int64 `json:"durationMs"`
	// EndReason is the last ended session's reason (CoBrowseEndReason).
	EndReason connector.EndReason `json:"endReason,omitempty"`
	// Vendor is the co-browse vendor that serves the interaction, fixed at its first decision:
	// cobrowseVendor on created or assigned, else the default vendor. Empty in states saved
	// before vendors were chosen per interaction: the default vendor.
	Vendor connector.Vendor `json:"vendor,omitempty"`
	// AgentID is the interaction's current agent (created, assigned, transferred).
	AgentID string `json:"agentId,omitempty"`
	// Closed is set once the interaction closed.
	Closed bool `json:"closed,omitempty"`
	// LastActivity is the time of the last chat message or interaction event.
	LastActivity time.Time `json:"lastActivity,omitzero"`
	// Seen holds the ids of the latest inbound messages handled, so that a redelivered or
	// republished message changes nothing twice.
	Seen []string `json:"seen,omitempty"`
	// Live is the live session, if any.
	Live *Live `json:"live,omitempty"`
	// Joining is a join in flight (see Joining).
	Joining *Joining `json:"joining,omitempty"`
	// PendingStops are sessions the daemon ended but could not stop at the server by any route;
	// the sweep retries them through their handles.
	PendingStops []PendingStop `json:"pendingStops,omitempty"`
	// Outbox holds the outbound messages of the latest step while they are being published. The
	// state is saved with them before the first is published, so that a daemon that stops midway
	// publishes the same messages, with the same seq and ids, when it comes back (the stream's
	// dedupe drops the ones already stored), and never reuses a seq for something else.
	Outbox []Outbound `json:"outbox,omitempty"`
}

// PendingStop is a stop to retry.
type PendingStop struct {
	Handle connector.Handle `json:"handle"`
	Since  time.Time        `json:"since"`
}

// Outbound is one message waiting to be published. The attach types leave their routing fields
// (the agent view's agent, a lifecycle event's explicit message id) out of their JSON, so they are
// kept beside them here.
type Outbound struct {
	Update    *attach.Update    `json:"update,omitempty"`
	Life      *attach.Lifecycle `json:"lifecycle,omitempty"`
	LifeMsgID string            `json:"lifecycleMsgId,omitempty"`
	Page      *attach.Handoff   `json:"page,omitempty"`           // a message to the agent's or the customer's page
	PageToCus bool              `json:"pageToCustomer,omitempty"` // kept, as its JSON says it only by leaving agentId out
	// View is an agent view queued by the previous release, still published when an outbox saved
	// by it is found.
	View      *attach.AgentView `json:"agentView,omitempty"`
	ViewAgent string            `json:"agentViewAgent,omitempty"`
}

// seenCap bounds State.Seen: enough to cover redeliveries and a publisher's retries.
const seenCap = 64

// seen reports whether the inbound message id was handled already.
func (s *State) seen(id string) bool { return slices.Contains(s.Seen, id) }

// remember records an inbound message id, dropping the oldest beyond seenCap.
func (s *State) remember(id string) {
	if id == "" || s.seen(id) {
		return
	}
	s.Seen = append(s.Seen, id)
	if over := len(s.Seen) - seenCap; over > 0 {
		s.Seen = slices.Delete(s.Seen, 0, over)
	}
}

// data computes the attached data from the state: every co-browse key that has a value.
func (s *State) data() attach.Data {
	d := attach.Data{
		Associated:       s.Associated,
		SessionsQuantity: s.Sessions,
		SessionID:        s.SessionID,
		EndReason:        string(s.EndReason),
	}
	if !s.FirstStart.IsZero() {
		d.StartTime = strconv.FormatInt(s.FirstStart.UnixMilli(), 10)
	}
	if s.Ended > 0 {
		secs := durationSeconds(s.DurationMs)
		d.Duration = &secs
	}
	return d
}

// durationSeconds turns summed milliseconds into the whole seconds CoBrowseDuration carries,
// rounding half up: a 600 ms session counts as one second, not zero.
func durationSeconds(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	return (ms + 500) / 1000
}

// changedKeys lists the keys whose values differ between two data sets, in the contract's order.
func changedKeys(before, after attach.Data) []string {
	var keys []string
	if before.Associated != after.Associated {
		keys = append(keys, attach.KeyAssociated)
	}
	if before.SessionsQuantity != after.SessionsQuantity {
		keys = append(keys, attach.KeySessionsQuantity)
	}
	if before.SessionID != after.SessionID {
		keys = append(keys, attach.KeySessionID)
	}
	if before.StartTime != after.StartTime {
		keys = append(keys, attach.KeyStartTime)
	}
	if (before.Duration == nil) != (after.Duration == nil) ||
		(before.Duration != nil && *before.Duration != *after.Duration) {
		keys = append(keys, attach.KeyDuration)
	}
	if before.EndReason != after.EndReason {
		keys = append(keys, attach.KeyEndReason)
	}
	return keys
}
