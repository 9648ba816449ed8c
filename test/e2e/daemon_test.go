package e2e

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// joinSession plays a customer who starts co-browse on node 1 and posts the start message, and
// checks the join-time messages: joined, the attach with the join-time keys, the agent view.
func (e *env) joinSession(iid, agent string, wantQuantity int) *gcbtest.Session {
	e.t.Helper()
	s, err := e.cluster.CreateSession(1)
	if err != nil {
		e.t.Fatal(err)
	}
	e.startMsg(iid, s.Token())
	joined := e.expectLifecycle(iid, attach.Joined)
	if joined.SessionID != s.HistoryID() || joined.SessionToken != "******"+s.Token()[6:] {
		e.t.Fatalf("joined event: %+v (server: %s)", joined, s.HistoryID())
	}
	u := e.expectUpdate(iid)
	if u.Data.Associated != "Yes" || u.Data.SessionsQuantity != wantQuantity || u.Data.SessionID != s.HistoryID() || u.SessionID != s.HistoryID() {
		e.t.Fatalf("join attach: %+v", u)
	}
	if agent != "" {
		to, v := e.expectAgentView(iid)
		if to != agent || v.SessionID != s.HistoryID() || !strings.Contains(v.URL, "/slave.html#") || !strings.Contains(v.URL, s.Token()) {
			e.t.Fatalf("agent view to %s: %+v", to, v)
		}
	}
	e.awaitJoinSaved(iid, s.HistoryID())
	return s
}

