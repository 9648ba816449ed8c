package gcbtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Short timers: connects are held 400 ms, Bayeux sessions expire 300 ms after a reply.
const (
	holdFor = 400 * time.Millisecond
	expiry  = 300 * time.Millisecond
	wait    = 5 * time.Second // bound on waiting for something that must happen
)

func newCluster(t *testing.T, opts gcbtest.Options) *gcbtest.Cluster {
	t.Helper()
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = holdFor
	}
	if opts.MaxInterval == 0 {
		opts.MaxInterval = expiry
	}
	c := gcbtest.NewCluster(opts)
	t.Cleanup(c.Close)
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

type restReply struct {
	status int
	body   map[string]any
	sticky string // the gcbSessionServer cookie set, if any
}

func rest(t *testing.T, method, url string, header http.Header) restReply {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	hc := &http.Client{Transport: &http.Transport{}, Timeout: wait}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := restReply{status: resp.StatusCode}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == gcbtest.StickyCookie {
			r.sticky = ck.Value
		}
	}
	return r
}

var origin = http.Header{"Origin": {"https://agent.example"}}

func TestRESTCreateAndGetSession(t *testing.T) {
	for _, serverURL := range []bool{false, true} {
		name := "cookie"
		if serverURL {
			name = "serverUrl"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, gcbtest.Options{Nodes: 3, ServerURL: serverURL})

			// The customer creates a session through the front (round-robin picks a node).
			created := rest(t, http.MethodPost, c.URL()+"/rest/live/sessions", nil)
			if created.status != http.StatusOK {
				t.Fatalf("create: %+v", created)
			}
			token, _ := created.body["sessionToken"].(string)
			if !regexp.MustCompile(`^\d{9}$`).MatchString(token) {
				t.Fatalf("token %q is not 9 digits", token)
			}
			owner, _ := created.body["sessionServerName"].(string)
			if created.sticky != owner || c.Node(owner) == nil {
				t.Fatalf("create: sticky cookie %q, server %q", created.sticky, owner)
			}
			s := c.Session(token)
			if s == nil || s.Node().Name() != owner || s.State() != gcbtest.StateIdle {
				t.Fatalf("session %v", s)
			}
			if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(s.HistoryID()) {
				t.Fatalf("history id %q is not a UUID", s.HistoryID())
			}
			if u := s.Users(); len(u) != 1 || u[0] != (gcbtest.User{ID: "1", Role: 1, Name: "Customer"}) {
				t.Fatalf("users %v", u)
			}

			// Get Session: through the front and through every node, the same answer.
			bases := []string{c.URL()}
			for _, n := range c.Nodes() {
				bases = append(bases, n.URL())
			}
			for _, base := range bases {
				got := rest(t, http.MethodGet, base+"/rest/live/sessions/"+token, origin)
				if got.status != http.StatusOK || got.body["sessionToken"] != token || got.body["sessionServerName"] != owner {
					t.Fatalf("get via %s: %+v", base, got)
				}
				if got.sticky != owner {
					t.Errorf("get via %s: sticky cookie %q, want %q", base, got.sticky, owner)
				}
				u, has := got.body["sessionServerUrl"]
				if serverURL && u != s.Node().URL() || !serverURL && has {
					t.Errorf("get via %s: sessionServerUrl %v (serverUrl option %v)", base, u, serverURL)
				}
			}

			// Unknown token: 404 with a JSON error.
			unknown := rest(t, http.MethodGet, c.URL()+"/rest/live/sessions/000000000", origin)
			if unknown.status != http.StatusNotFound || unknown.body["error"] == nil {
				t.Fatalf("unknown token: %+v", unknown)
			}
			// Health, on the front and on each node.
			for _, base := range bases {
				if h := rest(t, http.MethodGet, base+"/health", nil); h.status != http.StatusOK {
					t.Fatalf("health via %s: %d", base, h.status)
				}
			}
		})
	}
}

func TestGetSessionOrigin(t *testing.T) {
	c := newCluster(t, gcbtest.Options{AllowedOrigins: []string{"https://agent.example"}})
	s, err := c.CreateSession(0)
	if err != nil {
		t.Fatal(err)
	}
	u := c.URL() + "/rest/live/sessions/" + s.Token()
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no origin", nil, http.StatusForbidden},
		{"origin allowed", origin, http.StatusOK},
		{"referer allowed", http.Header{"Referer": {"https://agent.example/desk/index.html"}}, http.StatusOK},
		{"origin refused", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
	} {
		if got := rest(t, http.MethodGet, u, tc.header); got.status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, got.status, got.body, tc.want)
		}
	}
	open := newCluster(t, gcbtest.Options{}) // no list: any origin, but one is required
	s2, _ := open.CreateSession(0)
	if got := rest(t, http.MethodGet, open.URL()+"/rest/live/sessions/"+s2.Token(), http.Header{"Origin": {"https://any.example"}}); got.status != http.StatusOK {
		t.Errorf("open cluster, any origin: %d", got.status)
	}
	if got := rest(t, http.MethodGet, open.URL()+"/rest/live/sessions/"+s2.Token(), nil); got.status != http.StatusForbidden {
		t.Errorf("open cluster, no origin: %d", got.status)
	}
}

