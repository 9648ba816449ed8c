package gcb

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

const tok = "535176834"

// newConnector builds a Connector for a test and releases its idle connections afterwards.
func newConnector(t *testing.T, cfg Config) *Connector {
	t.Helper()
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fakeServer is a REST fake: one handler, a count of the requests that reached it, and the last
// request's headers.
type fakeServer struct {
	*httptest.Server
	hits    atomic.Int32
	lastReq atomic.Pointer[http.Request]
}

func newFake(t *testing.T, h http.HandlerFunc) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		f.lastReq.Store(r.Clone(context.Background()))
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func serverError(t *testing.T, err error) *connector.ServerError {
	t.Helper()
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok {
		t.Fatalf("want a *connector.ServerError, got %T: %v", err, err)
	}
	return se
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{ClusterURL: "https://cb.example:8700/cobrowse/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterURL != "https://cb.example:8700/cobrowse" {
		t.Errorf("ClusterURL = %q (trailing slash kept?)", cfg.ClusterURL)
	}
	if cfg.Origin != "https://cb.example:8700" {
		t.Errorf("Origin = %q", cfg.Origin)
	}
	if cfg.CometDPath != "/cometd" || cfg.AgentViewPath != "/slave.html" || cfg.AgentViewFragment != DefaultAgentViewFragment {
		t.Errorf("paths: %q %q %q", cfg.CometDPath, cfg.AgentViewPath, cfg.AgentViewFragment)
	}
	if len(cfg.Transports) != 2 || cfg.Transports[0] != cometd.TransportWebSocket || cfg.Transports[1] != cometd.TransportLongPolling {
		t.Errorf("Transports = %v", cfg.Transports)
	}
	if cfg.RequestTimeout != 10*time.Second || cfg.LostAfter != 60*time.Second || cfg.JoinTimeout != DefaultJoinTimeout ||
		cfg.StopTimeout != DefaultStopTimeout || cfg.MaxNetworkDelay != DefaultMaxNetworkDelay || cfg.EventBuffer != DefaultEventBuffer {
		t.Errorf("durations/sizes not defaulted: %+v", cfg)
	}
	if cfg.Logger == nil {
		t.Error("Logger nil")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{}, "gcb: ClusterURL is required"},
		{"bad scheme", Config{ClusterURL: "ftp://x/cobrowse"}, `gcb: ClusterURL: "ftp://x/cobrowse": scheme must be http or https`},
		{"no host", Config{ClusterURL: "http:///cobrowse"}, `gcb: ClusterURL: "http:///cobrowse": no host`},
		{"query", Config{ClusterURL: "http://x/cobrowse?a=1"}, `gcb: ClusterURL: "http://x/cobrowse?a=1": must have no query or fragment`},
		// Credentials would reach logs, errors and the agent view URL: refused, and not quoted back.
		{"credentials", Config{ClusterURL: "http://user:s3cret@x:8700/cobrowse/"}, `gcb: ClusterURL: "http://x:8700/cobrowse": must not carry credentials (user info)`},
		{"user only", Config{ClusterURL: "https://user@x/cobrowse"}, `gcb: ClusterURL: "https://x/cobrowse": must not carry credentials (user info)`},
		{"empty user info", Config{ClusterURL: "http://@x/cobrowse"}, `gcb: ClusterURL: "http://x/cobrowse": must not carry credentials (user info)`},
		{"credentials and a bad scheme", Config{ClusterURL: "ftp://user:s3cret@x"}, `gcb: ClusterURL: "ftp://x": must not carry credentials (user info)`},
		{"transport", Config{ClusterURL: "http://x", Transports: []string{"callback-polling"}}, `gcb: unknown transport "callback-polling" (want "websocket" or "long-polling")`},
		{"negative", Config{ClusterURL: "http://x", LostAfter: -time.Second}, "gcb: LostAfter must not be negative (got -1s)"},
		{"cometd path", Config{ClusterURL: "http://x", CometDPath: "cometd"}, `gcb: CometDPath "cometd" must start with '/'`},
		{"fragment", Config{ClusterURL: "http://x", AgentViewFragment: "nosidinput=1"}, `gcb: AgentViewFragment "nosidinput=1" must contain {token}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestValidToken(t *testing.T) {
	for tokIn, want := range map[string]bool{
		"535176834": true, "000000001": true,
		"": false, "12345678": false, "1234567890": false, "53517683a": false, " 53517683": false,
		"５３５１７６８３４": false, // full-width digits are not ASCII
		"-53517683": false,
	} {
		if got := validToken(tokIn); got != want {
			t.Errorf("validToken(%q) = %v, want %v", tokIn, got, want)
		}
	}
}

func TestInvalidTokenMakesNoCall(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	c := newConnector(t, Config{ClusterURL: f.URL + "/cobrowse"})
	ctx := t.Context()
	for _, bad := range []string{"", "12345", "abcdefghi", "5351768340"} {
		_, err := c.Join(ctx, connector.Trigger{Token: bad})
		switch {
		case bad == "": // no token: a request to create a session, which Genesys cannot
			if !errors.Is(err, connector.ErrUnsupported) {
				t.Errorf("Join without a token = %v, want ErrUnsupported", err)
			}
		case !errors.Is(err, connector.ErrNotFound) || !errors.Is(err, ErrInvalidToken):
			t.Errorf("Join(%q) = %v, want ErrNotFound+ErrInvalidToken", bad, err)
		}
		_, err = c.Rejoin(ctx, NewHandle(bad, "", "", f.URL, ""))
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Rejoin(%q) = %v", bad, err)
		}
	}
	if n := f.hits.Load(); n != 0 {
		t.Fatalf("%d requests for invalid tokens", n)
	}
}

func TestGetSessionErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		want       error
		wantReason string
	}{
		{"404", 404, "", connector.ErrNotFound, "HTTP 404 Not Found"},
		{"410", 410, "gone", connector.ErrNotLive, "gone"},
		{"400", 400, "bad token", connector.ErrNotFound, "bad token"},
		{"500", 500, "boom", connector.ErrUnavailable, "boom"},
		{"503", 503, "", connector.ErrUnavailable, "HTTP 503 Service Unavailable"},
		{"429", 429, "", connector.ErrUnavailable, "HTTP 429 Too Many Requests"},
		{"403 cors", 403, "Origin http://evil not allowed", connector.ErrRefused, "Origin http://evil not allowed"},
		{"no server name", 200, `{"sessionToken":"535176834"}`, connector.ErrNotFound, `no sessionServerName in reply: {"sessionToken":"******834"}`}, // the token is masked
		{"empty object", 200, `{}`, connector.ErrNotFound, "no sessionServerName in reply: {}"},
		{"bad json", 200, `<html>proxy</html>`, connector.ErrUnavailable, "<html>proxy</html>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			cluster := f.URL + "/cobrowse"
			c := newConnector(t, Config{ClusterURL: cluster})
			_, err := c.Join(t.Context(), connector.Trigger{Token: tok})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			se := serverError(t, err)
			if se.Op != opGetSession || se.Node != cluster || se.Reason != tc.wantReason {
				t.Fatalf("ServerError = op %q node %q reason %q; want %q %q %q", se.Op, se.Node, se.Reason, opGetSession, cluster, tc.wantReason)
			}
			if r := f.lastReq.Load(); r == nil || r.URL.Path != "/cobrowse/rest/live/sessions/"+tok || r.Method != http.MethodGet {
				t.Fatalf("request = %v", r)
			}
		})
	}
}

func TestGetSessionNetworkErrorAndTimeout(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/cobrowse"
	_ = ln.Close()
	c := newConnector(t, Config{ClusterURL: dead})
	_, err = c.Join(t.Context(), connector.Trigger{Token: tok})
	if !errors.Is(err, connector.ErrUnavailable) {
		t.Fatalf("network error: %v", err)
	}
	if se := serverError(t, err); se.Node != dead || se.Op != opGetSession || se.Err == nil {
		t.Fatalf("ServerError = %+v", se)
	}

	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	c = newConnector(t, Config{ClusterURL: f.URL, RequestTimeout: 50 * time.Millisecond})
	_, err = c.Join(t.Context(), connector.Trigger{Token: tok})
	if !errors.Is(err, connector.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestGetSessionSendsOriginAndReadsRoute(t *testing.T) {
	for _, tc := range []struct {
		name     string
		origin   string
		wantOrig string
	}{
		{"derived", "", ""}, // filled below with the fake's scheme://host
		{"configured", "https://agent.example", "https://agent.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				http.SetCookie(w, &http.Cookie{Name: "other", Value: "x"})
				http.SetCookie(w, &http.Cookie{Name: StickyCookie, Value: "node-2", Path: "/"})
				_, _ = w.Write([]byte(`{"sessionToken":"535176834","sessionServerName":"node-2"}`))
			})
			c := newConnector(t, Config{ClusterURL: f.URL + "/cobrowse", Origin: tc.origin})
			info, err := c.getSession(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantOrig
			if want == "" {
				want = f.URL
			}
			if got := f.lastReq.Load().Header.Get("Origin"); got != want {
				t.Fatalf("Origin = %q, want %q", got, want)
			}
			if info.Cookie != "node-2" || info.ServerName != "node-2" || info.ServerURL != "" {
				t.Fatalf("info = %+v", info)
			}
		})
	}
}

func TestChooseRoute(t *testing.T) {
	const cluster = "http://lb:8700/cobrowse"
	for _, tc := range []struct {
		name, serverURL, cookie string
		want                    route
	}{
		{"server url", "http://node2:8700/cobrowse", "", route{NodeURL: "http://node2:8700/cobrowse", Why: "server-url"}},
		{"server url wins over cookie", "http://node2:8700/cobrowse/", "n2", route{NodeURL: "http://node2:8700/cobrowse", Why: "server-url"}},
		{"cookie", "", "n2", route{NodeURL: cluster, Sticky: "n2", Why: "cookie"}},
		{"no cookie", "", "", route{NodeURL: cluster, Why: "no-cookie"}},
		{"bad server url, cookie", "not a url", "n2", route{NodeURL: cluster, Sticky: "n2", Why: "bad-server-url+cookie"}},
		{"bad server url, no cookie", "ftp://node2", "", route{NodeURL: cluster, Why: "bad-server-url+no-cookie"}},
		{"server url with credentials", "http://u:p@node2:8700/cobrowse", "n2", route{NodeURL: cluster, Sticky: "n2", Why: "bad-server-url+cookie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chooseRoute(cluster, tc.serverURL, tc.cookie); got != tc.want {
				t.Fatalf("chooseRoute = %+v, want %+v", got, tc.want)
			}
		})
	}
	if ck := (route{Sticky: "n2"}).stickyCookies(); len(ck) != 1 || ck[0].Name != StickyCookie || ck[0].Value != "n2" {
		t.Fatalf("stickyCookies = %v", ck)
	}
	if ck := (route{}).stickyCookies(); ck != nil {
		t.Fatalf("stickyCookies without cookie = %v", ck)
	}
}

func TestAgentViewURL(t *testing.T) {
	for _, tc := range []struct {
		name, node, path, frag, sid, want string
	}{
		{"default on node", "http://node2:8700/cobrowse", "/slave.html", DefaultAgentViewFragment, "h1",
			"http://node2:8700/cobrowse/slave.html#nosidinput=1&sid=535176834"},
		{"cluster under cookie", "http://lb/cobrowse/", "/slave.html", DefaultAgentViewFragment, "",
			"http://lb/cobrowse/slave.html#nosidinput=1&sid=535176834"},
		{"both placeholders, escaped", "https://n", "/agent.html", "sessionToken={token}&history={sessionId}&x=1", "a b&c",
			"https://n/agent.html#sessionToken=535176834&history=a+b%26c&x=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := agentViewURL(tc.node, tc.path, tc.frag, tok, tc.sid)
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if strings.Contains(strings.SplitN(got, "#", 2)[0], "?") {
				t.Fatalf("parameters in the query: %s", got)
			}
		})
	}
}

func TestLenientDecoding(t *testing.T) {
	var r joinReply
	err := json.Unmarshal([]byte(`{"userToken":"abc789","userId":2,"users":[{"userId":"1","role":1,"name":"John"},{"userId":3,"role":"2","name":"Bob"},{"userId":null,"role":3}],"sessionHistoryId":"h-1"}`), &r)
	if err != nil {
		t.Fatal(err)
	}
	if r.UserID != "2" || r.UserToken != "abc789" || r.SessionHistoryID != "h-1" {
		t.Fatalf("reply = %+v", r)
	}
	ps := participants(r.Users)
	want := []connector.Participant{{ID: "1", Role: connector.RoleCustomer, Name: "John"}, {ID: "3", Role: connector.RoleAgent, Name: "Bob"}, {Role: connector.RoleController}}
	if len(ps) != len(want) {
		t.Fatalf("participants = %+v", ps)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("participant %d = %+v, want %+v", i, ps[i], want[i])
		}
	}

	at := time.UnixMilli(1368722791040).UTC()
	dt := time.UnixMilli(1368722820929).UTC()
	for _, tc := range []struct {
		in       string
		act, dea time.Time
		bad      bool
	}{
		{`{"activationTime":1368722791040,"deactivationTime":1368722820929}`, at, dt, false},
		{`{"activationTime":"1368722791040","deactivationTime":"1368722820929"}`, at, dt, false},
		{`{"activationTime":1.36872279104e12}`, at, time.Time{}, false},
		{`{"activationTime":null,"deactivationTime":""}`, time.Time{}, time.Time{}, false},
		{`{"activationTime":0}`, time.Time{}, time.Time{}, false},
		{`{"activationTime":"2013-05-16T16:46:31.04Z"}`, at, time.Time{}, false},
		{`{}`, time.Time{}, time.Time{}, false},
		{``, time.Time{}, time.Time{}, false},
		{`{"activationTime":"soon"}`, time.Time{}, time.Time{}, true},
		{`{"activationTime":true}`, time.Time{}, time.Time{}, true},
	} {
		got, err := decodeTimes([]byte(tc.in))
		if (err != nil) != tc.bad {
			t.Errorf("decodeTimes(%s) err = %v", tc.in, err)
			continue
		}
		if !tc.bad && (!got.Activation.Equal(tc.act) || !got.Deactivation.Equal(tc.dea)) {
			t.Errorf("decodeTimes(%s) = %v / %v", tc.in, got.Activation, got.Deactivation)
		}
	}
	var u userJSON
	if err := json.Unmarshal([]byte(`{"userId":"2","role":2,"name":"Bob"}`), &u); err != nil || u.participant() != (connector.Participant{ID: "2", Role: connector.RoleAgent, Name: "Bob"}) {
		t.Fatalf("joined = %+v, %v", u, err)
	}
}

func TestBayeuxErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		want   error
		reason string
	}{
		{"403::agent busy", connector.ErrRefused, "agent busy"},
		{"403:x:Controller already joined", connector.ErrRefused, "Controller already joined"},
		{"404::session not found", connector.ErrNotFound, "session not found"},
		{"410::session ended", connector.ErrNotLive, "session ended"},
		{"404::session ended", connector.ErrNotLive, "session ended"},
		{"400::Session not found", connector.ErrNotFound, "Session not found"},
		{"402::Unknown client", connector.ErrUnavailable, "Unknown client"},
		{"402::session_unknown", connector.ErrUnavailable, "session_unknown"},
		{"406::timeout", connector.ErrUnavailable, "timeout"},
		{"500::internal", connector.ErrUnavailable, "internal"},
		{"weird text", connector.ErrRefused, "weird text"},
	} {
		err := bayeuxError(opJoin, "http://n", cometd.ParseError(ChannelJoin, tc.raw))
		if !errors.Is(err, tc.want) {
			t.Errorf("%q -> %v, want %v", tc.raw, err, tc.want)
			continue
		}
		if se := serverError(t, err); se.Reason != tc.reason || se.Op != opJoin || se.Node != "http://n" {
			t.Errorf("%q -> %+v", tc.raw, se)
		}
		if _, ok := errors.AsType[*cometd.Error](err); !ok {
			t.Errorf("%q: the cometd error is not kept as the cause", tc.raw)
		}
	}
	err := bayeuxError(opJoin, "http://n", context.DeadlineExceeded)
	if !errors.Is(err, connector.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("transport error -> %v", err)
	}
}

func TestStopHandleREST(t *testing.T) {
	const userToken = "u/tok 1"
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		want    error
		wantAct time.Time
	}{
		{"ok with times", 200, `{"activationTime":1368722791040,"deactivationTime":1368722820929}`, nil, time.UnixMilli(1368722791040).UTC()},
		{"ok empty", 200, ``, nil, time.Time{}},
		{"ok garbage times", 200, `{"activationTime":"x"}`, nil, time.Time{}},
		{"already ended", 404, "no such user", nil, time.Time{}},
		{"refused", 403, "not a controller", connector.ErrRefused, time.Time{}},
		{"down", 502, "bad gateway", connector.ErrUnavailable, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			c := newConnector(t, Config{ClusterURL: "http://unused.invalid/cobrowse"})
			node := f.URL + "/cobrowse"
			times, err := c.StopHandle(t.Context(), NewHandle(tok, "", userToken, node, "node-1"))
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				if se := serverError(t, err); se.Node != node || se.Op != opRESTStop {
					t.Fatalf("ServerError = %+v", se)
				}
			}
			if !times.Activation.Equal(tc.wantAct) {
				t.Fatalf("activation = %v", times.Activation)
			}
			r := f.lastReq.Load()
			if r.URL.EscapedPath() != "/cobrowse/rest/live/users/u%2Ftok%201/session/stop" || r.Method != http.MethodGet {
				t.Fatalf("request %s %s", r.Method, r.URL.EscapedPath())
			}
			if ck, err := r.Cookie(StickyCookie); err != nil || ck.Value != "node-1" {
				t.Fatalf("sticky cookie not sent: %v %v", ck, err)
			}
			if r.Header.Get("Origin") == "" {
				t.Fatal("no Origin on REST stop")
			}
		})
	}
}

func TestStopHandleNoUserToken(t *testing.T) {
	c := newConnector(t, Config{ClusterURL: "http://unused.invalid/cobrowse"})
	_, err := c.StopHandle(t.Context(), NewHandle(tok, "", "", "http://n", ""))
	if !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestStopHandleWithoutNodeLocatesFirst(t *testing.T) {
	var stops atomic.Int32
	var f *fakeServer
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/cobrowse/rest/live/sessions/"):
			_, _ = w.Write([]byte(`{"sessionToken":"535176834","sessionServerName":"n2","sessionServerUrl":"` + f.URL + `/n2"}`))
		case r.URL.Path == "/n2/rest/live/users/ut/session/stop":
			stops.Add(1)
			_, _ = w.Write([]byte(`{}`))
		default:
			http.NotFound(w, r)
		}
	})
	c := newConnector(t, Config{ClusterURL: f.URL + "/cobrowse"})
	if _, err := c.StopHandle(t.Context(), NewHandle(tok, "", "ut", "", "")); err != nil {
		t.Fatal(err)
	}
	if stops.Load() != 1 {
		t.Fatal("stop not sent to the owning node")
	}
}

func TestBreakerOnGetSession(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	cluster := f.URL + "/cobrowse"
	c := newConnector(t, Config{ClusterURL: cluster, Breaker: connector.BreakerSettings{FailuresToTrip: 3, OpenFor: time.Hour}})
	for i := range 3 {
		_, err := c.Join(t.Context(), connector.Trigger{Token: tok})
		if !errors.Is(err, connector.ErrUnavailable) || errors.Is(err, connector.ErrBreakerOpen) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := c.Join(t.Context(), connector.Trigger{Token: tok})
	if !errors.Is(err, connector.ErrUnavailable) || !errors.Is(err, connector.ErrBreakerOpen) {
		t.Fatalf("after trip: %v", err)
	}
	if n := f.hits.Load(); n != 3 {
		t.Fatalf("open breaker let requests through: %d", n)
	}
	if c.Breakers().State(cluster) != connector.BreakerOpen {
		t.Fatal("breaker not open")
	}

	// 404s are answers from a healthy server: they never open the breaker.
	nf := newFake(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	c = newConnector(t, Config{ClusterURL: nf.URL, Breaker: connector.BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour}})
	for range 5 {
		if _, err := c.Join(t.Context(), connector.Trigger{Token: tok}); !errors.Is(err, connector.ErrNotFound) {
			t.Fatalf("404: %v", err)
		}
	}
	if nf.hits.Load() != 5 {
		t.Fatal("not-found answers tripped the breaker")
	}
}

// TestErrorsMaskTokens: errors the controller will log never show a session or user token in
// full: not in the server's words, not in a network error's URL.
func TestErrorsMaskTokens(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"session ` + tok + ` not found"}`))
	})
	c := newConnector(t, Config{ClusterURL: f.URL})
	_, err := c.Join(t.Context(), connector.Trigger{Token: tok})
	if !errors.Is(err, connector.ErrNotFound) || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), connector.MaskToken(tok)) {
		t.Fatalf("404 error shows the token: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	c = newConnector(t, Config{ClusterURL: dead})
	_, err = c.Join(t.Context(), connector.Trigger{Token: tok})
	var ue *url.Error
	if !errors.Is(err, connector.ErrUnavailable) || !errors.As(err, &ue) || strings.Contains(err.Error(), tok) {
		t.Fatalf("network error: %v (url.Error kept: %v)", err, ue != nil)
	}
	const userToken = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
	_, err = c.StopHandle(t.Context(), NewHandle(tok, "", userToken, dead, ""))
	if !errors.Is(err, connector.ErrUnavailable) || strings.Contains(err.Error(), userToken) {
		t.Fatalf("REST stop error shows the user token: %v", err)
	}
}

// TestMatchStart: a Genesys token is exactly nine ASCII digits; anything else the chat's start form
// lets through (a PIN of letters, eight or ten digits) is not this vendor's.
func TestMatchStart(t *testing.T) {
	c := &Connector{}
	for tok, want := range map[string]bool{
		"123456789": true, "000000001": true,
		"12345678": false, "1234567890": false, "12345678a": false, "ABCDEF": false, "": false, "１２３４５６７８９": false,
	} {
		if got, ok := c.MatchStart(tok); ok != want || (ok && got != tok) {
			t.Errorf("MatchStart(%q) = %q, %v; want %v", tok, got, ok, want)
		}
	}
}

// TestJoinWithoutTokenIsUnsupported: Genesys cannot create a session (cobrowse_requested).
func TestJoinWithoutTokenIsUnsupported(t *testing.T) {
	c, err := New(Config{ClusterURL: "http://127.0.0.1:1/cobrowse"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(t.Context(), connector.Trigger{InteractionID: "i1"}); !errors.Is(err, connector.ErrUnsupported) {
		t.Fatalf("Join without a token: %v, want ErrUnsupported", err)
	}
}
