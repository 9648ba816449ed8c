package cec

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The signal sources a CEC session reads: the pages' backends, on cc.signal.<interactionId>.customer
// and cc.signal.<interactionId>.agent. CEC itself sends the daemon nothing (no webhook is
// documented).
const (
	SignalSourceCustomer = "customer"
	SignalSourceAgent    = "agent"
)

// The signal types a CEC session reads.
const (
	SignalUserJoined   = "user_joined"   // from the agent's page: its replayer connected
	SignalUserLeft     = "user_left"     // from either page: its side left the room
	SignalSessionEnded = "session_ended" // from either page: the room ended (an end, a release)
)

// session is the daemon's record of a CEC room. There is no connection behind it: Events is nil,
// the events come from the pages' signals, the pages' messages are the connection info Join got,
// and Stop releases the room (when a release URL is configured) or leaves the end to the pages.
type session struct {
	c         *Connector
	log       *slog.Logger
	handle    connector.Handle
	room      string
	agent     string
	customer  *side // nil: unknown (a handle saved without it)
	agentSide *side

	stopMu sync.Mutex // one release at a time

	mu          sync.Mutex
	activated   bool // EventActivated was given
	deactivated bool // EventDeactivated was given
	ending      bool // Stop was called: no more start or view messages
	released    bool // the room was released at the server
	closed      bool
	times       connector.Times
}

var _ connector.Session = (*session)(nil)

func newSession(c *Connector, h connector.Handle, d handleData) *session {
	return &session{c: c, handle: h, room: d.RoomID, agent: h.AgentID, customer: d.Customer, agentSide: d.Agent,
		log: c.log.With("interaction", h.InteractionID, "session_id", d.RoomID, "agent", h.AgentID)}
}

func (s *session) String() string {
	return fmt.Sprintf("cec.session{Room:%q Agent:%q}", s.room, s.agent)
}

// Format prints String for every verb: the session holds the pages' connectParams.
func (s *session) Format(f fmt.State, verb rune) { formatAs(f, verb, s.String()) }

// Handle returns the handle: no Token (CEC has none), the room id as SessionID, the agent and the
// interaction of the trigger, and Data with the room and both sides' connection info.
func (s *session) Handle() connector.Handle { return s.handle }

// Participants returns the customer (the room is made for the interaction's customer) and, once
// its page reported its join, the agent. The agent is not listed before: the controller takes an
// agent listed at a join or a re-join as already activated, and CEC's agent has only been given
// the room then, not joined it.
func (s *session) Participants() []connector.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []connector.Participant{{ID: s.handle.InteractionID, Role: connector.RoleCustomer, Name: "customer"}}
	if s.activated && s.agent != "" {
		out = append(out, connector.Participant{ID: s.agent, Role: connector.RoleAgent, Name: s.agent})
	}
	return out
}

// Events returns nil: CEC pushes nothing to the daemon; the session's events come from Signal.
func (s *session) Events() <-chan connector.Event { return nil }

