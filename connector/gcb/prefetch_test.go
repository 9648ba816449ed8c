package gcb

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// getSessionCounter counts the REST Get Session calls that go through it.
type getSessionCounter struct {
	n  atomic.Int32
	rt http.RoundTripper
}

func (g *getSessionCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/rest/live/sessions/") {
		g.n.Add(1)
	}
	return g.rt.RoundTrip(r)
}

// TestPrefetchedRouteServesTheJoin: a Prefetch begins Get Session, and the Join of the same token
// that follows takes its route instead of calling again; a Join without one calls it itself.
func TestPrefetchedRouteServesTheJoin(t *testing.T) {
	counter := &getSessionCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	e := newEnv(t, false, cometd.TransportWebSocket, func(c *Config) { c.RoundTripper = counter })
	gs := e.create(1)
	e.conn.Prefetch(gs.Token())
	e.join(gs, "")
	if n := counter.n.Load(); n != 1 {
		t.Fatalf("%d Get Session calls for a prefetched join, want 1", n)
	}
	e.join(e.create(2), "")
	if n := counter.n.Load(); n != 2 {
		t.Fatalf("%d Get Session calls after a join without a prefetch, want 2", n)
	}
	e.conn.Prefetch("not a token") // ignored
	e.conn.Prefetch(e.create(0).Token())
	if err := e.conn.Close(); err != nil { // waits for the prefetch in flight
		t.Fatal(err)
	}
	e.conn.Prefetch(e.create(0).Token()) // after Close: nothing begins
	if n := counter.n.Load(); n != 3 {
		t.Fatalf("%d Get Session calls, want 3 (one prefetch before Close, none after)", n)
	}
}

// TestReadyComesBeforeTheJoinCall: Join waits for Trigger.Ready after it connected and before
// /service/session/join; when Ready fails, Join returns its error and the daemon never became a
// member of the session.
func TestReadyComesBeforeTheJoinCall(t *testing.T) {
	for _, transport := range []string{cometd.TransportWebSocket, cometd.TransportLongPolling} {
		t.Run(transport, func(t *testing.T) {
			e := newEnv(t, false, transport, nil)
			gs := e.create(1)
			refused := errors.New("the join marker was not saved")
			controllers := func() int {
				n := 0
				for _, u := range gs.Users() {
					if u.Role == int(connector.RoleController) {
						n++
					}
				}
				return n
			}
			atReady := -1
			_, err := e.conn.Join(t.Context(), connector.Trigger{Token: gs.Token(), InteractionID: "i-1",
				Ready: func(ctx context.Context) error {
					atReady = controllers()
					return refused
				}})
			if !errors.Is(err, refused) {
				t.Fatalf("Join = %v, want Ready's error", err)
			}
			if atReady != 0 || controllers() != 0 {
				t.Fatalf("Controllers present: %d when Ready ran, %d after it failed", atReady, controllers())
			}
			called := false
			s, err := e.conn.Join(t.Context(), connector.Trigger{Token: gs.Token(), InteractionID: "i-1",
				Ready: func(ctx context.Context) error { called = true; return nil }})
			if err != nil || !called {
				t.Fatalf("Join = %v, Ready called %v", err, called)
			}
			if n := controllers(); n != 1 {
				t.Fatalf("%d Controllers after the join", n)
			}
			closeSession(t, s)
		})
	}
}
