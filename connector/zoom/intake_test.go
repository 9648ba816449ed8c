package zoom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// intakeFixture is an Intake on a fixed clock with a recording Sink.
type intakeFixture struct {
	in   *Intake
	now  time.Time
	mu   sync.Mutex
	got  map[string][]byte // dedupe id -> body handed over
	fail error             // the Sink's answer
	logs bytes.Buffer
}

const intakeSecret = "whsec-intake-test"

func newIntake(t *testing.T) *intakeFixture {
	t.Helper()
	f := &intakeFixture{now: time.Unix(1_800_000_000, 0), got: map[string][]byte{}}
	wh, err := NewWebhook(WebhookConfig{Secrets: []Secret{intakeSecret}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.in = &Intake{Webhook: wh, Logger: slog.New(slog.NewJSONHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Sink: func(_ context.Context, id string, body []byte) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return f.fail
		}
		f.got[id] = bytes.Clone(body)
		return nil
	}}
	return f
}

func (f *intakeFixture) post(body []byte, secret string, ts time.Time) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/webhooks/zoom", bytes.NewReader(body))
	stamp := strconv.FormatInt(ts.Unix(), 10)
	r.Header.Set(HeaderTimestamp, stamp)
	r.Header.Set(HeaderSignature, zoomtest.Sign(secret, stamp, body))
	w := httptest.NewRecorder()
	f.in.ServeHTTP(w, r)
	return w
}

// TestIntake: a verified delivery is handed to the Sink before the 200, under its dedupe id; a
// url_validation is answered; a bad signature, a stale timestamp, an oversized or malformed body
// and a failing Sink are refused with their statuses and hand nothing over; no secret is logged.
func TestIntake(t *testing.T) {
	f := newIntake(t)
	body := []byte(`{"event":"cobrowse.session_started","event_ts":1800000000000,"payload":{"account_id":"a","object":{"session_id":"z1","start_time":"2027-01-15T08:00:00Z"}}}`)
	if w := f.post(body, intakeSecret, f.now); w.Code != http.StatusOK {
		t.Fatalf("verified delivery: %d %s", w.Code, w.Body)
	}
	if got := f.got[DedupeID(body)]; !bytes.Equal(got, body) {
		t.Fatalf("handed over %q under %s", got, DedupeID(body))
	}

	val := []byte(`{"event":"endpoint.url_validation","event_ts":1800000000000,"payload":{"plainToken":"plain-1"}}`)
	w := f.post(val, intakeSecret, f.now)
	var ans URLValidation
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &ans) != nil || ans.PlainToken != "plain-1" || ans.EncryptedToken != ValidationToken(intakeSecret, "plain-1") {
		t.Fatalf("url validation: %d %s", w.Code, w.Body)
	}

	for _, tc := range []struct {
		name   string
		body   []byte
		secret string
		at     time.Time
		fail   error
		status int
	}{
		{"bad signature", body, "another-secret", f.now, nil, http.StatusUnauthorized},
		{"stale", body, intakeSecret, f.now.Add(-time.Hour), nil, http.StatusUnauthorized},
		{"too large", append([]byte(`{"event":"x","pad":"`), append(bytes.Repeat([]byte("a"), DefaultWebhookMaxBody), '"', '}')...), intakeSecret, f.now, nil, http.StatusRequestEntityTooLarge},
		{"malformed", []byte(`not json`), intakeSecret, f.now, nil, http.StatusBadRequest},
		{"replay", body, intakeSecret, f.now, fmt.Errorf("stored already: %w", ErrReplay), http.StatusBadRequest},
		{"sink fails", []byte(`{"event":"cobrowse.session_ended","event_ts":1800000000001,"payload":{"object":{"session_id":"z2"}}}`), intakeSecret, f.now, errors.New("nats away"), http.StatusServiceUnavailable},
	} {
		f.mu.Lock()
		f.fail, f.got = tc.fail, map[string][]byte{}
		f.mu.Unlock()
		if w := f.post(tc.body, tc.secret, tc.at); w.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.status)
		}
		if len(f.got) != 0 {
			t.Errorf("%s: handed over %d deliveries", tc.name, len(f.got))
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/webhooks/zoom", nil)
	rec := httptest.NewRecorder()
	f.in.ServeHTTP(rec, r)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
	if strings.Contains(f.logs.String(), intakeSecret) {
		t.Fatal("the webhook secret reached the log")
	}
}
