package controller

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

func live(token string, phase Phase) *Live {
	return &Live{Handle: connector.Handle{Token: token}, Phase: phase, JoinedAt: t0}
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestDecideStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state State
		want  startAction
		why   string
	}{
		{"no session", State{}, startJoin, "no live session"},
		{"same token", State{Live: live("123456789", PhaseActive)}, startIgnore, "token already live"},
		{"other token", State{Live: live("987654321", PhaseJoined)}, startReplaceJoin, "another session is live"},
		{"closed", State{Closed: true}, startIgnore, "interaction closed"},
	} {
		got, why := decideStart(&tc.state, "123456789")
		if got != tc.want || why != tc.why {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, got, why, tc.want, tc.why)
		}
	}
}

func TestDecideEvent(t *testing.T) {
	withLive := State{AgentID: "a1", Live: live("123456789", PhaseActive)}
	for _, tc := range []struct {
		name  string
		state State
		ev    chat.Event
		want  eventAction
	}{
		{"created names the agent", State{}, chat.Event{Type: chat.EventCreated, AgentID: "a1"}, eventAction{agentID: "a1", why: "created"}},
		{"assigned during a session announces the view", withLive, chat.Event{Type: chat.EventAssigned, AgentID: "a2"}, eventAction{agentID: "a2", view: true, why: "assigned"}},
		{"assigned to the same agent", withLive, chat.Event{Type: chat.EventAssigned, AgentID: "a1"}, eventAction{agentID: "a1", why: "assigned"}},
		{"transferred stops", withLive, chat.Event{Type: chat.EventTransferred, ToAgentID: "a2"}, eventAction{stop: connector.InteractionTransferred, agentID: "a2", why: "transferred"}},
		{"transferred without a session", State{}, chat.Event{Type: chat.EventTransferred, ToAgentID: "a2"}, eventAction{agentID: "a2", why: "transferred"}},
		{"closed stops and closes", withLive, chat.Event{Type: chat.EventClosed}, eventAction{stop: connector.InteractionClosed, close: true, why: "closed"}},
		{"closed without a session", State{}, chat.Event{Type: chat.EventClosed}, eventAction{close: true, why: "closed"}},
		{"timeout stops", withLive, chat.Event{Type: chat.EventTimeout}, eventAction{stop: connector.InteractionTimeout, why: "interaction timeout"}},
		{"timeout without a session", State{}, chat.Event{Type: chat.EventTimeout}, eventAction{why: "interaction timeout"}},
		{"activity", withLive, chat.Event{Type: chat.EventActivity}, eventAction{why: "activity"}},
		{"co-browse requested", State{}, chat.Event{Type: chat.EventCobrowseRequested}, eventAction{request: true, why: "co-browse requested"}},
		{"co-browse requested during a session", withLive, chat.Event{Type: chat.EventCobrowseRequested}, eventAction{why: "co-browse requested while a session is live: nothing to do"}},
		{"co-browse requested when closed", State{Closed: true}, chat.Event{Type: chat.EventCobrowseRequested}, eventAction{why: "co-browse requested on a closed interaction: ignored"}},
	} {
		if got := decideEvent(&tc.state, &tc.ev); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestDecideDeadline(t *testing.T) {
	timers := Timers{NoAgentJoin: 3 * time.Minute, Inactivity: 30 * time.Minute}
	for _, tc := range []struct {
		name   string
		state  State
		now    time.Time
		reason connector.EndReason
		due    bool
		next   time.Time
	}{
		{"no session", State{LastActivity: t0}, t0.Add(time.Hour), "", false, time.Time{}},
		{"joined, before the no-agent deadline", State{Live: live("1", PhaseJoined), LastActivity: t0}, t0.Add(179 * time.Second), "", false, t0.Add(3 * time.Minute)},
		{"joined, at the no-agent deadline", State{Live: live("1", PhaseJoined), LastActivity: t0}, t0.Add(3 * time.Minute), connector.NoAgentJoin, true, t0.Add(3 * time.Minute)},
		{"active, no-agent deadline does not apply", State{Live: live("1", PhaseActive), LastActivity: t0}, t0.Add(10 * time.Minute), "", false, t0.Add(30 * time.Minute)},
		{"active, inactive too long", State{Live: live("1", PhaseActive), LastActivity: t0}, t0.Add(30 * time.Minute), connector.InteractionTimeout, true, t0.Add(30 * time.Minute)},
		{"stopping: the close owns it", State{Live: live("1", PhaseStopping), LastActivity: t0}, t0.Add(time.Hour), "", false, time.Time{}},
		{"stopping, waiting for the vendor's word", State{Live: stoppingUntil(t0.Add(30*time.Second), connector.InteractionClosed), LastActivity: t0}, t0.Add(29 * time.Second), connector.InteractionClosed, false, t0.Add(30 * time.Second)},
		{"stopping, the end wait is over", State{Live: stoppingUntil(t0.Add(30*time.Second), connector.InteractionClosed), LastActivity: t0}, t0.Add(30 * time.Second), connector.InteractionClosed, true, t0.Add(30 * time.Second)},
		{"inactivity earlier than no-agent", State{Live: live("1", PhaseJoined), LastActivity: t0.Add(-29 * time.Minute)}, t0.Add(time.Minute), connector.InteractionTimeout, true, t0.Add(time.Minute)},
	} {
		reason, due := decideDeadline(&tc.state, timers, tc.now)
		if due != tc.due || (due && reason != tc.reason) {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, reason, due, tc.reason, tc.due)
		}
		if next := nextDeadline(&tc.state, timers); !next.Equal(tc.next) {
			t.Errorf("%s: next deadline %v, want %v", tc.name, next, tc.next)
		}
	}
	if _, due := decideDeadline(&State{Live: live("1", PhaseJoined), LastActivity: t0}, Timers{}, t0.Add(24*time.Hour)); due {
		t.Error("zero timers must never fire")
	}
}

func TestDecideJoinError(t *testing.T) {
	unavailable := &connector.ServerError{Kind: connector.ErrUnavailable}
	for _, tc := range []struct {
		err  error
		last bool
		want joinOutcome
	}{
		{&connector.ServerError{Kind: connector.ErrNotFound}, false, joinFailed},
		{&connector.ServerError{Kind: connector.ErrUnsupported}, false, joinFailed},
		{&connector.ServerError{Kind: connector.ErrNotLive}, false, joinFailed},
		{&connector.ServerError{Kind: connector.ErrRefused, Reason: "agent busy"}, false, joinFailed},
		{unavailable, false, joinRetry},
		{unavailable, true, joinFailed},
		{errors.New("anything else"), false, joinRetry},
	} {
		if got, _ := decideJoinError(tc.err, tc.last); got != tc.want {
			t.Errorf("%v last=%v: got %v, want %v", tc.err, tc.last, got, tc.want)
		}
	}
}

func TestEndReason(t *testing.T) {
	if r := endReason(&Live{}); r != connector.ParticipantExit {
		t.Errorf("no stop of ours: %s", r)
	}
	if r := endReason(&Live{StopReason: connector.Replaced}); r != connector.Replaced {
		t.Errorf("our stop: %s", r)
	}
}

func TestAttachDataAndChangedKeys(t *testing.T) {
	st := State{Sessions: 1, SessionID: "h1", Associated: "Yes"}
	joined := st.data()
	if joined.StartTime != "" || joined.Duration != nil || joined.EndReason != "" {
		t.Fatalf("join data has keys without values: %+v", joined)
	}
	st.FirstStart = time.UnixMilli(1368722791040)
	active := st.data()
	if active.StartTime != "1368722791040" {
		t.Fatalf("start time %q", active.StartTime)
	}
	if got := changedKeys(joined, active); !slices.Equal(got, []string{attach.KeyStartTime}) {
		t.Fatalf("changed %v", got)
	}
	st.Associated, st.Ended, st.DurationMs, st.EndReason = "No", 1, 29889, connector.ParticipantExit
	ended := st.data()
	if *ended.Duration != 30 {
		t.Fatalf("duration %d s for 29889 ms", *ended.Duration)
	}
	if got := changedKeys(active, ended); !slices.Equal(got, []string{attach.KeyAssociated, attach.KeyDuration, attach.KeyEndReason}) {
		t.Fatalf("changed %v", got)
	}
	if got := changedKeys(ended, ended); len(got) != 0 {
		t.Fatalf("no change reported %v", got)
	}
	for ms, want := range map[int64]int64{0: 0, -5: 0, 499: 0, 500: 1, 1499: 1, 90000: 90} {
		if got := durationSeconds(ms); got != want {
			t.Errorf("durationSeconds(%d) = %d, want %d", ms, got, want)
		}
	}
}

func TestSeenIsBounded(t *testing.T) {
	var st State
	for i := range seenCap + 10 {
		st.remember(string(rune('a'+i%26)) + string(rune('0'+i/26)))
	}
	if len(st.Seen) != seenCap {
		t.Fatalf("%d ids kept", len(st.Seen))
	}
	if st.seen("a0") || !st.seen(st.Seen[len(st.Seen)-1]) {
		t.Fatal("oldest id kept or newest dropped")
	}
}

func stoppingUntil(by time.Time, reason connector.EndReason) *Live {
	l := live("1", PhaseStopping)
	l.StopBy, l.StopReason = by, reason
	return l
}
