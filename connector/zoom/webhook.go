package zoom

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// The webhook's wire names.
const (
	HeaderSignature = "x-zm-signature"         // "v0=" + hex HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)
	HeaderTimestamp = "x-zm-request-timestamp" // epoch seconds

	EventURLValidation     = "endpoint.url_validation"
	EventSessionStarted    = "cobrowse.session_started"
	EventSessionUserJoined = "cobrowse.session_user_joined"
	EventSessionUserLeft   = "cobrowse.session_user_left"
	EventSessionEnded      = "cobrowse.session_ended"
)

// The defaults of WebhookConfig.
const (
	DefaultWebhookWindow  = 5 * time.Minute
	DefaultWebhookMaxBody = 64 << 10
)

// The webhook errors. An HTTP handler answers ErrBadSignature and ErrStale with 401, ErrMalformed
// with 400 and ErrTooLarge with 413 (or 400).
var (
	ErrBadSignature = errors.New("zoom webhook: missing or bad signature")
	ErrStale        = errors.New("zoom webhook: timestamp outside the accepted window")
	ErrTooLarge     = errors.New("zoom webhook: body too large")
	ErrMalformed    = errors.New("zoom webhook: malformed body")
	// ErrReplay is a Sink's answer for a delivery it holds already (the same body, stored before):
	// a replay, or Zoom sending again a delivery whose 200 it did not get. Either way it is stored
	// once; the intake refuses it (400) and logs it.
	ErrReplay = errors.New("zoom webhook: a replay of a delivery already stored")
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// Secrets are the app's webhook secret tokens: the current one first, then the previous ones
	// while Zoom may still sign with them (a rotation). A delivery signed with any of them is
	// accepted. At least one; none may be empty.
	Secrets []Secret
	// Window is how far x-zm-request-timestamp may be from now, either way: a replayed delivery
	// older than this is refused even with a good signature. Default 5m.
	Window time.Duration
	// MaxBody bounds a delivery's body. Default 64 KiB (a Cobrowse event is well under 2 KiB).
	MaxBody int64
	// Now is the clock; nil: time.Now. For tests.
	Now func() time.Time
}

func (c WebhookConfig) String() string {
	return fmt.Sprintf("zoom.WebhookConfig{Secrets:%d %s Window:%s MaxBody:%d}", len(c.Secrets), redacted, c.Window, c.MaxBody)
}

// Format prints String for every verb.
func (c WebhookConfig) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without the secrets.
func (c WebhookConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("secrets", len(c.Secrets)), slog.Duration("window", c.Window), slog.Int64("max_body", c.MaxBody))
}

// Webhook verifies and decodes Zoom's webhook deliveries. It is pure (no I/O but reading the body
// it is given, no logs, no goroutine) and safe for concurrent use; the HTTP handler is the
// caller's:
//
//	body, err := wh.ReadBody(r.Body)           // ErrTooLarge
//	ev, reply, err := wh.Receive(r.Header, body) // ErrBadSignature, ErrStale, ErrMalformed
//	if reply != nil { answer 200 with reply as JSON }  // endpoint.url_validation
//	else { use ev (ev.DedupeID names the delivery); answer 200 or 204 within 3 s }
type Webhook struct {
	secrets *secretSet // swapped by Rotate
	window  time.Duration
	maxBody int64
	now     func() time.Time
}

// NewWebhook checks cfg and returns a Webhook.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	var errs []error
	w := &Webhook{window: cfg.Window, maxBody: cfg.MaxBody, now: cfg.Now}
	values, err := secretValues(cfg.Secrets)
	if err != nil {
		errs = append(errs, err)
	}
	w.secrets = newSecretSet(values)
	if w.window == 0 {
		w.window = DefaultWebhookWindow
	}
	if w.window < 0 {
		errs = append(errs, fmt.Errorf("zoom: webhook Window must not be negative (got %s)", cfg.Window))
	}
	if w.maxBody == 0 {
		w.maxBody = DefaultWebhookMaxBody
	}
	if w.maxBody < 0 {
		errs = append(errs, fmt.Errorf("zoom: webhook MaxBody must not be negative (got %d)", cfg.MaxBody))
	}
	if w.now == nil {
		w.now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Webhook) String() string {
	return fmt.Sprintf("zoom.Webhook{Secrets:%d %s Window:%s MaxBody:%d}", w.secrets.accepting(w.now()), redacted, w.window, w.maxBody)
}

