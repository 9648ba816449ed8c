package zoomtest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 5 * time.Second // bound on waiting for something that must happen

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t *testing.T, opts zoomtest.Options) *zoomtest.Server {
	t.Helper()
	z := zoomtest.New(opts)
	t.Cleanup(z.Close)
	return z
}

// signJWT builds a JWT by hand, so that tests can make every kind of wrong token.
func signJWT(secret string, header, claims any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		if raw, ok := v.(json.RawMessage); ok {
			b = raw
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(header) + "." + enc(claims)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var stdHeader = map[string]any{"alg": "HS256", "typ": "JWT"}

func claims(role int, userID, userName string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"app_key": zoomtest.DefaultSDKKey, "role_type": role, "iat": now, "exp": now + 7200,
		"user_id": userID, "user_name": userName}
}

func jwtFor(c map[string]any) string { return signJWT(zoomtest.DefaultSDKSecret, stdHeader, c) }

func customerJWT() string { return jwtFor(claims(1, "cust-1", "Customer")) }

func byopJWT() string {
	c := claims(1, "cust-1", "Customer")
	c["enable_byop"] = 1
	return jwtFor(c)
}

func agentJWT(id string) string { return jwtFor(claims(2, id, "Agent "+id)) }

func sdkCode(err error) int {
	if e, ok := errors.AsType[*zoomtest.SDKError](err); ok {
		return e.Code
	}
	return 0
}

// delivery is one webhook the receiver got.
type delivery struct {
	header http.Header
	body   []byte
	env    struct {
		Event   string `json:"event"`
		EventTS int64  `json:"event_ts"`
		Payload struct {
			AccountID string         `json:"account_id"`
			Object    map[string]any `json:"object"`
		} `json:"payload"`
	}
}

// receiver is a webhook endpoint that checks every signature independently and queues what it got.
type receiver struct {
	srv    *httptest.Server
	got    chan delivery
	mu     sync.Mutex
	status []int // answers to give, in order; then 200
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{got: make(chan delivery, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ts := req.Header.Get("x-zm-request-timestamp")
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("v0:" + ts + ":"))
		m.Write(body)
		if req.Header.Get("x-zm-signature") != "v0="+hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("bad signature on %s", body)
		}
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(n, 0)).Abs() > time.Minute {
			t.Errorf("bad timestamp %q", ts)
		}
		r.mu.Lock()
		status := http.StatusOK
		if len(r.status) > 0 {
			status, r.status = r.status[0], r.status[1:]
		}
		r.mu.Unlock()
		if status == http.StatusOK {
			d := delivery{header: req.Header, body: body}
			if err := json.Unmarshal(body, &d.env); err != nil {
				t.Errorf("webhook body %s: %v", body, err)
			}
			r.got <- d
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(wait):
		t.Fatal("no webhook")
		return delivery{}
	}
}

func (r *receiver) none(t *testing.T, z *zoomtest.Server) {
	t.Helper()
	if err := z.WaitWebhooks(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-r.got:
		t.Fatalf("unexpected webhook %s", d.body)
	default:
	}
}

