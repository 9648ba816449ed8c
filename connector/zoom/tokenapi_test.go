package zoom

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

const (
	teBearer     = "bearer-current-0123456789abcdef"
	tePrevBearer = "bearer-previous-fedcba9876543210"
	teWrong      = "bearer-wrong-5555555555555555"
	tePIN        = "987654321"
	teRemote     = "192.0.2.1:1234" // httptest.NewRequest's RemoteAddr
)

// teLogs is a log sink safe for a handler running on a server's goroutine.
type teLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *teLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *teLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *teLogs) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// lines parses the JSON log lines.
func (l *teLogs) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// teStates are the interactions the fixture's lookup knows.
var teStates = map[string]TokenState{
	"I-new":      {Vendor: "zoom"},
	"I-byop":     {Vendor: "zoom", AgentID: "A1", Live: true, PIN: tePIN, BYOP: true},
	"I-byop-nop": {Vendor: "zoom", BYOP: true},
	"I-live":     {Vendor: "zoom", AgentID: "A1", Live: true, Validated: true, PIN: tePIN},
	"I-nopin":    {Vendor: "zoom", AgentID: "A1", Live: true, Validated: true},
	"I-notvalid": {Vendor: "zoom", AgentID: "A1", Live: true, PIN: tePIN},
	"I-notlive":  {Vendor: "zoom", AgentID: "A1", Validated: true},
	"I-noagent":  {Vendor: "zoom", Live: true, Validated: true, PIN: tePIN},
	"I-ending":   {Vendor: "zoom", AgentID: "A1", Live: true, Validated: true, Ending: true, PIN: tePIN},
	"I-closed":   {Vendor: "zoom", AgentID: "A1", Closed: true, PIN: tePIN},
	"I-genesys":  {Vendor: "genesys", AgentID: "A1", Live: true, Validated: true, PIN: tePIN},
	"I-novendor": {AgentID: "A1"},
	"I-long-agent": {Vendor: "zoom", AgentID: strings.Repeat("agent", 10), Live: true, Validated: true,
		PIN: tePIN},
}

// tokenFixture is a TokenEndpoint on the fixed-clock minter of jwt_test.go, with a lookup over
// teStates ("I-broken" fails) that counts its calls.
type tokenFixture struct {
	e    *TokenEndpoint
	logs *teLogs

	mu       sync.Mutex
	lookups  int
	deadline time.Duration // the last lookup's time to its deadline
}