// Format prints String for every verb.
func (w *Webhook) Format(f fmt.State, verb rune) { formatAs(f, verb, w.String()) }

// LogValue shows the verifier without the secrets.
func (w *Webhook) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("secrets", w.secrets.accepting(w.now())), slog.Duration("window", w.window), slog.Int64("max_body", w.maxBody))
}

// secretValues checks a list of secret tokens: at least one, none empty.
func secretValues(secrets []Secret) ([][]byte, error) {
	var errs []error
	if len(secrets) == 0 {
		errs = append(errs, errors.New("zoom: webhook Secrets: at least one secret token is required"))
	}
	values := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		if s == "" {
			errs = append(errs, fmt.Errorf("zoom: webhook Secrets[%d] is empty", i))
		}
		values = append(values, []byte(s))
	}
	return values, errors.Join(errs...)
}

// Rotate replaces the secret tokens (the current one first, then the previous ones, as
// WebhookConfig.Secrets) while deliveries are verified. A token accepted until now and not among
// them stays accepted for overlap (by the Webhook's clock), so that Zoom, which may sign with it
// a little longer, is not refused meanwhile; overlap <= 0 refuses it at once. A bad list (none,
// or an empty one) changes nothing.
func (w *Webhook) Rotate(secrets []Secret, overlap time.Duration) error {
	values, err := secretValues(secrets)
	if err != nil {
		return err
	}
	w.secrets.rotate(values, w.now(), overlap)
	return nil
}

// ReadBody reads a delivery's body, at most MaxBody bytes: a longer one is ErrTooLarge (nothing
// past the bound is read).
func (w *Webhook) ReadBody(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, w.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("zoom webhook: reading the body: %w", err)
	}
	if int64(len(body)) > w.maxBody {
		return nil, fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, w.maxBody)
	}
	return body, nil
}

// Verify checks a delivery: its size, its signature (x-zm-signature against every secret, in
// constant time) and then its timestamp (x-zm-request-timestamp within Window of now). It returns
// the index in Secrets of the secret that signed it (after a Rotate, in the rotated list, followed
// by the replaced tokens still accepted).
//
// The timestamp is epoch seconds; a value above 1e11 is taken as milliseconds (1e11 seconds is the
// year 5138, 1e11 milliseconds 1973, so the two never overlap). Accepting both costs nothing in
// safety, since the signature covers the timestamp exactly as sent and the unit only matters to
// the replay window, and it keeps deliveries flowing if the header ever carries milliseconds like
// the envelope's event_ts does.
func (w *Webhook) Verify(h http.Header, body []byte) (int, error) {
	idx, _, err := w.verify(h, body)
	return idx, err
}

// verify is Verify, with the secret that signed the delivery.
func (w *Webhook) verify(h http.Header, body []byte) (int, []byte, error) {
	if int64(len(body)) > w.maxBody {
		return -1, nil, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, len(body), w.maxBody)
	}
	ts := h.Get(HeaderTimestamp)
	sig := h.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return -1, nil, fmt.Errorf("%w: %s or %s header missing", ErrBadSignature, HeaderSignature, HeaderTimestamp)
	}
	n, ok := parseSeconds(ts)
	if !ok {
		return -1, nil, fmt.Errorf("%w: %s is not a decimal number", ErrBadSignature, HeaderTimestamp)
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return -1, nil, fmt.Errorf("%w: %s is not v0= and 64 hex digits", ErrBadSignature, HeaderSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return -1, nil, fmt.Errorf("%w: %s is not v0= and 64 hex digits", ErrBadSignature, HeaderSignature)
	}
	now := w.now()
	idx, secret := w.secrets.match(now, func(s []byte) bool { return hmac.Equal(got, signV0(s, ts, body)) })
	if idx < 0 {
		return -1, nil, fmt.Errorf("%w: no secret token matches", ErrBadSignature)
	}
	sent := time.Unix(n, 0)
	if n > 1e11 {
		sent = time.UnixMilli(n)
	}
	if d := now.Sub(sent); d > w.window || d < -w.window {
		return -1, nil, fmt.Errorf("%w: %s is %s from now, the window is %s", ErrStale, HeaderTimestamp, d.Round(time.Second), w.window)
	}
	return idx, secret.value, nil
}