func TestOAuthToken(t *testing.T) {
	z := newServer(t, zoomtest.Options{TokenTTL: 90 * time.Minute})
	o := z.Options()
	post := func(method, query, id, secret string) (int, map[string]any) {
		req, _ := http.NewRequest(method, z.URL()+"/oauth/token?"+query, nil)
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	good := "grant_type=account_credentials&account_id=" + o.AccountID
	st, m := post("POST", good, o.ClientID, o.ClientSecret)
	if st != 200 || m["access_token"] == "" || m["token_type"] != "bearer" || m["expires_in"] != float64(5400) || m["scope"] == "" {
		t.Fatalf("%d %v", st, m)
	}
	for _, tc := range []struct {
		method, query, id, secret string
		status                    int
		code                      string
	}{
		{"POST", good, o.ClientID, "wrong", 401, "invalid_client"},
		{"POST", good, "", "", 401, "invalid_client"},
		{"POST", "grant_type=account_credentials&account_id=other", o.ClientID, o.ClientSecret, 400, "invalid_request"},
		{"POST", "grant_type=client_credentials&account_id=" + o.AccountID, o.ClientID, o.ClientSecret, 400, "unsupported_grant_type"},
		{"GET", good, o.ClientID, o.ClientSecret, 405, "invalid_request"},
	} {
		st, m := post(tc.method, tc.query, tc.id, tc.secret)
		if st != tc.status || m["error"] != tc.code || m["reason"] == "" {
			t.Errorf("%+v: %d %v", tc, st, m)
		}
	}
	if z.TokenRequests() != 1 {
		t.Fatalf("%d tokens issued", z.TokenRequests())
	}
}

// api calls the REST API with a fresh token unless tok is given.
func api(t *testing.T, z *zoomtest.Server, tok, path string) (int, map[string]any, http.Header) {
	t.Helper()
	if tok == "" {
		tok = token(t, z)
	}
	req, _ := http.NewRequest(http.MethodGet, z.APIURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}

func token(t *testing.T, z *zoomtest.Server) string {
	t.Helper()
	o := z.Options()
	req, _ := http.NewRequest(http.MethodPost, z.URL()+"/oauth/token?grant_type=account_credentials&account_id="+o.AccountID, nil)
	req.SetBasicAuth(o.ClientID, o.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m.AccessToken
}

func TestAPIAuth(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	if st, m, _ := api(t, z, "nonsense", "/cobrowsesdk/live_sessions"); st != 401 || m["code"] != float64(124) {
		t.Fatalf("unknown token: %d %v", st, m)
	}
	tok := token(t, z)
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/live_sessions"); st != 200 {
		t.Fatalf("good token: %d", st)
	}
	z.RevokeTokens()
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/live_sessions"); st != 401 {
		t.Fatalf("revoked token: %d", st)
	}
	short := newServer(t, zoomtest.Options{TokenTTL: time.Nanosecond})
	if st, m, _ := api(t, short, "", "/cobrowsesdk/live_sessions"); st != 401 || !strings.Contains(m["message"].(string), "expired") {
		t.Fatalf("expired token: %d %v", st, m)
	}
	if st, _, _ := api(t, z, "", "/cobrowsesdk/nothing"); st != 404 {
		t.Fatalf("unknown path: %d", st)
	}
}

func TestCustomerStartChecksTheJWT(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	mod := func(f func(c map[string]any)) string {
		c := claims(1, "cust-1", "Customer")
		f(c)
		return jwtFor(c)
	}
	now := time.Now().Unix()
	for name, tok := range map[string]string{
		"wrong secret":         signJWT("other", stdHeader, claims(1, "c", "C")),
		"alg HS512":            signJWT(zoomtest.DefaultSDKSecret, map[string]any{"alg": "HS512", "typ": "JWT"}, claims(1, "c", "C")),
		"alg none":             signJWT(zoomtest.DefaultSDKSecret, map[string]any{"alg": "none", "typ": "JWT"}, claims(1, "c", "C")),
		"no typ":               signJWT(zoomtest.DefaultSDKSecret, map[string]any{"alg": "HS256"}, claims(1, "c", "C")),
		"agent role":           agentJWT("a"),
		"role as string":       mod(func(c map[string]any) { c["role_type"] = "1" }),
		"role as 1.0":          signJWT(zoomtest.DefaultSDKSecret, stdHeader, json.RawMessage(`{"app_key":"`+zoomtest.DefaultSDKKey+`","role_type":1.0,"iat":`+strconv.FormatInt(now, 10)+`,"exp":`+strconv.FormatInt(now+7200, 10)+`,"user_id":"c","user_name":"C"}`)),
		"wrong app_key":        mod(func(c map[string]any) { c["app_key"] = "api-key" }),
		"lifetime 1799":        mod(func(c map[string]any) { c["iat"], c["exp"] = now, now+1799 }),
		"lifetime 172801":      mod(func(c map[string]any) { c["iat"], c["exp"] = now, now+172801 }),
		"expired":              mod(func(c map[string]any) { c["iat"], c["exp"] = now-7200, now-1 }),
		"iat as string":        mod(func(c map[string]any) { c["iat"] = strconv.FormatInt(now, 10) }),
		"user_id of 36":        mod(func(c map[string]any) { c["user_id"] = strings.Repeat("u", 36) }),
		"user_name of 18 😀":    mod(func(c map[string]any) { c["user_name"] = strings.Repeat("😀", 18) }),
		"no user_name":         mod(func(c map[string]any) { delete(c, "user_name") }),
		"user_id number":       mod(func(c map[string]any) { c["user_id"] = 7 }),
		"unknown claim":        mod(func(c map[string]any) { c["user_identity"] = "x" }),
		"tpc claim":            mod(func(c map[string]any) { c["tpc"] = "x" }),
		"enable_byop string":   mod(func(c map[string]any) { c["enable_byop"] = "1" }),
		"enable_byop 2":        mod(func(c map[string]any) { c["enable_byop"] = 2 }),
		"two parts":            "a.b",
		"padded base64":        strings.Replace(customerJWT(), ".", "=.", 1),
		"tampered payload":     strings.Replace(customerJWT(), ".ey", ".eX", 1),
		"trailing JSON":        signJWT(zoomtest.DefaultSDKSecret, stdHeader, json.RawMessage(`{"app_key":"x"}{}`)),
		"payload not object":   signJWT(zoomtest.DefaultSDKSecret, stdHeader, json.RawMessage(`[1]`)),
		"empty":                "",
		"header not an object": signJWT(zoomtest.DefaultSDKSecret, "x", claims(1, "c", "C")),
	} {
		if _, err := z.CustomerStart(tok, ""); sdkCode(err) != zoomtest.CodeTokenInvalid {
			t.Errorf("%s: %v, want 2001", name, err)
		}
	}
	ok := map[string]string{
		"plain":             customerJWT(),
		"35 characters":     jwtFor(claims(1, strings.Repeat("u", 35), strings.Repeat("😀", 17)+"x")),
		"lifetime 1800":     mod(func(c map[string]any) { c["iat"], c["exp"] = now, now+1800 }),
		"lifetime 172800":   mod(func(c map[string]any) { c["iat"], c["exp"] = now, now+172800 }),
		"enable_byop 0":     mod(func(c map[string]any) { c["enable_byop"] = 0 }),
		"iat in the future": mod(func(c map[string]any) { c["iat"], c["exp"] = now+600, now+600+1800 }),
	}
	for name, tok := range ok {
		s, err := z.CustomerStart(tok, "")
		if err != nil || !regexp.MustCompile(`^[0-9]{6}$`).MatchString(s.PIN) || s.BYOP || len(s.Users) != 1 || s.Users[0].Role != "customer" {
			t.Errorf("%s: %+v, %v", name, s, err)
		}
	}
}

func TestCustomerStartPINs(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	s, err := z.CustomerStart(byopJWT(), "case42x")
	if err != nil || s.PIN != "CASE42X" || !s.BYOP {
		t.Fatalf("BYOP start: %+v, %v", s, err)
	}
	for _, tc := range []struct {
		jwt, pin string
		code     int
	}{
		{byopJWT(), "", zoomtest.CodeStartPINRequired},
		{customerJWT(), "ABC", zoomtest.CodeTokenInvalid},
		{byopJWT(), "12345678901", zoomtest.CodePINInvalidFormat},
		{byopJWT(), "ab-1", zoomtest.CodePINInvalidFormat},
		{byopJWT(), "ÄB", zoomtest.CodePINInvalidFormat},
		{byopJWT(), "Case42X", zoomtest.CodeStartPINConflict},
	} {
		if _, err := z.CustomerStart(tc.jwt, tc.pin); sdkCode(err) != tc.code {
			t.Errorf("CustomerStart(%q): %v, want %d", tc.pin, err, tc.code)
		}
	}
	if err := z.End(s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := z.CustomerStart(byopJWT(), "CASE42X"); err != nil {
		t.Fatalf("the PIN of an ended session: %v", err)
	}
	// Auto PINs are unique among live sessions.
	pins := map[string]bool{}
	for range 200 {
		s, err := z.CustomerStart(customerJWT(), "")
		if err != nil || pins[s.PIN] {
			t.Fatalf("%+v %v", s, err)
		}
		pins[s.PIN] = true
	}
}

func TestAgentJoinRules(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	s, _ := z.CustomerStart(byopJWT(), "PIN1")
	if _, err := z.AgentJoin(customerJWT(), "PIN1"); sdkCode(err) != zoomtest.CodeTokenInvalid {
		t.Fatalf("customer token: %v", err)
	}
	if _, err := z.AgentJoin(agentJWT("a0"), "NOPE"); sdkCode(err) != zoomtest.CodeJoinPINNotFound {
		t.Fatalf("unknown PIN: %v", err)
	}
	var agents []zoomtest.User
	for i := range 5 {
		a, err := z.AgentJoin(agentJWT("a"+strconv.Itoa(i)), "pin1")
		if err != nil || a.Role != "agent" || a.UserID == "" || a.UserID == a.JWTUserID || a.Name != "Agent a"+strconv.Itoa(i) {
			t.Fatalf("agent %d: %+v %v", i, a, err)
		}
		agents = append(agents, a)
	}
	if _, err := z.AgentJoin(agentJWT("a5"), "PIN1"); sdkCode(err) != zoomtest.CodeAgentCountLimit {
		t.Fatalf("sixth agent: %v", err)
	}
	if err := z.AgentLeave(s.ID, agents[0].UserID); err != nil {
		t.Fatal(err)
	}
	if _, err := z.AgentJoin(agentJWT("a1"), "PIN1"); sdkCode(err) != zoomtest.CodeSessionDuplicateID {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, err := z.AgentJoin(jwtFor(claims(2, "cust-1", "x")), "PIN1"); sdkCode(err) != zoomtest.CodeSessionDuplicateID {
		t.Fatalf("the customer's user_id as an agent: %v", err)
	}
	again, err := z.AgentJoin(agentJWT("a0"), "PIN1")
	if err != nil || again.UserID == agents[0].UserID {
		t.Fatalf("an agent who left joins again with a new id: %+v %v", again, err)
	}
	if err := z.AgentLeave(s.ID, "nobody"); !errors.Is(err, zoomtest.ErrNoUser) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := z.AgentLeave("nosuch", agents[1].UserID); !errors.Is(err, zoomtest.ErrNoSession) {
		t.Fatalf("unknown session: %v", err)
	}
	got, _ := z.Session(s.ID)
	if !got.Live() || len(got.Agents()) != 5 || len(got.Users) != 7 {
		t.Fatalf("%+v", got)
	}
}

func TestWebhooksSignedInOrder(t *testing.T) {
	r := newReceiver(t, zoomtest.DefaultWebhookSecret)
	z := newServer(t, zoomtest.Options{WebhookURL: r.srv.URL})
	s, _ := z.CustomerStart(customerJWT(), "")
	a, _ := z.AgentJoin(agentJWT("a1"), s.PIN)
	_ = z.AgentLeave(s.ID, a.UserID)
	_ = z.End(s.ID)
	want := []struct {
		event string
		keys  string
	}{
		{"cobrowse.session_started", "role_type session_id start_time user_id user_name"},
		{"cobrowse.session_user_joined", "join_time role_type session_id user_id user_name"},
		{"cobrowse.session_user_left", "leave_time role_type session_id user_id user_name"},
		{"cobrowse.session_ended", "end_time session_id start_time"},
	}
	for _, w := range want {
		d := r.next(t)
		o := d.env.Payload.Object
		var keys []string
		for k := range o {
			keys = append(keys, k)
		}
		if d.env.Event != w.event || d.env.Payload.AccountID != zoomtest.DefaultAccountID || o["session_id"] != s.ID ||
			time.Since(time.UnixMilli(d.env.EventTS)).Abs() > time.Minute || sortedJoin(keys) != w.keys {
			t.Fatalf("got %s, want %s with %s", d.body, w.event, w.keys)
		}
		switch w.event {
		case "cobrowse.session_started":
			if o["role_type"] != "customer" || o["user_name"] != "Customer" || o["user_id"] == "cust-1" {
				t.Fatalf("%s", d.body)
			}
		case "cobrowse.session_user_joined", "cobrowse.session_user_left":
			if o["role_type"] != "agent" || o["user_id"] != a.UserID || o["user_name"] != "Agent a1" {
				t.Fatalf("%s", d.body)
			}
		}
	}
	r.none(t, z)
	if st := z.WebhookStats(); st.Delivered != 4 || st.Attempts != 4 || st.Queued != 4 {
		t.Fatalf("%+v", st)
	}
}

func sortedJoin(s []string) string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return strings.Join(s, " ")
}

func TestWebhookRetries(t *testing.T) {
	r := newReceiver(t, zoomtest.DefaultWebhookSecret)
	r.status = []int{500, 503}
	z := newServer(t, zoomtest.Options{WebhookURL: r.srv.URL, WebhookRetryDelay: time.Millisecond})
	_, _ = z.CustomerStart(customerJWT(), "")
	if d := r.next(t); d.env.Event != "cobrowse.session_started" {
		t.Fatalf("%s", d.body)
	}
	_ = z.WaitWebhooks(ctxFor(t))
	if st := z.WebhookStats(); st.Delivered != 1 || st.Attempts != 3 {
		t.Fatalf("%+v", st)
	}
	r.mu.Lock()
	r.status = []int{500, 500, 500}
	r.mu.Unlock()
	_, _ = z.CustomerStart(customerJWT(), "")
	r.none(t, z)
	if st := z.WebhookStats(); st.Failed != 1 || st.Attempts != 6 {
		t.Fatalf("%+v", st)
	}
}

func TestWebhookDropAndDuplicate(t *testing.T) {
	r := newReceiver(t, zoomtest.DefaultWebhookSecret)
	z := newServer(t, zoomtest.Options{WebhookURL: r.srv.URL})
	z.DropWebhooks(1)
	z.DuplicateWebhooks(1)
	s1, _ := z.CustomerStart(customerJWT(), "") // dropped
	s2, _ := z.CustomerStart(customerJWT(), "") // twice
	a, b := r.next(t), r.next(t)
	if string(a.body) != string(b.body) || a.env.Payload.Object["session_id"] != s2.ID {
		t.Fatalf("%s\n%s", a.body, b.body)
	}
	r.none(t, z)
	if st := z.WebhookStats(); st.Dropped != 1 || st.Duplicated != 1 || st.Delivered != 2 {
		t.Fatalf("%+v", st)
	}
	_ = s1
}

func TestValidateURL(t *testing.T) {
	const secret = "hook-secret"
	answer := func(w http.ResponseWriter, r *http.Request, key string) {
		var env struct {
			Event   string `json:"event"`
			Payload struct {
				PlainToken string `json:"plainToken"`
			} `json:"payload"`
		}
		_ = json.NewDecoder(r.Body).Decode(&env)
		if env.Event != "endpoint.url_validation" || r.Header.Get("x-zm-signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(env.Payload.PlainToken))
		_ = json.NewEncoder(w).Encode(map[string]string{"plainToken": env.Payload.PlainToken, "encryptedToken": hex.EncodeToString(m.Sum(nil))})
	}
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r, secret) }))
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r, "other") }))
	defer bad.Close()
	if err := newServer(t, zoomtest.Options{WebhookURL: good.URL, WebhookSecret: secret}).ValidateURL(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := newServer(t, zoomtest.Options{WebhookURL: bad.URL, WebhookSecret: secret}).ValidateURL(ctxFor(t)); err == nil {
		t.Fatal("a wrong encryptedToken passed")
	}
	if err := newServer(t, zoomtest.Options{}).ValidateURL(ctxFor(t)); err == nil {
		t.Fatal("no URL passed")
	}
}

