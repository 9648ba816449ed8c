package cec

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

// TestJoinErrorMapping: what CEC answers, and the sentinel the join's error wraps, with CEC's
// words and the call in its Reason.
func TestJoinErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name   string
		route  cectest.Route
		fault  cectest.Fault
		kind   error
		reason []string // substrings of the Reason
	}{
		{"token 400", cectest.RouteToken, cectest.Fault{Status: 400, ErrorReason: "bad request"}, connector.ErrRefused, []string{"tokenByAkSk", "HTTP 400", "bad request"}},
		{"token 401", cectest.RouteToken, cectest.Fault{Status: 401, ErrorCode: "APIGW.0101", ErrorReason: "app_key or app_secret is invalid"}, connector.ErrRefused,
			[]string{"tokenByAkSk", "HTTP 401", "errorCode APIGW.0101: app_key or app_secret is invalid"}},
		{"token 403", cectest.RouteToken, cectest.Fault{Status: 403}, connector.ErrRefused, []string{"HTTP 403"}},
		{"token 429", cectest.RouteToken, cectest.Fault{Status: 429}, connector.ErrUnavailable, []string{"HTTP 429"}},
		{"token 500", cectest.RouteToken, cectest.Fault{Status: 500}, connector.ErrUnavailable, []string{"HTTP 500"}},
		{"token 200 without a token", cectest.RouteToken, cectest.Fault{Refuse: true, ErrorCode: "9", ErrorReason: "tenant frozen"}, connector.ErrRefused,
			[]string{"errorCode 9: tenant frozen"}},
		{"token hangs", cectest.RouteToken, cectest.Fault{Hang: true}, connector.ErrUnavailable, []string{"tokenByAkSk"}},
		{"info 400", cectest.RouteConnectionInfo, cectest.Fault{Status: 400, ErrorCode: "400", ErrorReason: "role must be recorder or replayer"}, connector.ErrRefused,
			[]string{"getConnectionInfo: recorder: HTTP 400: errorCode 400: role must be recorder or replayer"}},
		{"info 401 twice", cectest.RouteConnectionInfo, cectest.Fault{Status: 401, Times: 2}, connector.ErrRefused, []string{"HTTP 401"}},
		{"info 403", cectest.RouteConnectionInfo, cectest.Fault{Status: 403, ErrorReason: "tenant space mismatch"}, connector.ErrRefused, []string{"tenant space mismatch"}},
		{"info 404", cectest.RouteConnectionInfo, cectest.Fault{Status: 404}, connector.ErrRefused, []string{"HTTP 404"}},
		{"info 408", cectest.RouteConnectionInfo, cectest.Fault{Status: 408}, connector.ErrUnavailable, []string{"HTTP 408"}},
		{"info 429", cectest.RouteConnectionInfo, cectest.Fault{Status: 429}, connector.ErrUnavailable, []string{"HTTP 429"}},
		{"info 500", cectest.RouteConnectionInfo, cectest.Fault{Status: 500, ErrorCode: "500", ErrorReason: "internal error"}, connector.ErrUnavailable,
			[]string{"HTTP 500: errorCode 500: internal error"}},
		{"info 502", cectest.RouteConnectionInfo, cectest.Fault{Status: 502}, connector.ErrUnavailable, []string{"HTTP 502"}},
		{"info 503", cectest.RouteConnectionInfo, cectest.Fault{Status: 503}, connector.ErrUnavailable, []string{"HTTP 503"}},
		{"info success false", cectest.RouteConnectionInfo, cectest.Fault{Refuse: true, ErrorCode: "1001", ErrorReason: "room busy"}, connector.ErrRefused,
			[]string{"getConnectionInfo: recorder: errorCode 1001: room busy"}},
		{"info hangs", cectest.RouteConnectionInfo, cectest.Fault{Hang: true}, connector.ErrUnavailable, []string{"getConnectionInfo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCEC(t, cectest.Options{})
			cfg := config(s, false)
			cfg.RequestTimeout = 200 * time.Millisecond
			c := newConnector(t, cfg)
			s.SetFault(tc.route, tc.fault)
			_, err := c.Join(ctxFor(t), trigger("i-1"))
			se := wantServerError(t, err, tc.kind, opJoin)
			other := connector.ErrUnavailable
			if errors.Is(tc.kind, connector.ErrUnavailable) {
				other = connector.ErrRefused
			}
			if errors.Is(err, other) || errors.Is(err, connector.ErrNotFound) {
				t.Fatalf("error %v wraps another sentinel too", err)
			}
			if se.Node != s.URL() {
				t.Fatalf("node %q, want the domain %q", se.Node, s.URL())
			}
			for _, sub := range tc.reason {
				if !strings.Contains(se.Reason, sub) {
					t.Fatalf("reason %q lacks %q", se.Reason, sub)
				}
			}
		})
	}
}