func newTokenFixture(t *testing.T, mutate func(*TokenEndpointConfig)) *tokenFixture {
	t.Helper()
	f := &tokenFixture{logs: &teLogs{}}
	cfg := TokenEndpointConfig{
		Minter:        newTestMinter(t, 0),
		BearerSecrets: []Secret{teBearer, "", tePrevBearer},
		Lookup: func(ctx context.Context, id string) (TokenState, error) {
			f.mu.Lock()
			f.lookups++
			if d, ok := ctx.Deadline(); ok {
				f.deadline = time.Until(d)
			}
			f.mu.Unlock()
			if id == "I-broken" {
				return TokenState{}, errors.New("state bucket unavailable")
			}
			st, ok := teStates[id]
			if !ok {
				return TokenState{}, fmt.Errorf("bucket: %w", ErrUnknownInteraction)
			}
			return st, nil
		},
		Logger: slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := NewTokenEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.e = e
	return f
}

func (f *tokenFixture) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// do serves one request; auth is the Authorization header ("" for none).
func (f *tokenFixture) do(method, auth, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/v1/zoom/token", strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.e.ServeHTTP(w, r)
	return w
}

// assertClean fails if a secret, a PIN or a whole JWT reached the logs.
func assertClean(t *testing.T, logs string, jwts ...string) {
	t.Helper()
	for _, s := range []string{teBearer, tePrevBearer, teWrong, testSecret, tePIN} {
		if strings.Contains(logs, s) {
			t.Fatalf("%q reached the log:\n%s", s, logs)
		}
	}
	for _, j := range jwts {
		parts := strings.Split(j, ".")
		for _, part := range []string{j, parts[1], parts[2]} {
			if strings.Contains(logs, part) {
				t.Fatalf("a minted JWT (or its payload or signature) reached the log:\n%s", logs)
			}
		}
	}
}

// decodeErrors reads a refusal's body strictly.
func decodeErrors(t *testing.T, w *httptest.ResponseRecorder) []FieldError {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var ans struct {
		Errors []FieldError `json:"errors"`
	}
	d := json.NewDecoder(w.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(&ans); err != nil {
		t.Fatalf("refusal body: %v", err)
	}
	if len(ans.Errors) == 0 {
		t.Fatal("a refusal with no errors")
	}
	for _, e := range ans.Errors {
		if e.Reason == "" {
			t.Fatalf("an error without a reason: %+v", ans.Errors)
		}
	}
	return ans.Errors
}

// TestTokenEndpointMints: a customer token (with enable_byop and the PIN when the daemon made the
// PIN) and an agent token (with the PIN), each checked by checkJWT, with one audit line each.
func TestTokenEndpointMints(t *testing.T) {
	f := newTokenFixture(t, nil)
	var jwts []string
	for _, tc := range []struct {
		name        string
		auth        string
		body        string
		interaction string
		role        RoleType
		agent       string
		byop        bool
		pin         string
		authBy      string
	}{
		{name: "customer", body: `{"interactionId":"I-new","role":"customer"}`, interaction: "I-new", role: RoleCustomer},
		{name: "customer by number", body: `{"role":1,"interactionId":"I-new"}`, interaction: "I-new", role: RoleCustomer},
		{name: "customer, agentId null", body: `{"interactionId":"I-new","role":"customer","agentId":null}`, interaction: "I-new", role: RoleCustomer},
		{name: "customer with BYOP", body: `{"interactionId":"I-byop","role":"customer"}`, interaction: "I-byop", role: RoleCustomer, byop: true, pin: tePIN},
		{name: "customer with BYOP, no PIN known", body: `{"interactionId":"I-byop-nop","role":"customer"}`, interaction: "I-byop-nop", role: RoleCustomer, byop: true},
		{name: "customer of a live session gets no PIN", body: `{"interactionId":"I-live","role":"customer"}`, interaction: "I-live", role: RoleCustomer},
		{name: "agent", body: `{"interactionId":"I-live","role":"agent","agentId":"A1"}`, interaction: "I-live", role: RoleAgent, agent: "A1", pin: tePIN},
		{name: "agent by number", body: " \n{\"agentId\":\"A1\",\"interactionId\":\"I-live\",\"role\":2}\n ", interaction: "I-live", role: RoleAgent, agent: "A1", pin: tePIN},
		{name: "agent, no PIN known", body: `{"interactionId":"I-nopin","role":"agent","agentId":"A1"}`, interaction: "I-nopin", role: RoleAgent, agent: "A1"},
		{name: "agent with a long id", body: `{"interactionId":"I-long-agent","role":"agent","agentId":"` + strings.Repeat("agent", 10) + `"}`, interaction: "I-long-agent", role: RoleAgent, agent: strings.Repeat("agent", 10), pin: tePIN},
		{name: "previous secret", auth: "Bearer " + tePrevBearer, body: `{"interactionId":"I-new","role":"customer"}`, interaction: "I-new", role: RoleCustomer, authBy: "previous_bearer"},
		{name: "scheme in lower case", auth: "bearer " + teBearer, body: `{"interactionId":"I-new","role":"customer"}`, interaction: "I-new", role: RoleCustomer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.logs.reset()
			auth := tc.auth
			if auth == "" {
				auth = "Bearer " + teBearer
			}
			if tc.authBy == "" {
				tc.authBy = "bearer"
			}
			w := f.do(http.MethodPost, auth, tc.body)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"} {
				if got := w.Header().Get(k); got != v {
					t.Fatalf("%s %q, want %q", k, got, v)
				}
			}
			var ans TokenAPIResponse
			d := json.NewDecoder(w.Body)
			d.DisallowUnknownFields()
			if err := d.Decode(&ans); err != nil {
				t.Fatal(err)
			}
			jwts = append(jwts, ans.Token)
			c := checkJWT(t, ans.Token, testKey, testSecret)
			want := CustomerTokenRequest(tc.interaction)
			if tc.role == RoleAgent {
				want = AgentTokenRequest(tc.interaction, tc.agent)
			}
			var uid, uname string
			_ = json.Unmarshal(c["user_id"], &uid)
			_ = json.Unmarshal(c["user_name"], &uname)
			if wantUID := DeriveUserID(tc.interaction, tc.role, tc.agent); uid != wantUID || uid != want.UserID {
				t.Errorf("user_id %q, want %q", uid, wantUID)
			}
			if uname != want.UserName {
				t.Errorf("user_name %q, want %q", uname, want.UserName)
			}
			if tc.role == RoleCustomer && uname != CustomerUserName(tc.interaction) {
				t.Errorf("customer user_name %q", uname)
			}
			if string(c["role_type"]) != fmt.Sprint(int(tc.role)) {
				t.Errorf("role_type %s", c["role_type"])
			}
			if _, ok := c["enable_byop"]; ok != tc.byop {
				t.Errorf("enable_byop present %v, want %v", ok, tc.byop)
			}
			wantExp := fixedNow.Add(DefaultTokenTTL).Format(time.RFC3339)
			if ans.ExpiresAt != wantExp || ans.PIN != tc.pin {
				t.Errorf("answer expiresAt %q pin %q, want %q %q", ans.ExpiresAt, ans.PIN, wantExp, tc.pin)
			}

			lines := f.logs.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want the one audit line:\n%s", len(lines), f.logs.String())
			}
			l := lines[0]
			wantLog := map[string]any{
				"level": "INFO", "msg": "audit: token minted", "component": "zoom", "vendor": "zoom",
				"interaction": tc.interaction, "role": tc.role.String(), "user_id": uid,
				"token": connector.MaskToken(ans.Token), "expires_at": wantExp, "remote": teRemote, "auth": tc.authBy,
				"enable_byop": tc.byop,
			}
			if tc.role == RoleAgent {
				wantLog["agent"] = tc.agent
			} else if _, ok := l["agent"]; ok {
				t.Errorf("a customer's audit line names an agent: %v", l)
			}
			if tc.pin != "" {
				wantLog["pin"] = connector.MaskToken(tc.pin)
			}
			for k, v := range wantLog {
				if l[k] != v {
					t.Errorf("audit %s = %v, want %v", k, l[k], v)
				}
			}
			assertClean(t, f.logs.String(), ans.Token)
		})
	}
	if jwts[0] != jwts[1] {
		t.Error("the same request on the same clock should mint the same token")
	}
}

