package gcb

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// TestCheckJoinReply: the join reply's data, decoded and checked on its own. A reply without
// sessionHistoryId leaves the session with no id for reporting: it is a refusal, like one without
// userToken.
func TestCheckJoinReply(t *testing.T) {
	const node = "http://n/cobrowse"
	for _, tc := range []struct {
		name   string
		raw    string
		kind   error // nil: accepted
		reason string
	}{
		{"complete", `{"userToken":"ut","userId":3,"users":[{"userId":3,"role":3}],"sessionHistoryId":"h-1"}`, nil, ""},
		{"no sessionHistoryId", `{"userToken":"ut","userId":3,"users":[]}`, connector.ErrRefused, "join reply carries no sessionHistoryId"},
		{"empty sessionHistoryId", `{"userToken":"ut","userId":3,"sessionHistoryId":""}`, connector.ErrRefused, "join reply carries no sessionHistoryId"},
		{"null sessionHistoryId", `{"userToken":"ut","sessionHistoryId":null}`, connector.ErrRefused, "join reply carries no sessionHistoryId"},
		{"no userToken", `{"userId":3,"sessionHistoryId":"h-1"}`, connector.ErrRefused, `join reply without userToken: {"userId":3,"sessionHistoryId":"h-1"}`},
		{"error in data", `{"error":"403::agent busy"}`, connector.ErrRefused, "agent busy"},
		{"undecodable", `[1]`, connector.ErrUnavailable, "[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := checkJoinReply(opJoin, node, json.RawMessage(tc.raw))
			if tc.kind == nil {
				if err != nil || r.UserToken != "ut" || r.SessionHistoryID != "h-1" {
					t.Fatalf("checkJoinReply = %+v, %v", r, err)
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			if se := serverError(t, err); se.Reason != tc.reason || se.Op != opJoin || se.Node != node {
				t.Fatalf("ServerError = op %q node %q reason %q; want reason %q", se.Op, se.Node, se.Reason, tc.reason)
			}
			if r.UserToken != "" || r.SessionHistoryID != "" || r.Users != nil {
				t.Fatalf("reply %+v returned with the error", r)
			}
		})
	}
}

// fakeNode is a minimal Genesys node for one session over long-polling: Get Session, the REST
// stop, and a Bayeux server whose join replies the test scripts. A /meta/connect that asks for
// timeout 0 is answered at once; any other is held until the request ends, or until expire
// answers it with 402 and advice handshake (the Bayeux session is gone: a re-handshake follows).
type fakeNode struct {
	*httptest.Server
	joinData func(n int) string // the data of the n-th join reply (from 1)
	expire   chan struct{}      // a send answers the held /meta/connect with 402 + handshake

	mu          sync.Mutex
	handshakes  int
	joins       int
	disconnects []string // the clientIds of the /meta/disconnect messages
	stops       []string // the user tokens of the REST stops
	upgrades    int      // websocket upgrades asked for (refused with 400)
}

func newFakeNode(t *testing.T, joinData func(n int) string) *fakeNode {
	t.Helper()
	f := &fakeNode{joinData: joinData, expire: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cobrowse/rest/live/sessions/{token}", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"sessionToken": r.PathValue("token"),
			"sessionServerName": "n1", "sessionServerUrl": f.URL + "/cobrowse"})
	})
	mux.HandleFunc("GET /cobrowse/rest/live/users/{user}/session/stop", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.stops = append(f.stops, r.PathValue("user"))
		f.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	})
	mux.HandleFunc("POST /cobrowse/cometd", f.bayeux)
	mux.HandleFunc("GET /cobrowse/cometd", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		f.upgrades++
		f.mu.Unlock()
		http.Error(w, "websocket not supported", http.StatusBadRequest)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeNode) bayeux(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	msgs, err := cometd.DecodeMessages(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ok := true
	retry := &cometd.Advice{Reconnect: cometd.ReconnectRetry, Interval: new(int64(0)), Timeout: new(int64(30_000))}
	var replies []cometd.Message
	for _, m := range msgs {
		reply := cometd.Message{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID, Successful: &ok}
		switch m.Channel {
		case "/meta/handshake":
			f.mu.Lock()
			f.handshakes++
			reply.ClientID = "client-" + strconv.Itoa(f.handshakes)
			f.mu.Unlock()
			reply.Version = "1.0"
			reply.SupportedConnectionTypes = []string{cometd.TransportLongPolling}
			reply.Advice = retry
		case "/meta/connect":
			if m.Advice == nil || m.Advice.Timeout == nil || *m.Advice.Timeout != 0 {
				select {
				case <-r.Context().Done():
					return
				case <-f.expire:
					failed := false
					reply.Successful = &failed
					reply.Error = "402::Unknown client"
					reply.Advice = &cometd.Advice{Reconnect: cometd.ReconnectHandshake}
				}
			}
		case "/meta/disconnect":
			f.mu.Lock()
			f.disconnects = append(f.disconnects, m.ClientID)
			f.mu.Unlock()
		case ChannelJoin:
			f.mu.Lock()
			f.joins++
			n := f.joins
			f.mu.Unlock()
			reply.Data = json.RawMessage(f.joinData(n))
		}
		replies = append(replies, reply)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(replies)
}

func (f *fakeNode) counts() (joins int, disconnects, stops []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins, append([]string(nil), f.disconnects...), append([]string(nil), f.stops...)
}

func fakeConnector(t *testing.T, f *fakeNode) *Connector {
	return newConnector(t, Config{
		ClusterURL:        f.URL + "/cobrowse",
		Transports:        []string{cometd.TransportLongPolling},
		MaxNetworkDelay:   wait,
		JoinTimeout:       wait,
		DisconnectTimeout: wait,
		// A refused re-join is retried on the same Bayeux session within this window.
		RejoinWindow:     300 * time.Millisecond,
		BackoffIncrement: 50 * time.Millisecond,
		MaxBackoff:       100 * time.Millisecond,
		SpareClients:     -1, // the tests name the Bayeux clients in handshake order: no spare handshakes between
		Logger:           testLogger(t),
	})
}

const (
	fullJoin      = `{"userToken":"ut-1","userId":3,"users":[{"userId":3,"role":3}],"sessionHistoryId":"h-1"}`
	noHistoryJoin = `{"userToken":"ut-2","userId":3,"users":[{"userId":3,"role":3}]}`
)

// TestJoinWithoutSessionHistoryIDRefused: Join takes a join reply without sessionHistoryId as a
// refusal, and disconnects the Bayeux client before it returns.
func TestJoinWithoutSessionHistoryIDRefused(t *testing.T) {
	f := newFakeNode(t, func(int) string { return noHistoryJoin })
	c := fakeConnector(t, f)
	s, err := c.Join(t.Context(), connector.Trigger{Token: tok, AgentID: "agent-1"})
	if s != nil {
		t.Cleanup(func() { closeSession(t, s) })
	}
	if s != nil || !errors.Is(err, connector.ErrRefused) {
		t.Fatalf("Join = %v, %v; want an ErrRefused", s, err)
	}
	if se := serverError(t, err); se.Reason != "join reply carries no sessionHistoryId" || se.Op != opJoin || se.Node != f.URL+"/cobrowse" {
		t.Fatalf("ServerError = %+v", se)
	}
	joins, disconnects, _ := f.counts()
	if joins != 1 || len(disconnects) != 1 || disconnects[0] != "client-1" {
		t.Fatalf("server saw %d joins and disconnects %v; want 1 join, then /meta/disconnect of client-1", joins, disconnects)
	}

	// Rejoin from a saved handle (a daemon restart) reads the reply the same way, and retries the
	// refusal on the same Bayeux session until its window is over.
	_, err = c.Rejoin(t.Context(), NewHandle(tok, "h-0", "", f.URL+"/cobrowse", ""))
	if !errors.Is(err, connector.ErrRefused) || serverError(t, err).Reason != "join reply carries no sessionHistoryId" {
		t.Fatalf("Rejoin = %v", err)
	}
	if joins, disconnects, _ := f.counts(); joins < 3 || len(disconnects) != 2 || disconnects[1] != "client-2" {
		t.Fatalf("server saw %d joins and disconnects %v after Rejoin; want at least 2 re-join calls, all from client-2", joins, disconnects)
	}
}

// TestRejoinReplyWithoutSessionHistoryIDLoses: after a re-handshake, a re-join whose reply has no
// sessionHistoryId is refused, retried within the re-join window, and then the session is stopped
// through REST with the saved user token and ends as lost, with the refusal as the cause.
func TestRejoinReplyWithoutSessionHistoryIDLoses(t *testing.T) {
	f := newFakeNode(t, func(n int) string {
		if n == 1 {
			return fullJoin
		}
		return noHistoryJoin
	})
	c := fakeConnector(t, f)
	s, err := c.Join(t.Context(), connector.Trigger{Token: tok, AgentID: "agent-1"})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	t.Cleanup(func() { closeSession(t, s) })
	if h := s.Handle(); h.SessionID != "h-1" || hd(h).UserToken != "ut-1" {
		t.Fatalf("handle %+v", h)
	}
	select {
	case f.expire <- struct{}{}:
	case <-t.Context().Done():
	}
	ev := expect(t, s, connector.EventLost)
	if !errors.Is(ev.Err, connector.ErrLost) || !errors.Is(ev.Err, connector.ErrRefused) ||
		!strings.Contains(ev.Err.Error(), "join reply carries no sessionHistoryId") {
		t.Fatalf("EventLost.Err = %v, want ErrLost and the refusal", ev.Err)
	}
	expectClosed(t, s)
	if joins, _, stops := f.counts(); joins < 3 || len(stops) != 1 || stops[0] != "ut-1" {
		t.Fatalf("server saw %d joins and REST stops %v; want the join, 2 or more re-join calls and a stop of ut-1", joins, stops)
	}
	if !ev.Stopped {
		t.Fatal("EventLost.Stopped = false after a REST stop that went through")
	}
	if h := s.Handle(); h.SessionID != "h-1" {
		t.Fatalf("handle after the refused re-join %+v: the session id changed", h)
	}
}

// TestCloseWithDoneContextClosesClient: a Close whose ctx is already done (the daemon's shutdown
// bound ran out) skips the polite /meta/disconnect but still closes the CometD client, so that it
// stops long-polling; it returns ctx's error.
func TestCloseWithDoneContextClosesClient(t *testing.T) {
	f := newFakeNode(t, func(int) string { return fullJoin })
	c := fakeConnector(t, f)
	cs, err := c.Join(t.Context(), connector.Trigger{Token: tok})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	t.Cleanup(func() { closeSession(t, cs) })
	s := cs.(*session)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close(done ctx) = %v, want context.Canceled", err)
	}
	// Client.Close returns after the client's goroutines are gone and Done is closed.
	select {
	case <-s.client.Done():
	default:
		t.Fatal("Close(done ctx) left the CometD client running")
	}
	expectClosed(t, s) // the session's own goroutine ends the event stream
	if _, disconnects, _ := f.counts(); len(disconnects) != 0 {
		t.Fatalf("disconnects %v with a done ctx, want none", disconnects)
	}
	// A later Close with time left is fine and reports nothing.
	closeSession(t, s)
}