// route is how a Controller reaches the owning node.
type route struct {
	name      string
	transport string
	viaFront  bool // the cluster URL with the gcbSessionServer cookie; else the node's own URL
}

var routes = []route{
	{"long-polling/front-cookie", lp, true},
	{"long-polling/node-url", lp, false},
	{"websocket/front-cookie", ws, true},
	{"websocket/node-url", ws, false},
}

func (r route) client(t *testing.T, c *gcbtest.Cluster, s *gcbtest.Session) *client {
	if r.viaFront {
		return newClient(t, r.transport, c.URL()+"/cometd", s.Node().Name())
	}
	return newClient(t, r.transport, s.Node().CometDURL(), "")
}

func TestControllerLifecycle(t *testing.T) {
	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{Nodes: 2})
			s, err := c.CreateSession(1) // on node-2: a round-robin front would miss it half the time
			if err != nil {
				t.Fatal(err)
			}
			cl := r.client(t, c, s)
			cl.start(ctx)

			res := cl.join(ctx, s.Token(), 3, "")
			if res["sessionHistoryId"] != s.HistoryID() || res["userToken"] == "" || res["userId"] != float64(2) {
				t.Fatalf("join result %v", res)
			}
			users, _ := res["users"].([]any)
			if len(users) != 1 || users[0].(map[string]any)["userId"] != "1" || users[0].(map[string]any)["role"] != float64(1) {
				t.Fatalf("join users %v", users)
			}
			if s.State() != gcbtest.StateIdle {
				t.Fatalf("a Controller's join activated the session")
			}
			if got := s.Users(); len(got) != 2 || got[1].Role != 3 {
				t.Fatalf("users %v", got)
			}

			if err := s.AgentJoin("agent-7", "Bob"); err != nil {
				t.Fatal(err)
			}
			joined := cl.next("/service/session/joined", wait)["data"].(map[string]any)
			if joined["userId"] != "3" || joined["role"] != float64(2) || joined["name"] != "Bob" {
				t.Fatalf("joined %v", joined)
			}
			activated := cl.next("/service/session/activated", wait)["data"].(map[string]any)
			act, _ := s.Times()
			if s.State() != gcbtest.StateActive || activated["activationTime"] != float64(act.UnixMilli()) {
				t.Fatalf("activated %v, state %v, activation %v", activated, s.State(), act)
			}

			if err := s.AgentExit(); err != nil {
				t.Fatal(err)
			}
			deact := cl.next("/service/session/deactivated", wait)["data"].(map[string]any)
			_, end := s.Times()
			if deact["activationTime"] != float64(act.UnixMilli()) || deact["deactivationTime"] != float64(end.UnixMilli()) {
				t.Fatalf("deactivated %v", deact)
			}
			select {
			case <-s.Done():
			default:
				t.Fatal("Done not closed")
			}
			if s.State() != gcbtest.StateEnded || s.EndedBy() != gcbtest.EndedByAgent {
				t.Fatalf("state %v ended by %q", s.State(), s.EndedBy())
			}
			// No re-join of an ended session, by anyone.
			cl2 := r.client(t, c, s)
			cl2.start(ctx)
			if e := cl2.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3}); e != "410::session ended" {
				t.Fatalf("join of an ended session: %q", e)
			}
			if err := s.AgentJoin("agent-8", "Eve"); !errors.Is(err, gcbtest.ErrEnded) {
				t.Fatalf("AgentJoin on an ended session: %v", err)
			}
			// The node saw the transport we meant.
			st := s.Node().Stats()
			if r.transport == ws && st.WebSocketConns < 2 || r.transport == lp && st.WebSocketConns != 0 {
				t.Fatalf("node stats %+v for %s", st, r.transport)
			}
		})
	}
}

func TestCustomerExitEndsSession(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	s, _ := c.CreateSession(0)
	cl := newClient(t, lp, s.Node().CometDURL(), "")
	cl.start(ctx)
	cl.join(ctx, s.Token(), 3, "")
	if err := s.CustomerExit(); err != nil {
		t.Fatal(err)
	}
	deact := cl.next("/service/session/deactivated", wait)["data"].(map[string]any)
	if _, has := deact["activationTime"]; has || deact["deactivationTime"] == nil {
		t.Fatalf("deactivated of a never-active session: %v", deact)
	}
	if s.EndedBy() != gcbtest.EndedByCustomer {
		t.Fatalf("ended by %q", s.EndedBy())
	}
}