// TestTokenEndpointRefuses: every refusal answers its status and JSON errors, is logged once at
// Warn, and mints nothing; the lookup is not called before the request is authenticated and
// checked.
func TestTokenEndpointRefuses(t *testing.T) {
	const customer = `{"interactionId":"%s","role":"customer"}`
	const agent = `{"interactionId":"%s","role":"agent","agentId":"%s"}`
	bearer := "Bearer " + teBearer
	for _, tc := range []struct {
		name        string
		method      string
		auth        string
		body        string
		status      int
		property    string
		reason      string
		lookedUp    bool
		interaction string // in the log line
	}{
		{name: "no credentials", body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "wrong bearer", auth: "Bearer " + teWrong, body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "secret's prefix", auth: "Bearer " + teBearer[:len(teBearer)-1], body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "secret and more", auth: "Bearer " + teBearer + "x", body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "Basic scheme", auth: "Basic " + teBearer, body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "bare secret", auth: teBearer, body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "empty bearer", auth: "Bearer ", body: fmt.Sprintf(customer, "I-new"), status: 401, reason: "credentials"},
		{name: "GET", method: http.MethodGet, auth: bearer, status: 405, reason: "POST"},
		{name: "PUT unauthenticated", method: http.MethodPut, body: fmt.Sprintf(customer, "I-new"), status: 405, reason: "POST"},
		{name: "too large", auth: bearer, body: `{"interactionId":"I-new","role":"customer","x":"` + strings.Repeat("a", MaxTokenRequestBody) + `"}`, status: 413, reason: "4096"},
		{name: "bad body", auth: bearer, body: `{"interactionId":"I-new","role":"customer","userId":"u"}`, status: 400, property: "userId", reason: "cannot choose", interaction: "I-new"},
		{name: "unknown interaction", auth: bearer, body: fmt.Sprintf(customer, "I-unknown"), status: 404, reason: "no such", lookedUp: true, interaction: "I-unknown"},
		{name: "lookup fails", auth: bearer, body: fmt.Sprintf(customer, "I-broken"), status: 503, reason: "try again", lookedUp: true, interaction: "I-broken"},
		{name: "foreign agent", auth: bearer, body: fmt.Sprintf(agent, "I-live", "A2"), status: 403, reason: "not the interaction's current agent", lookedUp: true, interaction: "I-live"},
		{name: "no agent assigned", auth: bearer, body: fmt.Sprintf(agent, "I-noagent", "A1"), status: 403, reason: "not the interaction's current agent", lookedUp: true, interaction: "I-noagent"},
		{name: "not validated", auth: bearer, body: fmt.Sprintf(agent, "I-notvalid", "A1"), status: 403, reason: "no validated session", lookedUp: true, interaction: "I-notvalid"},
		{name: "BYOP session not validated", auth: bearer, body: fmt.Sprintf(agent, "I-byop", "A1"), status: 403, reason: "no validated session", lookedUp: true, interaction: "I-byop"},
		{name: "validated but not live", auth: bearer, body: fmt.Sprintf(agent, "I-notlive", "A1"), status: 403, reason: "no validated session", lookedUp: true, interaction: "I-notlive"},
		{name: "ending, agent", auth: bearer, body: fmt.Sprintf(agent, "I-ending", "A1"), status: 403, reason: "the session is ending", lookedUp: true, interaction: "I-ending"},
		{name: "ending, customer", auth: bearer, body: fmt.Sprintf(customer, "I-ending"), status: 403, reason: "the session is ending", lookedUp: true, interaction: "I-ending"},
		{name: "closed, customer", auth: bearer, body: fmt.Sprintf(customer, "I-closed"), status: 403, reason: "closed", lookedUp: true, interaction: "I-closed"},
		{name: "closed, agent", auth: bearer, body: fmt.Sprintf(agent, "I-closed", "A1"), status: 403, reason: "closed", lookedUp: true, interaction: "I-closed"},
		{name: "not zoom", auth: bearer, body: fmt.Sprintf(customer, "I-genesys"), status: 403, reason: "the interaction is not served by Zoom", lookedUp: true, interaction: "I-genesys"},
		{name: "not zoom, agent", auth: bearer, body: fmt.Sprintf(agent, "I-genesys", "A1"), status: 403, reason: "the interaction is not served by Zoom", lookedUp: true, interaction: "I-genesys"},
		{name: "no vendor", auth: bearer, body: fmt.Sprintf(customer, "I-novendor"), status: 403, reason: "not served by Zoom", lookedUp: true, interaction: "I-novendor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTokenFixture(t, nil)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			w := f.do(method, tc.auth, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			errs := decodeErrors(t, w)
			if len(errs) != 1 || errs[0].Property != tc.property || !strings.Contains(errs[0].Reason, tc.reason) {
				t.Fatalf("errors %+v, want one on %q about %q", errs, tc.property, tc.reason)
			}
			switch tc.status {
			case 401:
				if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="cobrowse-connector"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			case 405:
				if got := w.Header().Get("Allow"); got != "POST" {
					t.Errorf("Allow %q", got)
				}
			case 503:
				if w.Header().Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			}
			if got := f.lookupCount(); got != map[bool]int{false: 0, true: 1}[tc.lookedUp] {
				t.Errorf("%d lookups, want looked up %v", got, tc.lookedUp)
			}
			lines := f.logs.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want one:\n%s", len(lines), f.logs.String())
			}
			l := lines[0]
			if l["level"] != "WARN" || l["msg"] != "token request refused" || l["status"] != float64(tc.status) ||
				l["remote"] != teRemote || l["component"] != "zoom" || !strings.Contains(fmt.Sprint(l["reason"]), tc.reason) {
				t.Errorf("log line %v", l)
			}
			if got, _ := l["interaction"].(string); got != tc.interaction {
				t.Errorf("log interaction %q, want %q", got, tc.interaction)
			}
			if tc.status == 503 && !strings.Contains(fmt.Sprint(l["error"]), "state bucket unavailable") {
				t.Errorf("503 log without the lookup's error: %v", l)
			}
			if strings.Contains(f.logs.String(), "audit") {
				t.Fatal("a refusal wrote an audit line")
			}
			assertClean(t, f.logs.String())
		})
	}
}