// Signal turns a page's signal into the session's events:
//
//   - user_joined from the agent's page (Role agent or unset): the agent's replayer connected:
//     EventActivated the first time (Times.Activation: the signal's At, else now), nothing after;
//   - user_left or session_ended from either page: EventDeactivated (Times.Deactivation: the
//     signal's At, else now): one side left, and a room has one recorder and one replayer, so the
//     co-browse is over;
//   - anything else (user_joined from the customer's page, session_started, other types): nothing.
//
// EventDeactivated is given once; after it, and after Close, nothing. A signal of another source
// (zoom, operator), or whose SessionID is set and is not the room (a page of an earlier session
// of the interaction reporting late), means nothing (logged at debug). Stop does not end the
// session for Signal: after a release the pages see the room close and report it, and that
// report is the deactivation.
func (s *session) Signal(g connector.Signal) []connector.Event {
	log := s.log.With("signal_source", g.Source, "type", g.Type)
	if g.Source != SignalSourceCustomer && g.Source != SignalSourceAgent {
		log.Debug("signal of another source: a CEC session takes only its pages'")
		return nil
	}
	if g.SessionID != "" && g.SessionID != s.room {
		log.Debug("signal about another CEC room; ignored", "signal_session_id", g.SessionID)
		return nil
	}
	at := g.At
	if at.IsZero() {
		at = s.c.now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.deactivated {
		log.Debug("signal after the session ended or was closed; ignored")
		return nil
	}
	switch g.Type {
	case SignalUserJoined:
		if g.Source != SignalSourceAgent || (g.Role != 0 && g.Role != connector.RoleAgent) {
			log.Debug("user_joined not of the agent's replayer; nothing to do", "role", g.Role.String())
			return nil
		}
		if s.activated {
			return nil
		}
		s.activated = true
		s.times.Activation = at
		log.Info("the agent's view joined the CEC room: the session is active")
		return []connector.Event{{Kind: connector.EventActivated, Times: connector.Times{Activation: at}}}
	case SignalUserLeft, SignalSessionEnded:
		s.deactivated = true
		s.times.Deactivation = at
		log.Info("a page reports the CEC room over")
		return []connector.Event{{Kind: connector.EventDeactivated, Times: s.times}}
	}
	return nil
}

// Handoffs returns what the pages get:
//
//   - HandoffStart: one to the customer's page with the recorder's room, wssUrlOut and
//     connectParam;
//   - HandoffView for the session's agent: the replayer's room, wssUrlOut and connectParam. None
//     for another agent: the connection info was asked for this agent (workNo), and a transfer
//     ends the session (the new agent gets a room of its own on a new request);
//   - HandoffEnd: an end to the customer's page, to the session's agent and to agentID when it is
//     another; no credentials.
//
// No start and no view once Stop was called, the session ended, or it was closed; none when the
// handle a re-joined session came from lacked that side's connection info.
func (s *session) Handoffs(kind connector.HandoffKind, agentID string) []connector.Handoff {
	switch kind {
	case connector.HandoffEnd:
		return endHandoffs(s.agent, agentID)
	case connector.HandoffStart, connector.HandoffView:
	default:
		return nil
	}
	s.mu.Lock()
	over := s.ending || s.deactivated || s.closed
	s.mu.Unlock()
	if over {
		s.log.Debug("no page message: the session is stopping or over", "kind", string(kind))
		return nil
	}
	if kind == connector.HandoffStart {
		if s.customer == nil {
			return nil
		}
		return []connector.Handoff{{Kind: connector.HandoffStart, ToCustomer: true, RoomID: s.room,
			WSSURL: s.customer.WSSURL, ConnectParam: s.customer.ConnectParam}}
	}
	if agentID == "" || agentID != s.agent {
		if agentID != "" {
			s.log.Debug("no view for another agent than the session's: a transfer ends a CEC session", "to_agent", agentID)
		}
		return nil
	}
	if s.agentSide == nil {
		return nil
	}
	return []connector.Handoff{{Kind: connector.HandoffView, AgentID: agentID, RoomID: s.room,
		WSSURL: s.agentSide.WSSURL, ConnectParam: s.agentSide.ConnectParam}}
}

// Stop ends the session. With a release URL it calls releaseConnection for the room (no circuit
// breaker) and returns Times{Deactivation: now}: the room ended at the server then; the pages see
// it close and report it. Without one it calls nothing and returns no times: the controller sends
// the pages the end messages (Handoffs(HandoffEnd)) and waits for their report. Either way no
// start or view is given afterwards. Stopping a session that ended, or was released already, is
// not an error and calls nothing. Errors are *connector.ServerError with Op "stop".
func (s *session) Stop(ctx context.Context) (connector.Times, error) {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	s.mu.Lock()
	switch {
	case s.deactivated:
		t := s.times
		s.mu.Unlock()
		return t, nil
	case s.released:
		t := connector.Times{Deactivation: s.times.Deactivation}
		s.mu.Unlock()
		return t, nil
	}
	s.ending = true
	s.mu.Unlock()
	if s.c.cfg.ReleaseURL == "" {
		s.log.InfoContext(ctx, "stopping: no release URL; the pages are asked to end the session")
		return connector.Times{}, nil
	}
	if err := s.c.api.release(ctx, s.room); err != nil {
		s.log.WarnContext(ctx, "stopping: release failed", "error", err)
		return connector.Times{}, relabel(opStop, err)
	}
	now := s.c.now()
	s.mu.Lock()
	s.released = true
	s.times.Deactivation = now
	s.mu.Unlock()
	s.log.InfoContext(ctx, "stopped: the CEC room was released")
	return connector.Times{Deactivation: now}, nil
}

// Close forgets the session: nothing is released at the server (the room lives on for a daemon
// that re-joins it) and nothing is called. After it, signals mean nothing and no start or view is
// given.
func (s *session) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
