package controller

import (
	"errors"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The controller's decisions are pure functions of the state, the input and the time. Each
// returns what to do and a named reason that the actor logs, so that a table test can pin every
// branch (see decide_test.go).

// startAction is what a start message asks for.
type startAction int

const (
	startJoin        startAction = iota + 1 // no live session: join the token
	startIgnore                             // nothing to do (see the reason)
	startReplaceJoin                        // another session is live: stop it as replaced, then join
)

// decideStart decides what a start message with token does to the interaction.
func decideStart(s *State, token string) (startAction, string) {
	switch {
	case s.Closed:
		return startIgnore, "interaction closed"
	case s.Live == nil:
		return startJoin, "no live session"
	case s.Live.Handle.Token == token:
		return startIgnore, "token already live"
	default:
		return startReplaceJoin, "another session is live"
	}
}

// eventAction is what an interaction event asks for.
type eventAction struct {
	stop    connector.EndReason // non-empty: stop the live session with this reason
	agentID string              // non-empty: the interaction's agent is now this one
	close   bool                // the interaction is over: mark it closed
	view    bool                // announce the agent view to agentID (a live, joined session)
	request bool                // co-browse was asked for: start a session the vendor creates
	why     string
}

// decideEvent decides what an interaction event does.
func decideEvent(s *State, ev *chat.Event) eventAction {
	live := s.Live != nil
	switch ev.Type {
	case chat.EventCreated:
		return eventAction{agentID: ev.AgentID, view: live && ev.AgentID != "" && ev.AgentID != s.AgentID, why: "created"}
	case chat.EventAssigned:
		return eventAction{agentID: ev.AgentID, view: live && ev.AgentID != "" && ev.AgentID != s.AgentID, why: "assigned"}
	case chat.EventTransferred:
		a := eventAction{agentID: ev.ToAgentID, why: "transferred"}
		if live {
			a.stop = connector.InteractionTransferred
		}
		return a
	case chat.EventClosed:
		a := eventAction{close: true, why: "closed"}
		if live {
			a.stop = connector.InteractionClosed
		}
		return a
	case chat.EventTimeout:
		a := eventAction{why: "interaction timeout"}
		if live {
			a.stop = connector.InteractionTimeout
		}
		return a
	case chat.EventCobrowseRequested:
		if live {
			return eventAction{why: "co-browse requested while a session is live: nothing to do"}
		}
		if s.Closed {
			return eventAction{why: "co-browse requested on a closed interaction: ignored"}
		}
		return eventAction{request: true, why: "co-browse requested"}
	}
	// activity, and any type the chat package let through: activity only.
	return eventAction{why: "activity"}
}

// endReason names why a live session ended when the server says it deactivated: the daemon's own
// stop reason if it asked for the stop, else somebody in the session left.
func endReason(l *Live) connector.EndReason {
	if l != nil && l.StopReason != "" {
		return l.StopReason
	}
	return connector.ParticipantExit
}

// Timers is the controller's timing policy.
type Timers struct {
	NoAgentJoin time.Duration // a joined session no agent joined within this is stopped
	Inactivity  time.Duration // an interaction with no chat or event within this is timed out
}

// decideDeadline reports whether a live session is overdue at now, and why. The actor's timers
// call it, and so does the periodic sweep, which catches anything a timer missed.
func decideDeadline(s *State, t Timers, now time.Time) (connector.EndReason, bool) {
	l := s.Live
	if l == nil {
		return "", false
	}
	if l.Phase == PhaseStopping {
		// Only a stop that waits for the vendor's word has a deadline: its end wait.
		return l.StopReason, !l.StopBy.IsZero() && !now.Before(l.StopBy)
	}
	if l.Phase == PhaseJoined && t.NoAgentJoin > 0 && !now.Before(l.JoinedAt.Add(t.NoAgentJoin)) {
		return connector.NoAgentJoin, true
	}
	if t.Inactivity > 0 && !s.LastActivity.IsZero() && !now.Before(s.LastActivity.Add(t.Inactivity)) {
		return connector.InteractionTimeout, true
	}
	return "", false
}

// nextDeadline is when decideDeadline may next say yes: the earliest pending deadline, or the
// zero time when none is pending.
func nextDeadline(s *State, t Timers) time.Time {
	l := s.Live
	if l == nil {
		return time.Time{}
	}
	if l.Phase == PhaseStopping {
		return l.StopBy // zero unless the stop waits for the vendor's word
	}
	var next time.Time
	if l.Phase == PhaseJoined && t.NoAgentJoin > 0 {
		next = l.JoinedAt.Add(t.NoAgentJoin)
	}
	if t.Inactivity > 0 && !s.LastActivity.IsZero() {
		if d := s.LastActivity.Add(t.Inactivity); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next
}

// joinOutcome classifies a failed join.
type joinOutcome int

const (
	joinRetry  joinOutcome = iota + 1 // the server is unavailable: retry the start message later
	joinFailed                        // the server refused or does not know the session: end as join_failed
)

// decideJoinError decides what a failed join means. lastAttempt is set when the inbound message
// will not be delivered again: a transient failure then ends the attempt too.
func decideJoinError(err error, lastAttempt bool) (joinOutcome, string) {
	switch {
	case errors.Is(err, connector.ErrUnsupported):
		return joinFailed, "not supported by the vendor"
	case errors.Is(err, connector.ErrNotLive):
		return joinFailed, "session no longer live"
	case errors.Is(err, connector.ErrNotFound):
		return joinFailed, "session not found"
	case errors.Is(err, connector.ErrRefused):
		return joinFailed, "server refused"
	case lastAttempt:
		return joinFailed, "server unavailable on the last delivery"
	default:
		return joinRetry, "server unavailable"
	}
}
