// Package attach is the daemon's outbound side: the attached-data updates of an interaction, the
// co-browse lifecycle events and the page messages (handoffs: what the agent's and the customer's
// pages need to see, join, start or end a session), serialized exactly as docs/nats-contract.md
// says and published durably to JetStream with a dedupe id (Nats-Msg-Id) each. What reporting
// reads and the page messages, which may carry credentials, live in separate streams.
//
// The package decides nothing. The controller computes which keys change, their values, the
// sequence numbers and the reasons; attach checks the shape of what it is given, refuses what the
// contract cannot carry (before anything is published), serializes it and waits for the PubAck.
package attach

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Keys of the attached data, as Genesys reporting names them. Their order here is the order in
// which "changed" lists them.
const (
	KeyAssociated       = "CoBrowseAssociated"
	KeySessionsQuantity = "CoBrowseSessionsQuantity"
	KeySessionID        = "CoBrowseSessionId"
	KeyStartTime        = "CoBrowseStartTime"
	KeyDuration         = "CoBrowseDuration"
	KeyEndReason        = "CoBrowseEndReason"
)

// ContractVersion is the version of the NATS contract (docs/nats-contract.md) that this package
// speaks, written as "v", the first field of every outbound message. It is the contract's version,
// not the build's: it changes only with the contract document, when a change there is one an
// existing consumer cannot ignore (additions keep it).
const ContractVersion = 1

// keyOrder is the fixed order of the keys in "changed".
var keyOrder = [...]string{KeyAssociated, KeySessionsQuantity, KeySessionID, KeyStartTime, KeyDuration, KeyEndReason}

// Values of CoBrowseAssociated.
const (
	AssociatedYes = "Yes"
	AssociatedNo  = "No"
)

// Data is every co-browse key that has a value. Zero values are omitted (a nil pointer or an empty
// string means no value yet), so the field order here is the order on the wire.
type Data struct {
	Associated       string `json:"CoBrowseAssociated,omitempty"`       // "Yes" / "No"
	SessionsQuantity int    `json:"CoBrowseSessionsQuantity,omitempty"` // sessions on this interaction
	SessionID        string `json:"CoBrowseSessionId,omitempty"`        // the sessionHistoryId
	StartTime        string `json:"CoBrowseStartTime,omitempty"`        // UTC epoch ms as a decimal string, first session
	Duration         *int64 `json:"CoBrowseDuration,omitempty"`         // integer seconds summed over ended sessions
	EndReason        string `json:"CoBrowseEndReason,omitempty"`        // last ended session's reason
}

// Update is one change of an interaction's attached data.
// Subject <prefix>.interaction.<interactionId>.attach, Nats-Msg-Id "<interactionId>.attach.<seq>".
type Update struct {
	InteractionID string    `json:"interactionId"`
	Seq           uint64    `json:"seq"`       // per interaction, from 1, never restarts
	SessionID     string    `json:"sessionId"` // the sessionHistoryId this change concerns
	Vendor        string    `json:"vendor"`
	Data          Data      `json:"data"`
	Changed       []string  `json:"changed"` // published deduplicated, in the fixed key order
	At            time.Time `json:"at"`      // published as RFC 3339 UTC with milliseconds
}

// LifecycleKind names a co-browse lifecycle event.
type LifecycleKind string

// The lifecycle events.
const (
	Joined      LifecycleKind = "joined"      // the Controller (this daemon) joined
	Activated   LifecycleKind = "activated"   // an agent joined: the session is active
	Deactivated LifecycleKind = "deactivated" // the session ended, whoever ended it; with a reason
	Failed      LifecycleKind = "failed"      // the work on the session failed for good; with a reason
)

// Valid reports whether k is one of the lifecycle events.
func (k LifecycleKind) Valid() bool {
	switch k {
	case Joined, Activated, Deactivated, Failed:
		return true
	}
	return false
}

