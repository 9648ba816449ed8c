package zoom

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// fixture is a zoomtest server with a token source, an API client and a minter on its credentials.
type fixture struct {
	z   *zoomtest.Server
	ts  *TokenSource
	api *API
	m   *Minter
	clk *clock
}

func newFixture(t *testing.T, opts zoomtest.Options, mod func(*APIConfig)) *fixture {
	t.Helper()
	z := newZoom(t, opts)
	ts, _ := newTokenSource(t, z, nil)
	cfg := APIConfig{BaseURL: z.APIURL(), Tokens: ts, RoundTripper: newTransport(t)}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	a.now = clk.now
	o := z.Options()
	m, err := NewMinter(MinterConfig{SDKKey: o.SDKKey, SDKSecret: Secret(o.SDKSecret)})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{z: z, ts: ts, api: a, m: m, clk: clk}
}

// start mints a customer token (checked independently) and starts a session on zoomtest.
func (f *fixture) start(t *testing.T, interaction, pin string) zoomtest.Session {
	t.Helper()
	tok, _ := f.mintChecked(t, TokenRequest{Role: RoleCustomer, UserID: DeriveUserID(interaction, RoleCustomer, ""),
		UserName: "Customer " + interaction, EnableBYOP: pin != ""})
	s, err := f.z.CustomerStart(tok.JWT, pin)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) join(t *testing.T, interaction, agent, pin string) zoomtest.User {
	t.Helper()
	tok, _ := f.mintChecked(t, TokenRequest{Role: RoleAgent, UserID: DeriveUserID(interaction, RoleAgent, agent), UserName: FitUserName(agent)})
	u, err := f.z.AgentJoin(tok.JWT, pin)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) mintChecked(t *testing.T, r TokenRequest) (Token, error) {
	t.Helper()
	tok, err := f.m.Mint(r)
	if err != nil {
		t.Fatal(err)
	}
	o := f.z.Options()
	checkJWT(t, tok.JWT, o.SDKKey, o.SDKSecret)
	return tok, nil
}

func TestLiveSessionByPIN(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	ctx := ctxFor(t)
	s := f.start(t, "I1", "case42x")
	a := f.join(t, "I1", "Bob", "CASE42X")
	other := f.start(t, "I2", "")

	got, err := f.api.LiveSessionByPIN(ctx, "case42X")
	if err != nil {
		t.Fatal(err)
	}
	if got.SessionID != s.ID || got.PIN != "CASE42X" || !got.StartTime.Equal(s.StartTime) || len(got.Users) != 2 ||
		got.Users[0].Role != RoleCustomer || got.Users[0].UserName != "Customer I1" ||
		got.Users[1].Role != RoleAgent || got.Users[1].UserID != a.UserID || got.Users[1].UserName != "Bob" {
		t.Fatalf("%+v", got)
	}
	if got, err := f.api.LiveSessionByPIN(ctx, other.PIN); err != nil || got.SessionID != other.ID {
		t.Fatalf("auto PIN: %+v %v", got, err)
	}
	_, err = f.api.LiveSessionByPIN(ctx, "NOPE")
	se := wantServerError(t, err, connector.ErrNotFound, opLiveByPIN, f.z.APIURL())
	if errors.Is(err, ErrPageLimit) || !strings.Contains(se.Reason, "no live session with this PIN") {
		t.Fatal(err)
	}
	n := f.z.Requests(zoomtest.RouteLiveSessions)
	_, err = f.api.LiveSessionByPIN(ctx, "12-34")
	wantServerError(t, err, connector.ErrNotFound, opLiveByPIN, f.z.APIURL())
	if f.z.Requests(zoomtest.RouteLiveSessions) != n {
		t.Fatal("a malformed PIN reached Zoom")
	}
	_ = f.z.End(s.ID)
	if _, err := f.api.LiveSessionByPIN(ctx, "CASE42X"); !errors.Is(err, connector.ErrNotFound) {
		t.Fatalf("ended session: %v", err)
	}
}