// stub is a CEC whose getConnectionInfo answers what a test says, per role; tokenByAkSk answers
// a token.
type stub struct {
	mu      sync.Mutex
	token   func(w http.ResponseWriter)
	info    func(w http.ResponseWriter, role, room string)
	release func(w http.ResponseWriter)
}

func newStub(t *testing.T, st *stub) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case PathToken:
			if st.token != nil {
				st.token(w)
				return
			}
			_, _ = w.Write([]byte(`{"AccessToken":"stub-access-token-0001","ApplyType":"Bearer","Expires":"3600"}`))
		case PathConnectionInfo:
			var body struct{ RoomID, Role string }
			_ = readJSONBody(r, &body)
			st.info(w, body.Role, body.RoomID)
		case cectest.PathRelease:
			st.release(w)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func stubConfig(srv *httptest.Server) Config {
	return Config{Domain: srv.URL, AppKey: "ak", AppSecret: "sk-secret-value", TenantSpaceID: "ts", ReleaseURL: srv.URL + cectest.PathRelease,
		RequestTimeout: time.Second}
}

func okInfo(room, wssOut string) string {
	return `{"success":true,"data":{"roomId":"` + room + `","wssUrl":"wss://10.0.0.1:8443/ws/cobrowse/1","wssUrlOut":"` + wssOut +
		`","connectParam":"param-` + room + `"},"errorCode":null,"errorReason":null}`
}

