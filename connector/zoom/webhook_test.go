package zoom

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

const (
	hookSecret = "hook-secret-current"
	oldSecret  = "hook-secret-previous"
)

var hookNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newTestWebhook(t *testing.T) *Webhook {
	t.Helper()
	w, err := NewWebhook(WebhookConfig{Secrets: []Secret{hookSecret, oldSecret}, Now: func() time.Time { return hookNow }})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// sign is Zoom's signature, written here independently of the package.
func sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

func signed(secret string, at time.Time, body []byte) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	h := http.Header{}
	h.Set("X-Zm-Request-Timestamp", ts)
	h.Set("X-Zm-Signature", sign(secret, ts, body))
	return h
}

const startedBody = `{"event":"cobrowse.session_started","event_ts":1772600767123,"payload":{"account_id":"acc-1","object":{` +
	`"session_id":"sess+/1==","start_time":"2026-03-04T05:06:00Z","role_type":"customer","start_url":"https://shop.example/cart",` +
	`"user_id":"16778240","user_name":"Ann","future_field":{"x":1}}},"extra":true}`

func TestWebhookReceive(t *testing.T) {
	w := newTestWebhook(t)
	body := []byte(startedBody)
	ev, reply, err := w.Receive(signed(hookSecret, hookNow, body), body)
	if err != nil || reply != nil {
		t.Fatal(err, reply)
	}
	sum := sha256.Sum256(body)
	want := Event{Kind: KindSessionStarted, Name: EventSessionStarted, DedupeID: hex.EncodeToString(sum[:]),
		Time: time.UnixMilli(1772600767123).UTC(), AccountID: "acc-1", SessionID: "sess+/1==", UserID: "16778240",
		UserName: "Ann", Role: RoleCustomer, StartURL: "https://shop.example/cart", StartTime: time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)}
	if ev != want {
		t.Fatalf("\n got %+v\nwant %+v", ev, want)
	}
	if !ev.At().Equal(want.StartTime) {
		t.Fatal(ev.At())
	}
	// The previous secret still verifies (a rotation); the index says which.
	if idx, err := w.Verify(signed(oldSecret, hookNow, body), body); err != nil || idx != 1 {
		t.Fatalf("previous secret: %d %v", idx, err)
	}
	// Upper-case hex is the same signature.
	h := signed(hookSecret, hookNow, body)
	h.Set(HeaderSignature, "v0="+strings.ToUpper(strings.TrimPrefix(h.Get(HeaderSignature), "v0=")))
	if _, err := w.Verify(h, body); err != nil {
		t.Fatal(err)
	}
}

