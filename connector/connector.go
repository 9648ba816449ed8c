// Package connector is the vendor-neutral contract between the controller (the brain) and the
// co-browse servers it drives: the session events, the end reasons, the errors and the interface
// each vendor implements. It lives here, beside its implementations (connector/gcb, and later
// connector/zoom and connector/cec), because several packages implement it and one package uses it.
//
// The contract knows nothing of NATS, HTTP or CometD: a vendor package turns its wire protocol into
// these types, and the controller never sees the wire.
package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Vendor names a co-browse product.
type Vendor string

// The vendors the daemon knows.
const (
	Genesys Vendor = "genesys"
	Zoom    Vendor = "zoom"
	CEC     Vendor = "cec"
)

// EndReason says why a co-browse session ended. One vocabulary serves every vendor; it is what
// reporting sees as CoBrowseEndReason.
type EndReason string

// The end reasons.
const (
	ParticipantExit        EndReason = "participant_exit"        // the customer or the agent left; the daemon did not cause it
	InteractionTransferred EndReason = "interaction_transferred" // the interaction moved to another agent
	InteractionClosed      EndReason = "interaction_closed"      // the interaction closed
	InteractionTimeout     EndReason = "interaction_timeout"     // the platform, or the daemon's activity timer, timed the interaction out
	NoAgentJoin            EndReason = "no_agent_join"           // no agent joined within the configured time
	ServerLost             EndReason = "server_lost"             // the co-browse node or the Bayeux session was lost and could not be recovered
	JoinFailed             EndReason = "join_failed"             // the Controller's join was refused or failed for good
	Replaced               EndReason = "replaced"                // a new start message on the same interaction replaced this session
	Shutdown               EndReason = "shutdown"                // the daemon stopped the session while shutting down
	OperatorStop           EndReason = "operator_stop"           // an operator asked the daemon to stop the session
)

// Valid reports whether r is one of the known end reasons.
func (r EndReason) Valid() bool {
	switch r {
	case ParticipantExit, InteractionTransferred, InteractionClosed, InteractionTimeout,
		NoAgentJoin, ServerLost, JoinFailed, Replaced, Shutdown, OperatorStop:
		return true
	}
	return false
}

// Role is a participant's role in a co-browse session, numbered as Genesys numbers them.
type Role int

// The roles.
const (
	RoleCustomer   Role = 1 // the browser that shares its page ("master" in old Genesys texts)
	RoleAgent      Role = 2 // the agent view ("slave.html")
	RoleController Role = 3 // the agent application: this daemon
)