// Lifecycle is one co-browse lifecycle event.
// Subject <prefix>.cobrowse.<interactionId>.<event>, Nats-Msg-Id "<interactionId>.<sessionId>.<event>".
type Lifecycle struct {
	Event         LifecycleKind `json:"event"`
	InteractionID string        `json:"interactionId"`
	SessionID     string        `json:"sessionId"` // may be empty for a failed join before the server gave one
	// SessionToken is masked by the publisher itself with connector.MaskToken, whatever it is
	// given, so that a full token can never leave: pass it in full or masked, the result is the same.
	SessionToken     string `json:"sessionToken,omitempty"`
	Vendor           string `json:"vendor"`
	AgentID          string `json:"agentId,omitempty"`
	ActivationTime   int64  `json:"activationTime,omitempty"`   // epoch ms
	DeactivationTime int64  `json:"deactivationTime,omitempty"` // epoch ms
	Reason           string `json:"reason,omitempty"`           // deactivated (an end reason), failed (a short code)
	// Detail is the free words behind a failed event (the server's reply, the error), for people;
	// not meant to be parsed. The session token, if it appears in it, is masked too.
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
	// MsgID overrides the Nats-Msg-Id; when empty the contract's "<interactionId>.<sessionId>.<event>"
	// is used. The controller sets it for a failed event without a sessionId: it must stay unique
	// per failure, or the stream's dedupe would swallow the second failure.
	MsgID string `json:"-"`
}

// LogValue keeps the full session token out of logs.
func (e Lifecycle) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("event", string(e.Event)),
		slog.String("interaction", e.InteractionID),
		slog.String("session_id", e.SessionID),
		slog.String("token", connector.MaskToken(e.SessionToken)),
		slog.String("vendor", e.Vendor),
	)
}

// AgentView tells an agent where to see the customer's page of a Genesys session.
//
// Deprecated: use Handoff, of which AgentView is the Genesys view to an agent (AgentView.Handoff
// gives it: Kind HandoffView, Vendor "genesys", URL); Publisher.Handoff publishes it. An AgentView
// is published, serialized and identified exactly as that Handoff: subject
// <prefix>.agent.<agentId>.cobrowse, Nats-Msg-Id "<interactionId>.<sessionId>.view.agent:<agentId>".
type AgentView struct {
	// AgentID is the subject token. It is on the wire too (agentId): decoding fills it.
	AgentID       string    `json:"agentId,omitempty"`
	InteractionID string    `json:"interactionId"`
	SessionID     string    `json:"sessionId"`
	URL           string    `json:"url"`
	At            time.Time `json:"at"`
}

// Handoff is the page message the view is: the Genesys view to the agent.
func (v AgentView) Handoff() Handoff {
	return Handoff{
		Kind:          HandoffView,
		InteractionID: v.InteractionID,
		SessionID:     v.SessionID,
		Vendor:        string(connector.Genesys),
		AgentID:       v.AgentID,
		URL:           v.URL,
		At:            v.At,
	}
}

// LogValue keeps the session token in the URL out of logs, as Handoff.LogValue does.
func (v AgentView) LogValue() slog.Value { return v.Handoff().LogValue() }

// String shows the view as Handoff.String does, without the session token.
func (v AgentView) String() string { return v.Handoff().String() }

// GoString keeps %#v from printing the session token.
func (v AgentView) GoString() string { return "attach.AgentView{" + v.String() + "}" }

// ErrInvalid is wrapped by every refusal of a message whose shape the contract cannot carry.
// Nothing was published; sending it again unchanged fails again.
var ErrInvalid = errors.New("attach: invalid message")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Subjects.

// UpdateSubject is the subject of an interaction's attached-data updates.
func UpdateSubject(prefix, interactionID string) string {
	return prefix + ".interaction." + interactionID + ".attach"
}

// LifecycleSubject is the subject of one lifecycle event of an interaction's co-browse sessions.
func LifecycleSubject(prefix, interactionID string, kind LifecycleKind) string {
	return prefix + ".cobrowse." + interactionID + "." + string(kind)
}

// AgentSubject is the subject on which an agent receives the page messages (handoffs) meant for
// the agent's page: the co-browse views.
func AgentSubject(prefix, agentID string) string {
	return prefix + ".agent." + agentID + ".cobrowse"
}

// CustomerSubject is the subject on which the customer's page of an interaction receives the page
// messages (handoffs) meant for it.
func CustomerSubject(prefix, interactionID string) string {
	return prefix + ".customer." + interactionID + ".cobrowse"
}

// reportingSubjects are the subjects of what reporting reads, kept for long in the reporting
// stream (CC_COBROWSE): the updates, then the lifecycle events.
func reportingSubjects(prefix string) []string {
	return []string{UpdateSubject(prefix, "*"), LifecycleSubject(prefix, "*", "*")}
}