// TestLiveSessionByPINFiltersItself: Zoom ignoring the filter parameter (a wrong name) still finds
// the PIN, by reading the pages and comparing session_pin, within MaxPages.
func TestLiveSessionByPINFiltersItself(t *testing.T) {
	f := newFixture(t, zoomtest.Options{IgnorePINFilter: true}, func(c *APIConfig) { c.PageSize = 30; c.MaxPages = 3 })
	ctx := ctxFor(t)
	// zoomtest lists the oldest first, then by id: the last of them is on the third page.
	var last zoomtest.Session
	later := func(s zoomtest.Session) {
		if last.ID == "" || s.StartTime.After(last.StartTime) || s.StartTime.Equal(last.StartTime) && s.ID > last.ID {
			last = s
		}
	}
	for i := range 75 {
		later(f.start(t, fmt.Sprint("I", i), ""))
	}
	got, err := f.api.LiveSessionByPIN(ctx, last.PIN)
	if err != nil || got.SessionID != last.ID {
		t.Fatalf("%+v %v", got, err)
	}
	if n := f.z.Requests(zoomtest.RouteLiveSessions); n != 3 {
		t.Fatalf("%d pages read, want 3", n)
	}
	for i := range 20 {
		later(f.start(t, fmt.Sprint("J", i), ""))
	}
	_, err = f.api.LiveSessionByPIN(ctx, last.PIN)
	se := wantServerError(t, err, connector.ErrNotFound, opLiveByPIN, f.z.APIURL())
	if !errors.Is(err, ErrPageLimit) || !strings.Contains(se.Reason, "first 3 pages (90 sessions)") {
		t.Fatalf("beyond the page limit: %v", err)
	}
	if strings.Contains(err.Error(), last.PIN) {
		t.Fatalf("the error shows the PIN: %v", err)
	}
}

func TestSessionAndUsers(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	ctx := ctxFor(t)
	s := f.start(t, "I1", "")
	a := f.join(t, "I1", "Bob", s.PIN)
	d, err := f.api.Session(ctx, s.ID)
	if err != nil || d.SessionID != s.ID || d.PIN != s.PIN || d.Ended() || d.UserCount != 2 || !d.StartTime.Equal(s.StartTime) {
		t.Fatalf("%+v %v", d, err)
	}
	_ = f.z.AgentLeave(s.ID, a.UserID)
	_ = f.z.End(s.ID)
	ended, _ := f.z.Session(s.ID)
	d, err = f.api.Session(ctx, s.ID)
	if err != nil || !d.Ended() || !d.EndTime.Equal(ended.EndTime) || d.Duration != ended.EndTime.Sub(ended.StartTime) {
		t.Fatalf("%+v %v", d, err)
	}
	users, err := f.api.SessionUsers(ctx, s.ID)
	if err != nil || len(users) != 2 {
		t.Fatalf("%+v %v", users, err)
	}
	if u := users[1]; u.Role != RoleAgent || u.UserID != a.UserID || u.UserName != "Bob" || u.ConnectionID == "" ||
		u.DataCenter == "" || u.JoinTime.IsZero() || u.LeaveTime.IsZero() {
		t.Fatalf("%+v", u)
	}
	_, err = f.api.Session(ctx, "nosuch")
	wantServerError(t, err, connector.ErrNotFound, opSession, f.z.APIURL())
	_, err = f.api.SessionUsers(ctx, "nosuch")
	wantServerError(t, err, connector.ErrNotFound, opSessionUsers, f.z.APIURL())
	_, err = f.api.Session(ctx, "")
	wantServerError(t, err, connector.ErrNotFound, opSession, f.z.APIURL())
}