// signV0 is Zoom's v0 signature: HMAC-SHA256(secret, "v0:" + timestamp + ":" + body).
func signV0(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// URLValidation is the answer to endpoint.url_validation, to be written as the JSON body of a 200.
type URLValidation struct {
	PlainToken     string `json:"plainToken"`
	EncryptedToken string `json:"encryptedToken"` // hex HMAC-SHA256(secret, plainToken)
}

// Receive verifies a delivery (see Verify) and decodes it (see DecodeEvent). For
// endpoint.url_validation it also returns the answer, computed with the secret that signed the
// delivery, so that validation passes during a rotation whichever secret Zoom uses.
func (w *Webhook) Receive(h http.Header, body []byte) (Event, *URLValidation, error) {
	_, secret, err := w.verify(h, body)
	if err != nil {
		return Event{}, nil, err
	}
	ev, err := DecodeEvent(body)
	if err != nil {
		return Event{}, nil, err
	}
	if ev.Kind != KindURLValidation {
		return ev, nil, nil
	}
	return ev, &URLValidation{PlainToken: ev.PlainToken, EncryptedToken: ValidationToken(Secret(secret), ev.PlainToken)}, nil
}

// ValidationToken is the encryptedToken of a url_validation answer: hex HMAC-SHA256(secret, plainToken).
func ValidationToken(secret Secret, plainToken string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(plainToken))
	return hex.EncodeToString(m.Sum(nil))
}