func TestCustomerLeaveAndWait(t *testing.T) {
	r := newReceiver(t, zoomtest.DefaultWebhookSecret)
	z := newServer(t, zoomtest.Options{WebhookURL: r.srv.URL, CustomerWait: 20 * time.Millisecond})

	alone, _ := z.CustomerStart(customerJWT(), "")
	_ = z.CustomerLeave(alone.ID)
	if got, _ := z.Session(alone.ID); got.Live() || got.EndedBy != zoomtest.EndedByCustomerLeft {
		t.Fatalf("a customer alone leaving: %+v", got)
	}

	s, _ := z.CustomerStart(customerJWT(), "")
	_, _ = z.AgentJoin(agentJWT("a1"), s.PIN)
	_ = z.CustomerLeave(s.ID)
	ended, err := z.WaitEnded(ctxFor(t), s.ID)
	if err != nil || ended.EndedBy != zoomtest.EndedByCustomerWait {
		t.Fatalf("%+v %v", ended, err)
	}
	var events []string
	for range 7 {
		events = append(events, r.next(t).env.Event)
	}
	if strings.Join(events, " ") != "cobrowse.session_started cobrowse.session_user_left cobrowse.session_ended "+
		"cobrowse.session_started cobrowse.session_user_joined cobrowse.session_user_left cobrowse.session_ended" {
		t.Fatal(events)
	}

	// With a long wait the agents are still there, waiting.
	slow := newServer(t, zoomtest.Options{CustomerWait: time.Hour})
	s, _ = slow.CustomerStart(customerJWT(), "")
	_, _ = slow.AgentJoin(agentJWT("a1"), s.PIN)
	_ = slow.CustomerLeave(s.ID)
	if got, _ := slow.Session(s.ID); !got.Live() || len(got.Agents()) != 1 || got.Users[0].Present() {
		t.Fatalf("the agents' wait: %+v", got)
	}

	// The customer left, then the last agent leaves: over at once.
	s, _ = z.CustomerStart(customerJWT(), "")
	a, _ := z.AgentJoin(agentJWT("a1"), s.PIN)
	_ = z.CustomerLeave(s.ID)
	_ = z.AgentLeave(s.ID, a.UserID)
	if got, _ := z.Session(s.ID); got.Live() || got.EndedBy != zoomtest.EndedByAgentsLeft {
		t.Fatalf("%+v", got)
	}
}