func TestStop(t *testing.T) {
	t.Run("cometd", func(t *testing.T) {
		for _, r := range []route{routes[0], routes[2]} {
			t.Run(r.transport, func(t *testing.T) {
				ctx := ctxFor(t)
				c := newCluster(t, gcbtest.Options{Nodes: 2})
				s, _ := c.CreateSession(1)
				ctl := r.client(t, c, s)
				ctl.start(ctx)
				ut := ctl.join(ctx, s.Token(), 3, "")["userToken"]

				// An agent joined over CometD may not stop, nor with the Controller's token.
				agent := r.client(t, c, s)
				agent.start(ctx)
				agentToken := agent.join(ctx, s.Token(), 2, "agent-1")["userToken"]
				if e := agent.refused(ctx, "/service/session/stop", map[string]any{"userToken": agentToken}); !strings.HasPrefix(e, "403:") {
					t.Fatalf("agent stop: %q", e)
				}
				if e := agent.refused(ctx, "/service/session/stop", map[string]any{"userToken": ut}); !strings.HasPrefix(e, "403:") {
					t.Fatalf("stop with another client's token: %q", e)
				}
				ctl.next("/service/session/activated", wait)

				res, ack, err := ctl.publish(ctx, "/service/session/stop", map[string]any{"userToken": ut})
				if err != nil || ack["successful"] != true || res == nil || res["successful"] != true {
					t.Fatalf("stop: %v %v %v", res, ack, err)
				}
				ctl.next("/service/session/deactivated", wait)
				agent.next("/service/session/deactivated", wait)
				if s.EndedBy() != gcbtest.EndedByController {
					t.Fatalf("ended by %q", s.EndedBy())
				}
				if e := ctl.refused(ctx, "/service/session/stop", map[string]any{"userToken": ut}); !strings.HasPrefix(e, "404:") {
					t.Fatalf("second stop: %q", e)
				}
			})
		}
	})
	t.Run("rest", func(t *testing.T) {
		ctx := ctxFor(t)
		c := newCluster(t, gcbtest.Options{Nodes: 2})
		s, _ := c.CreateSession(1)
		ctl := newClient(t, lp, s.Node().CometDURL(), "")
		ctl.start(ctx)
		ut := ctl.join(ctx, s.Token(), 3, "")["userToken"].(string)
		agent := newClient(t, lp, s.Node().CometDURL(), "")
		agent.start(ctx)
		agentToken := agent.join(ctx, s.Token(), 2, "agent-1")["userToken"].(string)
		ctl.next("/service/session/activated", wait)

		stop := func(base, tok string) restReply {
			return rest(t, http.MethodGet, base+"/rest/live/users/"+tok+"/session/stop", nil)
		}
		if got := stop(c.Nodes()[0].URL(), ut); got.status != http.StatusNotFound {
			t.Fatalf("stop on the wrong node: %+v", got)
		}
		if got := stop(s.Node().URL(), agentToken); got.status != http.StatusForbidden {
			t.Fatalf("stop with the agent's token: %+v", got)
		}
		if got := stop(s.Node().URL(), "nope"); got.status != http.StatusNotFound {
			t.Fatalf("stop with an unknown token: %+v", got)
		}
		got := stop(s.Node().URL(), ut)
		act, deact := s.Times()
		if got.status != http.StatusOK || got.body["activationTime"] != float64(act.UnixMilli()) || got.body["deactivationTime"] != float64(deact.UnixMilli()) {
			t.Fatalf("stop: %+v", got)
		}
		ctl.next("/service/session/deactivated", wait)
		if s.EndedBy() != gcbtest.EndedByControllerREST {
			t.Fatalf("ended by %q", s.EndedBy())
		}
		if got := stop(s.Node().URL(), ut); got.status != http.StatusNotFound {
			t.Fatalf("second stop: %+v", got)
		}
	})
	t.Run("rest-never-active-through-front", func(t *testing.T) {
		ctx := ctxFor(t)
		c := newCluster(t, gcbtest.Options{Nodes: 2})
		s, _ := c.CreateSession(1)
		ctl := newClient(t, lp, c.URL()+"/cometd", s.Node().Name())
		ctl.start(ctx)
		ut := ctl.join(ctx, s.Token(), 3, "")["userToken"].(string)
		got := rest(t, http.MethodGet, c.URL()+"/rest/live/users/"+ut+"/session/stop",
			http.Header{"Cookie": {gcbtest.StickyCookie + "=" + s.Node().Name()}})
		if _, has := got.body["activationTime"]; got.status != http.StatusOK || has || got.body["deactivationTime"] == nil {
			t.Fatalf("stop: %+v", got)
		}
	})
}

func TestWrongNode(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{Nodes: 2})
	s, _ := c.CreateSession(0)

	// A join sent to a node that does not own the session is refused.
	other := newClient(t, lp, c.Nodes()[1].CometDURL(), "")
	other.start(ctx)
	if e := other.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3}); e != "404::session not found on this node" {
		t.Fatalf("join on the wrong node: %q", e)
	}
	// Without the cookie the front alternates between nodes: the Bayeux session made by the
	// handshake on one node is unknown to the other.
	for _, transport := range []string{lp} {
		cl := newClient(t, transport, c.URL()+"/cometd", "")
		if _, err := cl.handshake(ctx); err != nil {
			t.Fatal(err)
		}
		replies, err := cl.request(ctx, cl.connectMsg(0))
		if err != nil || len(replies) != 1 {
			t.Fatalf("connect: %v %v", replies, err)
		}
		assertUnknownClient(t, replies[0])
	}
}

func assertUnknownClient(t *testing.T, m msg) {
	t.Helper()
	adv, _ := m["advice"].(map[string]any)
	if m["successful"] != false || m["error"] != "402::Unknown client" || adv["reconnect"] != "handshake" || adv["interval"] != float64(0) {
		t.Fatalf("want 402::Unknown client with advice handshake, got %v", m)
	}
}