// tokenBodyCases are malformed bodies with every problem each one has (a reason is matched as a
// substring). TestDecodeTokenRequest and TestTokenEndpointBadBodies share them.
var tokenBodyCases = []struct {
	name string
	body string
	want []FieldError
}{
	{"empty body", ``, []FieldError{{"", "empty"}}},
	{"blank body", " \r\n\t", []FieldError{{"", "empty"}}},
	{"not JSON", `interactionId=I1&role=customer`, []FieldError{{"", "not valid JSON"}}},
	{"truncated", `{"interactionId":"I1","role":"customer"`, []FieldError{{"", "not valid JSON"}}},
	{"trailing comma", `{"interactionId":"I1","role":"customer",}`, []FieldError{{"", "not valid JSON"}}},
	{"not an object: array", `[{"interactionId":"I1","role":"customer"}]`, []FieldError{{"", "must be a JSON object"}}},
	{"not an object: string", `"I1"`, []FieldError{{"", "must be a JSON object"}}},
	{"not an object: null", `null`, []FieldError{{"", "must be a JSON object"}}},
	{"invalid UTF-8", "{\"interactionId\":\"I\xff\",\"role\":\"customer\"}", []FieldError{{"", "UTF-8"}}},
	{"trailing data", `{"interactionId":"I1","role":"customer"} x`, []FieldError{{"", "trailing data"}}},
	{"second object", `{"interactionId":"I1","role":"customer"}{}`, []FieldError{{"", "trailing data"}}},
	{"unknown field", `{"interactionId":"I1","role":"customer","ttl":3600}`, []FieldError{{"ttl", "unknown property"}}},
	{"case matters", `{"InteractionId":"I1","role":"customer"}`, []FieldError{{"InteractionId", "unknown property"}, {"interactionId", "required"}}},
	{"userId", `{"interactionId":"I1","role":"customer","userId":"someone"}`, []FieldError{{"userId", reasonUserIDChosen}}},
	{"user_id", `{"interactionId":"I1","role":"agent","agentId":"A1","user_id":"A1"}`, []FieldError{{"user_id", reasonUserIDChosen}}},
	{"UserID", `{"UserID":"x","interactionId":"I1","role":"customer"}`, []FieldError{{"UserID", reasonUserIDChosen}}},
	{"userName", `{"interactionId":"I1","role":"customer","userName":"Ann"}`, []FieldError{{"userName", "cannot choose"}}},
	{"user_name", `{"interactionId":"I1","role":"customer","user_name":"Ann"}`, []FieldError{{"user_name", "cannot choose"}}},
	{"duplicate property", `{"interactionId":"I1","role":"customer","interactionId":"I2"}`, []FieldError{{"interactionId", "more than once"}}},
	{"missing role", `{"interactionId":"I1"}`, []FieldError{{"role", "role is required"}}},
	{"null role", `{"interactionId":"I1","role":null}`, []FieldError{{"role", "role is required"}}},
	{"role 0", `{"interactionId":"I1","role":0}`, []FieldError{{"role", reasonBadRole}}},
	{"role 3", `{"interactionId":"I1","role":3}`, []FieldError{{"role", reasonBadRole}}},
	{"role 1.0", `{"interactionId":"I1","role":1.0}`, []FieldError{{"role", reasonBadRole}}},
	{"role \"1\"", `{"interactionId":"I1","role":"1"}`, []FieldError{{"role", reasonBadRole}}},
	{"role Customer", `{"interactionId":"I1","role":"Customer"}`, []FieldError{{"role", reasonBadRole}}},
	{"role guest", `{"interactionId":"I1","role":"guest"}`, []FieldError{{"role", reasonBadRole}}},
	{"role true", `{"interactionId":"I1","role":true}`, []FieldError{{"role", reasonBadRole}}},
	{"role list", `{"interactionId":"I1","role":["agent"]}`, []FieldError{{"role", reasonBadRole}}},
	{"agent without agentId", `{"interactionId":"I1","role":"agent"}`, []FieldError{{"agentId", "required for role agent"}}},
	{"agent with agentId null", `{"interactionId":"I1","role":2,"agentId":null}`, []FieldError{{"agentId", "required for role agent"}}},
	{"agent with empty agentId", `{"interactionId":"I1","role":"agent","agentId":""}`, []FieldError{{"agentId", "must not be empty"}}},
	{"agentId on customer", `{"interactionId":"I1","role":"customer","agentId":"A1"}`, []FieldError{{"agentId", "only for role agent"}}},
	{"empty agentId on customer", `{"interactionId":"I1","role":1,"agentId":""}`, []FieldError{{"agentId", "only for role agent"}}},
	{"agentId a number", `{"interactionId":"I1","role":"agent","agentId":7}`, []FieldError{{"agentId", "must be a string"}}},
	{"agentId wildcard", `{"interactionId":"I1","role":"agent","agentId":"A*"}`, []FieldError{{"agentId", "wildcard"}}},
	{"missing interactionId", `{"role":"customer"}`, []FieldError{{"interactionId", "interactionId is required"}}},
	{"null interactionId", `{"interactionId":null,"role":"customer"}`, []FieldError{{"interactionId", "interactionId is required"}}},
	{"empty interactionId", `{"interactionId":"","role":"customer"}`, []FieldError{{"interactionId", "must not be empty"}}},
	{"interactionId a number", `{"interactionId":42,"role":"customer"}`, []FieldError{{"interactionId", "must be a string"}}},
	{"interactionId an object", `{"interactionId":{"id":"I1"},"role":"customer"}`, []FieldError{{"interactionId", "must be a string"}}},
	{"interactionId with a dot", `{"interactionId":"I1.x","role":"customer"}`, []FieldError{{"interactionId", "separator"}}},
	{"interactionId *", `{"interactionId":"*","role":"customer"}`, []FieldError{{"interactionId", "wildcard"}}},
	{"interactionId >", `{"interactionId":"I>","role":"customer"}`, []FieldError{{"interactionId", "wildcard"}}},
	{"interactionId with a space", `{"interactionId":"I 1","role":"customer"}`, []FieldError{{"interactionId", "whitespace"}}},
	{"interactionId with NBSP", `{"interactionId":"I\u00a01","role":"customer"}`, []FieldError{{"interactionId", "whitespace"}}},
	{"interactionId with a NUL", `{"interactionId":"I\u00001","role":"customer"}`, []FieldError{{"interactionId", "control"}}},
	{"interactionId with DEL", "{\"interactionId\":\"I\x7f\",\"role\":\"customer\"}", []FieldError{{"interactionId", "control"}}},
	{"interactionId too long", `{"interactionId":"` + strings.Repeat("é", MaxTokenRequestID+1) + `","role":"customer"}`, []FieldError{{"interactionId", "has 257 characters"}}},
	{"everything wrong", `{"userId":"u","foo":1,"role":"boss","agentId":"A 1","interactionId":"a.b","foo":2} []`, []FieldError{
		{"userId", reasonUserIDChosen}, {"foo", "unknown property"}, {"", "trailing data"},
		{"interactionId", "separator"}, {"role", reasonBadRole}, {"agentId", "whitespace"}}},
}

