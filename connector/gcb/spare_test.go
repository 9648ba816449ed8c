package gcb

import (
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// waitSpares waits until r has want ready spare clients.
func waitSpares(t *testing.T, c *Connector, r route, want int) {
	t.Helper()
	deadline := time.After(wait)
	for {
		n, changed := c.spares.readyOn(r)
		if n == want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d spare clients on %s after %s, want %d", n, r.node(), wait, want)
		}
	}
}

// warmSpare joins a first session on the node and closes it, and returns its route once the spare
// client that join left there is ready.
func warmSpare(t *testing.T, e *env, node int) route {
	t.Helper()
	first := e.join(e.create(node), "")
	r := first.(*session).route()
	closeSession(t, first)
	waitSpares(t, e.conn, r, 1)
	return r
}

// activateAndStop has agent-1 join gs and the session activate, then stops it.
func activateAndStop(t *testing.T, gs *gcbtest.Session, s connector.Session) {
	t.Helper()
	if err := gs.AgentJoin("agent-1", "Alice"); err != nil {
		t.Fatalf("AgentJoin: %v", err)
	}
	expect(t, s, connector.EventParticipantJoined)
	expect(t, s, connector.EventActivated)
	if _, err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// TestSpareReplacedAfterEachJoin: each join on a route takes its spare and a new one is started
// behind it, on that route only; the server sees one idle Bayeux session per route besides the
// joined ones.
func TestSpareReplacedAfterEachJoin(t *testing.T) {
	for _, tr := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, false, tr, nil)
			node := e.cluster.Nodes()[1]
			r := warmSpare(t, e, 1)
			for i := range 3 {
				s := e.join(e.create(1), "")
				if !s.(*session).spare {
					t.Fatalf("join %d did not take the spare", i+1)
				}
				waitSpares(t, e.conn, r, 1)
				// The sessions joined since, and the one spare.
				if got := node.Stats().BayeuxSessions; got != i+2 {
					t.Fatalf("node holds %d Bayeux sessions with %d sessions joined, want %d", got, i+1, i+2)
				}
			}
			if n := e.cluster.Nodes()[0].Stats().Handshakes + e.cluster.Nodes()[2].Stats().Handshakes; n != 0 {
				t.Fatalf("%d handshakes on the nodes no join went to", n)
			}
		})
	}
}

// TestSpareAfterANodeRestart: a spare whose node restarts handshakes again there, and a join then
// takes it and works like any other.
func TestSpareAfterANodeRestart(t *testing.T) {
	e := newEnv(t, true, cometd.TransportWebSocket, nil)
	r := warmSpare(t, e, 2)
	node := e.cluster.Nodes()[2]
	node.Kill()
	waitSpares(t, e.conn, r, 0) // down: not handed to a join
	node.Restart()
	waitSpares(t, e.conn, r, 1) // a new Bayeux session on the restarted node
	gs := e.create(2)
	s := e.join(gs, "agent-1")
	if !s.(*session).spare {
		t.Fatal("the join did not take the re-handshaken spare")
	}
	activateAndStop(t, gs, s)
	waitDone(t, gs)
}

// TestSpareDownIsNotHanded: a spare is handed to a join only while its connection is up.
func TestSpareDownIsNotHanded(t *testing.T) {
	sp := &spare{c: &Connector{}}
	s := &session{}
	sp.onState(cometd.StateEvent{Kind: cometd.StateDisconnected})
	if sp.hand(s) {
		t.Fatal("handed while disconnected")
	}
	sp.onState(cometd.StateEvent{Kind: cometd.StateReestablished})
	if !sp.hand(s) {
		t.Fatal("not handed once re-established")
	}
	if sp.hand(&session{}) {
		t.Fatal("handed twice")
	}
}

// TestCloseDisconnectsSpares: Close sends /meta/disconnect for every spare before it returns.
func TestCloseDisconnectsSpares(t *testing.T) {
	e := newEnv(t, true, cometd.TransportLongPolling, nil)
	r := warmSpare(t, e, 0)
	node := e.cluster.Nodes()[0]
	if got := node.Stats().BayeuxSessions; got != 1 {
		t.Fatalf("node holds %d Bayeux sessions with the joined one closed, want the spare's", got)
	}
	if err := e.conn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := node.Stats().BayeuxSessions; got != 0 {
		t.Fatalf("node holds %d Bayeux sessions after Close, want 0", got)
	}
	// A join after Close leaves no spare behind.
	e.conn.refill(r)
	if n, _ := e.conn.spares.readyOn(r); n != 0 || e.conn.spares.routes != nil {
		t.Fatalf("spares after Close: %d ready, routes %v", n, e.conn.spares.routes)
	}
}

// TestIdleSparesDisconnected: a route without a join for the idle time loses its spares.
func TestIdleSparesDisconnected(t *testing.T) {
	e := newEnv(t, true, cometd.TransportWebSocket, nil)
	e.conn.spares.idle = 100 * time.Millisecond
	r := warmSpare(t, e, 1)
	waitSpares(t, e.conn, r, 0)
	e.conn.spares.wg.Wait() // the idle spares' disconnects
	if got := e.cluster.Nodes()[1].Stats().BayeuxSessions; got != 0 {
		t.Fatalf("node holds %d Bayeux sessions after the idle time, want 0", got)
	}
}

// TestNoSpares: SpareClients < 0 keeps none.
func TestNoSpares(t *testing.T) {
	e := newEnv(t, true, cometd.TransportWebSocket, func(c *Config) { c.SpareClients = -1 })
	s := e.join(e.create(1), "")
	closeSession(t, s)
	s = e.join(e.create(1), "")
	if s.(*session).spare {
		t.Fatal("joined on a spare with spares off")
	}
	if n := e.cluster.Nodes()[1].Stats().Handshakes; n != 2 {
		t.Fatalf("%d handshakes for 2 joins, want 2", n)
	}
}