func TestReconnectWindow(t *testing.T) {
	z := newServer(t, zoomtest.Options{ReconnectWindow: time.Hour})
	s, _ := z.CustomerStart(customerJWT(), "")
	cust := s.Users[0].UserID
	if err := z.Disconnect(s.ID, cust); err != nil {
		t.Fatal(err)
	}
	if got, _ := z.Session(s.ID); !got.Users[0].Disconnected || !got.Live() {
		t.Fatalf("%+v", got)
	}
	_ = z.Reconnect(s.ID, cust)
	if got, _ := z.Session(s.ID); got.Users[0].Disconnected {
		t.Fatalf("%+v", got)
	}

	fast := newServer(t, zoomtest.Options{ReconnectWindow: 10 * time.Millisecond})
	s, _ = fast.CustomerStart(customerJWT(), "")
	a, _ := fast.AgentJoin(agentJWT("a1"), s.PIN)
	_ = fast.Disconnect(s.ID, a.UserID)
	ended, err := fast.WaitEnded(ctxFor(t), s.ID)
	if err != nil || ended.EndedBy != zoomtest.EndedByReconnect {
		t.Fatalf("%+v %v", ended, err)
	}
	// Timers left running at Close (the first server's, an hour away) are stopped by Close.
}

func TestREST(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	tok := token(t, z)
	s, _ := z.CustomerStart(byopJWT(), "abc")
	a, _ := z.AgentJoin(agentJWT("a1"), "ABC")
	for range 4 {
		_, _ = z.CustomerStart(customerJWT(), "")
	}

	st, m, _ := api(t, z, tok, "/cobrowsesdk/live_sessions?pin_code=abc")
	list := m["sessions"].([]any)
	if st != 200 || len(list) != 1 || m["next_page_token"] != "" {
		t.Fatalf("%d %v", st, m)
	}
	got := list[0].(map[string]any)
	users := got["users"].([]any)
	if got["session_id"] != s.ID || got["session_pin"] != "ABC" || len(users) != 2 ||
		users[1].(map[string]any)["role_type"] != "agent" || users[1].(map[string]any)["user_id"] != a.UserID {
		t.Fatalf("%v", got)
	}
	if _, m, _ := api(t, z, tok, "/cobrowsesdk/live_sessions?session_pin=abc"); len(m["sessions"].([]any)) != 5 {
		t.Fatal("another parameter name must not filter")
	}
	// Paging: 5 live sessions, 2 per page.
	var ids []string
	next := ""
	for pages := 0; ; pages++ {
		_, m, _ := api(t, z, tok, "/cobrowsesdk/live_sessions?page_size=2&next_page_token="+url.QueryEscape(next))
		for _, x := range m["sessions"].([]any) {
			ids = append(ids, x.(map[string]any)["session_id"].(string))
		}
		if next = m["next_page_token"].(string); next == "" {
			if pages != 2 || len(ids) != 5 {
				t.Fatalf("%d pages, %d sessions", pages+1, len(ids))
			}
			break
		}
	}
	for _, q := range []string{"page_size=0", "page_size=301", "page_size=x", "next_page_token=zzz"} {
		if st, m, _ := api(t, z, tok, "/cobrowsesdk/live_sessions?"+q); st != 400 || m["code"] != float64(300) {
			t.Errorf("%s: %d %v", q, st, m)
		}
	}

	esc := "/cobrowsesdk/sessions/" + url.PathEscape(s.ID)
	if st, m, _ := api(t, z, tok, esc); st != 200 || m["session_id"] != s.ID || m["session_pin"] != "ABC" ||
		m["user_count"] != float64(2) || m["end_time"] != nil {
		t.Fatalf("live detail: %d %v", st, m)
	}
	_ = z.AgentLeave(s.ID, a.UserID)
	_ = z.End(s.ID)
	if st, m, _ := api(t, z, tok, esc); st != 200 || m["end_time"] == nil || !regexp.MustCompile(`^\d\d:\d\d:\d\d$`).MatchString(m["duration"].(string)) {
		t.Fatalf("ended detail: %d %v", st, m)
	}
	st, m, _ = api(t, z, tok, esc+"/users")
	us := m["users"].([]any)
	if st != 200 || len(us) != 2 {
		t.Fatalf("%d %v", st, m)
	}
	for _, u := range us {
		u := u.(map[string]any)
		for _, k := range []string{"user_connection_id", "user_id", "user_name", "role_type", "join_time", "leave_time", "duration", "ip_address", "data_center"} {
			if _, ok := u[k]; !ok {
				t.Fatalf("user without %s: %v", k, u)
			}
		}
	}
	if _, m, _ := api(t, z, tok, "/cobrowsesdk/live_sessions?pin_code=ABC"); len(m["sessions"].([]any)) != 0 {
		t.Fatal("an ended session is listed live")
	}
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/sessions/nosuch"); st != 404 {
		t.Fatalf("unknown session: %d", st)
	}
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/sessions/nosuch/users"); st != 404 {
		t.Fatalf("unknown session users: %d", st)
	}
	// An id with "/" and "+" reaches the right session once path-escaped.
	for range 1000 {
		s, _ := z.CustomerStart(customerJWT(), "")
		if !strings.Contains(s.ID, "/") || !strings.Contains(s.ID, "+") {
			continue
		}
		if st, m, _ := api(t, z, tok, "/cobrowsesdk/sessions/"+url.PathEscape(s.ID)); st != 200 || m["session_id"] != s.ID {
			t.Fatalf("id %q: %d %v", s.ID, st, m)
		}
		return
	}
	t.Fatal("no session id with '/' and '+' in 1000")
}

