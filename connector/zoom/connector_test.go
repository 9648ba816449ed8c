package zoom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// syncBuffer is a log sink safe for the connector's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// connFixture is a connector on zoomtest, built through the config path (New builds the OAuth
// token source and the REST client), logging at debug into logs.
type connFixture struct {
	z    *zoomtest.Server
	c    *Connector
	m    *Minter // zoomtest's SDK credentials: mints the customers' tokens
	logs *syncBuffer
}

func newConnFixture(t *testing.T, opts zoomtest.Options, mod func(*Config)) *connFixture {
	t.Helper()
	z := newZoom(t, opts)
	o := z.Options()
	logs := &syncBuffer{}
	cfg := Config{
		SDK:    MinterConfig{SDKKey: o.SDKKey, SDKSecret: Secret(o.SDKSecret)},
		OAuth:  OAuthConfig{BaseURL: z.URL(), AccountID: o.AccountID, ClientID: o.ClientID, ClientSecret: Secret(o.ClientSecret)},
		REST:   APIConfig{BaseURL: z.APIURL()},
		Logger: newTextLogger(logs),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	m, err := NewMinter(MinterConfig{SDKKey: o.SDKKey, SDKSecret: Secret(o.SDKSecret)})
	if err != nil {
		t.Fatal(err)
	}
	return &connFixture{z: z, c: c, m: m, logs: logs}
}

// startAs plays the customer's page of interaction iid starting a session with the token a
// request r mints (pin: a BYOP PIN, or "" for Zoom's 6-digit one).
func (f *connFixture) startAs(t *testing.T, r TokenRequest, pin string) zoomtest.Session {
	t.Helper()
	r.EnableBYOP = pin != ""
	tok, err := f.m.Mint(r)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.z.CustomerStart(tok.JWT, pin)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *connFixture) join(t *testing.T, pin, iid, agent string) *session {
	t.Helper()
	s, err := f.c.Join(ctxFor(t), connector.Trigger{Token: pin, InteractionID: iid, AgentID: agent})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s.(*session)
}

func wantJoinError(t *testing.T, err error, kind error) *connector.ServerError {
	t.Helper()
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || !errors.Is(err, kind) || se.Op != opJoin {
		t.Fatalf("Join: %v (%T), want a *connector.ServerError %q wrapping %v", err, err, opJoin, kind)
	}
	return se
}

func TestCustomerUserName(t *testing.T) {
	valid := regexp.MustCompile(`^Customer [a-z2-7]{16}$`)
	a, b := CustomerUserName("I1"), CustomerUserName("I2")
	if !valid.MatchString(a) || !valid.MatchString(b) || a == b || CustomerUserName("I1") != a {
		t.Fatalf("%q %q", a, b)
	}
	if FitUserName(a) != a {
		t.Fatalf("%q does not fit user_name as it is", a)
	}
	r := CustomerTokenRequest("I1")
	if r.Role != RoleCustomer || r.UserID != DeriveUserID("I1", RoleCustomer, "") || r.UserName != a || r.EnableBYOP {
		t.Fatalf("%+v", r)
	}
	mint(t, newTestMinter(t, 0), r)
}

func TestJoin(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	s := f.join(t, zs.PIN, "I1", "agent-1")
	h := s.Handle()
	if h.Vendor != connector.Zoom || h.Token != zs.PIN || h.SessionID != zs.ID || h.AgentID != "agent-1" || h.InteractionID != "I1" {
		t.Fatalf("handle %+v", h)
	}
	var data map[string]string
	if err := json.Unmarshal(h.Data, &data); err != nil || len(data) != 2 || data["pin"] != zs.PIN || data["sessionId"] != zs.ID {
		t.Fatalf("handle data %s: %v", h.Data, err)
	}
	if s.Events() != nil {
		t.Fatal("Events must be nil: Zoom's events come as signals")
	}
	ps := s.Participants()
	if len(ps) != 1 || ps[0].Role != connector.RoleCustomer || ps[0].Name != CustomerUserName("I1") || ps[0].ID != zs.Users[0].UserID {
		t.Fatalf("participants %+v", ps)
	}

	// A BYOP PIN typed in lower case is the same session.
	pin := NewBYOPPIN()
	zs2 := f.startAs(t, CustomerTokenRequest("I2"), pin)
	tok, ok := f.c.MatchStart(strings.ToLower(pin))
	if !ok || tok != pin {
		t.Fatalf("MatchStart: %q %v", tok, ok)
	}
	if s2 := f.join(t, tok, "I2", ""); s2.Handle().SessionID != zs2.ID || s2.Handle().Token != pin {
		t.Fatalf("handle %+v", s2.Handle())
	}
}

// TestJoinPINNotBound: a PIN whose session's customer does not carry the name minted for the
// trigger's interaction is refused, ErrNotBound, unless RequireMintedCustomer is off.
func TestJoinPINNotBound(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	other := f.startAs(t, CustomerTokenRequest("I-other"), "")
	// Same user_id as the interaction's customer but another name: the name is what binds.
	renamed := CustomerTokenRequest("I1")
	renamed.UserName = "Customer I1"
	named := f.startAs(t, renamed, "")
	ctx := ctxFor(t)
	for _, tc := range []struct{ name, pin, iid string }{
		{"another interaction's customer", other.PIN, "I1"},
		{"a customer token of another name", named.PIN, "I1"},
		{"no interaction", other.PIN, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.c.Join(ctx, connector.Trigger{Token: tc.pin, InteractionID: tc.iid, AgentID: "a1"})
			se := wantJoinError(t, err, connector.ErrNotBound)
			if !errors.Is(err, connector.ErrRefused) || !errors.Is(err, ErrPINNotBound) || se.Reason != ReasonPINNotBound ||
				connector.ReasonOf(err) != "pin_not_bound" || errors.Is(err, connector.ErrNotFound) {
				t.Fatalf("%v", err)
			}
			if strings.Contains(err.Error(), tc.pin) {
				t.Fatalf("the PIN shows in %v", err)
			}
		})
	}
	if !strings.Contains(f.logs.String(), "join refused") {
		t.Fatalf("no warning logged:\n%s", f.logs)
	}

	off := false
	g := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.RequireMintedCustomer = &off })
	zs := g.startAs(t, CustomerTokenRequest("I-other"), "")
	if s := g.join(t, zs.PIN, "I1", ""); s.Handle().SessionID != zs.ID {
		t.Fatalf("RequireMintedCustomer off: %+v", s.Handle())
	}
}