// TestJoinReplies: getConnectionInfo's 200s that can and cannot be used.
func TestJoinReplies(t *testing.T) {
	const out = "wss://cec.example.com:8443/ws/cobrowse/1"
	for _, tc := range []struct {
		name   string
		info   func(role, room string) (int, string)
		kind   error // nil: the join succeeds
		reason string
		check  func(t *testing.T, s *session)
	}{
		{"documented", func(_, room string) (int, string) { return 200, okInfo(room, out) }, nil, "", func(t *testing.T, s *session) {
			if s.customer.WSSURL != out || s.customer.WSSURLIn != "wss://10.0.0.1:8443/ws/cobrowse/1" {
				t.Fatalf("customer side %+v: want wssUrlOut for the page, wssUrl kept", *s.customer)
			}
		}},
		{"not JSON", func(_, _ string) (int, string) { return 200, "<html>gateway</html>" }, connector.ErrUnavailable, "reply is not JSON", nil},
		{"success false without words", func(_, _ string) (int, string) { return 200, `{"success":false}` }, connector.ErrRefused, "success is false", nil},
		{"success as a string", func(_, room string) (int, string) {
			return 200, strings.Replace(okInfo(room, out), `"success":true`, `"success":"true"`, 1)
		}, nil, "", nil},
		{"an https address", func(_, room string) (int, string) { return 200, okInfo(room, "https://cec.example.com/ws") }, connector.ErrUnavailable, "no ws(s) address", nil},
		{"no connectParam", func(_, room string) (int, string) {
			return 200, `{"success":true,"data":{"roomId":"` + room + `","wssUrlOut":"` + out + `"}}`
		}, connector.ErrUnavailable, "no connectParam", nil},
		{"no data", func(_, _ string) (int, string) { return 200, `{"success":true,"data":null}` }, connector.ErrUnavailable, "no ws(s) address", nil},
		{"only the internal address", func(_, room string) (int, string) {
			return 200, `{"success":true,"data":{"roomId":"` + room + `","wssUrl":"wss://10.0.0.1/ws","connectParam":"p"}}`
		}, nil, "", func(t *testing.T, s *session) {
			if s.customer.WSSURL != "wss://10.0.0.1/ws" {
				t.Fatalf("customer side %+v: want wssUrl when there is no wssUrlOut", *s.customer)
			}
		}},
		{"the web adapter's form", func(_, room string) (int, string) {
			return 200, `{"retCode":"0","retMsg":"ok","data":{"roomId":"` + room + `","wssUrlOut":"` + out + `","signature":"sig"}}`
		}, nil, "", func(t *testing.T, s *session) {
			if s.customer.ConnectParam != "sig" {
				t.Fatalf("connectParam %q, want signature's value", s.customer.ConnectParam)
			}
		}},
		{"the web adapter's failure", func(_, _ string) (int, string) { return 200, `{"retCode":"7","retMsg":"no such site"}` },
			connector.ErrRefused, "errorCode 7: no such site", nil},
		{"no roomId echoed", func(_, _ string) (int, string) {
			return 200, `{"success":true,"data":{"wssUrlOut":"` + out + `","connectParam":"p"}}`
		}, nil, "", nil},
		{"CEC's own room id", func(_, _ string) (int, string) { return 200, okInfo("cec-room-1", out) }, nil, "", func(t *testing.T, s *session) {
			if s.room != "cec-room-1" || s.handle.SessionID != "cec-room-1" {
				t.Fatalf("room %q, want the id CEC gave", s.room)
			}
		}},
		{"sides in different rooms", func(role, _ string) (int, string) { return 200, okInfo("room-"+role, out) },
			connector.ErrUnavailable, "must share a room", nil},
		{"a room id with a space", func(_, _ string) (int, string) { return 200, okInfo("a b", out) }, connector.ErrUnavailable, "roomId", nil},
		{"a redirect", func(_, _ string) (int, string) { return 302, "" }, connector.ErrRefused, "HTTP 302", nil},
		{"a body too large", func(_, _ string) (int, string) { return 200, strings.Repeat(" ", maxBody+1) }, connector.ErrUnavailable, "getConnectionInfo", nil},
		{"a 5xx body with words", func(_, _ string) (int, string) {
			return 503, `{"success":false,"errorCode":12,"errorReason":"maintenance"}`
		}, connector.ErrUnavailable, "HTTP 503: errorCode 12: maintenance", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &stub{info: func(w http.ResponseWriter, role, room string) {
				status, body := tc.info(role, room)
				if status/100 == 3 {
					w.Header().Set("Location", "/elsewhere"+PathConnectionInfo) // not followed
				}
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
			}}
			c := newConnector(t, stubConfig(newStub(t, st)))
			s, err := c.Join(ctxFor(t), trigger("i-1"))
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Join: %v", err)
				}
				if tc.check != nil {
					tc.check(t, s.(*session))
				}
				return
			}
			se := wantServerError(t, err, tc.kind, opJoin)
			if !strings.Contains(se.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", se.Reason, tc.reason)
			}
		})
	}
}