// pageSubjects are the subjects of the page messages, which may carry credentials and are kept
// briefly in a stream of their own (CC_HANDOFF): the agent's, then the customer's.
func pageSubjects(prefix string) []string {
	return []string{AgentSubject(prefix, "*"), CustomerSubject(prefix, "*")}
}

// Message ids.

// UpdateMsgID is the Nats-Msg-Id of an attached-data update.
func UpdateMsgID(interactionID string, seq uint64) string {
	return interactionID + ".attach." + strconv.FormatUint(seq, 10)
}

// LifecycleMsgID is the Nats-Msg-Id of a lifecycle event.
func LifecycleMsgID(interactionID, sessionID string, kind LifecycleKind) string {
	return interactionID + "." + sessionID + "." + string(kind)
}

// AgentViewMsgID is the Nats-Msg-Id of an agent view: that of the Genesys view Handoff to the
// agent, "<interactionId>.<sessionId>.view.agent:<agentId>".
//
// Deprecated: use Handoff.MsgID.
func AgentViewMsgID(interactionID, sessionID, agentID string) string {
	return AgentView{AgentID: agentID, InteractionID: interactionID, SessionID: sessionID}.Handoff().MsgID()
}

// FormatTime renders t as the contract's "at": RFC 3339 in UTC with exactly three fraction
// digits (milliseconds, truncated), e.g. "2026-03-14T09:26:53.589Z".
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// Validation.

// checkToken refuses a value that cannot be one NATS subject token: empty, or holding a token
// separator, a wildcard, whitespace or a control character. Interaction ids come from outside.
func checkToken(what, v string) error {
	if v == "" {
		return invalid("%s is empty", what)
	}
	for _, r := range v {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalid("%s %q is not a NATS subject token (holds %q)", what, v, r)
		}
	}
	return nil
}