func TestJoinUnknownPIN(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	f.startAs(t, CustomerTokenRequest("I1"), "")
	ctx := ctxFor(t)
	_, err := f.c.Join(ctx, connector.Trigger{Token: "NOSUCH0PIN", InteractionID: "I1"})
	se := wantJoinError(t, err, connector.ErrNotFound)
	if errors.Is(err, connector.ErrRefused) || errors.Is(err, connector.ErrNotLive) || se.Node != f.z.APIURL() ||
		!strings.Contains(se.Reason, "live session by pin: no live session with this PIN") || strings.Contains(err.Error(), "NOSUCH0PIN") {
		t.Fatalf("%v", err)
	}
	n := f.z.Requests(zoomtest.RouteLiveSessions)
	_, err = f.c.Join(ctx, connector.Trigger{Token: "12-34", InteractionID: "I1"})
	wantJoinError(t, err, connector.ErrNotFound)
	if f.z.Requests(zoomtest.RouteLiveSessions) != n {
		t.Fatal("a malformed PIN reached Zoom")
	}
}

func TestJoinUnavailable(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	f.z.SetFault(zoomtest.RouteLiveSessions, zoomtest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	_, err := f.c.Join(ctxFor(t), connector.Trigger{Token: zs.PIN, InteractionID: "I1"})
	wantJoinError(t, err, connector.ErrUnavailable)
	if errors.Is(err, connector.ErrNotFound) || errors.Is(err, connector.ErrRefused) {
		t.Fatalf("%v", err)
	}
	f.join(t, zs.PIN, "I1", "") // the fault is gone: the retry the controller makes later joins
}

// signalSession is a session with no Zoom behind it, on a fixed clock.
func signalSession(t *testing.T) (*session, time.Time) {
	t.Helper()
	api, err := NewAPI(APIConfig{BaseURL: "http://127.0.0.1:1/v2", Tokens: &fixedBearer{tok: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Minter: newTestMinter(t, 0), API: api})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	h := connector.Handle{Vendor: connector.Zoom, Token: "123456", SessionID: "S1", InteractionID: "I1", AgentID: "a1"}
	return newSession(c, h, nil, false), now
}

// hookBody is a cobrowse webhook body, as zoomtest sends them.
func hookBody(event string, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"event": "cobrowse." + event, "event_ts": 1772600767123,
		"payload": map[string]any{"account_id": "acc", "object": object}})
	return b
}