// TestSessionIDsAreEscaped: session ids with "/" and "+" reach the right session.
func TestSessionIDsAreEscaped(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	for i := range 1000 {
		s := f.start(t, fmt.Sprint("I", i), "")
		if !strings.Contains(s.ID, "/") || !strings.Contains(s.ID, "+") {
			continue
		}
		d, err := f.api.Session(ctxFor(t), s.ID)
		if err != nil || d.SessionID != s.ID {
			t.Fatalf("%q: %+v %v", s.ID, d, err)
		}
		if _, err := f.api.SessionUsers(ctxFor(t), s.ID); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no id with '/' and '+'")
}

func TestSessionUsersPages(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, func(c *APIConfig) { c.PageSize = 30; c.MaxPages = 2 })
	s := f.start(t, "I1", "")
	for i := range 40 { // 40 joins and leaves: 41 connections, two pages
		u := f.join(t, "I1", fmt.Sprint("agent", i), s.PIN)
		_ = f.z.AgentLeave(s.ID, u.UserID)
	}
	users, err := f.api.SessionUsers(ctxFor(t), s.ID)
	if err != nil || len(users) != 41 || f.z.Requests(zoomtest.RouteSessionUsers) != 2 {
		t.Fatalf("%d users, %v, %d requests", len(users), err, f.z.Requests(zoomtest.RouteSessionUsers))
	}
	for i := range 30 {
		u := f.join(t, "I1", fmt.Sprint("more", i), s.PIN)
		_ = f.z.AgentLeave(s.ID, u.UserID)
	}
	users, err = f.api.SessionUsers(ctxFor(t), s.ID)
	if err != nil || len(users) != 60 {
		t.Fatalf("the page limit cuts the list: %d users, %v", len(users), err)
	}
}

// TestAPIRenewsTheTokenOnce: a revoked token is renewed once, transparently.
func TestAPIRenewsTheTokenOnce(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	ctx := ctxFor(t)
	s := f.start(t, "I1", "")
	if _, err := f.api.Session(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	f.z.RevokeTokens()
	if _, err := f.api.Session(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if f.z.TokenRequests() != 2 || f.z.Requests(zoomtest.RouteSession) != 3 {
		t.Fatalf("%d tokens, %d requests", f.z.TokenRequests(), f.z.Requests(zoomtest.RouteSession))
	}
}

// fixedBearer always gives the same token and counts invalidations.
type fixedBearer struct {
	tok         string
	invalidated atomic.Int32
}

func (b *fixedBearer) Token(context.Context) (string, error) { return b.tok, nil }
func (b *fixedBearer) Invalidate(string)                     { b.invalidated.Add(1) }

func TestAPIRefusedAfterTwo401(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	b := &fixedBearer{tok: "never-valid"}
	a, _ := NewAPI(APIConfig{BaseURL: z.APIURL(), Tokens: b, RoundTripper: newTransport(t)})
	_, err := a.Session(ctxFor(t), "x")
	se := wantServerError(t, err, connector.ErrRefused, opSession, z.APIURL())
	if !strings.Contains(se.Reason, "HTTP 401: code 124 Invalid access token.") || b.invalidated.Load() != 1 || z.Requests(zoomtest.RouteSession) != 2 {
		t.Fatalf("%v, %d invalidations, %d requests", err, b.invalidated.Load(), z.Requests(zoomtest.RouteSession))
	}
}

func TestAPITokenFailure(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	f.z.SetFault(zoomtest.RouteOAuth, zoomtest.Fault{Status: 500})
	_, err := f.api.Session(ctxFor(t), "x")
	se := wantServerError(t, err, connector.ErrUnavailable, opSession, f.z.APIURL())
	if inner, ok := errors.AsType[*connector.ServerError](se.Err); !ok || inner.Op != opOAuth || inner.Node != f.z.URL() {
		t.Fatalf("the OAuth error is not the cause: %v", err)
	}
	f.z.ClearFaults()
	ts, _ := newTokenSource(t, f.z, func(c *OAuthConfig) { c.ClientSecret = "wrong" })
	a, _ := NewAPI(APIConfig{BaseURL: f.z.APIURL(), Tokens: ts, RoundTripper: newTransport(t)})
	_, err = a.Session(ctxFor(t), "x")
	wantServerError(t, err, connector.ErrRefused, opSession, f.z.APIURL())
}

func TestAPIRateLimit(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, nil)
	ctx := ctxFor(t)
	s := f.start(t, "I1", "")
	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: 429, RetryAfter: "7", Times: 1})
	_, err := f.api.Session(ctx, s.ID)
	wantServerError(t, err, connector.ErrUnavailable, opSession, f.z.APIURL())
	if d, ok := RetryAfter(err); !ok || d != 7*time.Second {
		t.Fatalf("RetryAfter = %s, %v (%v)", d, ok, err)
	}
	// Held: no request reaches Zoom until Retry-After has run out.
	f.clk.add(6 * time.Second)
	_, err = f.api.LiveSessionByPIN(ctx, s.PIN)
	wantServerError(t, err, connector.ErrUnavailable, opLiveByPIN, f.z.APIURL())
	if d, _ := RetryAfter(err); d != time.Second || f.z.Requests(zoomtest.RouteLiveSessions) != 0 {
		t.Fatalf("RetryAfter %s, %d requests", d, f.z.Requests(zoomtest.RouteLiveSessions))
	}
	f.clk.add(time.Second)
	if _, err := f.api.LiveSessionByPIN(ctx, s.PIN); err != nil {
		t.Fatal(err)
	}
	// An HTTP date, capped at MaxRetryAfter; none at all holds nothing.
	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: 429, RetryAfter: f.clk.now().Add(time.Hour).UTC().Format(http.TimeFormat), Times: 1})
	_, err = f.api.Session(ctx, s.ID)
	if d, _ := RetryAfter(err); d != MaxRetryAfter {
		t.Fatalf("HTTP date: %s", d)
	}
	f.clk.add(MaxRetryAfter)
	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: 429, Times: 1})
	_, err = f.api.Session(ctx, s.ID)
	if _, ok := RetryAfter(err); ok || !errors.Is(err, connector.ErrUnavailable) {
		t.Fatalf("no Retry-After: %v", err)
	}
	if _, err := f.api.Session(ctx, s.ID); err != nil {
		t.Fatalf("a 429 without Retry-After held the client: %v", err)
	}
}