func TestBrowserCookie(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	cl := newClient(t, lp, c.Nodes()[0].CometDURL(), "")
	if _, err := cl.handshake(ctx); err != nil {
		t.Fatal(err)
	}
	// The same clientId without the BAYEUX_BROWSER cookie is an unknown client.
	bare := newClient(t, lp, c.Nodes()[0].CometDURL(), "")
	replies, err := bare.post(ctx, []msg{{"channel": "/meta/connect", "id": "1", "clientId": cl.ID(), "connectionType": lp}})
	if err != nil {
		t.Fatal(err)
	}
	assertUnknownClient(t, replies[0])
	// With it, fine; and a single object (not an array) on the URL with /connect appended.
	cl.url += "/connect"
	replies, err = cl.post(ctx, msg{"channel": "/meta/connect", "id": "2", "clientId": cl.ID(), "connectionType": lp, "advice": msg{"timeout": 0}})
	if err != nil || replies[0]["successful"] != true {
		t.Fatalf("connect: %v %v", replies, err)
	}
	adv, _ := replies[0]["advice"].(map[string]any)
	if adv["reconnect"] != "retry" || adv["interval"] != float64(0) || adv["timeout"] != float64(holdFor.Milliseconds()) {
		t.Fatalf("first connect advice %v", adv)
	}
}

func TestHandshakeAdvice(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	for _, transport := range []string{lp, ws} {
		cl := newClient(t, transport, c.URL()+"/cometd/handshake", "")
		if transport == ws {
			cl.url = c.URL() + "/cometd"
		}
		hs, err := cl.handshake(ctx)
		if err != nil {
			t.Fatal(err)
		}
		adv, _ := hs["advice"].(map[string]any)
		if hs["version"] != "1.0" || adv["reconnect"] != "retry" || adv["interval"] != float64(0) ||
			adv["timeout"] != float64(holdFor.Milliseconds()) || adv["maxInterval"] != float64(expiry.Milliseconds()) {
			t.Fatalf("%s handshake %v", transport, hs)
		}
	}
}

func TestBatchInOrder(t *testing.T) {
	for _, transport := range []string{lp, ws} {
		t.Run(transport, func(t *testing.T) {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{})
			s, _ := c.CreateSession(0)
			cl := newClient(t, transport, s.Node().CometDURL(), "")
			if _, err := cl.handshake(ctx); err != nil {
				t.Fatal(err)
			}
			id := cl.ID()
			replies, err := cl.request(ctx,
				msg{"channel": "/meta/subscribe", "id": "s1", "clientId": id, "subscription": "/chat/**"},
				msg{"channel": "/service/session/join", "id": "j1", "clientId": id, "data": msg{"sessionToken": s.Token(), "role": 3}},
				msg{"channel": "/chat/room", "id": "p1", "clientId": id, "data": msg{"text": "hi"}},
				msg{"channel": "/meta/connect", "id": "c1", "clientId": id, "connectionType": transport, "advice": msg{"timeout": 0}},
			)
			if err != nil {
				t.Fatal(err)
			}
			var order []string
			for _, m := range replies {
				tag, ok := m["id"].(string)
				if !ok {
					tag = m["channel"].(string)
				}
				if _, ok := m["data"]; ok {
					tag += "+data"
				}
				order = append(order, tag)
			}
			// The subscription, the join's result then its acknowledgement, the publish's
			// acknowledgement, then the connect. The broadcast we subscribed to comes before
			// the connect reply in its long-polling response, and in a frame of its own over
			// websocket.
			want := "s1,j1+data,j1,p1,c1"
			if transport == lp {
				want = "s1,j1+data,j1,p1,/chat/room+data,c1"
			}
			if got := strings.Join(order, ","); got != want {
				t.Fatalf("replies %s, want %s: %v", got, want, replies)
			}
			if transport == lp {
				return
			}
			if m := cl.next("/chat/room", wait); m["data"].(map[string]any)["text"] != "hi" {
				t.Fatalf("broadcast %v", m)
			}
		})
	}
}