// TestTokenReplies: tokenByAkSk's 200s that can and cannot be used.
func TestTokenReplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		kind   error
		reason string
	}{
		{"documented", `{"AccessToken":"tok-000001","ApplyType":"Bearer","CreateTime":"1700000000","Expires":"600","Scope":"x","AppKey":"ak","UserID":"Anonymous"}`, nil, ""},
		{"lower camel case, numbers", `{"accessToken":"tok-000001","expires":600}`, nil, ""},
		{"OAuth style", `{"access_token":"tok-000001","expires_in":"600"}`, nil, ""},
		{"no token", `{"Expires":"600"}`, connector.ErrUnavailable, "no AccessToken"},
		{"an error body", `{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}`, connector.ErrRefused,
			"errorCode APIGW.0301: Incorrect IAM authentication information"},
		{"not JSON", `OK`, connector.ErrUnavailable, "reply is not JSON"},
		{"a token unfit for a header", `{"AccessToken":"tok\nen"}`, connector.ErrUnavailable, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &stub{
				token: func(w http.ResponseWriter) { _, _ = w.Write([]byte(tc.body)) },
				info: func(w http.ResponseWriter, _, room string) {
					_, _ = w.Write([]byte(okInfo(room, "wss://cec.example.com/ws")))
				},
			}
			c := newConnector(t, stubConfig(newStub(t, st)))
			_, err := c.Join(ctxFor(t), trigger("i-1"))
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Join: %v", err)
				}
				return
			}
			se := wantServerError(t, err, tc.kind, opJoin)
			if !strings.Contains(se.Reason, tc.reason) || !strings.HasPrefix(se.Reason, opToken) {
				t.Fatalf("reason %q lacks %q or the call", se.Reason, tc.reason)
			}
		})
	}
}

// TestTokenLifetimeFromReply: a token CEC says lives less than asked is renewed by CEC's count;
// one it says lives more, by what was asked.
func TestTokenLifetimeFromReply(t *testing.T) {
	for _, tc := range []struct {
		expires string
		renew   time.Duration
	}{{"600", 480 * time.Second}, {"7200", 2880 * time.Second}, {`""`, 2880 * time.Second}} {
		t.Run(tc.expires, func(t *testing.T) {
			n := 0
			st := &stub{
				token: func(w http.ResponseWriter) {
					n++
					_, _ = w.Write([]byte(`{"AccessToken":"tok-00000` + string(rune('0'+n)) + `","Expires":` + tc.expires + `}`))
				},
				info: func(w http.ResponseWriter, _, room string) { _, _ = w.Write([]byte(okInfo(room, "wss://h/ws"))) },
			}
			clk := newClock()
			cfg := stubConfig(newStub(t, st))
			cfg.Now = clk.now
			c := newConnector(t, cfg)
			join(t, c, trigger("i-1"))
			clk.add(tc.renew - time.Second)
			join(t, c, trigger("i-2"))
			clk.add(2 * time.Second)
			join(t, c, trigger("i-3"))
			st.mu.Lock()
			defer st.mu.Unlock()
			if n != 2 {
				t.Fatalf("%d token requests, want 2: renewed at %s", n, tc.renew)
			}
		})
	}
}

// TestReleaseErrors: releaseConnection's answers, as Stop and StopHandle report them.
func TestReleaseErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  cectest.Fault
		kind   error // nil: released
		reason string
	}{
		{"500", cectest.Fault{Status: 500}, connector.ErrUnavailable, "releaseConnection: HTTP 500"},
		{"429", cectest.Fault{Status: 429}, connector.ErrUnavailable, "HTTP 429"},
		{"401 twice", cectest.Fault{Status: 401, Times: 2}, connector.ErrRefused, "HTTP 401"},
		{"401 once", cectest.Fault{Status: 401, Times: 1}, nil, ""},
		{"403", cectest.Fault{Status: 403}, connector.ErrRefused, "HTTP 403"},
		{"retCode not 0", cectest.Fault{Refuse: true, ErrorCode: "3", ErrorReason: "release refused"}, connector.ErrRefused,
			"releaseConnection: errorCode 3: release refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCEC(t, cectest.Options{})
			c := newConnector(t, config(s, true))
			sess := join(t, c, trigger("i-1"))
			s.SetFault(cectest.RouteRelease, tc.fault)
			_, err := sess.Stop(ctxFor(t))
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Stop: %v", err)
				}
				if r, _ := s.Room(sess.room); !r.Released {
					t.Fatal("the room was not released")
				}
				return
			}
			se := wantServerError(t, err, tc.kind, opStop)
			if !strings.Contains(se.Reason, tc.reason) || se.Node != s.ReleaseURL() {
				t.Fatalf("reason %q on %q: want %q on the release URL", se.Reason, se.Node, tc.reason)
			}
			s.SetFault(cectest.RouteRelease, tc.fault)
			_, err = c.StopHandle(ctxFor(t), sess.Handle())
			wantServerError(t, err, tc.kind, opStop)
			// Once CEC answers again, the stop goes through.
			s.ClearFaults()
			if _, err := sess.Stop(ctxFor(t)); err != nil {
				t.Fatalf("Stop after the fault: %v", err)
			}
		})
	}
}