// TestSignal feeds a session a sequence of signals and checks each one's events.
func TestSignal(t *testing.T) {
	t1 := time.Date(2026, 3, 4, 5, 1, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	zoom := func(typ string, role connector.Role, at time.Time) connector.Signal {
		return connector.Signal{Source: "zoom", Type: typ, Role: role, SessionID: "S1", At: at}
	}
	agent, customer := connector.RoleAgent, connector.RoleCustomer
	type step struct {
		name string
		sig  connector.Signal
		want string // the events' kinds, roles and times
	}
	join := func(name string, role connector.Role, want string) step {
		return step{name, zoom("user_joined", role, t1), want}
	}
	s, _ := signalSession(t)
	fmtTime := func(tm time.Time) string {
		if tm.IsZero() {
			return "-"
		}
		return tm.Format("15:04")
	}
	for _, st := range []step{
		{"session_started means nothing", zoom("session_started", customer, t1), ""},
		{"another source", connector.Signal{Source: "customer", Type: "user_joined", Role: agent, At: t1}, ""},
		{"another Zoom session", connector.Signal{Source: "zoom", Type: "user_joined", Role: agent, SessionID: "S2", At: t1}, ""},
		{"a join without a role", zoom("user_joined", 0, t1), ""},
		join("the customer joins", customer, "participant_joined(customer)"),
		join("the first agent", agent, "participant_joined(agent) activated(05:01/-)"),
		join("the same join again", agent, "participant_joined(agent)"),
		join("a second agent", agent, "participant_joined(agent)"),
		{"one of several agents leaves", zoom("user_left", agent, t1), ""},
		{"the last agent leaves", zoom("user_left", agent, t1), ""},
		{"an unknown type", zoom("stop", agent, t1), ""},
		{"no session id: the router put it on the interaction", connector.Signal{Source: "zoom", Type: "user_left", Role: customer, At: t2},
			"deactivated(05:01/05:02)"},
		{"the customer's leave again", zoom("user_left", customer, t2), ""},
		{"session_ended after the customer left", zoom("session_ended", 0, t2), ""},
		join("a join after the end", agent, ""),
	} {
		var got []string
		for _, ev := range s.Signal(st.sig) {
			switch ev.Kind {
			case connector.EventParticipantJoined:
				got = append(got, fmt.Sprintf("%s(%s)", ev.Kind, ev.Participant.Role))
			default:
				got = append(got, fmt.Sprintf("%s(%s/%s)", ev.Kind, fmtTime(ev.Times.Activation), fmtTime(ev.Times.Deactivation)))
			}
		}
		if g := strings.Join(got, " "); g != st.want {
			t.Errorf("%s: events %q, want %q", st.name, g, st.want)
		}
	}
}

// TestSignalEnds: session_ended deactivates once; times default to now; the role and the user come
// from the raw webhook when the signal lacks them; nothing after Close.
func TestSignalEnds(t *testing.T) {
	s, now := signalSession(t)
	raw := hookBody("session_user_joined", map[string]any{"session_id": "S1", "user_id": "777", "user_name": "Bob", "role_type": "agent"})
	evs := s.Signal(connector.Signal{Source: "zoom", Type: "user_joined", SessionID: "S1", Raw: raw})
	if len(evs) != 2 || evs[0].Participant != (connector.Participant{ID: "777", Role: connector.RoleAgent, Name: "Bob"}) ||
		evs[1].Kind != connector.EventActivated || !evs[1].Times.Activation.Equal(now) {
		t.Fatalf("%+v", evs)
	}
	// A raw body of another session gives no role.
	other := hookBody("session_user_left", map[string]any{"session_id": "S2", "role_type": "customer"})
	if evs := s.Signal(connector.Signal{Source: "zoom", Type: "user_left", Raw: other}); len(evs) != 0 {
		t.Fatalf("%+v", evs)
	}
	end := time.Date(2026, 3, 4, 5, 30, 0, 0, time.UTC)
	evs = s.Signal(connector.Signal{Source: "zoom", Type: "session_ended", SessionID: "S1", At: end})
	if len(evs) != 1 || evs[0].Kind != connector.EventDeactivated || !evs[0].Times.Deactivation.Equal(end) || !evs[0].Times.Activation.Equal(now) {
		t.Fatalf("%+v", evs)
	}
	if evs := s.Signal(connector.Signal{Source: "zoom", Type: "session_ended", SessionID: "S1", At: end}); len(evs) != 0 {
		t.Fatalf("a duplicate session_ended: %+v", evs)
	}
	if times, err := s.Stop(ctxFor(t)); err != nil || !times.Deactivation.Equal(end) {
		t.Fatalf("Stop after the end: %+v %v", times, err)
	}

	s2, now2 := signalSession(t)
	evs = s2.Signal(connector.Signal{Source: "zoom", Type: "session_ended"})
	if len(evs) != 1 || !evs[0].Times.Deactivation.Equal(now2) || !evs[0].Times.Activation.IsZero() {
		t.Fatalf("%+v", evs)
	}
	s3, _ := signalSession(t)
	_ = s3.Close(context.Background())
	if evs := s3.Signal(connector.Signal{Source: "zoom", Type: "user_joined", Role: connector.RoleAgent}); len(evs) != 0 {
		t.Fatalf("after Close: %+v", evs)
	}
}

func TestSignalOf(t *testing.T) {
	body := hookBody("session_user_left", map[string]any{"session_id": "S/1+=", "user_id": "5", "user_name": "Ann",
		"role_type": "customer", "leave_time": "2026-03-04T05:06:07Z"})
	ev, err := DecodeEvent(body)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := SignalOf(ev, body)
	want := connector.Signal{Source: "zoom", Type: "user_left", Role: connector.RoleCustomer, SessionID: "S/1+=",
		At: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), Raw: body}
	if !ok || s.Source != want.Source || s.Type != want.Type || s.Role != want.Role || s.SessionID != want.SessionID ||
		!s.At.Equal(want.At) || !bytes.Equal(s.Raw, body) {
		t.Fatalf("%+v", s)
	}
	for _, kind := range []EventKind{KindSessionStarted, KindUserJoined, KindUserLeft, KindSessionEnded} {
		if s, ok := SignalOf(Event{Kind: kind, SessionID: "x"}, nil); !ok || s.Type != kind.String() {
			t.Errorf("%s: %+v %v", kind, s, ok)
		}
	}
	for _, kind := range []EventKind{KindOther, KindURLValidation} {
		if _, ok := SignalOf(Event{Kind: kind}, nil); ok {
			t.Errorf("%s makes a signal", kind)
		}
	}
}

