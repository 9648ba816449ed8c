package gcb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// crash drops a session's connection as a killed daemon would: no /meta/disconnect, no stop. The
// server keeps the Controller's Bayeux session (and so its membership) until it expires it.
func crash(t *testing.T, s connector.Session) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close(done ctx) = %v", err)
	}
}

func hasRole(gs *gcbtest.Session, role int) bool {
	for _, u := range gs.Users() {
		if u.Role == role {
			return true
		}
	}
	return false
}

// TestRejoinWhileOldControllerHeld: after a crash and a prompt restart the server still holds the
// old Controller, so the first re-join is refused ("controller already joined"); Rejoin retries
// within its window until the server has expired the old Bayeux session, and the session goes on.
// Under both stickiness routes and both transports.
func TestRejoinWhileOldControllerHeld(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
			t.Run(fmt.Sprintf("serverURL=%v/%s", serverURL, tr), func(t *testing.T) {
				e := newEnv(t, serverURL, tr, nil) // RejoinWindow 0: derived from the advice (2 x 3s + 0.5s)
				gs := e.create(1)
				s := e.join(gs, "agent-1")
				h := s.Handle()
				h.InteractionID = "i-1"
				crash(t, s)
				if !hasRole(gs, 3) {
					t.Fatal("the server let the crashed Controller go at once; the test needs it held")
				}

				restarted := newConnector(t, e.cfg)
				s2, err := restarted.Rejoin(t.Context(), h)
				if err != nil {
					t.Fatalf("Rejoin while the old Controller is held: %v", err)
				}
				t.Cleanup(func() { closeSession(t, s2) })
				if h2 := s2.Handle(); hd(h2).UserToken == hd(h).UserToken || h2.SessionID != h.SessionID {
					t.Fatalf("rejoined handle %+v, saved %+v", h2, h)
				}
				if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
					t.Fatalf("AgentJoin: %v", err)
				}
				expect(t, s2, connector.EventParticipantJoined)
				expect(t, s2, connector.EventActivated)
				if _, err := s2.Stop(t.Context()); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				expect(t, s2, connector.EventDeactivated)
				waitDone(t, gs)
				if got := gs.EndedBy(); got != gcbtest.EndedByController {
					t.Fatalf("EndedBy = %q", got)
				}
			})
		}
	}
}

// TestRejoinGivesUpAfterItsWindow: a server that keeps refusing the re-join is retried until the
// window is over, then Rejoin returns the refusal (the owner stops the session through REST).
func TestRejoinGivesUpAfterItsWindow(t *testing.T) {
	e := newEnvOpts(t, gcbtest.Options{ServerURL: true, RefuseControllerRejoin: true}, "", func(c *Config) {
		c.RejoinWindow = 500 * time.Millisecond
	})
	gs := e.create(0)
	s := e.join(gs, "")
	h := s.Handle()
	closeSession(t, s)
	start := time.Now()
	_, err := e.conn.Rejoin(t.Context(), h)
	if !errors.Is(err, connector.ErrRefused) || serverError(t, err).Reason != "rejoin not allowed" {
		t.Fatalf("Rejoin = %v, want the server's refusal", err)
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Fatalf("Rejoin gave up after %s, before its window", el)
	}
	if gs.State() == gcbtest.StateEnded {
		t.Fatal("Rejoin stopped the session itself; that is the owner's call")
	}
}

// TestRehandshakeWhileOldControllerHeld: after a Bayeux re-handshake the server still holds the
// old Controller for a while (HoldController) and refuses the re-join; the session retries within
// its window and goes on. The agent who joins meanwhile is not announced (the held Controller
// cannot be reached), but the successful re-join lists the agent, so the owner can report it.
func TestRehandshakeWhileOldControllerHeld(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnvOpts(t, gcbtest.Options{ServerURL: serverURL, HoldController: time.Second}, "", nil)
			gs := e.create(1)
			s := e.join(gs, "agent-1")
			old := s.Handle()
			gs.Node().ExpireBayeuxSessions()
			if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
				t.Fatalf("AgentJoin: %v", err)
			}
			ev := expect(t, s, connector.EventRejoined)
			if hd(ev.Handle).UserToken == hd(old).UserToken {
				t.Fatal("re-join kept the old user token")
			}
			agent := false
			for _, p := range s.Participants() {
				agent = agent || p.Role == connector.RoleAgent
			}
			if !agent {
				t.Fatalf("participants after the re-join %+v: the agent who joined meanwhile is missing", s.Participants())
			}
			if _, err := s.Stop(t.Context()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			expect(t, s, connector.EventDeactivated)
			waitDone(t, gs)
		})
	}
}

// TestJoinSlotsBoundPerNode: with every join slot of a node taken, a new join on that node fails
// as unavailable (ErrNodeBusy) instead of flooding it, while a join on another node goes on.
func TestJoinSlotsBoundPerNode(t *testing.T) {
	e := newEnv(t, true, "", func(c *Config) {
		c.MaxConcurrentJoins = 2
		c.JoinTimeout = 2 * time.Second
	})
	busy := e.create(1)
	node := busy.Node().URL()
	busy.Node().SetFault(gcbtest.Fault{Channel: ChannelJoin, Drop: true}) // joins on node 1 hang
	done := make(chan error, 2)
	for range 2 {
		gs := e.create(1)
		go func() {
			_, err := e.conn.Join(context.Background(), connector.Trigger{Token: gs.Token()})
			done <- err
		}()
	}
	deadline := time.Now().Add(wait)
	for held := 0; held < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the two hanging joins hold %d slots", held)
		}
		e.conn.slots.mu.Lock()
		if s := e.conn.slots.nodes[node]; s != nil {
			held = len(s.ch)
		}
		e.conn.slots.mu.Unlock()
		waitRetry(t.Context(), 10*time.Millisecond)
	}
	_, err := e.conn.Join(t.Context(), connector.Trigger{Token: busy.Token()})
	if !errors.Is(err, connector.ErrUnavailable) || !errors.Is(err, ErrNodeBusy) {
		t.Fatalf("third join on a busy node: %v, want ErrUnavailable wrapping ErrNodeBusy", err)
	}
	e.join(e.create(2), "") // another node is not held up
	for range 2 {
		if err := <-done; !errors.Is(err, connector.ErrUnavailable) {
			t.Fatalf("hanging join: %v", err)
		}
	}
	if n := len(e.conn.slots.nodes); n != 0 {
		t.Fatalf("%d nodes keep join slots after every join ended", n)
	}
}