func matchFieldErrors(got, want []FieldError) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Property != want[i].Property || !strings.Contains(got[i].Reason, want[i].Reason) {
			return false
		}
	}
	return true
}

func TestDecodeTokenRequest(t *testing.T) {
	for _, tc := range tokenBodyCases {
		req, errs := DecodeTokenRequest([]byte(tc.body))
		if !matchFieldErrors(errs, tc.want) || req != (TokenAPIRequest{}) {
			t.Errorf("%s: DecodeTokenRequest = %+v, %+v; want %+v", tc.name, req, errs, tc.want)
		}
	}
	for body, want := range map[string]TokenAPIRequest{
		`{"interactionId":"I1","role":"customer"}`:                                    {InteractionID: "I1", Role: RoleCustomer},
		`{"interactionId":"I1","role":1,"agentId":null}`:                              {InteractionID: "I1", Role: RoleCustomer},
		`{"interactionId":"I1","role":"agent","agentId":"A1"}`:                        {InteractionID: "I1", Role: RoleAgent, AgentID: "A1"},
		`{"interactionId":"I-😀_é","role":2,"agentId":"agent@corp"}`:                   {InteractionID: "I-😀_é", Role: RoleAgent, AgentID: "agent@corp"},
		`{"interactionId":"` + strings.Repeat("é", MaxTokenRequestID) + `","role":1}`: {InteractionID: strings.Repeat("é", MaxTokenRequestID), Role: RoleCustomer},
	} {
		req, errs := DecodeTokenRequest([]byte(body))
		if errs != nil || req != want {
			t.Errorf("DecodeTokenRequest(%s) = %+v, %+v; want %+v", body, req, errs, want)
		}
	}

	// A body of many unknown properties: 20 problems, the last one counting the rest.
	var b strings.Builder
	b.WriteString(`{"interactionId":"I1","role":1`)
	for i := range 100 {
		fmt.Fprintf(&b, `,"p%d":0`, i)
	}
	b.WriteString("}")
	_, errs := DecodeTokenRequest([]byte(b.String()))
	if len(errs) != 20 || errs[0].Property != "p0" || errs[19].Property != "" || errs[19].Reason != "and 81 more problems" {
		t.Errorf("100 unknown properties: %d errors, first %+v, last %+v", len(errs), errs[0], errs[len(errs)-1])
	}
	// A long unknown property name is cut.
	_, errs = DecodeTokenRequest([]byte(`{"interactionId":"I1","role":1,"` + strings.Repeat("ü", 100) + `":0}`))
	if len(errs) != 1 || len(errs[0].Property) > maxTokenPropertyName+3 || !strings.HasSuffix(errs[0].Property, "...") {
		t.Errorf("long property name: %+v", errs)
	}
	// A body over the limit, when called directly.
	if _, errs := DecodeTokenRequest([]byte(`{"interactionId":"I1","role":1}` + strings.Repeat(" ", MaxTokenRequestBody))); len(errs) != 1 || !strings.Contains(errs[0].Reason, "more than") {
		t.Errorf("body over the limit: %+v", errs)
	}
}