// TestViewHandoff: the agent's view is a fresh agent JWT, verified by the package's independent
// checker, in the desk URL's access_token, with the PIN beside it; one per agent.
func TestViewHandoff(t *testing.T) {
	const desk = "https://desk.example.test/zcb/desk"
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.DeskURL = desk })
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	s := f.join(t, zs.PIN, "I1", "a1")
	o := f.z.Options()
	seen := map[string]bool{}
	for _, agent := range []string{"a1", "  Bob\tthe agent  ", "agent-with-a-very-long-identifier-of-forty"} {
		views := s.Handoffs(connector.HandoffView, agent)
		if len(views) != 1 {
			t.Fatalf("%d views", len(views))
		}
		v := views[0]
		if v.Kind != connector.HandoffView || v.ToCustomer || v.AgentID != agent || v.PIN != zs.PIN || v.Token != "" ||
			v.RoomID != "" || v.WSSURL != "" || v.ConnectParam != "" {
			t.Fatalf("view %+v", v)
		}
		u, err := url.Parse(v.URL)
		if err != nil || u.Scheme+"://"+u.Host+u.Path != desk || len(u.Query()) != 1 {
			t.Fatalf("view URL %q: %v", v.URL, err)
		}
		jwt := u.Query().Get("access_token")
		c := checkJWT(t, jwt, o.SDKKey, o.SDKSecret)
		var uid, uname string
		_ = json.Unmarshal(c["user_id"], &uid)
		_ = json.Unmarshal(c["user_name"], &uname)
		if string(c["role_type"]) != "2" || uid != DeriveUserID("I1", RoleAgent, agent) || uname != FitUserName(agent) {
			t.Fatalf("claims %s", c)
		}
		if _, ok := c["enable_byop"]; ok || seen[uid] {
			t.Fatalf("claims %s (an agent's user_id seen before: %v)", c, seen[uid])
		}
		seen[uid] = true
		if _, err := f.z.AgentJoin(jwt, v.PIN); err != nil {
			t.Fatalf("the desk refuses the view: %v", err)
		}
	}
	if again := s.Handoffs(connector.HandoffView, "a1"); len(again) != 1 || again[0].URL == "" {
		t.Fatal("no second view for the same agent")
	}
	if views := s.Handoffs(connector.HandoffView, ""); len(views) != 0 {
		t.Fatalf("a view without an agent: %+v", views)
	}
	if starts := s.Handoffs(connector.HandoffStart, "a1"); len(starts) != 0 {
		t.Fatalf("a start for a session the customer started: %+v", starts)
	}
	if other := s.Handoffs("nonsense", "a1"); len(other) != 0 {
		t.Fatalf("%+v", other)
	}
}