func TestRemoteCallEnvelope(t *testing.T) {
	// The join result is delivered both ways a client may look for it: as a message with the
	// request's id, channel, successful:true and data, followed by the publish
	// acknowledgement (same id, no data).
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	s, _ := c.CreateSession(0)
	cl := newClient(t, lp, s.Node().CometDURL(), "")
	if _, err := cl.handshake(ctx); err != nil {
		t.Fatal(err)
	}
	replies, err := cl.post(ctx, []msg{{"channel": "/service/session/join", "id": "7", "clientId": cl.ID(), "data": msg{"sessionToken": s.Token(), "role": 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 2 {
		t.Fatalf("replies %v", replies)
	}
	res, ack := replies[0], replies[1]
	if res["id"] != "7" || res["channel"] != "/service/session/join" || res["successful"] != true || res["data"].(map[string]any)["userToken"] == nil {
		t.Fatalf("result %v", res)
	}
	if _, has := ack["data"]; has || ack["id"] != "7" || ack["channel"] != "/service/session/join" || ack["successful"] != true {
		t.Fatalf("ack %v", ack)
	}
	// A refusal: successful:false and the error in both, {"error": ...} as the result's data.
	replies, err = cl.post(ctx, []msg{{"channel": "/service/session/join", "id": "8", "clientId": cl.ID(), "data": msg{"sessionToken": "123456789", "role": 3}}})
	if err != nil || len(replies) != 2 {
		t.Fatalf("replies %v %v", replies, err)
	}
	if replies[0]["successful"] != false || replies[0]["error"] != "404::session not found" ||
		replies[0]["data"].(map[string]any)["error"] != "404::session not found" || replies[1]["error"] != "404::session not found" {
		t.Fatalf("refusal %v", replies)
	}
}

func TestJoinRules(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	s, _ := c.CreateSession(0)
	url := s.Node().CometDURL()
	ctl := newClient(t, lp, url, "")
	ctl.start(ctx)
	join := map[string]any{"sessionToken": s.Token(), "role": 3}
	ctl.join(ctx, s.Token(), 3, "")
	if e := ctl.refused(ctx, "/service/session/join", join); e != "403::already joined" {
		t.Fatalf("second join by the same client: %q", e)
	}
	second := newClient(t, lp, url, "")
	second.start(ctx)
	if e := second.refused(ctx, "/service/session/join", join); e != "403::controller already joined" {
		t.Fatalf("second Controller: %q", e)
	}
	if e := second.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 1}); e != "403::customer already joined" {
		t.Fatalf("second customer: %q", e)
	}
	if e := second.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 9}); e != "400::invalid role" {
		t.Fatalf("bad role: %q", e)
	}
	if e := second.refused(ctx, "/service/session/join", map[string]any{"role": 3}); e != "400::sessionToken missing" {
		t.Fatalf("no token: %q", e)
	}
	if e := second.refused(ctx, "/service/session/join", map[string]any{"sessionToken": "999999999", "role": 3}); e != "404::session not found" {
		t.Fatalf("unknown token: %q", e)
	}
}

func TestOneLiveSessionPerAgent(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{Nodes: 2})
	s1, _ := c.CreateSession(0)
	s2, _ := c.CreateSession(1)
	if err := s1.AgentJoin("a1", "Ann"); err != nil {
		t.Fatal(err)
	}
	if err := s2.AgentJoin("a1", "Ann"); !errors.Is(err, gcbtest.ErrAgentBusy) {
		t.Fatalf("second live session for a1: %v", err)
	}
	if err := s1.AgentJoin("a2", "Al"); !errors.Is(err, gcbtest.ErrAgentPresent) {
		t.Fatalf("second agent on s1: %v", err)
	}
	// A Controller join naming a busy agent is refused, on any node.
	ctl := newClient(t, ws, s2.Node().CometDURL(), "")
	ctl.start(ctx)
	if e := ctl.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s2.Token(), "role": 3, "name": "a1"}); e != "403::agent busy" {
		t.Fatalf("Controller for a busy agent: %q", e)
	}
	// A Controller join naming an agent binds it: the agent cannot start another session.
	ctl.join(ctx, s2.Token(), 3, "a3")
	s3, _ := c.CreateSession(0)
	if err := s3.AgentJoin("a3", "Ace"); !errors.Is(err, gcbtest.ErrAgentBusy) {
		t.Fatalf("agent bound by a Controller join: %v", err)
	}
	if err := s2.AgentJoin("a3", "Ace"); err != nil { // its own session is fine
		t.Fatal(err)
	}
	// Once the first session ends, a1 is free again.
	if err := s1.AgentExit(); err != nil {
		t.Fatal(err)
	}
	if err := s3.AgentJoin("a1", "Ann"); err != nil {
		t.Fatalf("a1 after its session ended: %v", err)
	}
}

func TestControllerExit(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	s, _ := c.CreateSession(0)
	ctl := newClient(t, lp, s.Node().CometDURL(), "")
	ctl.start(ctx)
	ut := ctl.join(ctx, s.Token(), 3, "")["userToken"]
	res, ack, err := ctl.publish(ctx, "/service/session/exit", map[string]any{"userToken": ut})
	if err != nil || res["successful"] != true || ack["successful"] != true {
		t.Fatalf("exit: %v %v %v", res, ack, err)
	}
	if s.State() != gcbtest.StateIdle || len(s.Users()) != 1 {
		t.Fatalf("after the Controller's exit: %v %v", s.State(), s.Users())
	}
	if e := ctl.refused(ctx, "/service/session/stop", map[string]any{"userToken": ut}); !strings.HasPrefix(e, "404:") {
		t.Fatalf("stop after exit: %q", e)
	}
	ctl.join(ctx, s.Token(), 3, "") // a Controller may join again
}

// waitFor polls cond until it holds or the bound passes (the server gives no signal for the
// absence of a Bayeux session).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %v", what, wait)
		}
	}
}

func hasRole(s *gcbtest.Session, role int) bool {
	for _, u := range s.Users() {
		if u.Role == role {
			return true
		}
	}
	return false
}