// DedupeID names a delivery: hex SHA-256 of its raw body. Zoom sends a retried delivery with the
// same body (the same event_ts), so a retry or a duplicate has the same id; headers are left out
// because a retry is signed again with a new timestamp.
func DedupeID(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// EventKind tells which webhook event a delivery is.
type EventKind int

// The kinds.
const (
	KindOther          EventKind = iota // an event this package does not decode (the name is in Event.Name)
	KindURLValidation                   // endpoint.url_validation: answer it with Receive's URLValidation
	KindSessionStarted                  // cobrowse.session_started
	KindUserJoined                      // cobrowse.session_user_joined
	KindUserLeft                        // cobrowse.session_user_left
	KindSessionEnded                    // cobrowse.session_ended
)

func (k EventKind) String() string {
	switch k {
	case KindURLValidation:
		return "url_validation"
	case KindSessionStarted:
		return "session_started"
	case KindUserJoined:
		return "user_joined"
	case KindUserLeft:
		return "user_left"
	case KindSessionEnded:
		return "session_ended"
	}
	return "other"
}

// Event is a decoded webhook delivery, one struct for every kind. A field the delivery did not
// carry (or carried in an unreadable form) is empty or zero.
//
// Only cobrowse.session_started's payload is documented (session_id, start_time, role_type,
// start_url, user_id, user_name); the payloads of session_user_joined, session_user_left and
// session_ended are inferred, so the decoder reads every field it knows from every event, and for
// the user fields also looks into a nested "user" or "participant" object, as other Zoom events
// nest them.
type Event struct {
	Kind      EventKind
	Name      string    // event, as sent
	DedupeID  string    // see DedupeID
	Time      time.Time // event_ts (epoch milliseconds)
	AccountID string    // payload.account_id

	SessionID  string   // payload.object.session_id; never empty for the four cobrowse kinds
	SessionPIN string   // session_pin, upper case, if the event carries one (none is documented)
	UserID     string   // Zoom's per-session user id, not necessarily the JWT's user_id claim
	UserName   string   // the JWT's user_name, as Zoom shows it
	Role       RoleType // role_type: "customer" or "agent" (numbers 1 and 2 read too)
	StartURL   string   // start_url (session_started): the customer's page

	StartTime time.Time // start_time
	EndTime   time.Time // end_time
	JoinTime  time.Time // join_time
	LeaveTime time.Time // leave_time

	PlainToken string // endpoint.url_validation's payload.plainToken
}

// At is the time the event is about: the join time of a join, the leave time of a leave, the end
// time of an end, the start time of a start; when absent, the envelope's event_ts.
func (e Event) At() time.Time {
	var t time.Time
	switch e.Kind {
	case KindSessionStarted:
		t = e.StartTime
	case KindUserJoined:
		t = e.JoinTime
	case KindUserLeft:
		t = e.LeaveTime
	case KindSessionEnded:
		t = e.EndTime
	}
	if t.IsZero() {
		return e.Time
	}
	return t
}

// The envelope and the object, as far as they are known; unknown fields are ignored.
type (
	wireEnvelope struct {
		Event   *string     `json:"event"`
		EventTS flexTime    `json:"event_ts"`
		Payload wirePayload `json:"payload"`
	}
	wirePayload struct {
		AccountID  flexString  `json:"account_id"`
		PlainToken flexString  `json:"plainToken"`
		Object     *wireObject `json:"object"`
	}
	wireUser struct {
		UserID    flexString `json:"user_id"`
		UserName  flexString `json:"user_name"`
		RoleType  flexRole   `json:"role_type"`
		JoinTime  flexTime   `json:"join_time"`
		LeaveTime flexTime   `json:"leave_time"`
	}
	wireObject struct {
		SessionID  flexString `json:"session_id"`
		SessionPIN flexString `json:"session_pin"`
		StartURL   flexString `json:"start_url"`
		StartTime  flexTime   `json:"start_time"`
		EndTime    flexTime   `json:"end_time"`
		wireUser
		User        *wireUser `json:"user"`
		Participant *wireUser `json:"participant"`
	}
)

// DecodeEvent decodes a delivery's body without verifying it (Receive verifies first). The body
// must be one JSON object with a string "event"; a cobrowse event must carry a session_id and a
// url_validation a plainToken. Anything else is ErrMalformed. Unknown fields are ignored, and so
// are known fields of an unexpected JSON type; an event of another name is KindOther, not an error.
func DecodeEvent(body []byte) (Event, error) {
	var w wireEnvelope
	if err := json.Unmarshal(body, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.Event == nil || *w.Event == "" {
		return Event{}, fmt.Errorf("%w: no event name", ErrMalformed)
	}
	ev := Event{Name: *w.Event, DedupeID: DedupeID(body), Time: w.EventTS.Time, AccountID: string(w.Payload.AccountID)}
	switch ev.Name {
	case EventURLValidation:
		ev.Kind = KindURLValidation
		ev.PlainToken = string(w.Payload.PlainToken)
		if ev.PlainToken == "" {
			return Event{}, fmt.Errorf("%w: url_validation without payload.plainToken", ErrMalformed)
		}
		return ev, nil
	case EventSessionStarted:
		ev.Kind = KindSessionStarted
	case EventSessionUserJoined:
		ev.Kind = KindUserJoined
	case EventSessionUserLeft:
		ev.Kind = KindUserLeft
	case EventSessionEnded:
		ev.Kind = KindSessionEnded
	default:
		return ev, nil
	}
	o := w.Payload.Object
	if o == nil || o.SessionID == "" {
		return Event{}, fmt.Errorf("%w: %s without payload.object.session_id", ErrMalformed, ev.Name)
	}
	ev.SessionID = string(o.SessionID)
	ev.SessionPIN = strings.ToUpper(string(o.SessionPIN))
	ev.StartURL = string(o.StartURL)
	ev.StartTime, ev.EndTime = o.StartTime.Time, o.EndTime.Time
	u := o.wireUser
	for _, nested := range []*wireUser{o.User, o.Participant} {
		if nested == nil {
			continue
		}
		u.UserID = or(u.UserID, nested.UserID)
		u.UserName = or(u.UserName, nested.UserName)
		if u.RoleType == flexRole(RoleUnknown) {
			u.RoleType = nested.RoleType
		}
		if u.JoinTime.IsZero() {
			u.JoinTime = nested.JoinTime
		}
		if u.LeaveTime.IsZero() {
			u.LeaveTime = nested.LeaveTime
		}
	}
	ev.UserID, ev.UserName, ev.Role = string(u.UserID), string(u.UserName), RoleType(u.RoleType)
	ev.JoinTime, ev.LeaveTime = u.JoinTime.Time, u.LeaveTime.Time
	return ev, nil
}

func or(a, b flexString) flexString {
	if a != "" {
		return a
	}
	return b
}