// TestTokenEndpointBadBodies: each malformed body is answered 400 with every problem, looks
// nothing up and mints nothing. The log line names the interaction only when it is a valid id.
func TestTokenEndpointBadBodies(t *testing.T) {
	f := newTokenFixture(t, nil)
	for _, tc := range tokenBodyCases {
		f.logs.reset()
		w := f.do(http.MethodPost, "Bearer "+teBearer, tc.body)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d: %s", tc.name, w.Code, w.Body)
			continue
		}
		if errs := decodeErrors(t, w); !matchFieldErrors(errs, tc.want) {
			t.Errorf("%s: errors %+v, want %+v", tc.name, errs, tc.want)
		}
		lines := f.logs.lines(t)
		if len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["status"] != float64(400) {
			t.Errorf("%s: log %s", tc.name, f.logs.String())
			continue
		}
		iid, hasIID := lines[0]["interaction"].(string)
		if hasIID && checkTokenAPIID(iid) != "" {
			t.Errorf("%s: logged an invalid interaction id %q", tc.name, iid)
		}
		if strings.Contains(tc.body, `"userId":"someone"`) && strings.Contains(f.logs.String(), "someone") {
			t.Errorf("%s: the body reached the log: %s", tc.name, f.logs.String())
		}
	}
	if n := f.lookupCount(); n != 0 {
		t.Fatalf("%d lookups for malformed bodies", n)
	}
	assertClean(t, f.logs.String())
}

// TestTokenEndpointBodyLimit: a body of MaxTokenRequestBody bytes is read; one byte more is 413,
// whether the length is announced or not.
func TestTokenEndpointBodyLimit(t *testing.T) {
	f := newTokenFixture(t, nil)
	valid := `{"interactionId":"I-new","role":"customer"}`
	exact := valid + strings.Repeat(" ", MaxTokenRequestBody-len(valid))
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		status  int
	}{
		{"exactly the limit", exact, false, 200},
		{"exactly the limit, unannounced", exact, true, 200},
		{"one byte more", exact + " ", false, 413},
		{"one byte more, unannounced", exact + " ", true, 413},
		{"far more, unannounced", exact + strings.Repeat(" ", 1<<20), true, 413},
	} {
		r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(tc.body))
		r.Header.Set("Authorization", "Bearer "+teBearer)
		if tc.chunked {
			r.ContentLength = -1
			r.Body = io.NopCloser(strings.NewReader(tc.body))
		}
		w := httptest.NewRecorder()
		f.e.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, w.Code, tc.status, w.Body)
		}
		if tc.status == 413 {
			if errs := decodeErrors(t, w); errs[0].Property != "" || !strings.Contains(errs[0].Reason, "4096") {
				t.Errorf("%s: %+v", tc.name, errs)
			}
		}
	}
	if n := strings.Count(f.logs.String(), "audit: token minted"); n != 2 {
		t.Fatalf("%d audit lines, want 2", n)
	}
}