func TestBayeuxExpiry(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		name := "rejoin-allowed"
		if refuse {
			name = "rejoin-refused"
		}
		t.Run(name, func(t *testing.T) {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{RefuseControllerRejoin: refuse})
			s, _ := c.CreateSession(0)
			n := s.Node()
			ctl := newClient(t, lp, n.CometDURL(), "")
			ctl.start(ctx) // the connect loop keeps the session alive...
			ut := ctl.join(ctx, s.Token(), 3, "")["userToken"].(string)
			ctl.stop() // ...until it stops
			ctl.wg.Wait()
			// The node counts the Bayeux session gone before its Removed hook takes the Controller
			// out of the co-browse session (outside the Bayeux lock): wait for both.
			waitFor(t, "Bayeux session expiry, then the Controller's leaving", func() bool {
				return n.Stats().BayeuxSessions == 0 && !hasRole(s, 3)
			})
			replies, err := ctl.post(ctx, []msg{ctl.connectMsg(0)})
			if err != nil {
				t.Fatal(err)
			}
			assertUnknownClient(t, replies[0])

			// A new Bayeux session: the old token cannot be used over CometD...
			again := newClient(t, lp, n.CometDURL(), "")
			again.start(ctx)
			if e := again.refused(ctx, "/service/session/stop", map[string]any{"userToken": ut}); !strings.HasPrefix(e, "403:") {
				t.Fatalf("stop with a lost membership's token: %q", e)
			}
			// ...re-join is allowed unless the option refuses it...
			if refuse {
				if e := again.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3}); e != "403::rejoin not allowed" {
					t.Fatalf("re-join: %q", e)
				}
			} else {
				again.join(ctx, s.Token(), 3, "")
			}
			// ...and the REST stop with the saved token works while the session is live.
			got := rest(t, http.MethodGet, n.URL()+"/rest/live/users/"+ut+"/session/stop", nil)
			if got.status != http.StatusOK || s.EndedBy() != gcbtest.EndedByControllerREST {
				t.Fatalf("REST stop with the old token: %+v, ended by %q", got, s.EndedBy())
			}
			if !refuse {
				again.next("/service/session/deactivated", wait)
			}
		})
	}
}

func TestExpireBayeuxSessions(t *testing.T) {
	for _, transport := range []string{lp, ws} {
		t.Run(transport, func(t *testing.T) {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{ConnectTimeout: time.Minute, MaxInterval: time.Minute})
			s, _ := c.CreateSession(0)
			n := s.Node()
			ctl := newClient(t, transport, n.CometDURL(), "")
			ctl.start(ctx)
			ut := ctl.join(ctx, s.Token(), 3, "")["userToken"].(string)
			n.ExpireBayeuxSessions()
			// The held connect is answered 402 with advice to handshake (held for a minute
			// otherwise, so this reply can only come from the expiry).
			assertUnknownClient(t, ctl.failedConnect(wait))
			if hasRole(s, 3) {
				t.Fatal("the Controller kept its membership")
			}
			_, ack, err := ctl.publish(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3})
			if err != nil || ack["error"] != "402::Unknown client" {
				t.Fatalf("publish after expiry: %v %v", ack, err)
			}
			if got := rest(t, http.MethodGet, n.URL()+"/rest/live/users/"+ut+"/session/stop", nil); got.status != http.StatusOK {
				t.Fatalf("REST stop: %+v", got)
			}
		})
	}
}

func TestKillAndRestart(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{Nodes: 2, ConnectTimeout: time.Minute, MaxInterval: time.Minute})
	s, _ := c.CreateSession(1)
	n := s.Node()
	direct := newClient(t, lp, n.CometDURL(), "")
	direct.start(ctx)
	direct.join(ctx, s.Token(), 3, "")
	front := newClient(t, ws, c.URL()+"/cometd", n.Name())
	front.start(ctx)
	if err := s.AgentJoin("a1", "Ann"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "held connects", func() bool { return n.Stats().HeldConnects == 2 })

	n.Kill()
	select {
	case <-s.Done():
	default:
		t.Fatal("the session outlived its node")
	}
	if s.EndedBy() != gcbtest.EndedByNode || n.Stats().Up {
		t.Fatalf("ended by %q, stats %+v", s.EndedBy(), n.Stats())
	}
	// The held connects fail: the direct one with a transport error, the websocket closes.
	if m := direct.failedConnect(wait); m["transportError"] == nil {
		t.Fatalf("direct connect after kill: %v", m)
	}
	// The front answers 503 for the dead node; the node's own address refuses connections.
	if got := rest(t, http.MethodGet, c.URL()+"/health", http.Header{"Cookie": {gcbtest.StickyCookie + "=" + n.Name()}}); got.status != http.StatusServiceUnavailable {
		t.Fatalf("front for a dead node: %d", got.status)
	}
	if _, err := http.Get(n.URL() + "/health"); err == nil {
		t.Fatal("a dead node answered")
	}
	if got := rest(t, http.MethodGet, c.URL()+"/rest/live/sessions/"+s.Token(), origin); got.status != http.StatusGone {
		t.Fatalf("get session of a dead node (ended with it): %+v", got)
	}
	if _, err := c.CreateSession(1); !errors.Is(err, gcbtest.ErrNodeDown) {
		t.Fatalf("create on a dead node: %v", err)
	}
	// Without a cookie the front skips the dead node.
	for range 3 {
		if got := rest(t, http.MethodGet, c.URL()+"/health", nil); got.status != http.StatusOK {
			t.Fatalf("front health with one node down: %d", got.status)
		}
	}
	// The agent is free again.
	s2, _ := c.CreateSession(0)
	if err := s2.AgentJoin("a1", "Ann"); err != nil {
		t.Fatal(err)
	}

	n.Restart()
	if got := rest(t, http.MethodGet, n.URL()+"/health", nil); got.status != http.StatusOK {
		t.Fatalf("restarted node health: %d", got.status)
	}
	if st := n.Stats(); !st.Up || st.BayeuxSessions != 0 {
		t.Fatalf("restarted node stats %+v", st)
	}
	replies, err := direct.post(ctx, []msg{direct.connectMsg(0)})
	if err != nil {
		t.Fatal(err)
	}
	assertUnknownClient(t, replies[0])
	s3, err := c.CreateSession(1)
	if err != nil {
		t.Fatal(err)
	}
	again := newClient(t, ws, c.URL()+"/cometd", n.Name())
	again.start(ctx)
	again.join(ctx, s3.Token(), 3, "")
}