func TestPastSessions(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	tok := token(t, z)
	live, _ := z.CustomerStart(byopJWT(), "LIVE1")
	var ended []zoomtest.Session
	for i := range 3 {
		s, _ := z.CustomerStart(byopJWT(), "past"+strconv.Itoa(i))
		_, _ = z.AgentJoin(agentJWT("a"), s.PIN)
		_ = z.End(s.ID)
		ended = append(ended, s)
	}
	_, m, _ := api(t, z, tok, "/cobrowsesdk/past_sessions?page_size=2")
	if len(m["sessions"].([]any)) != 2 || m["next_page_token"] == "" {
		t.Fatalf("%v", m)
	}
	_, m, _ = api(t, z, tok, "/cobrowsesdk/past_sessions?session_pin=past1")
	list := m["sessions"].([]any)
	if len(list) != 1 {
		t.Fatalf("%v", m)
	}
	got := list[0].(map[string]any)
	if got["session_id"] != ended[1].ID || got["user_count"] != float64(2) || got["end_time"] == nil || len(got["users"].([]any)) != 2 {
		t.Fatalf("%v", got)
	}
	if _, m, _ := api(t, z, tok, "/cobrowsesdk/past_sessions?session_id="+url.QueryEscape(live.ID)); len(m["sessions"].([]any)) != 0 {
		t.Fatal("a live session is listed as past")
	}
	yesterday, tomorrow := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	if _, m, _ := api(t, z, tok, "/cobrowsesdk/past_sessions?from="+yesterday+"&to="+tomorrow); len(m["sessions"].([]any)) != 3 || m["from"] != yesterday {
		t.Fatalf("%v", m)
	}
	if _, m, _ := api(t, z, tok, "/cobrowsesdk/past_sessions?to=2000-01-01"); len(m["sessions"].([]any)) != 0 {
		t.Fatalf("%v", m)
	}
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/past_sessions?from=yesterday"); st != 400 {
		t.Fatal(st)
	}
}