// TestStopThenNoView: Stop asks nothing of Zoom and returns no times; after it no view (no token)
// is minted, while the end requests go to both pages without credentials.
func TestStopThenNoView(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	s := f.join(t, zs.PIN, "I1", "a1")
	ends := func(agent string) []connector.Handoff { return s.Handoffs(connector.HandoffEnd, agent) }
	if e := ends(""); len(e) != 1 || !e[0].ToCustomer || e[0].Kind != connector.HandoffEnd {
		t.Fatalf("ends without an agent: %+v", e)
	}
	n := f.z.Requests(zoomtest.RouteAll)
	for range 2 {
		if times, err := s.Stop(ctxFor(t)); err != nil || times != (connector.Times{}) {
			t.Fatalf("Stop: %+v %v", times, err)
		}
	}
	if f.z.Requests(zoomtest.RouteAll) != n {
		t.Fatal("Stop called Zoom")
	}
	if views := s.Handoffs(connector.HandoffView, "a1"); len(views) != 0 {
		t.Fatalf("a view after Stop: %+v", views)
	}
	e := ends("a1")
	if len(e) != 2 || !e[0].ToCustomer || e[1].ToCustomer || e[1].AgentID != "a1" {
		t.Fatalf("ends %+v", e)
	}
	for _, h := range e {
		if h.Kind != connector.HandoffEnd || h.URL != "" || h.Token != "" || h.PIN != "" || h.ConnectParam != "" {
			t.Fatalf("an end with credentials: %+v", h)
		}
	}
	if live, _ := f.z.Session(zs.ID); !live.Live() {
		t.Fatal("Stop ended the session at Zoom")
	}

	// A session that ended (the customer left) gives no view either.
	zs2 := f.startAs(t, CustomerTokenRequest("I2"), "")
	s2 := f.join(t, zs2.PIN, "I2", "a1")
	s2.Signal(connector.Signal{Source: "zoom", Type: "user_left", Role: connector.RoleCustomer, SessionID: zs2.ID})
	if views := s2.Handoffs(connector.HandoffView, "a1"); len(views) != 0 {
		t.Fatalf("a view after the end: %+v", views)
	}
}

func TestStopHandleCallsNothing(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	s := f.join(t, zs.PIN, "I1", "a1")
	n := f.z.Requests(zoomtest.RouteAll)
	if times, err := f.c.StopHandle(ctxFor(t), s.Handle()); err != nil || times != (connector.Times{}) {
		t.Fatalf("%+v %v", times, err)
	}
	if f.z.Requests(zoomtest.RouteAll) != n {
		t.Fatal("StopHandle called Zoom")
	}
}