// TestTokenEndpointMintFailure: a minting failure is a 500, logged once, with no token.
func TestTokenEndpointMintFailure(t *testing.T) {
	f := newTokenFixture(t, nil)
	f.e.mint = func(TokenRequest) (Token, error) { return Token{}, errors.New("zoom: signing the token failed") }
	w := f.do(http.MethodPost, "Bearer "+teBearer, `{"interactionId":"I-live","role":"agent","agentId":"A1"}`)
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", w.Code)
	}
	if errs := decodeErrors(t, w); !strings.Contains(errs[0].Reason, "could not be minted") {
		t.Fatalf("errors %+v", errs)
	}
	lines := f.logs.lines(t)
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["interaction"] != "I-live" ||
		!strings.Contains(fmt.Sprint(lines[0]["error"]), "signing") {
		t.Fatalf("log %s", f.logs.String())
	}
	assertClean(t, f.logs.String())
}

// TestTokenEndpointLookupTimeout: the lookup runs under LookupTimeout (2 s by default), and a
// lookup that outlives it is a 503.
func TestTokenEndpointLookupTimeout(t *testing.T) {
	f := newTokenFixture(t, nil)
	if w := f.do(http.MethodPost, "Bearer "+teBearer, `{"interactionId":"I-new","role":1}`); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if f.deadline <= 0 || f.deadline > DefaultTokenLookupTimeout {
		t.Fatalf("the lookup's deadline is %s away, want within %s", f.deadline, DefaultTokenLookupTimeout)
	}

	f = newTokenFixture(t, func(c *TokenEndpointConfig) {
		c.LookupTimeout = time.Millisecond
		c.Lookup = func(ctx context.Context, _ string) (TokenState, error) {
			<-ctx.Done()
			return TokenState{}, ctx.Err()
		}
	})
	w := f.do(http.MethodPost, "Bearer "+teBearer, `{"interactionId":"I-new","role":1}`)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
	if !strings.Contains(f.logs.String(), "deadline exceeded") {
		t.Fatalf("log %s", f.logs.String())
	}
}

// teCA makes a CA and a client certificate it signed, and another client certificate from a CA
// the server does not know.
func teCA(t *testing.T) (pool *x509.CertPool, good, foreign tls.Certificate) {
	t.Helper()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	leaf := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "platform-backend"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	ca, caKey := newCA("test callers CA")
	other, otherKey := newCA("unknown CA")
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, leaf(ca, caKey), leaf(other, otherKey)
}

// TestTokenEndpointClientCert: over TLS with VerifyClientCertIfGiven, a verified client
// certificate authenticates when AcceptClientCert is on, and not when it is off; a certificate
// that was presented but not verified never does.
func TestTokenEndpointClientCert(t *testing.T) {
	pool, good, foreign := teCA(t)
	body := `{"interactionId":"I-new","role":"customer"}`
	for _, tc := range []struct {
		name     string
		accept   bool
		bearers  []Secret
		cert     *tls.Certificate
		bearer   string
		status   int
		authedBy string
	}{
		{"cert accepted", true, []Secret{teBearer}, &good, "", 200, "client_cert"},
		{"cert only, no bearer configured", true, nil, &good, "", 200, "client_cert"},
		{"cert and a wrong bearer", true, []Secret{teBearer}, &good, teWrong, 200, "client_cert"},
		{"no cert, no bearer", true, []Secret{teBearer}, nil, "", 401, ""},
		{"no cert, bearer", true, []Secret{teBearer}, nil, teBearer, 200, "bearer"},
		{"no cert, any bearer, none configured", true, nil, nil, teBearer, 401, ""},
		{"cert not accepted", false, []Secret{teBearer}, &good, "", 401, ""},
		{"cert not accepted, bearer", false, []Secret{teBearer}, &good, teBearer, 200, "bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTokenFixture(t, func(c *TokenEndpointConfig) { c.AcceptClientCert, c.BearerSecrets = tc.accept, tc.bearers })
			srv := httptest.NewUnstartedServer(f.e)
			srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
			srv.StartTLS()
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport).Clone()
			defer tr.CloseIdleConnections()
			if tc.cert != nil {
				tr.TLSClientConfig.Certificates = []tls.Certificate{*tc.cert}
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/token", strings.NewReader(body))
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			ans, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, ans)
			}
			lines := f.logs.lines(t)
			if len(lines) != 1 {
				t.Fatalf("log %s", f.logs.String())
			}
			if tc.status == 200 {
				var a TokenAPIResponse
				if err := json.Unmarshal(ans, &a); err != nil {
					t.Fatal(err)
				}
				checkJWT(t, a.Token, testKey, testSecret)
				if lines[0]["auth"] != tc.authedBy || lines[0]["msg"] != "audit: token minted" {
					t.Fatalf("audit %v, want auth %s", lines[0], tc.authedBy)
				}
				assertClean(t, f.logs.String(), a.Token)
			} else {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				assertClean(t, f.logs.String())
			}
		})
	}

	// A certificate from a CA the server does not know fails the handshake: the server's
	// tls.Config is what decides.
	f := newTokenFixture(t, func(c *TokenEndpointConfig) { c.AcceptClientCert = true })
	srv := httptest.NewUnstartedServer(f.e)
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	tr.TLSClientConfig.Certificates = []tls.Certificate{foreign}
	resp, err := (&http.Client{Transport: tr}).Post(srv.URL, "application/json", strings.NewReader(body))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a certificate from an unknown CA got a token")
		}
	}

	// A certificate presented but not verified (tls.RequestClientCert) is no authentication.
	f = newTokenFixture(t, func(c *TokenEndpointConfig) { c.AcceptClientCert = true })
	leaf, _ := x509.ParseCertificate(good.Certificate[0])
	r := httptest.NewRequest(http.MethodPost, "https://daemon/token", strings.NewReader(body))
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}
	w := httptest.NewRecorder()
	f.e.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("unverified certificate: status %d", w.Code)
	}
}