// TestReleaseReplies: releaseConnection's 200s.
func TestReleaseReplies(t *testing.T) {
	for _, tc := range []struct {
		body string
		kind error
	}{
		{`{"retCode":"0","retMsg":"success"}`, nil},
		{`{"retCode":0}`, nil},
		{``, nil},
		{`{}`, nil},
		{`{"success":true}`, nil},
		{`{"retCode":"-1","retMsg":"ccmessaging-token invalid"}`, connector.ErrRefused},
		{`{"success":false,"errorCode":"1","errorReason":"x"}`, connector.ErrRefused},
		{`<html></html>`, connector.ErrUnavailable},
	} {
		t.Run(tc.body, func(t *testing.T) {
			st := &stub{
				info:    func(w http.ResponseWriter, _, room string) { _, _ = w.Write([]byte(okInfo(room, "wss://h/ws"))) },
				release: func(w http.ResponseWriter) { _, _ = w.Write([]byte(tc.body)) },
			}
			c := newConnector(t, stubConfig(newStub(t, st)))
			_, err := c.StopHandle(ctxFor(t), connector.Handle{Vendor: connector.CEC, SessionID: "i-1-room"})
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("StopHandle: %v", err)
				}
				return
			}
			wantServerError(t, err, tc.kind, opStop)
		})
	}
}

// TestBreakerGuardsJoinOnly: CEC failing opens the domain's breaker: the next Join fails at once
// without a call; a stop and a re-join still go through.
func TestBreakerGuardsJoinOnly(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	cfg := config(s, true)
	cfg.Breaker = connector.BreakerSettings{FailuresToTrip: 3, OpenFor: time.Hour}
	c := newConnector(t, cfg)
	sess := join(t, c, trigger("i-live"))
	s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Status: http.StatusServiceUnavailable})
	for range 3 {
		_, err := c.Join(ctxFor(t), trigger("i-1"))
		wantServerError(t, err, connector.ErrUnavailable, opJoin)
	}
	before := s.Requests(cectest.RouteConnectionInfo)
	_, err := c.Join(ctxFor(t), trigger("i-1"))
	wantServerError(t, err, connector.ErrUnavailable, opJoin)
	if !errors.Is(err, connector.ErrBreakerOpen) || s.Requests(cectest.RouteConnectionInfo) != before {
		t.Fatalf("Join with the breaker open: %v after %d calls; want ErrBreakerOpen and no call", err, s.Requests(cectest.RouteConnectionInfo)-before)
	}
	if _, err := c.Rejoin(ctxFor(t), sess.Handle()); err != nil {
		t.Fatalf("Rejoin with the breaker open: %v", err)
	}
	if _, err := c.StopHandle(ctxFor(t), sess.Handle()); err != nil {
		t.Fatalf("StopHandle with the breaker open: %v", err)
	}
	// Breakers given in the config are the ones used (shared with other vendors').
	shared := connector.NewBreakers(connector.BreakerSettings{FailuresToTrip: 1, OpenFor: time.Hour})
	cfg3 := cfg
	cfg3.Breakers = shared
	c3 := newConnector(t, cfg3)
	_, _ = c3.Join(ctxFor(t), trigger("i-3"))
	if shared.State(s.URL()) != connector.BreakerOpen {
		t.Fatalf("the shared breaker of %s is %s, want open", s.URL(), shared.State(s.URL()))
	}
	// A refusal is an answer from a healthy CEC: it does not count against the domain.
	c2 := newConnector(t, cfg)
	s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Status: http.StatusBadRequest})
	for range 5 {
		_, err := c2.Join(ctxFor(t), trigger("i-2"))
		wantServerError(t, err, connector.ErrRefused, opJoin)
	}
}