func TestIgnorePINFilterAndEchoUserIDs(t *testing.T) {
	z := newServer(t, zoomtest.Options{IgnorePINFilter: true, EchoUserIDs: true, PINParam: "session_pin"})
	s, _ := z.CustomerStart(customerJWT(), "")
	_, _ = z.CustomerStart(customerJWT(), "")
	if _, m, _ := api(t, z, "", "/cobrowsesdk/live_sessions?session_pin="+s.PIN); len(m["sessions"].([]any)) != 2 {
		t.Fatalf("%v", m)
	}
	if s.Users[0].UserID != "cust-1" {
		t.Fatalf("%+v", s.Users[0])
	}
}

func TestFaults(t *testing.T) {
	z := newServer(t, zoomtest.Options{})
	tok := token(t, z)
	z.SetFault(zoomtest.RouteLiveSessions, zoomtest.Fault{Status: 429, RetryAfter: "3", Times: 2})
	for range 2 {
		if st, _, h := api(t, z, tok, "/cobrowsesdk/live_sessions"); st != 429 || h.Get("Retry-After") != "3" {
			t.Fatalf("%d %v", st, h)
		}
	}
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/live_sessions"); st != 200 {
		t.Fatalf("after Times: %d", st)
	}
	z.SetFault(zoomtest.RouteAll, zoomtest.Fault{Status: 503})
	if st, _, _ := api(t, z, "bad-token", "/cobrowsesdk/sessions/x"); st != 503 {
		t.Fatalf("a fault comes before authentication: %d", st)
	}
	z.ClearFaults()
	if st, _, _ := api(t, z, tok, "/cobrowsesdk/sessions/x"); st != 404 {
		t.Fatalf("after ClearFaults: %d", st)
	}
	if n := z.Requests(zoomtest.RouteLiveSessions); n != 3 {
		t.Fatalf("%d live_sessions requests", n)
	}

	// A hung request is released when the client gives up...
	z.SetFault(zoomtest.RouteSession, zoomtest.Fault{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, z.APIURL()+"/cobrowsesdk/sessions/x", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	// ... and when the server closes.
	hung := newServer(t, zoomtest.Options{})
	hung.SetFault(zoomtest.RouteAll, zoomtest.Fault{Hang: true})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(hung.URL()+"/oauth/token", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if err := hung.WaitRequests(ctxFor(t), zoomtest.RouteOAuth, 1); err != nil {
		t.Fatal(err)
	}
	hung.Close()
	<-done
}

// TestCloseWithWorkPending: Close with queued webhooks to a receiver that hangs, a pending
// auto-end timer and a live session ends every goroutine (goleak checks).
func TestCloseWithWorkPending(t *testing.T) {
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)
	z := zoomtest.New(zoomtest.Options{WebhookURL: slow.URL, CustomerWait: time.Hour})
	s, _ := z.CustomerStart(customerJWT(), "")
	_, _ = z.AgentJoin(agentJWT("a"), s.PIN)
	_ = z.CustomerLeave(s.ID)
	z.Close()
	z.Close()
	if st := z.WebhookStats(); st.Queued != 3 || st.Discarded != 3 {
		t.Fatalf("%+v", st)
	}
	if _, err := z.CustomerStart(customerJWT(), ""); !errors.Is(err, zoomtest.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