func TestWebhookVerifyRefuses(t *testing.T) {
	w := newTestWebhook(t)
	body := []byte(startedBody)
	good := signed(hookSecret, hookNow, body)
	mod := func(f func(h http.Header)) http.Header {
		h := good.Clone()
		f(h)
		return h
	}
	ms := strconv.FormatInt(hookNow.UnixMilli(), 10)
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"other secret", signed("nope", hookNow, body), body, ErrBadSignature},
		{"body changed", good, append([]byte(" "), body...), ErrBadSignature},
		{"no signature", mod(func(h http.Header) { h.Del(HeaderSignature) }), body, ErrBadSignature},
		{"no timestamp", mod(func(h http.Header) { h.Del(HeaderTimestamp) }), body, ErrBadSignature},
		{"timestamp changed", mod(func(h http.Header) { h.Set(HeaderTimestamp, strconv.FormatInt(hookNow.Unix()+1, 10)) }), body, ErrBadSignature},
		{"timestamp not a number", mod(func(h http.Header) { h.Set(HeaderTimestamp, "-1") }), body, ErrBadSignature},
		{"v1 prefix", mod(func(h http.Header) { h.Set(HeaderSignature, "v1="+strings.TrimPrefix(h.Get(HeaderSignature), "v0=")) }), body, ErrBadSignature},
		{"short signature", mod(func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)[:60]) }), body, ErrBadSignature},
		{"not hex", mod(func(h http.Header) { h.Set(HeaderSignature, "v0="+strings.Repeat("g", 64)) }), body, ErrBadSignature},
		{"6 minutes old", signed(hookSecret, hookNow.Add(-6*time.Minute), body), body, ErrStale},
		{"6 minutes ahead", signed(hookSecret, hookNow.Add(6*time.Minute), body), body, ErrStale},
		{"too large", good, bytes.Repeat([]byte(" "), DefaultWebhookMaxBody+1), ErrTooLarge},
		{"milliseconds, stale", mod(func(h http.Header) {
			old := strconv.FormatInt(hookNow.Add(-time.Hour).UnixMilli(), 10)
			h.Set(HeaderTimestamp, old)
			h.Set(HeaderSignature, sign(hookSecret, old, body))
		}), body, ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := w.Verify(tc.h, tc.body); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if _, _, err := w.Receive(tc.h, tc.body); !errors.Is(err, tc.want) {
				t.Fatalf("Receive = %v, want %v", err, tc.want)
			}
		})
	}
	// Within the window either way, and a timestamp in milliseconds, are accepted.
	for _, h := range []http.Header{
		signed(hookSecret, hookNow.Add(-5*time.Minute), body), signed(hookSecret, hookNow.Add(5*time.Minute), body),
		mod(func(h http.Header) { h.Set(HeaderTimestamp, ms); h.Set(HeaderSignature, sign(hookSecret, ms, body)) }),
	} {
		if _, err := w.Verify(h, body); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWebhookReadBody(t *testing.T) {
	w, _ := NewWebhook(WebhookConfig{Secrets: []Secret{"s"}, MaxBody: 10})
	if b, err := w.ReadBody(strings.NewReader("0123456789")); err != nil || string(b) != "0123456789" {
		t.Fatal(b, err)
	}
	r := strings.NewReader("0123456789AB")
	if _, err := w.ReadBody(r); !errors.Is(err, ErrTooLarge) || r.Len() != 1 {
		t.Fatalf("%v; %d bytes left unread (want 1: nothing past the bound is read)", err, r.Len())
	}
}

func TestWebhookURLValidation(t *testing.T) {
	w := newTestWebhook(t)
	body := []byte(`{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`)
	for i, secret := range []string{hookSecret, oldSecret} {
		ev, reply, err := w.Receive(signed(secret, hookNow, body), body)
		if err != nil || ev.Kind != KindURLValidation || reply == nil {
			t.Fatal(err, ev, reply)
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("qgg8vlvZRS6UYooatFL8Aw"))
		if reply.PlainToken != "qgg8vlvZRS6UYooatFL8Aw" || reply.EncryptedToken != hex.EncodeToString(m.Sum(nil)) {
			t.Fatalf("secret %d: %+v", i, reply)
		}
		out, _ := json.Marshal(reply)
		if !strings.HasPrefix(string(out), `{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"`) {
			t.Fatal(string(out))
		}
	}
	// Unsigned validation is refused like any delivery.
	if _, _, err := w.Receive(http.Header{}, body); !errors.Is(err, ErrBadSignature) {
		t.Fatal(err)
	}
}

func TestDecodeEvent(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Event
	}{
		{"joined, flat", `{"event":"cobrowse.session_user_joined","event_ts":1772600767000,"payload":{"account_id":"a","object":{"session_id":"s","user_id":"u1","user_name":"Bob","role_type":"agent","join_time":"2026-03-04T05:06:07Z"}}}`,
			Event{Kind: KindUserJoined, SessionID: "s", UserID: "u1", UserName: "Bob", Role: RoleAgent, JoinTime: hookNow}},
		{"left, nested user", `{"event":"cobrowse.session_user_left","payload":{"object":{"session_id":"s","user":{"user_id":7,"user_name":"Bob","role_type":2,"leave_time":1772600767000}}}}`,
			Event{Kind: KindUserLeft, SessionID: "s", UserID: "7", UserName: "Bob", Role: RoleAgent, LeaveTime: hookNow}},
		{"left, nested participant", `{"event":"cobrowse.session_user_left","payload":{"object":{"session_id":"s","role_type":"Customer","participant":{"user_id":"p","role_type":"agent","leave_time":"1772600767"}}}}`,
			Event{Kind: KindUserLeft, SessionID: "s", UserID: "p", Role: RoleCustomer, LeaveTime: hookNow}},
		{"ended", `{"event":"cobrowse.session_ended","payload":{"object":{"session_id":"s","session_pin":"abc","start_time":"2026-03-04T05:00:00Z","end_time":"2026-03-04T05:06:07.000Z"}}}`,
			Event{Kind: KindSessionEnded, SessionID: "s", SessionPIN: "ABC", StartTime: hookNow.Add(-367 * time.Second), EndTime: hookNow}},
		{"odd types ignored", `{"event":"cobrowse.session_started","event_ts":"x","payload":{"account_id":5,"object":{"session_id":"s","start_time":true,"user_name":null,"role_type":"boss"}}}`,
			Event{Kind: KindSessionStarted, SessionID: "s", AccountID: "5"}},
		{"other event", `{"event":"meeting.started","payload":{"object":{"id":1}}}`, Event{Kind: KindOther}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var env struct {
				Event string `json:"event"`
			}
			_ = json.Unmarshal([]byte(tc.body), &env)
			tc.want.Name, tc.want.DedupeID = env.Event, DedupeID([]byte(tc.body))
			if !strings.Contains(tc.body, "event_ts\":17") {
				tc.want.Time = ev.Time
			} else {
				tc.want.Time = hookNow
			}
			if tc.want.AccountID == "" && strings.Contains(tc.body, `"account_id":"a"`) {
				tc.want.AccountID = "a"
			}
			if ev != tc.want {
				t.Fatalf("\n got %+v\nwant %+v", ev, tc.want)
			}
		})
	}
	ev, _ := DecodeEvent([]byte(`{"event":"cobrowse.session_user_left","event_ts":1772600767000,"payload":{"object":{"session_id":"s"}}}`))
	if !ev.At().Equal(hookNow) {
		t.Fatal("At falls back to event_ts")
	}
	for _, body := range []string{
		``, `null`, `[]`, `"x"`, `{}`, `{"event":""}`, `{"event":1}`, `{"event":"cobrowse.session_started"}`,
		`{"event":"cobrowse.session_started","payload":{"object":{}}}`, `{"event":"cobrowse.session_ended","payload":{"object":{"session_id":""}}}`,
		`{"event":"cobrowse.session_ended","payload":[]}`, `{"event":"endpoint.url_validation","payload":{}}`,
		`{"event":"x"} {}`, `{"event":"x"`, "\xff",
	} {
		if _, err := DecodeEvent([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeEvent(%q) = %v, want ErrMalformed", body, err)
		}
	}
}