func TestNewTokenEndpointChecksConfig(t *testing.T) {
	m := newTestMinter(t, 0)
	lookup := func(context.Context, string) (TokenState, error) { return TokenState{}, nil }
	for _, tc := range []struct {
		cfg  TokenEndpointConfig
		want string
	}{
		{TokenEndpointConfig{Lookup: lookup, BearerSecrets: []Secret{teBearer}}, "Minter"},
		{TokenEndpointConfig{Minter: m, BearerSecrets: []Secret{teBearer}}, "Lookup"},
		{TokenEndpointConfig{Minter: m, Lookup: lookup}, "open"},
		{TokenEndpointConfig{Minter: m, Lookup: lookup, BearerSecrets: []Secret{"", ""}}, "open"},
		{TokenEndpointConfig{Minter: m, Lookup: lookup, BearerSecrets: []Secret{teBearer}, LookupTimeout: -time.Second}, "LookupTimeout"},
	} {
		if e, err := NewTokenEndpoint(tc.cfg); err == nil || e != nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewTokenEndpoint(%v) = %v, want an error about %s", tc.cfg, err, tc.want)
		} else if strings.Contains(err.Error(), teBearer) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	for _, cfg := range []TokenEndpointConfig{
		{Minter: m, Lookup: lookup, BearerSecrets: []Secret{teBearer}},
		{Minter: m, Lookup: lookup, AcceptClientCert: true},
	} {
		if _, err := NewTokenEndpoint(cfg); err != nil {
			t.Errorf("NewTokenEndpoint(%v): %v", cfg, err)
		}
	}
}

// TestTokenEndpointHidesSecrets prints and logs the config, the endpoint, an answer and a state
// every way.
func TestTokenEndpointHidesSecrets(t *testing.T) {
	m := newTestMinter(t, 0)
	cfg := TokenEndpointConfig{Minter: m, BearerSecrets: []Secret{teBearer, tePrevBearer},
		Lookup: func(context.Context, string) (TokenState, error) { return TokenState{}, nil }}
	e, err := NewTokenEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertHidden(t, []string{teBearer, tePrevBearer, testSecret}, cfg, &cfg, e, []any{cfg, e})

	// An answer and a state print masked; the answer's JSON (what the endpoint sends) is whole.
	tok, _ := mint(t, m, CustomerTokenRequest("I1"))
	ans := TokenAPIResponse{Token: tok.JWT, PIN: tePIN, ExpiresAt: "2026-03-04T07:06:07Z"}
	st := TokenState{Vendor: "zoom", PIN: tePIN}
	var out bytes.Buffer
	jl := slog.New(slog.NewJSONHandler(&out, nil))
	tl := slog.New(slog.NewTextHandler(&out, nil))
	for _, v := range []any{ans, &ans, st, &st} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		jl.Info("x", "v", v)
		tl.Info("x", "v", v)
	}
	for _, s := range []string{tePIN, tok.JWT, strings.Split(tok.JWT, ".")[2], fmt.Sprintf("%x", tePIN)} {
		if strings.Contains(out.String(), s) {
			t.Fatalf("%q shows in:\n%s", s, out.String())
		}
	}
	b, _ := json.Marshal(ans)
	if !strings.Contains(string(b), tok.JWT) || !strings.Contains(string(b), tePIN) {
		t.Fatalf("marshalled answer %s", b)
	}
}
