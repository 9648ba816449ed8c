package zoom

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// SignalSource is the Source of the signals the daemon's Zoom webhook router publishes: the only
// signals a Zoom session takes.
const SignalSource = "zoom"

// The signal types a Zoom session reads: the four cobrowse.* webhooks, named as EventKind.String
// names them.
const (
	SignalSessionStarted = "session_started"
	SignalUserJoined     = "user_joined"
	SignalUserLeft       = "user_left"
	SignalSessionEnded   = "session_ended"
)

// SignalOf turns a verified webhook delivery into the signal the router publishes for it: Source
// "zoom", Type the event's kind (session_started, user_joined, user_left, session_ended), Role the
// user's, SessionID Zoom's session id, At the time the event is about (Event.At), Raw the body as
// received. ok is false for a delivery that is not one of the four cobrowse events.
func SignalOf(ev Event, body []byte) (s connector.Signal, ok bool) {
	switch ev.Kind {
	case KindSessionStarted, KindUserJoined, KindUserLeft, KindSessionEnded:
	default:
		return connector.Signal{}, false
	}
	return connector.Signal{Source: SignalSource, Type: ev.Kind.String(), Role: connectorRole(ev.Role),
		SessionID: ev.SessionID, At: ev.At(), Raw: body}, true
}

// session is the daemon's record of a Zoom session. There is no connection behind it: Events is
// nil, the events come from Signal, the agents' views are minted on demand, and Stop only stops
// minting (the pages end the session).
type session struct {
	c           *Connector
	log         *slog.Logger
	handle      connector.Handle
	pin         string
	interaction string

	mu           sync.Mutex
	participants []connector.Participant
	activated    bool // EventActivated was given (or an agent was present at the re-join)
	deactivated  bool // EventDeactivated was given
	ending       bool // Stop was called: no more agent tokens
	closed       bool
	times        connector.Times
}

var _ connector.Session = (*session)(nil)

func newSession(c *Connector, h connector.Handle, participants []connector.Participant, activated bool) *session {
	return &session{c: c, handle: h, pin: h.Token, interaction: h.InteractionID, participants: participants, activated: activated,
		log: c.log.With("interaction", h.InteractionID, "session_id", h.SessionID)}
}

// Handle returns the handle: the PIN as Token, Zoom's session id, and Data with both.
func (s *session) Handle() connector.Handle { return s.handle }

// Participants returns the users Zoom listed when the session was joined (or re-joined: the users
// present then).
func (s *session) Participants() []connector.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]connector.Participant(nil), s.participants...)
}

// Events returns nil: Zoom pushes nothing on a connection of the daemon's; the session's events
// come from Signal.
func (s *session) Events() <-chan connector.Event { return nil }