func TestAPIUnavailable(t *testing.T) {
	f := newFixture(t, zoomtest.Options{}, func(c *APIConfig) { c.RequestTimeout = 50 * time.Millisecond })
	ctx := ctxFor(t)
	for _, fault := range []zoomtest.Fault{{Status: 500}, {Status: 503}, {Status: 408}, {Hang: true}} {
		f.z.SetFault(zoomtest.RouteLiveSessions, fault)
		_, err := f.api.LiveSessionByPIN(ctx, "123456")
		wantServerError(t, err, connector.ErrUnavailable, opLiveByPIN, f.z.APIURL())
		if strings.Contains(err.Error(), "123456") {
			t.Fatalf("the error shows the PIN: %v", err)
		}
	}
	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: 403})
	_, err := f.api.Session(ctx, "x")
	wantServerError(t, err, connector.ErrRefused, opSession, f.z.APIURL())

	dead := zoomtest.New(zoomtest.Options{})
	deadURL := dead.APIURL()
	dead.Close()
	a, _ := NewAPI(APIConfig{BaseURL: deadURL, Tokens: &fixedBearer{tok: "t"}, RoundTripper: newTransport(t)})
	_, err = a.LiveSessionByPIN(ctx, "654321")
	wantServerError(t, err, connector.ErrUnavailable, opLiveByPIN, deadURL)
	if strings.Contains(err.Error(), "654321") || !strings.Contains(err.Error(), "******") {
		t.Fatalf("network error: the PIN must be masked: %v", err)
	}
}