// TestWebSocketRefusalRememberedPerNode: a node that refuses the websocket upgrade is asked once;
// the next sessions on it go straight to long-polling.
func TestWebSocketRefusalRememberedPerNode(t *testing.T) {
	f := newFakeNode(t, func(int) string { return fullJoin })
	c := newConnector(t, Config{
		ClusterURL:        f.URL + "/cobrowse",
		Transports:        []string{cometd.TransportWebSocket, cometd.TransportLongPolling},
		MaxNetworkDelay:   wait,
		JoinTimeout:       wait,
		DisconnectTimeout: wait,
		Logger:            testLogger(t),
	})
	for i := range 3 {
		s, err := c.Join(t.Context(), connector.Trigger{Token: tok})
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if tr := s.(*session).client.Transport(); tr != cometd.TransportLongPolling {
			t.Fatalf("join %d on transport %q", i, tr)
		}
		closeSession(t, s)
	}
	f.mu.Lock()
	n := f.upgrades
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d websocket upgrades for 3 sessions on one node, want 1", n)
	}
}

// TestSessionLogsCarryInteractionAndSessionID: with a thousand sessions a masked token (three
// digits) collides, so every session-scoped line of gcb and its CometD client names the
// interaction, and from the join reply on the session id (not a secret); the token only masked.
func TestSessionLogsCarryInteractionAndSessionID(t *testing.T) {
	var buf logtest.Buffer
	e := newEnv(t, false, cometd.TransportLongPolling, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	gs := e.create(1)
	s := e.join(gs, "agent-1")
	if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
		t.Fatal(err)
	}
	expect(t, s, connector.EventParticipantJoined)
	expect(t, s, connector.EventActivated)
	if _, err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	expect(t, s, connector.EventDeactivated)
	expectClosed(t, s)

	sid, iid := s.Handle().SessionID, "i-"+gs.Token()
	joined, scoped := false, 0
	for line := range strings.Lines(buf.String()) {
		if strings.Contains(strings.ReplaceAll(line, iid, "i-..."), gs.Token()) { // the test's interaction ids hold the token
			t.Fatalf("the session token in clear: %s", line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if m["component"] != "gcb" && m["component"] != "cometd" {
			continue
		}
		if _, ok := m["token"]; !ok {
			continue // a connector-wide line (breakers, Get Session before the session exists)
		}
		scoped++
		if m["interaction"] != iid {
			t.Fatalf("session line without its interaction: %s", line)
		}
		if joined && m["session_id"] != sid {
			t.Fatalf("session line after the join without session_id %s: %s", sid, line)
		}
		if m["msg"] == "joined as Controller" {
			joined = true
			if m["session_id"] != sid {
				t.Fatalf("join line without session_id: %s", line)
			}
		}
	}
	if !joined || scoped < 5 {
		t.Fatalf("joined line seen %v, %d session lines: %s", joined, scoped, buf.String())
	}
}

// hd is the Genesys data of a handle, for assertions.
func hd(h connector.Handle) handleData { return decodeHandle(h) }

func handlesEqual(a, b connector.Handle) bool {
	return a.Vendor == b.Vendor && a.Token == b.Token && a.SessionID == b.SessionID && a.AgentID == b.AgentID &&
		a.InteractionID == b.InteractionID && string(a.Data) == string(b.Data)
}

// TestHandleOfThePreviousFormat: a handle saved before vendor data became opaque (userToken,
// nodeUrl and sticky at the top level) reads with those fields in Data, where gcb finds them, and
// writes in the new form.
func TestHandleOfThePreviousFormat(t *testing.T) {
	old := `{"vendor":"genesys","token":"535176834","sessionId":"h-1","userToken":"ut-1","nodeUrl":"http://lb/cobrowse","sticky":"node-2","agentId":"a1"}`
	var h connector.Handle
	if err := json.Unmarshal([]byte(old), &h); err != nil {
		t.Fatal(err)
	}
	if d := hd(h); d != (handleData{UserToken: "ut-1", NodeURL: "http://lb/cobrowse", Sticky: "node-2"}) || h.Token != "535176834" || h.SessionID != "h-1" || h.AgentID != "a1" {
		t.Fatalf("read %+v, data %+v", h, hd(h))
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vendor":"genesys","token":"535176834","sessionId":"h-1","agentId":"a1","data":{"userToken":"ut-1","nodeUrl":"http://lb/cobrowse","sticky":"node-2"}}`
	if string(b) != want {
		t.Fatalf("written\n%s\nwant\n%s", b, want)
	}
	var again connector.Handle
	if err := json.Unmarshal(b, &again); err != nil || !handlesEqual(again, h) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
}