// Signal turns a signal of the Zoom webhook router into the session's events:
//
//   - user_joined of an agent: EventParticipantJoined, then, the first time, EventActivated
//     (Times.Activation: the signal's At, else now); of a customer: EventParticipantJoined;
//   - user_left of the customer: EventDeactivated (the customer left: Zoom ends the session for
//     the agents after their wait, but the co-browse is over for the daemon);
//   - user_left of an agent: nothing, whether others remain or not (the session goes on in Zoom:
//     the agent may open the desk again, another may join);
//   - session_ended: EventDeactivated (Times.Deactivation: the signal's At, else now);
//   - session_started and any other type: nothing.
//
// EventDeactivated is given once; after it, and after Close, nothing. A signal of another source,
// or whose SessionID is set and is not the session's, means nothing (logged at debug). A role the
// signal lacks is read from Raw (the webhook body) when it decodes.
func (s *session) Signal(g connector.Signal) []connector.Event {
	log := s.log.With("signal_source", g.Source, "type", g.Type)
	if g.Source != SignalSource {
		log.Debug("signal of another source: a Zoom session takes only the webhook router's")
		return nil
	}
	if g.SessionID != "" && g.SessionID != s.handle.SessionID {
		log.Debug("signal about another Zoom session; ignored", "signal_session_id", g.SessionID)
		return nil
	}
	at := g.At
	if at.IsZero() {
		at = s.c.now()
	}
	p := connector.Participant{Role: g.Role}
	if len(g.Raw) > 0 {
		if ev, err := DecodeEvent(g.Raw); err == nil && (ev.SessionID == "" || ev.SessionID == s.handle.SessionID) {
			p.ID, p.Name = ev.UserID, ev.UserName
			if p.Role == 0 {
				p.Role = connectorRole(ev.Role)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.deactivated {
		log.Debug("signal after the session ended or was closed; ignored")
		return nil
	}
	switch g.Type {
	case SignalUserJoined:
		if p.Role != connector.RoleAgent && p.Role != connector.RoleCustomer {
			log.Debug("user_joined without a known role; ignored")
			return nil
		}
		evs := []connector.Event{{Kind: connector.EventParticipantJoined, Participant: p}}
		if p.Role == connector.RoleAgent && !s.activated {
			s.activated = true
			s.times.Activation = at
			evs = append(evs, connector.Event{Kind: connector.EventActivated, Times: connector.Times{Activation: at}})
		}
		return evs
	case SignalUserLeft:
		switch p.Role {
		case connector.RoleCustomer:
			log.Info("the customer left the Zoom session: the co-browse is over")
			return s.deactivateLocked(at)
		case connector.RoleAgent:
			log.Debug("an agent left the Zoom session; it goes on")
		default:
			log.Debug("user_left without a known role; ignored")
		}
		return nil
	case SignalSessionEnded:
		return s.deactivateLocked(at)
	}
	return nil
}

// deactivateLocked gives EventDeactivated. s.mu is held.
func (s *session) deactivateLocked(at time.Time) []connector.Event {
	s.deactivated = true
	s.times.Deactivation = at
	return []connector.Event{{Kind: connector.EventDeactivated, Times: s.times}}
}

// Handoffs returns what the pages get:
//
//   - HandoffView for an agent: a fresh agent JWT (AgentTokenRequest: role 2, user_id derived from
//     the interaction and the agent, user_name the agent id fitted) in the desk URL
//     (DeskURL?access_token=<JWT>), and the PIN (for an agent page built on the npm SDK). None
//     without an agent, and none once the session is stopping or ended: no more tokens for it.
//   - HandoffEnd: an end to the customer's page and, when agentID is set, one to the agent's; no
//     credentials.
//   - HandoffStart: none (the customer's page started the session).
func (s *session) Handoffs(kind connector.HandoffKind, agentID string) []connector.Handoff {
	switch kind {
	case connector.HandoffView:
		if agentID == "" {
			return nil
		}
		// The lock is held while minting, so that no token is minted once Stop has returned.
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ending || s.deactivated || s.closed {
			s.log.Debug("no agent view: the session is stopping or over", "agent", agentID)
			return nil
		}
		tok, err := s.c.minter.Mint(AgentTokenRequest(s.interaction, agentID))
		if err != nil {
			s.log.Error("minting the agent's token failed", "agent", agentID, "error", err)
			return nil
		}
		s.log.Debug("agent view", "agent", agentID, "agent_token", tok)
		if s.c.cfg.AgentSDK {
			return []connector.Handoff{{Kind: connector.HandoffView, AgentID: agentID, Token: tok.JWT, PIN: s.pin}}
		}
		return []connector.Handoff{{Kind: connector.HandoffView, AgentID: agentID, URL: s.c.deskURL(tok.JWT), PIN: s.pin}}
	case connector.HandoffEnd:
		return endHandoffs(agentID)
	}
	return nil
}

// endHandoffs are the end requests: to the customer's page and, when agentID is set, the agent's.
func endHandoffs(agentID string) []connector.Handoff {
	out := []connector.Handoff{{Kind: connector.HandoffEnd, ToCustomer: true}}
	if agentID != "" {
		out = append(out, connector.Handoff{Kind: connector.HandoffEnd, AgentID: agentID})
	}
	return out
}

// Stop marks the session as ending: no more agent tokens. Zoom has no call that ends a session;
// the controller sends the pages the end requests (Handoffs(HandoffEnd)) and waits for the
// session_ended signal. It returns no times, or those of the deactivation when the session had
// already ended.
func (s *session) Stop(ctx context.Context) (connector.Times, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deactivated {
		return s.times, nil
	}
	if !s.ending {
		s.ending = true
		s.log.InfoContext(ctx, "stopping: Zoom has no server-side end; the pages are asked to end the session")
	}
	return connector.Times{}, nil
}

// Close forgets the session: nothing is held and nothing is called. After it, signals mean
// nothing and no view is minted.
func (s *session) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