// awaitJoinSaved waits until the interaction's state, read through the sessions.get endpoint,
// records the live session historyID: a join's messages are published before its state is saved
// (the join marker reserved their ids), so the attach can reach the test a moment before the
// daemon's status, its session list, or a restart would see the session.
func (e *env) awaitJoinSaved(iid, historyID string) {
	e.t.Helper()
	e.waitUntil("the state of "+iid+" to record its session", func() bool {
		data, code, _ := e.request(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"`+iid+`"}`)
		var got daemon.StateSummary
		return code == "" && json.Unmarshal(data, &got) == nil && got.Live != nil && got.SessionID == historyID
	})
}

// activate plays the agent joining from the agent view, and checks activated and its attach.
func (e *env) activate(iid string, s *gcbtest.Session, agent string) attach.Update {
	e.t.Helper()
	if err := s.AgentJoin(agent, agent); err != nil {
		e.t.Fatal(err)
	}
	act := e.expectLifecycle(iid, attach.Activated)
	serverAct, _ := s.Times()
	if act.ActivationTime != serverAct.UnixMilli() {
		e.t.Fatalf("activated at %d, server says %d", act.ActivationTime, serverAct.UnixMilli())
	}
	return e.expectUpdate(iid)
}

// expectEnd checks the deactivated event and the final attach.
func (e *env) expectEnd(iid, reason string) attach.Update {
	e.t.Helper()
	l := e.expectLifecycle(iid, attach.Deactivated)
	if l.Reason != reason {
		e.t.Fatalf("deactivated with reason %q, want %q", l.Reason, reason)
	}
	u := e.expectUpdate(iid)
	if u.Data.Associated != "No" || u.Data.EndReason != reason || u.Data.Duration == nil {
		e.t.Fatalf("final attach: %+v", u.Data)
	}
	return u
}

func TestStartMessageToActivated(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	e.event("i-1", chat.EventCreated, "agent-1")
	e.say("i-1", chat.RoleCustomer, "hello, the form is broken")
	s := e.joinSession("i-1", "agent-1", 1)
	u := e.activate("i-1", s, "agent-1")
	act, _ := s.Times()
	if u.Data.StartTime != strconv.FormatInt(act.UnixMilli(), 10) || !slices.Equal(u.Changed, []string{attach.KeyStartTime}) || u.Seq != 2 {
		t.Fatalf("activated attach: %+v", u)
	}
	if s.State() != gcbtest.StateActive {
		t.Fatalf("server state %v", s.State())
	}
}

func TestEndPaths(t *testing.T) {
	type path struct {
		name     string
		mutate   func(*configs.Config)
		activate bool
		end      func(e *env, s *gcbtest.Session)
		reason   string
		endedBy  []string // what the server says ended it
	}
	paths := []path{
		{name: "transferred", activate: true, reason: "interaction_transferred", endedBy: []string{"controller"},
			end: func(e *env, s *gcbtest.Session) { e.event("i-1", chat.EventTransferred, "agent-2") }},
		{name: "closed", activate: true, reason: "interaction_closed", endedBy: []string{"controller"},
			end: func(e *env, s *gcbtest.Session) { e.event("i-1", chat.EventClosed, "") }},
		{name: "timeout event", activate: true, reason: "interaction_timeout", endedBy: []string{"controller"},
			end: func(e *env, s *gcbtest.Session) { e.event("i-1", chat.EventTimeout, "") }},
		{name: "inactivity", activate: true, reason: "interaction_timeout", endedBy: []string{"controller"},
			mutate: func(c *configs.Config) { c.Controller.Inactivity = d(1500 * time.Millisecond) },
			end:    func(e *env, s *gcbtest.Session) {}},
		{name: "no agent join", activate: false, reason: "no_agent_join", endedBy: []string{"controller"},
			mutate: func(c *configs.Config) { c.Controller.NoAgentJoin = d(1500 * time.Millisecond) },
			end:    func(e *env, s *gcbtest.Session) {}},
		{name: "participant exit", activate: true, reason: "participant_exit", endedBy: []string{"agent"},
			end: func(e *env, s *gcbtest.Session) {
				if err := s.AgentExit(); err != nil {
					e.t.Fatal(err)
				}
			}},
		{name: "server lost", activate: true, reason: "server_lost", endedBy: []string{"node"},
			end: func(e *env, s *gcbtest.Session) { s.Node().Kill() }},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t, gcbtest.Options{}, p.mutate)
			e.startDaemon()
			e.event("i-1", chat.EventAssigned, "agent-1")
			s := e.joinSession("i-1", "agent-1", 1)
			if p.activate {
				e.activate("i-1", s, "agent-1")
			}
			p.end(e, s)
			u := e.expectEnd("i-1", p.reason)
			if p.activate && u.Data.StartTime == "" {
				t.Fatalf("CoBrowseStartTime lost: %+v", u.Data)
			}
			e.waitEnded(s)
			if !slices.Contains(p.endedBy, s.EndedBy()) {
				t.Fatalf("server says the session was ended by %q, want %v", s.EndedBy(), p.endedBy)
			}
		})
	}
}

func TestReplacedByANewToken(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	first := e.joinSession("i-1", "", 1)
	u1 := e.activate("i-1", first, "agent-1")
	second, err := e.cluster.CreateSession(2)
	if err != nil {
		t.Fatal(err)
	}
	e.startMsg("i-1", second.Token())
	e.expectEnd("i-1", "replaced")
	e.waitEnded(first)
	if first.EndedBy() != "controller" {
		t.Fatalf("first session ended by %q", first.EndedBy())
	}
	if j := e.expectLifecycle("i-1", attach.Joined); j.SessionID != second.HistoryID() {
		t.Fatalf("joined %+v", j)
	}
	u := e.expectUpdate("i-1")
	if u.Data.SessionsQuantity != 2 || u.Data.SessionID != second.HistoryID() || u.Data.StartTime != u1.Data.StartTime {
		t.Fatalf("second join attach: %+v", u.Data)
	}
	// A repeated start message for the live token changes nothing.
	e.startMsg("i-1", second.Token())
	e.say("i-1", chat.RoleCustomer, "thanks")
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	if n := len(e.outbound("i-1")); n != 2+2+2+2+2 {
		t.Fatalf("%d outbound messages, want 10:\n%s", n, e.dump())
	}
}

func TestStartMessageWhileDaemonDown(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon() // creates the streams and the durable consumer
	e.stopDaemon()
	s, err := e.cluster.CreateSession(0)
	if err != nil {
		t.Fatal(err)
	}
	e.startMsg("i-1", s.Token())
	e.startDaemon()
	if j := e.expectLifecycle("i-1", attach.Joined); j.SessionID != s.HistoryID() {
		t.Fatalf("joined %+v", j)
	}
}

// The daemon is stopped abruptly mid-session and started again. What happens to the live session
// depends on the server: while the crashed Controller's Bayeux session lingers (until the server's
// maxInterval) the server refuses a second Controller, and the daemon stops the session through
// REST with the saved user token (server_lost); once it expired, the daemon re-joins, and a later
// close ends the session as usual. Either way it ends once, and seq goes on.
func TestAbruptStopAndRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expire  bool
		reason  string
		endedBy string
	}{
		// The server still holds the old Controller (a minute of maxInterval): the re-join waits
		// within its window, and the close meanwhile stops the session through REST.
		{"old Controller still present", false, "interaction_closed", gcbtest.EndedByControllerREST},
		{"old Controller expired", true, "interaction_closed", gcbtest.EndedByController},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, gcbtest.Options{MaxInterval: time.Minute}, nil)
			e.startDaemon()
			s := e.joinSession("i-1", "", 1)
			u1 := e.activate("i-1", s, "agent-1")
			e.abortDaemon()
			if tc.expire {
				s.Node().ExpireBayeuxSessions()
			}
			e.startDaemon()
			if tc.expire && !e.logs.WaitFor("re-joined a live session", wait, nil) {
				t.Fatal("the session was not re-joined")
			}
			e.event("i-1", chat.EventClosed, "")
			l := e.expectLifecycle("i-1", attach.Deactivated)
			if l.Reason != tc.reason {
				t.Fatalf("after restart the session ended with %q, want %q", l.Reason, tc.reason)
			}
			e.waitEnded(s)
			if by := s.EndedBy(); by != tc.endedBy {
				t.Fatalf("server says ended by %q, want %q", by, tc.endedBy)
			}
			final := e.expectUpdate("i-1")
			if final.Seq != 3 || final.Data.Associated != "No" || final.Data.StartTime != u1.Data.StartTime || final.Data.EndReason != tc.reason {
				t.Fatalf("final attach after restart: %+v", final)
			}
			ends := 0
			for _, m := range e.outbound("i-1") {
				if strings.HasSuffix(m.subject, ".deactivated") {
					ends++
				}
			}
			if ends != 1 {
				t.Fatalf("%d deactivated events", ends)
			}
		})
	}
}

func TestRestartThenSecondSession(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	s := e.joinSession("i-1", "", 1)
	u1 := e.activate("i-1", s, "agent-1")
	e.abortDaemon()
	e.startDaemon()
	// If the re-join was refused the daemon has stopped the session already, and the agent's exit
	// finds it ended.
	if err := s.AgentExit(); err != nil && !errors.Is(err, gcbtest.ErrEnded) {
		t.Fatal(err)
	}
	end := e.expectLifecycle("i-1", attach.Deactivated)
	e.expectUpdate("i-1")
	if end.Reason != "participant_exit" && end.Reason != "server_lost" {
		t.Fatalf("end reason %q", end.Reason)
	}
	// A second co-browse session on the same interaction.
	s2 := e.joinSession("i-1", "", 2)
	u := e.activate("i-1", s2, "agent-1")
	if u.Data.SessionsQuantity != 2 || u.Data.StartTime != u1.Data.StartTime || u.Seq != 5 {
		t.Fatalf("second session: seq %d %+v (first start %s)", u.Seq, u.Data, u1.Data.StartTime)
	}
}

func TestDuplicateDeliveryAttachesOnce(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	s, err := e.cluster.CreateSession(0)
	if err != nil {
		t.Fatal(err)
	}
	msg := chat.Message{ID: "dup-1", InteractionID: "i-1", From: chat.Sender{Role: chat.RoleCustomer}, Text: "{start:" + s.Token() + "}"}
	// Two copies in the stream (different publish ids): the consumer delivers both.
	e.publish(chat.ChatSubject("cc", "i-1"), msg, "copy-a")
	e.publish(chat.ChatSubject("cc", "i-1"), msg, "copy-b")
	e.say("i-1", chat.RoleCustomer, "marker")
	e.expectLifecycle("i-1", attach.Joined)
	e.expectUpdate("i-1")
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	joined := 0
	for _, m := range e.outbound("i-1") {
		if strings.HasSuffix(m.subject, ".joined") {
			joined++
		}
	}
	if joined != 1 {
		t.Fatalf("%d joined events for one start message:\n%s", joined, e.dump())
	}
}

func TestMalformedMessagesAreTerminated(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	e.publishRaw(chat.ChatSubject("cc", "i-1"), []byte(`{"id":`), "")
	e.publishRaw(chat.ChatSubject("cc", "i-1"), []byte(`{"id":"x","interactionId":"other","text":"hi","from":{"role":"customer"}}`), "")
	big := `{"id":"big","interactionId":"i-1","from":{"role":"customer"},"text":"` + strings.Repeat("a", 70*1024) + `"}`
	e.publishRaw(chat.ChatSubject("cc", "i-1"), []byte(big), "")
	s := e.joinSession("i-1", "", 1)
	if s == nil {
		t.Fatal("no session")
	}
	logs := e.logs.String()
	if c := strings.Count(logs, "malformed inbound message terminated"); c != 3 {
		t.Fatalf("malformed messages logged %d times, want once each (3)", c)
	}
	if strings.Contains(logs, strings.Repeat("a", 100)) {
		t.Fatal("the oversized message's text reached the log")
	}
}

func TestInteractionsAreIsolated(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	s1 := e.joinSession("i-1", "", 1)
	e.activate("i-1", s1, "agent-1")
	s2 := e.joinSession("i-2", "", 1)
	e.activate("i-2", s2, "agent-2")
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	e.waitEnded(s1)
	if s2.State() != gcbtest.StateActive {
		t.Fatalf("i-2's session is %v after i-1 closed", s2.State())
	}
	for _, m := range e.outbound("i-2") {
		if strings.HasSuffix(m.subject, ".deactivated") {
			t.Fatalf("i-2 got %s", m.subject)
		}
	}
}

// A start message that meets an unavailable Co-browse Server is retried later (a delayed nak),
// not dropped: once the server answers again, the redelivery joins.
func TestStartMessageRetriedWhileServerUnavailable(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, func(c *configs.Config) {
		c.Controller.JoinTimeout = d(time.Second)
		c.Controller.RetryDelay = d(300 * time.Millisecond)
	})
	e.startDaemon()
	s, err := e.cluster.CreateSession(1)
	if err != nil {
		t.Fatal(err)
	}
	// Every node swallows Get Session and handshakes: the join times out, unavailable.
	for _, n := range e.cluster.Nodes() {
		n.SetFault(gcbtest.Fault{Channel: "/rest", Drop: true})
	}
	e.startMsg("i-1", s.Token())
	e.waitUntil("a join attempt that failed and was nak'd", func() bool {
		return strings.Contains(e.logs.String(), "server unavailable, retrying later")
	})
	for _, n := range e.cluster.Nodes() {
		n.SetFault(gcbtest.Fault{})
	}
	if j := e.expectLifecycle("i-1", attach.Joined); j.SessionID != s.HistoryID() {
		t.Fatalf("joined %+v", j)
	}
	for _, m := range e.outbound("i-1") {
		if strings.HasSuffix(m.subject, ".failed") {
			t.Fatalf("a retried start message was reported failed: %s", m.data)
		}
	}
}

// When the Controller's CometD side is unusable (its Bayeux session gone and every new handshake
// swallowed), a close still stops the session at the server: through the REST stop with the saved
// user token.
func TestCloseStopsThroughRESTWhenCometDIsDown(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	s := e.joinSession("i-1", "", 1)
	e.activate("i-1", s, "agent-1")
	s.Node().SetFault(gcbtest.Fault{Channel: "/meta/handshake", Drop: true})
	s.Node().ExpireBayeuxSessions()
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	e.waitEnded(s)
	if by := s.EndedBy(); by != gcbtest.EndedByControllerREST {
		t.Fatalf("server says ended by %q, want the REST stop", by)
	}
}

func TestStopOnShutdown(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, func(c *configs.Config) { c.Controller.StopOnShutdown = true })
	e.startDaemon()
	s := e.joinSession("i-1", "", 1)
	e.activate("i-1", s, "agent-1")
	e.stopDaemon()
	e.expectEnd("i-1", "shutdown")
	e.waitEnded(s)
	if s.EndedBy() != gcbtest.EndedByController {
		t.Fatalf("ended by %q", s.EndedBy())
	}
}

// TestStartsWhenNATSComesLater: NATS is down when the daemon starts; the daemon waits (saying it
// is not ready) instead of exiting, and consumes once NATS is there.
func TestStartsWhenNATSComesLater(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, func(c *configs.Config) { c.NATS.ConnectWait = d(time.Minute) })
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	ready := e.launchDaemon()
	if !e.logs.WaitFor("NATS not reachable; not ready, retrying", wait, e.run.done) {
		e.run = nil
		t.Fatal("no not-ready line while NATS is down, or the daemon exited")
	}
	e.ns = e.ns.Restart(t)
	e.waitReady(ready)
	s := e.joinSession("i-1", "", 1)
	e.activate("i-1", s, "agent-1")
}

// TestSignalsAndRequestsThroughNATS: the new inbound items through the contract alone: an
// operator's stop signal ends the live session as operator_stop; a cobrowse_requested on a
// Genesys interaction fails as unsupported; an interaction whose cobrowseVendor is not enabled
// fails its start as vendor_unavailable.
func TestSignalsAndRequestsThroughNATS(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	s := e.joinSession("i-1", "", 1)
	e.publish(chat.SignalSubject("cc", "i-1", chat.SourceOperator),
		chat.Signal{ID: e.nextID("sig"), InteractionID: "i-1", Source: chat.SourceOperator, Type: chat.SignalStop}, "")
	e.expectEnd("i-1", "operator_stop")
	e.waitEnded(s)

	e.publish(chat.EventSubject("cc", "i-2"), chat.Event{ID: e.nextID("ev"), InteractionID: "i-2",
		Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot, ID: "bot-1"}}, "")
	if f := e.expectLifecycle("i-2", attach.Failed); f.Reason != "unsupported" {
		t.Fatalf("request on Genesys: %+v", f)
	}

	e.publish(chat.EventSubject("cc", "i-3"), chat.Event{ID: e.nextID("ev"), InteractionID: "i-3",
		Type: chat.EventCreated, AgentID: "agent-3", Vendor: "cec"}, "")
	e.startMsg("i-3", "123456789")
	if f := e.expectLifecycle("i-3", attach.Failed); f.Reason != "vendor_unavailable" || f.Vendor != "cec" {
		t.Fatalf("start on a vendor not enabled: %+v", f)
	}
}