func TestRejoin(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	ctx := ctxFor(t)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	saved := f.join(t, zs.PIN, "I1", "a1").Handle()

	// Data alone is enough.
	bare := connector.Handle{Data: saved.Data, InteractionID: "I1", AgentID: "a1"}
	s, err := f.c.Rejoin(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	rs := s.(*session)
	if h := rs.Handle(); h.Vendor != connector.Zoom || h.Token != zs.PIN || h.SessionID != zs.ID || h.InteractionID != "I1" {
		t.Fatalf("handle %+v", h)
	}
	if ps := rs.Participants(); len(ps) != 1 || ps[0].Role != connector.RoleCustomer {
		t.Fatalf("participants %+v", ps)
	}
	if s.Events() != nil {
		t.Fatal("Events must be nil")
	}
	evs := rs.Signal(connector.Signal{Source: "zoom", Type: "user_joined", Role: connector.RoleAgent, SessionID: zs.ID})
	if len(evs) != 2 || evs[1].Kind != connector.EventActivated {
		t.Fatalf("%+v", evs)
	}

	// An agent present at the re-join is the session's activation: the controller reports it
	// from Participants, and a later join does not activate again.
	v := rs.Handoffs(connector.HandoffView, "a2")[0]
	u, _ := url.Parse(v.URL)
	if _, err := f.z.AgentJoin(u.Query().Get("access_token"), v.PIN); err != nil {
		t.Fatal(err)
	}
	s, err = f.c.Rejoin(ctx, saved)
	if err != nil {
		t.Fatal(err)
	}
	ps := s.Participants()
	if len(ps) != 2 || ps[1].Role != connector.RoleAgent || ps[1].Name != "a2" {
		t.Fatalf("participants %+v", ps)
	}
	evs = s.Signal(connector.Signal{Source: "zoom", Type: "user_joined", Role: connector.RoleAgent, SessionID: zs.ID})
	if len(evs) != 1 || evs[0].Kind != connector.EventParticipantJoined {
		t.Fatalf("%+v", evs)
	}

	// Unknown, foreign, empty, ended.
	unknown := saved
	unknown.Data = handleData{PIN: zs.PIN, SessionID: "no-such-session"}.encode()
	_, err = f.c.Rejoin(ctx, unknown)
	se, _ := errors.AsType[*connector.ServerError](err)
	if !errors.Is(err, connector.ErrNotFound) || errors.Is(err, connector.ErrNotLive) || se == nil || se.Op != opRejoin {
		t.Fatalf("unknown session: %v", err)
	}
	for _, h := range []connector.Handle{{Vendor: connector.Genesys, Token: "123456789", SessionID: zs.ID}, {Vendor: connector.Zoom}} {
		if _, err := f.c.Rejoin(ctx, h); !errors.Is(err, connector.ErrNotFound) {
			t.Fatalf("%+v: %v", h, err)
		}
	}
	if err := f.z.End(zs.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.c.Rejoin(ctx, saved)
	se, _ = errors.AsType[*connector.ServerError](err)
	if !errors.Is(err, connector.ErrNotLive) || se == nil || se.Op != opRejoin {
		t.Fatalf("ended session: %v", err)
	}
}

// TestRejoinUnavailable: Zoom unavailable is retried within the window; past it (or with no
// window), the last ErrUnavailable; a cancelled context stops the retries; a refusal is not
// retried.
func TestRejoinUnavailable(t *testing.T) {
	f := newConnFixture(t, zoomtest.Options{}, nil)
	f.c.retryDelay, f.c.maxRetryDelay = time.Millisecond, 2*time.Millisecond
	ctx := ctxFor(t)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	saved := f.join(t, zs.PIN, "I1", "a1").Handle()

	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: http.StatusServiceUnavailable, Times: 2})
	f.z.SetFault(zoomtest.RouteSessionUsers, zoomtest.Fault{Status: http.StatusBadGateway, Times: 1})
	n := f.z.Requests(zoomtest.RouteSession)
	if _, err := f.c.Rejoin(ctx, saved); err != nil {
		t.Fatalf("within the window: %v", err)
	}
	if got := f.z.Requests(zoomtest.RouteSession) - n; got != 4 {
		t.Fatalf("%d session requests, want 4 (two faults, one before the users' fault, the last)", got)
	}

	f.c.cfg.RejoinWindow = -1
	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: http.StatusServiceUnavailable})
	n = f.z.Requests(zoomtest.RouteSession)
	_, err := f.c.Rejoin(ctx, saved)
	se, _ := errors.AsType[*connector.ServerError](err)
	if !errors.Is(err, connector.ErrUnavailable) || errors.Is(err, connector.ErrNotFound) || se == nil || se.Op != opRejoin ||
		f.z.Requests(zoomtest.RouteSession)-n != 1 {
		t.Fatalf("no window: %v, %d requests", err, f.z.Requests(zoomtest.RouteSession)-n)
	}

	// A long window, given up by the context while waiting to retry.
	f.c.cfg.RejoinWindow = time.Hour
	f.c.retryDelay = time.Hour
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	n = f.z.Requests(zoomtest.RouteSession)
	go func() {
		_, err := f.c.Rejoin(cctx, saved)
		done <- err
	}()
	if err := f.z.WaitRequests(ctx, zoomtest.RouteSession, n+1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, connector.ErrUnavailable) {
			t.Fatalf("cancelled: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Rejoin did not give up when its context was cancelled")
	}

	f.z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Status: http.StatusForbidden})
	n = f.z.Requests(zoomtest.RouteSession)
	if _, err := f.c.Rejoin(ctx, saved); !errors.Is(err, connector.ErrRefused) || f.z.Requests(zoomtest.RouteSession)-n != 1 {
		t.Fatalf("refused: %v", err)
	}
}