func TestNewWebhookChecksConfig(t *testing.T) {
	for _, cfg := range []WebhookConfig{{}, {Secrets: []Secret{""}}, {Secrets: []Secret{"s"}, Window: -1}, {Secrets: []Secret{"s"}, MaxBody: -1}} {
		if _, err := NewWebhook(cfg); err == nil {
			t.Errorf("NewWebhook(%v) accepted", cfg)
		}
	}
	w := newTestWebhook(t)
	assertHidden(t, []string{hookSecret, oldSecret}, w, *w, WebhookConfig{Secrets: []Secret{hookSecret, oldSecret}})
}

var decimalTS = regexp.MustCompile(`^[0-9]{1,18}$`)

// FuzzWebhookVerify: Verify accepts exactly the deliveries signed with one of the secrets, with a
// decimal timestamp within the window; every refusal is one of the typed errors.
func FuzzWebhookVerify(f *testing.F) {
	now := strconv.FormatInt(hookNow.Unix(), 10)
	f.Add(now, sign(hookSecret, now, []byte(startedBody)), []byte(startedBody))
	f.Add(now, sign(oldSecret, now, []byte("{}")), []byte("{}"))
	f.Add(strconv.FormatInt(hookNow.UnixMilli(), 10), "v0=00", []byte("x"))
	f.Add("", "", []byte(nil))
	f.Add("+1", "v0="+strings.Repeat("A", 64), []byte("{}"))
	f.Add(now, "v0="+strings.Repeat("0", 64), []byte("{}"))
	w := newTestWebhook(&testing.T{})
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		idx, err := w.Verify(h, body)
		// The oracle: which secret's signature is it (case-insensitive hex), and is the time right.
		want := -1
		for i, s := range []string{hookSecret, oldSecret} {
			if strings.EqualFold(sig, sign(s, h.Get(HeaderTimestamp), body)) && strings.HasPrefix(sig, "v0=") && want < 0 {
				want = i
			}
		}
		decimal := decimalTS.MatchString(h.Get(HeaderTimestamp))
		fresh := false
		if n, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64); decimal && err == nil {
			at := time.Unix(n, 0)
			if n > 1e11 {
				at = time.UnixMilli(n)
			}
			fresh = hookNow.Sub(at).Abs() <= DefaultWebhookWindow
		}
		switch {
		case err == nil:
			if want < 0 || idx != want || !decimal || !fresh {
				t.Fatalf("accepted ts=%q sig=%q (idx %d, oracle %d)", ts, sig, idx, want)
			}
		case errors.Is(err, ErrStale):
			if want < 0 || !decimal || fresh {
				t.Fatalf("stale for a bad signature or a fresh time: %v", err)
			}
		case errors.Is(err, ErrBadSignature):
			if want >= 0 && decimal {
				t.Fatalf("refused a good signature: %v", err)
			}
		case errors.Is(err, ErrTooLarge):
			if len(body) <= DefaultWebhookMaxBody {
				t.Fatal(err)
			}
		default:
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzDecodeEvent: any body is ErrMalformed or an event whose fields keep their promises.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		startedBody,
		`{"event":"cobrowse.session_user_left","payload":{"object":{"session_id":"s","user":{"user_id":7,"role_type":2}}}}`,
		`{"event":"cobrowse.session_ended","payload":{"object":{"session_id":1,"end_time":1772600767000}}}`,
		`{"event":"endpoint.url_validation","payload":{"plainToken":"x"}}`,
		`{"event":"x","payload":null}`, `{}`, `[]`, `{"event":"cobrowse.session_started","payload":{"object":{"session_id":"s","start_time":"9999-12-31T23:59:59Z"}}}`,
		`{"event":"cobrowse.session_user_joined","payload":{"object":{"session_id":"s","join_time":-5,"participant":{"join_time":"1e3"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if ev.Name == "" || ev.DedupeID != DedupeID(body) || len(ev.DedupeID) != 64 {
			t.Fatalf("%+v", ev)
		}
		switch ev.Kind {
		case KindSessionStarted, KindUserJoined, KindUserLeft, KindSessionEnded:
			if ev.SessionID == "" || !strings.HasPrefix(ev.Name, "cobrowse.") {
				t.Fatalf("%+v", ev)
			}
		case KindURLValidation:
			if ev.PlainToken == "" {
				t.Fatalf("%+v", ev)
			}
		case KindOther:
			if ev.SessionID != "" {
				t.Fatalf("%+v", ev)
			}
		default:
			t.Fatalf("kind %d", ev.Kind)
		}
		if ev.Role != RoleUnknown && ev.Role != RoleCustomer && ev.Role != RoleAgent {
			t.Fatalf("role %d", ev.Role)
		}
		if ev.SessionPIN != strings.ToUpper(ev.SessionPIN) {
			t.Fatalf("PIN %q", ev.SessionPIN)
		}
		for _, tm := range []time.Time{ev.Time, ev.StartTime, ev.EndTime, ev.JoinTime, ev.LeaveTime, ev.At()} {
			if !tm.IsZero() && (tm.Year() < 1970 || tm.Year() > 9999) {
				t.Fatalf("time %v", tm)
			}
		}
	})
}

// TestZoomtestEndToEnd runs a whole session on zoomtest with this package's pieces: the minted
// tokens pass its checks, the REST client finds the session by PIN, and every webhook it sends
// (one duplicated, one URL validation) verifies and decodes.
func TestZoomtestEndToEnd(t *testing.T) {
	w, err := NewWebhook(WebhookConfig{Secrets: []Secret{"new-secret", zoomtest.DefaultWebhookSecret}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Event, 20)
	hook := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := w.ReadBody(r.Body)
		if err != nil {
			rw.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		ev, reply, err := w.Receive(r.Header, body)
		switch {
		case errors.Is(err, ErrBadSignature), errors.Is(err, ErrStale):
			rw.WriteHeader(http.StatusUnauthorized)
		case err != nil:
			rw.WriteHeader(http.StatusBadRequest)
		case reply != nil:
			_ = json.NewEncoder(rw).Encode(reply)
		default:
			got <- ev
			rw.WriteHeader(http.StatusNoContent)
		}
	}))
	defer hook.Close()
	f := newFixture(t, zoomtest.Options{WebhookURL: hook.URL}, nil)
	ctx := ctxFor(t)
	if err := f.z.ValidateURL(ctx); err != nil {
		t.Fatal(err)
	}

	pin := NewBYOPPIN()
	s := f.start(t, "I-77", strings.ToLower(pin))
	found, err := f.api.LiveSessionByPIN(ctx, pin)
	if err != nil || found.SessionID != s.ID {
		t.Fatalf("%+v %v", found, err)
	}
	f.z.DuplicateWebhooks(1)
	a := f.join(t, "I-77", "  Bob\tthe agent  ", pin)
	if a.Name != "Bob the agent" {
		t.Fatalf("%+v", a)
	}
	_ = f.z.AgentLeave(s.ID, a.UserID)
	_ = f.z.End(s.ID)
	if err := f.z.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	for len(got) > 0 {
		evs = append(evs, <-got)
	}
	kinds := []EventKind{KindSessionStarted, KindUserJoined, KindUserJoined, KindUserLeft, KindSessionEnded}
	if len(evs) != len(kinds) {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	for i, ev := range evs {
		if ev.Kind != kinds[i] || ev.SessionID != s.ID || ev.AccountID != f.z.Options().AccountID || ev.Time.IsZero() {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	if evs[0].Role != RoleCustomer || evs[0].UserName != "Customer I-77" || evs[0].StartTime.IsZero() {
		t.Fatalf("%+v", evs[0])
	}
	if evs[1] != evs[2] || evs[1].Role != RoleAgent || evs[1].UserID != a.UserID || evs[1].UserName != "Bob the agent" {
		t.Fatalf("the duplicate differs or the join is wrong:\n%+v\n%+v", evs[1], evs[2])
	}
	if evs[3].LeaveTime.IsZero() || evs[4].EndTime.IsZero() || evs[4].At() != evs[4].EndTime {
		t.Fatalf("%+v %+v", evs[3], evs[4])
	}
	d, err := f.api.Session(ctx, s.ID)
	if err != nil || !d.Ended() || !d.EndTime.Equal(evs[4].EndTime) {
		t.Fatalf("%+v %v", d, err)
	}
}