// TestAPIReplies: what a server other than zoomtest might send: unknown fields, other JSON types,
// epoch times, a body too large, a 2xx that is not JSON.
func TestAPIReplies(t *testing.T) {
	var reply atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(reply.Load().(string)))
	}))
	defer srv.Close()
	a, _ := NewAPI(APIConfig{BaseURL: srv.URL + "/v2/", Tokens: &fixedBearer{tok: "t"}, RoundTripper: newTransport(t), MaxBody: 4096})
	ctx := ctxFor(t)

	reply.Store(`{"page_size":300,"extra":{"x":[1]},"sessions":[
		{"session_id":"old","session_pin":"abc","start_time":"2025-05-29T12:00:00Z"},
		{"session_id":123,"session_pin":"ABC","start_time":1748520060000,"users":[
			{"user_id":16778240,"user_name":"Ann","role_type":1,"new":true},
			{"user_id":"x","user_name":"Bob","role_type":"AGENT"},
			{"user_id":"y","role_type":{"odd":1}}]},
		{"session_pin":"ABC"},
		{"session_id":"nopin"}]}`)
	s, err := a.LiveSessionByPIN(ctx, "abc")
	if err != nil || s.SessionID != "123" || !s.StartTime.Equal(time.UnixMilli(1748520060000)) || len(s.Users) != 3 ||
		s.Users[0] != (LiveUser{UserID: "16778240", UserName: "Ann", Role: RoleCustomer}) ||
		s.Users[1].Role != RoleAgent || s.Users[2].Role != RoleUnknown {
		t.Fatalf("%+v %v", s, err)
	}
	reply.Store(`{"session_id":"s","start_time":"2025-05-29T12:00:00.5+02:00","end_time":"bad","duration":"01:02:03","user_count":"4"}`)
	d, err := a.Session(ctx, "s")
	if err != nil || d.StartTime.Hour() != 10 || d.Ended() || d.Duration != time.Hour+2*time.Minute+3*time.Second || d.UserCount != 4 {
		t.Fatalf("%+v %v", d, err)
	}
	reply.Store(`{"duration":3723}`)
	if d, _ := a.Session(ctx, "s"); d.Duration != time.Hour+2*time.Minute+3*time.Second || d.SessionID != "s" {
		t.Fatalf("%+v", d)
	}
	redirect := httptest.NewServer(http.RedirectHandler(srv.URL+"/v2/cobrowsesdk/sessions/s", http.StatusFound))
	defer redirect.Close()
	ra, _ := NewAPI(APIConfig{BaseURL: redirect.URL, Tokens: &fixedBearer{tok: "t"}, RoundTripper: newTransport(t)})
	if _, err := ra.Session(ctx, "s"); !errors.Is(err, connector.ErrRefused) || !strings.Contains(err.Error(), "HTTP 302") {
		t.Fatalf("a redirect is not followed: %v", err)
	}
	for _, body := range []string{"<html>bad gateway</html>", `{"sessions":"x"}`, `{"page_size":1}` + strings.Repeat(" ", 5000)} {
		reply.Store(body)
		_, err := a.LiveSessionByPIN(ctx, "abc")
		wantServerError(t, err, connector.ErrUnavailable, opLiveByPIN, srv.URL+"/v2")
	}
}

func TestAPIBreaker(t *testing.T) {
	b := connector.NewBreakers(connector.BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour})
	f := newFixture(t, zoomtest.Options{}, func(c *APIConfig) { c.Breakers = b })
	ctx := ctxFor(t)
	f.z.SetFault(zoomtest.RouteAll, zoomtest.Fault{Status: 503})
	for range 2 {
		_, _ = f.api.Session(ctx, "x")
	}
	n := f.z.Requests(zoomtest.RouteAll)
	_, err := f.api.Session(ctx, "x")
	if !errors.Is(err, connector.ErrBreakerOpen) || f.z.Requests(zoomtest.RouteAll) != n {
		t.Fatalf("%v; %d requests then %d", err, n, f.z.Requests(zoomtest.RouteAll))
	}
	if b.State(f.z.APIURL()) != connector.BreakerOpen {
		t.Fatal("the breaker is not the API URL's")
	}
}

func TestNewAPIChecksConfig(t *testing.T) {
	b := &fixedBearer{}
	for _, tc := range []struct {
		cfg  APIConfig
		want string
	}{
		{APIConfig{}, "Tokens"},
		{APIConfig{Tokens: b, PageSize: 20}, "PageSize"},
		{APIConfig{Tokens: b, PageSize: 301}, "PageSize"},
		{APIConfig{Tokens: b, MaxPages: -1}, "MaxPages"},
		{APIConfig{Tokens: b, BaseURL: "https://api.zoom.us/v2?x=1"}, "query"},
	} {
		if _, err := NewAPI(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewAPI(%+v) = %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
	a, err := NewAPI(APIConfig{Tokens: b})
	if err != nil || a.Node() != DefaultAPIURL || a.cfg.PINParam != "pin_code" || a.cfg.PageSize != 300 {
		t.Fatalf("%v %+v", err, a.cfg)
	}
}