// TestBreakersGuardJoinOnly: an open breaker (other sessions' failures) refuses new joins at once
// but never a live session's re-join.
func TestBreakersGuardJoinOnly(t *testing.T) {
	b := connector.NewBreakers(connector.BreakerSettings{FailuresToTrip: 2, OpenFor: time.Hour})
	f := newConnFixture(t, zoomtest.Options{}, func(c *Config) { c.REST.Breakers = b })
	ctx := ctxFor(t)
	zs := f.startAs(t, CustomerTokenRequest("I1"), "")
	saved := f.join(t, zs.PIN, "I1", "a1").Handle()
	f.z.SetFault(zoomtest.RouteLiveSessions, zoomtest.Fault{Status: http.StatusServiceUnavailable, Times: 2})
	for range 2 {
		_, _ = f.c.Join(ctx, connector.Trigger{Token: zs.PIN, InteractionID: "I1"})
	}
	n := f.z.Requests(zoomtest.RouteLiveSessions)
	_, err := f.c.Join(ctx, connector.Trigger{Token: zs.PIN, InteractionID: "I1"})
	wantJoinError(t, err, connector.ErrUnavailable)
	if !errors.Is(err, connector.ErrBreakerOpen) || f.z.Requests(zoomtest.RouteLiveSessions) != n {
		t.Fatalf("%v", err)
	}
	if _, err := f.c.Rejoin(ctx, saved); err != nil {
		t.Fatalf("a re-join refused by the breaker: %v", err)
	}
}