// checkHeaderValue refuses a message id that a NATS header cannot carry.
func checkHeaderValue(what, v string) error {
	if v == "" {
		return invalid("%s is empty", what)
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return invalid("%s %q holds a control character", what, v)
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (d Data) validate() error {
	switch d.Associated {
	case "", AssociatedYes, AssociatedNo:
	default:
		return invalid("%s %q is neither %q nor %q", KeyAssociated, d.Associated, AssociatedYes, AssociatedNo)
	}
	if d.SessionsQuantity < 0 {
		return invalid("%s %d is negative", KeySessionsQuantity, d.SessionsQuantity)
	}
	if d.StartTime != "" && !allDigits(d.StartTime) {
		return invalid("%s %q is not a string of digits (epoch ms)", KeyStartTime, d.StartTime)
	}
	if d.Duration != nil && *d.Duration < 0 {
		return invalid("%s %d is negative", KeyDuration, *d.Duration)
	}
	if d.EndReason != "" && !connector.EndReason(d.EndReason).Valid() {
		return invalid("%s %q is not an end reason", KeyEndReason, d.EndReason)
	}
	return nil
}

func (u Update) validate() error {
	if err := checkToken("interactionId", u.InteractionID); err != nil {
		return err
	}
	if u.Seq == 0 {
		return invalid("update of %s: seq is 0 (seq starts at 1)", u.InteractionID)
	}
	if err := u.Data.validate(); err != nil {
		return err
	}
	if _, err := sortChanged(u.Changed); err != nil {
		return err
	}
	return nil
}

// sortChanged returns the changed keys deduplicated and in the fixed key order, never nil.
func sortChanged(changed []string) ([]string, error) {
	out := make([]string, 0, len(changed))
	for _, k := range changed {
		if !slices.Contains(keyOrder[:], k) {
			return nil, invalid("changed key %q is not a co-browse key", k)
		}
	}
	for _, k := range keyOrder {
		if slices.Contains(changed, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (e Lifecycle) validate() error {
	if !e.Event.Valid() {
		return invalid("lifecycle event %q is unknown", e.Event)
	}
	if err := checkToken("interactionId", e.InteractionID); err != nil {
		return err
	}
	switch e.Event {
	case Deactivated:
		if e.Reason == "" {
			return invalid("deactivated event of %s without a reason", e.InteractionID)
		}
		if !connector.EndReason(e.Reason).Valid() {
			return invalid("deactivated event of %s: reason %q is not an end reason", e.InteractionID, e.Reason)
		}
	case Failed:
		if e.Reason == "" {
			return invalid("failed event of %s without a reason", e.InteractionID)
		}
	}
	if e.SessionID == "" && e.MsgID == "" {
		// "<interactionId>..<event>" would be the same id for every session of the interaction,
		// and the stream's dedupe would store only the first.
		return invalid("%s event of %s has neither a sessionId nor a MsgID", e.Event, e.InteractionID)
	}
	if e.ActivationTime < 0 || e.DeactivationTime < 0 {
		return invalid("%s event of %s: negative epoch time", e.Event, e.InteractionID)
	}
	return checkHeaderValue("msg id", e.msgID())
}

func (e Lifecycle) msgID() string {
	if e.MsgID != "" {
		return e.MsgID
	}
	return LifecycleMsgID(e.InteractionID, e.SessionID, e.Event)
}

func (v AgentView) validate() error { return v.Handoff().validate() }

// Serialization. The wire structs fix the field order and types; MarshalJSON on the public types
// makes any json.Marshal of them produce the contract's bytes (and mask the token).

type updateWire struct {
	V             int      `json:"v"`
	InteractionID string   `json:"interactionId"`
	Seq           uint64   `json:"seq"`
	SessionID     string   `json:"sessionId"`
	Vendor        string   `json:"vendor"`
	Data          Data     `json:"data"`
	Changed       []string `json:"changed"`
	At            string   `json:"at"`
}

// minTokenToHide is the shortest session token searched for in free text: a shorter one (a short
// PIN) would also match unrelated numbers, and MaskToken shows none of it in its own field anyway.
const minTokenToHide = 4

type lifecycleWire struct {
	V                int           `json:"v"`
	Event            LifecycleKind `json:"event"`
	InteractionID    string        `json:"interactionId"`
	SessionID        string        `json:"sessionId"`
	SessionToken     string        `json:"sessionToken,omitempty"`
	Vendor           string        `json:"vendor"`
	AgentID          string        `json:"agentId,omitempty"`
	ActivationTime   int64         `json:"activationTime,omitempty"`
	DeactivationTime int64         `json:"deactivationTime,omitempty"`
	Reason           string        `json:"reason,omitempty"`
	Detail           string        `json:"detail,omitempty"`
	At               string        `json:"at"`
}

// encode marshals v without HTML escaping (a URL keeps its '&') and without a trailing newline.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MarshalJSON writes the update as the contract has it: "changed" deduplicated and in the fixed
// key order ([] when empty), "at" in UTC with milliseconds. It refuses unknown changed keys.
func (u Update) MarshalJSON() ([]byte, error) {
	changed, err := sortChanged(u.Changed)
	if err != nil {
		return nil, err
	}
	return encode(updateWire{
		V:             ContractVersion,
		InteractionID: u.InteractionID,
		Seq:           u.Seq,
		SessionID:     u.SessionID,
		Vendor:        u.Vendor,
		Data:          u.Data,
		Changed:       changed,
		At:            FormatTime(u.At),
	})
}

// MarshalJSON writes the event as the contract has it, with the session token masked, in its own
// field and wherever it appears in the reason or the detail.
func (e Lifecycle) MarshalJSON() ([]byte, error) {
	hide := func(s string) string { return s }
	if len(e.SessionToken) >= minTokenToHide {
		hide = strings.NewReplacer(e.SessionToken, connector.MaskToken(e.SessionToken)).Replace
	}
	return encode(lifecycleWire{
		V:                ContractVersion,
		Event:            e.Event,
		InteractionID:    e.InteractionID,
		SessionID:        e.SessionID,
		SessionToken:     connector.MaskToken(e.SessionToken),
		Vendor:           e.Vendor,
		AgentID:          e.AgentID,
		ActivationTime:   e.ActivationTime,
		DeactivationTime: e.DeactivationTime,
		Reason:           hide(e.Reason),
		Detail:           hide(e.Detail),
		At:               FormatTime(e.At),
	})
}

// MarshalJSON writes the view exactly as the Handoff it is (see AgentView.Handoff).
func (v AgentView) MarshalJSON() ([]byte, error) { return v.Handoff().MarshalJSON() }