func (r Role) String() string {
	switch r {
	case RoleCustomer:
		return "customer"
	case RoleAgent:
		return "agent"
	case RoleController:
		return "controller"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Participant is a user of a co-browse session.
type Participant struct {
	ID   string
	Role Role
	Name string
}

// Trigger is what the daemon knows when it decides to join a session.
type Trigger struct {
	Token         string // the session token from the start message (9 digits for Genesys), kept a string; "" for a request
	InteractionID string // the contact-center interaction the session rides on
	AgentID       string // the interaction's current agent, if known; a vendor may join on its behalf
	// Ready, when set, is what the join waits for at its last step: a connector that implements
	// ReadyCaller calls it once, right before the call that makes the daemon a member of the
	// session (Genesys: /service/session/join, after Get Session, the handshake and the first
	// connect), and when it returns an error, Join returns that error without that call. The
	// controller saves its join marker meanwhile, instead of before the join begins.
	Ready func(ctx context.Context) error
}

// Indexed is implemented by a connector whose sessions the daemon must find by the vendor's own
// session id, because the vendor names only that (Zoom's webhooks): the controller keeps an index
// from session id to interaction for them. Sessions of other vendors are not indexed: nothing
// would read the entry, and writing it is a round trip on every join.
type Indexed interface {
	IndexesSessions()
}

// Prefetcher is implemented by a connector that can begin, ahead of a join, the part of it that
// reads only (Genesys: Get Session, which finds the session's node), so that it runs while the
// controller reads the interaction's state. A Join for the same token that comes soon after uses
// what it found; nothing is joined or changed at the server, and an unused prefetch expires. It
// must not block.
type Prefetcher interface {
	Prefetch(token string)
}

// ReadyCaller is implemented by a connector whose Join calls Trigger.Ready (see there).
type ReadyCaller interface {
	CallsReady()
}

// Handle is everything needed to find a live session again after the daemon restarts, or to stop
// it without a live connection. The controller saves it with the interaction's state. Its common
// fields are plain, so that a saved handle stays readable in the key-value bucket; what only the
// vendor understands (Genesys: the Controller's user token, the node, the stickiness cookie) is in
// Data, opaque to everyone else and saved as it is.
type Handle struct {
	Vendor    Vendor `json:"vendor"`
	Token     string `json:"token"`             // the session token or PIN the session was started with
	SessionID string `json:"sessionId"`         // the session's id for reporting (Genesys sessionHistoryId)
	AgentID   string `json:"agentId,omitempty"` // the agent the session was joined or made for
	// InteractionID is the interaction the session rides on, for the vendor's logs. The
	// controller sets it on every handle it passes.
	InteractionID string `json:"interactionId,omitempty"`
	// Data is the vendor's own data about the session. It may hold credentials (the Genesys user
	// token): never log it.
	Data json.RawMessage `json:"data,omitempty"`
}

// UnmarshalJSON reads a handle, including one saved before vendor data was opaque: the Genesys
// fields it then had at the top level (userToken, nodeUrl, sticky) are moved into Data, under the
// same names, where connector/gcb reads them.
func (h *Handle) UnmarshalJSON(b []byte) error {
	type plain Handle
	var v struct {
		plain
		UserToken string `json:"userToken,omitempty"`
		NodeURL   string `json:"nodeUrl,omitempty"`
		Sticky    string `json:"sticky,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*h = Handle(v.plain)
	if len(h.Data) == 0 && (v.UserToken != "" || v.NodeURL != "" || v.Sticky != "") {
		legacy := struct {
			UserToken string `json:"userToken,omitempty"`
			NodeURL   string `json:"nodeUrl,omitempty"`
			Sticky    string `json:"sticky,omitempty"`
		}{v.UserToken, v.NodeURL, v.Sticky}
		data, err := json.Marshal(legacy)
		if err != nil {
			return err
		}
		h.Data = data
	}
	return nil
}

// Times are the server's activation and deactivation times of a session, when it gave them.
// A zero time means the server did not say.
type Times struct {
	Activation   time.Time
	Deactivation time.Time
}

// EventKind tells what happened to a live session.
type EventKind uint8

// The kinds of session events. A session's event stream ends (its channel is closed) after
// EventDeactivated or EventLost, or after Close.
const (
	// EventParticipantJoined: a user joined after the Controller (Genesys /service/session/joined).
	EventParticipantJoined EventKind = iota + 1
	// EventActivated: the session became active (an agent joined). Times.Activation is set.
	EventActivated
	// EventDeactivated: the session ended, whoever ended it. Times carries what the server sent.
	EventDeactivated
	// EventRejoined: the connection to the server was re-established and the Controller joined
	// again; Handle carries the new user token, which the owner must save.
	EventRejoined
	// EventLost: the session's server connection is gone for good (node lost, re-join refused
	// past its window). The vendor has already tried to stop the session through the routes it
	// still has; Stopped says whether that worked, and when it did not the owner keeps stopping
	// it through StopHandle. Err says why.
	EventLost
	// EventStarted: a session the daemon created for a request (Join without a token) went live
	// at the server: the customer's page started it with what HandoffStart gave it (Zoom's Bring
	// Your Own PIN). Handle carries the session's id now; the owner saves it and counts the
	// session as joined from now. Only a Pending session gives it, as the first and last event of
	// its Events stream, which then closes (its later events come as signals); when the vendor
	// gives up waiting for the page, the stream gives EventLost instead.
	EventStarted
)

func (k EventKind) String() string {
	switch k {
	case EventParticipantJoined:
		return "participant_joined"
	case EventActivated:
		return "activated"
	case EventDeactivated:
		return "deactivated"
	case EventRejoined:
		return "rejoined"
	case EventLost:
		return "lost"
	case EventStarted:
		return "started"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one thing that happened to a live session.
type Event struct {
	Kind        EventKind
	Participant Participant // EventParticipantJoined
	Times       Times       // EventActivated, EventDeactivated
	Handle      Handle      // EventRejoined: the handle to save from now on
	Err         error       // EventLost
	Stopped     bool        // EventLost: the session was stopped at the server (or found ended)
}

// Signal is a report about a session from outside the vendor's connection: the vendor's webhooks
// after the daemon's router, what the customer page or the agent desktop saw. The controller hands
// each to the interaction's live session (Session.Signal), which turns it into events.
type Signal struct {
	Source    string // zoom, customer, agent
	Type      string // session_started, user_joined, user_left, session_ended
	Role      Role   // whose join or leave, when the signal says
	SessionID string // the vendor's session id, when the signal names one
	At        time.Time
	Raw       []byte // the vendor's payload, as received
}

// HandoffKind is what a page message asks of its recipient.
type HandoffKind string

// The kinds of page messages.
const (
	HandoffView  HandoffKind = "view"  // what the recipient opens or uses to see or join the session
	HandoffStart HandoffKind = "start" // what the customer page needs to start a session the daemon created
	HandoffEnd   HandoffKind = "end"   // end the session in the page; no credentials
)

// Handoff is one message to a page: the agent's (AgentID set) or the customer's. Which fields are
// set depends on the vendor; URL, Token, PIN and ConnectParam may carry credentials.
type Handoff struct {
	Kind       HandoffKind
	ToCustomer bool   // the customer page; else the agent AgentID
	AgentID    string // the agent, when not ToCustomer
	URL        string // Genesys slave.html; Zoom desk URL (holds an agent JWT)
	Token      string // a Zoom JWT
	PIN        string // a Zoom PIN
	RoomID     string // CEC
	WSSURL     string // CEC
	// ConnectParam is CEC's connection parameter (a credential).
	ConnectParam string
}

// Session is a co-browse session the daemon has joined as Controller.
//
// Its methods are safe for concurrent use. Events is the single stream of what the server says
// about the session, in order; the session closes the channel when the session is over for it
// (after EventDeactivated or EventLost) or after Close. The owner must keep reading Events until
// then, or the vendor's connection stalls.
type Session interface {
	// Handle returns what to save to find or stop the session later.
	Handle() Handle
	// Participants returns the users the server listed in the Controller's join reply.
	Participants() []Participant
	// Events returns the session's event stream: what the vendor's live connection says.
	Events() <-chan Event
	// Signal turns a signal about the session into the events it means, in order (none when it
	// means nothing new: a vendor whose events come over its own connection, like Genesys, takes
	// nothing from signals). The controller applies them as it applies the events of Events.
	Signal(s Signal) []Event
	// Handoffs returns what the pages get now, for kind: HandoffView for agentID (what the agent
	// opens or uses to see the session; per agent, since a vendor may mint a credential per
	// agent), HandoffStart for the customer page of a session the daemon created, HandoffEnd for
	// both pages when the vendor's session ends only in the browsers. None when the vendor has
	// nothing for that recipient (Genesys: no start, no end; no view without an agent).
	Handoffs(kind HandoffKind, agentID string) []Handoff
	// Stop asks the server to end the session. It returns whatever times the server's reply
	// carried (often none: the deactivation event carries them). Stopping a session that has
	// already ended is not an error.
	Stop(ctx context.Context) (Times, error)
	// Close leaves the server connection without stopping the session and releases everything
	// the session holds. It is safe to call more than once and after the session ended.
	Close(ctx context.Context) error
}

// Feeder is implemented by a session whose events can be handed to its owner without a channel:
// Feed(f) makes the session call f(ev, true) for each event from then on, in order and one call at
// a time, and f(Event{}, false) once when the stream ends (where Events would be closed). Events
// then stays nil. f must not block and must not call the session: it only queues what it gets.
// Call Feed at most once, right after Join or Rejoin returned, before anything is read from
// Events. So a session that is only waiting costs its owner no goroutine parked on a channel and
// no channel buffer.
type Feeder interface {
	Feed(f func(ev Event, ok bool))
}

// Pending is implemented by a session that Join created for a request but that is not live at the
// server yet: the customer's page has to start it with what Handoffs(HandoffStart) gives (Zoom's
// Bring Your Own PIN). While pending, its Handle has no SessionID, its Events stream gives
// EventStarted once the vendor sees the session live, or EventLost when the vendor's bound for the
// page passed, and Stop ends the wait. Rejoin of a pending handle returns a pending session again.
type Pending interface {
	Pending() bool
}

// IsPending reports whether s is a session the daemon created that is not live yet.
func IsPending(s Session) bool {
	p, ok := s.(Pending)
	return ok && p.Pending()
}

// Connector is one vendor's co-browse server, as the controller sees it.
type Connector interface {
	Vendor() Vendor
	// MatchStart reports whether the token of a start message (chat.StartCandidate: the X of
	// {start:X}, as the customer wrote it) is a token of this vendor, and returns it in the form
	// the vendor uses (Genesys: exactly nine digits; a Zoom PIN would be upper-cased). Each vendor
	// owns its syntax: nine digits are a Genesys token on a Genesys interaction and could be a PIN
	// on a Zoom one.
	MatchStart(token string) (string, bool)
	// Join joins the session named by the trigger as Controller. A trigger without a token (a
	// cobrowse_requested event: the bot or the agent asks) asks the vendor to create the session;
	// a vendor that cannot (Genesys: the customer's page creates it) returns ErrUnsupported.
	// Errors wrap one of the sentinels below.
	Join(ctx context.Context, t Trigger) (Session, error)
	// Rejoin joins again a session saved before a restart. While the server refuses (the old
	// connection may still be held) or cannot be reached, the vendor retries within its own
	// re-join window; cancel ctx to give up earlier. It returns an error wrapping ErrNotLive (the
	// session ended meanwhile), ErrNotFound, or the last ErrRefused or ErrUnavailable once the
	// window is over; the owner then stops the session through StopHandle. A live session's
	// re-join is never refused by a circuit breaker that other sessions' failures opened.
	Rejoin(ctx context.Context, h Handle) (Session, error)
	// StopHandle stops a session without a live connection (Genesys: the REST stop with the
	// saved user token). It returns the times the server's reply carried. Like Rejoin, it is
	// never refused by a circuit breaker.
	StopHandle(ctx context.Context, h Handle) (Times, error)
	// EndHandoffs returns the end requests the pages need when a session is stopped through its
	// handle (no live session to ask): for a vendor whose sessions end only in the browsers
	// (Zoom), an end to the customer's page and to agentID's. None for a vendor that stops its
	// sessions at the server (Genesys).
	EndHandoffs(h Handle, agentID string) []Handoff
}

// The sentinel errors every vendor wraps. They drive the controller's decisions: what is retried
// later, what ends a session and with which reason.
var (
	// ErrNotFound: the server does not know the session. Final.
	ErrNotFound = errors.New("co-browse session not found")
	// ErrNotLive: the server knows the session but it has ended. Final. It wraps ErrNotFound, so
	// errors.Is(err, ErrNotFound) holds for both; test ErrNotLive first to tell them apart.
	ErrNotLive = fmt.Errorf("co-browse session no longer live: %w", ErrNotFound)
	// ErrRefused: the server answered and refused (a join for a busy agent, a stop by a
	// non-Controller, a second join). Final; the ServerError's Reason carries the server's words.
	ErrRefused = errors.New("co-browse server refused the request")
	// ErrUnavailable: the server could not be reached or failed (a 5xx, a time-out, an open circuit
	// breaker). Transient: the work is retried later.
	ErrUnavailable = errors.New("co-browse server unavailable")
	// ErrLost: the connection the session depended on is gone and cannot be recovered.
	ErrLost = errors.New("co-browse server connection lost")
	// ErrNotBound: the session the start message names exists but is not bound to this
	// interaction (a Zoom PIN of someone else's session), so joining it would hand the agent
	// another customer's screen. Final; it wraps ErrRefused.
	ErrNotBound = fmt.Errorf("co-browse session not bound to this interaction: %w", ErrRefused)
	// ErrUnsupported: the vendor cannot do what was asked (Genesys cannot create a session for a
	// cobrowse_requested event). Final.
	ErrUnsupported = errors.New("not supported by this co-browse vendor")
)

// ServerError is a failed call to a co-browse server. Its Kind is one of the sentinels above, so
// errors.Is(err, connector.ErrUnavailable) works on it.
type ServerError struct {
	Op     string // what was attempted: "get session", "join", "stop", ...
	Node   string // the node (base URL) the call went to
	Reason string // the server's own words, when it gave any
	Kind   error  // one of the sentinels
	Err    error  // the underlying cause, if any
}

func (e *ServerError) Error() string {
	msg := e.Op + " on " + e.Node + ": " + e.Kind.Error()
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns both the sentinel and the cause.
func (e *ServerError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ReasonOf returns the server's own words carried by err, or err's text when it carries none.
func ReasonOf(err error) string {
	if se, ok := errors.AsType[*ServerError](err); ok && se.Reason != "" {
		return se.Reason
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// MaskToken shows only the last three characters of a session token, user token or PIN, for
// logs and for the lifecycle events reporting consumes: "535176834" becomes "******834". A value of
// six characters or fewer is masked whole, so that a short PIN never shows more than half.
func MaskToken(tok string) string {
	const keep = 3
	if len(tok) <= 2*keep {
		return strings.Repeat("*", len(tok))
	}
	return strings.Repeat("*", len(tok)-keep) + tok[len(tok)-keep:]
}

// CheckBaseURL accepts the base URL of a vendor's server: an absolute http(s) URL with a host, no
// user info (credentials), no query and no fragment. Credentials are refused because the URL
// reaches logs, errors and the pages' URLs; the error quotes the URL without them.
func CheckBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.User != nil {
		u.User = nil
		return fmt.Errorf("%q: must not carry credentials (user info)", u.String())
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: must have no query or fragment", s)
	}
	return nil
}