// TestNoSecretsInLogs runs a whole session through the connector, logging at debug, and checks
// that no secret, no JWT and no full PIN reaches the logs, nor the printed config or connector.
func TestNoSecretsInLogs(t *testing.T) {
	const sdkSecret, clientSecret = "SDK-SECRET-logs-zz9", "CLIENT-SECRET-logs-qq7"
	opts := zoomtest.Options{SDKSecret: sdkSecret, ClientSecret: clientSecret}
	var cfg Config
	f := newConnFixture(t, opts, func(c *Config) { cfg = *c })
	ctx := ctxFor(t)
	pin := NewBYOPPIN()
	zs := f.startAs(t, CustomerTokenRequest("I1"), pin)
	s := f.join(t, pin, "I1", "a1")
	jwt, _ := url.Parse(s.Handoffs(connector.HandoffView, "a1")[0].URL)
	tok := jwt.Query().Get("access_token")
	if _, err := f.z.AgentJoin(tok, pin); err != nil {
		t.Fatal(err)
	}
	s.Signal(connector.Signal{Source: "zoom", Type: "user_joined", Role: connector.RoleAgent, SessionID: zs.ID})
	s.Signal(connector.Signal{Source: "zoom", Type: "user_joined", Role: connector.RoleAgent, SessionID: "other"})
	if _, err := f.c.Rejoin(ctx, s.Handle()); err != nil {
		t.Fatal(err)
	}
	other := NewBYOPPIN()
	f.startAs(t, CustomerTokenRequest("I-other"), other)
	if _, err := f.c.Join(ctx, connector.Trigger{Token: other, InteractionID: "I1"}); !errors.Is(err, connector.ErrNotBound) {
		t.Fatal(err)
	}
	if _, err := f.c.Join(ctx, connector.Trigger{Token: "NOSUCH0PIN", InteractionID: "I1"}); !errors.Is(err, connector.ErrNotFound) {
		t.Fatal(err)
	}
	_, _ = s.Stop(ctx)
	s.Handoffs(connector.HandoffView, "a1")
	_, _ = f.c.StopHandle(ctx, s.Handle())

	logs := f.logs.String()
	if !strings.Contains(logs, "agent view") || !strings.Contains(logs, connector.MaskToken(pin)) || !strings.Contains(logs, "join refused") {
		t.Fatalf("the logs miss what this test expects to check:\n%s", logs)
	}
	for name, v := range map[string]string{"SDK secret": sdkSecret, "client secret": clientSecret, "JWT": tok[:len(tok)-3],
		"PIN": pin, "other PIN": other, "unknown PIN": "NOSUCH0PIN"} {
		if strings.Contains(logs, v) {
			t.Errorf("the %s shows in the logs:\n%s", name, logs)
		}
	}
	assertHidden(t, []string{sdkSecret, clientSecret}, cfg, &cfg, f.c)
}

func TestNewChecksConfig(t *testing.T) {
	good := func() Config {
		return Config{SDK: MinterConfig{SDKKey: "k", SDKSecret: "s"},
			OAuth: OAuthConfig{AccountID: "a", ClientID: "c", ClientSecret: "cs"}}
	}
	c, err := New(good())
	if err != nil {
		t.Fatal(err)
	}
	if c.desk != DefaultDeskURL || !c.requireBound || c.cfg.RejoinWindow != DefaultRejoinWindow || c.api.Node() != DefaultAPIURL ||
		c.Vendor() != connector.Zoom {
		t.Fatalf("defaults: %v %v %v %v", c.desk, c.requireBound, c.cfg.RejoinWindow, c.api.Node())
	}
	_ = c.Close()
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.DeskURL = "https://desk.example/x?pin=1" }, "DeskURL"},
		{func(c *Config) { c.DeskURL = "https://user:pw@desk.example/x" }, "DeskURL"},
		{func(c *Config) { c.DeskURL = "desk.example/x" }, "DeskURL"},
		{func(c *Config) { c.SDK.SDKKey = "" }, "SDKKey"},
		{func(c *Config) { c.OAuth.ClientSecret = "" }, "ClientSecret"},
		{func(c *Config) { c.REST.BaseURL = "ftp://api.example" }, "BaseURL"},
	} {
		cfg := good()
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "pw@") {
			t.Errorf("%v: %v, want an error about %s", cfg, err, tc.want)
		}
	}
	// Minter and API given: SDK, OAuth and REST are not needed.
	api, err := NewAPI(APIConfig{Tokens: &fixedBearer{tok: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Minter: newTestMinter(t, 0), API: api, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
}

// TestEndHandoffsFromTheHandle: a session stopped through its handle is ended by the pages: both get
// an end request, without credentials.
func TestEndHandoffsFromTheHandle(t *testing.T) {
	var c Connector
	ends := c.EndHandoffs(connector.Handle{Vendor: connector.Zoom, SessionID: "z1"}, "agent-1")
	if len(ends) != 2 || !ends[0].ToCustomer || ends[1].AgentID != "agent-1" {
		t.Fatalf("end handoffs %+v", ends)
	}
	for _, h := range ends {
		if h.Kind != connector.HandoffEnd || h.URL != "" || h.Token != "" || h.PIN != "" {
			t.Fatalf("end handoff with credentials: %+v", h)
		}
	}
	if got := c.EndHandoffs(connector.Handle{}, ""); len(got) != 1 || !got[0].ToCustomer {
		t.Fatalf("without an agent: %+v", got)
	}
}