func TestFaults(t *testing.T) {
	t.Run("delay", func(t *testing.T) {
		for _, transport := range []string{lp, ws} {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{})
			s, _ := c.CreateSession(0)
			cl := newClient(t, transport, s.Node().CometDURL(), "")
			cl.start(ctx)
			const delay = 300 * time.Millisecond
			s.Node().SetFault(gcbtest.Fault{Channel: "/service/session/join", Delay: delay})
			start := time.Now()
			cl.join(ctx, s.Token(), 3, "")
			if took := time.Since(start); took < delay {
				t.Fatalf("%s: a delayed join answered in %v", transport, took)
			}
		}
	})
	t.Run("drop", func(t *testing.T) {
		for _, transport := range []string{lp, ws} {
			ctx := ctxFor(t)
			c := newCluster(t, gcbtest.Options{})
			s, _ := c.CreateSession(0)
			cl := newClient(t, transport, s.Node().CometDURL(), "")
			cl.start(ctx)
			s.Node().SetFault(gcbtest.Fault{Channel: "/service/session/join", Drop: true})
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, _, err := cl.publish(short, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: dropped join: %v", transport, err)
			}
			// The request was processed; only its reply was lost.
			if !hasRole(s, 3) {
				t.Fatalf("%s: the dropped join did not join", transport)
			}
			s.Node().SetFault(gcbtest.Fault{})
			if e := cl.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3}); e != "403::already joined" {
				t.Fatalf("%s: after clearing the fault: %q", transport, e)
			}
		}
	})
	t.Run("notification-dropped", func(t *testing.T) {
		ctx := ctxFor(t)
		c := newCluster(t, gcbtest.Options{})
		s, _ := c.CreateSession(0)
		cl := newClient(t, ws, s.Node().CometDURL(), "")
		cl.start(ctx)
		cl.join(ctx, s.Token(), 3, "")
		s.Node().SetFault(gcbtest.Fault{Channel: "/service/session/activated", Drop: true})
		if err := s.AgentJoin("a1", "Ann"); err != nil {
			t.Fatal(err)
		}
		cl.next("/service/session/joined", wait) // the joined in the same frame is kept
		s.Node().SetFault(gcbtest.Fault{})
		if err := s.AgentExit(); err != nil {
			t.Fatal(err)
		}
		if m := cl.next("/service/session/deactivated", wait); m == nil {
			t.Fatal("no deactivated")
		}
		select {
		case m := <-cl.deliveries:
			t.Fatalf("unexpected %v", m)
		default:
		}
	})
	t.Run("rest", func(t *testing.T) {
		c := newCluster(t, gcbtest.Options{})
		s, _ := c.CreateSession(0)
		s.Node().SetFault(gcbtest.Fault{Channel: "/rest/live/sessions", Drop: true})
		hc := &http.Client{Transport: &http.Transport{}, Timeout: 300 * time.Millisecond}
		defer hc.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, c.URL()+"/rest/live/sessions/"+s.Token(), nil)
		req.Header.Set("Origin", "https://agent.example")
		if _, err := hc.Do(req); err == nil {
			t.Fatal("a dropped Get Session answered")
		}
		if got := rest(t, http.MethodGet, c.URL()+"/health", nil); got.status != http.StatusOK {
			t.Fatalf("health under a REST fault: %d", got.status)
		}
	})
}

func TestWaitUser(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{})
	s, _ := c.CreateSession(0)
	got := make(chan gcbtest.User, 1)
	errc := make(chan error, 1)
	go func() {
		u, err := s.WaitUser(ctx, 3)
		got <- u
		errc <- err
	}()
	cl := newClient(t, lp, s.Node().CometDURL(), "")
	cl.start(ctx)
	cl.join(ctx, s.Token(), 3, "ctl")
	if u := <-got; u.Role != 3 || u.Name != "ctl" || <-errc != nil {
		t.Fatalf("WaitUser: %v", u)
	}
	if err := s.CustomerExit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitUser(ctx, 2); !errors.Is(err, gcbtest.ErrEnded) {
		t.Fatalf("WaitUser on an ended session: %v", err)
	}
}

func TestInProcessTransport(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{Nodes: 2})
	s, _ := c.CreateSession(1)
	for _, viaFront := range []bool{true, false} {
		url, sticky := s.Node().CometDURL(), ""
		if viaFront {
			url, sticky = c.URL()+"/cometd", s.Node().Name()
		}
		cl := newClient(t, lp, url, sticky)
		cl.hc.Transport = c.Transport()
		cl.start(ctx)
		if viaFront {
			cl.join(ctx, s.Token(), 3, "")
			if err := s.AgentJoin("a1", "Ann"); err != nil {
				t.Fatal(err)
			}
			cl.next("/service/session/activated", wait)
			continue
		}
		// Direct to the node: a held connect fails like a reset connection when the node dies,
		// and later requests like a refused one.
		waitFor(t, "a held connect", func() bool { return s.Node().Stats().HeldConnects == 2 })
		s.Node().Kill()
		if m := cl.failedConnect(wait); !strings.Contains(m["transportError"].(string), "reset") {
			t.Fatalf("held connect when the node died: %v", m)
		}
		if _, err := cl.post(ctx, []msg{cl.connectMsg(0)}); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("request to a dead node: %v", err)
		}
	}
	if _, err := (&http.Client{Transport: c.Transport()}).Get("http://127.0.0.1:1/"); err == nil {
		t.Fatal("the in-process transport served a foreign address")
	}
}

// TestNoGoroutinePerIdleSession: live sessions with a Controller joined and no request
// outstanding cost no goroutine.
func TestNoGoroutinePerIdleSession(t *testing.T) {
	const n = 200
	c := newCluster(t, gcbtest.Options{ConnectTimeout: time.Hour, MaxInterval: time.Hour})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	l := &lean{hc: hc, url: c.Nodes()[0].CometDURL()}
	s, _ := c.CreateSession(0)
	if _, err := l.controller(s); err != nil { // warm up: the client's connection exists
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range n {
		s, err := c.CreateSession(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.controller(s); err != nil {
			t.Fatal(err)
		}
	}
	if grown := runtime.NumGoroutine() - before; grown > 10 {
		t.Fatalf("%d goroutines more for %d idle sessions", grown, n)
	}
	if st := c.Nodes()[0].Stats(); st.BayeuxSessions != n+1 || c.LiveSessions() != n+1 {
		t.Fatalf("stats %+v, %d live sessions", st, c.LiveSessions())
	}
}

// TestCloseWithRequestsInFlight: Close returns with held connects (long-polling and
// websocket, direct and through the front) and a withheld reply in flight, and leaves no
// goroutine behind.
func TestCloseWithRequestsInFlight(t *testing.T) {
	ctx := ctxFor(t)
	c := gcbtest.NewCluster(gcbtest.Options{Nodes: 2, ConnectTimeout: time.Hour, MaxInterval: time.Hour})
	s, _ := c.CreateSession(1)
	var clients []*client
	for _, r := range routes {
		cl := r.client(t, c, s)
		cl.start(ctx)
		clients = append(clients, cl)
	}
	s.Node().SetFault(gcbtest.Fault{Channel: "/service/session/join", Drop: true})
	stuck := make(chan error, 1)
	go func() {
		_, _, err := clients[0].publish(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3})
		stuck <- err
	}()
	waitFor(t, "the join processed", func() bool { return hasRole(s, 3) })
	c.Close()
	if err := <-stuck; err == nil {
		t.Fatal("the withheld join answered")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("a session outlived Close")
	}
	for _, cl := range clients {
		cl.close()
	}
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// TestHoldController: under HoldController, a Controller whose Bayeux session expired stays a
// member for that long: a new Controller's join is refused ("403::controller already joined"),
// the old token still stops the session through REST, and after the hold a new Controller joins.
func TestHoldController(t *testing.T) {
	ctx := ctxFor(t)
	c := newCluster(t, gcbtest.Options{HoldController: 300 * time.Millisecond})
	s, _ := c.CreateSession(0)
	n := s.Node()
	ctl := newClient(t, lp, n.CometDURL(), "")
	ctl.start(ctx)
	ctl.join(ctx, s.Token(), 3, "")
	n.ExpireBayeuxSessions()
	waitFor(t, "Bayeux session expiry", func() bool { return n.Stats().BayeuxSessions == 0 })
	if !hasRole(s, 3) {
		t.Fatal("the Controller left at once; HoldController should keep it")
	}
	again := newClient(t, lp, n.CometDURL(), "")
	again.start(ctx)
	if e := again.refused(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3}); e != "403::controller already joined" {
		t.Fatalf("join while the old Controller is held: %q", e)
	}
	// After the hold, the next join finds the old Controller gone and takes its place.
	waitFor(t, "the hold to pass and a new Controller to join", func() bool {
		_, ack, err := again.publish(ctx, "/service/session/join", map[string]any{"sessionToken": s.Token(), "role": 3})
		if err != nil {
			t.Fatal(err)
		}
		return ack["successful"] == true
	})
	if s.State() == gcbtest.StateEnded {
		t.Fatal("the hold ended the session")
	}
}
