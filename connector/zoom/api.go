package zoom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The defaults of APIConfig.
const (
	DefaultAPIURL   = "https://api.zoom.us/v2"
	DefaultPINParam = "pin_code"
	DefaultPageSize = 300
	DefaultMaxPages = 10
	DefaultMaxBody  = 4 << 20
	// MaxRetryAfter caps how long a 429's Retry-After keeps the client quiet: a day-long
	// Retry-After (a daily quota) would otherwise silence it until a restart.
	MaxRetryAfter = 10 * time.Minute
)

// The operations, as errors and logs name them.
const (
	opLiveByPIN    = "live session by pin"
	opSession      = "get session"
	opSessionUsers = "session users"
)

// ErrPageLimit is the cause of a LiveSessionByPIN that found no session with the PIN in the pages
// it was allowed to read while Zoom had more: the PIN may still be live. It comes wrapped with
// ErrNotFound.
var ErrPageLimit = errors.New("zoom: PIN not found within the page limit")

// RateLimitError is the cause of a call refused by a 429 (or not sent because a 429's Retry-After
// has not run out): wait RetryAfter before the next call. Zero: Zoom did not say.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	if e.RetryAfter <= 0 {
		return "rate limited"
	}
	return "rate limited; retry after " + e.RetryAfter.String()
}

// RetryAfter returns how long err asks to wait before the next call, when err is a rate limit
// with a Retry-After.
func RetryAfter(err error) (time.Duration, bool) {
	if rl, ok := errors.AsType[*RateLimitError](err); ok && rl.RetryAfter > 0 {
		return rl.RetryAfter, true
	}
	return 0, false
}

// Bearer gives the access token of the REST calls; *TokenSource is one.
type Bearer interface {
	// Token returns a valid access token.
	Token(ctx context.Context) (string, error)
	// Invalidate drops tok when it is the cached one: Zoom answered 401 to it.
	Invalidate(tok string)
}

// APIConfig configures an API client.
type APIConfig struct {
	// BaseURL is the REST API's base. Default DefaultAPIURL. A trailing slash is removed.
	BaseURL string
	// Tokens gives the bearer token of every call. Required.
	Tokens Bearer
	// PINParam is the query parameter that filters live sessions by PIN. Default "pin_code",
	// the name Zoom's changelog gives; another source says "session_pin". Whichever Zoom honours,
	// LiveSessionByPIN also filters the sessions it gets by their session_pin.
	PINParam string
	// PageSize is the page_size of listing calls, within Zoom's [30, 300]. Default 300.
	PageSize int
	// MaxPages bounds the pages one LiveSessionByPIN or SessionUsers reads. Default 10.
	MaxPages int
	// MaxBody bounds a reply's body. Default 4 MiB.
	MaxBody int64
	// RequestTimeout bounds each HTTP request. Default 10s.
	RequestTimeout time.Duration
	// RoundTripper carries the requests. Default http.DefaultTransport.
	RoundTripper http.RoundTripper
	// Breakers, when set, guard the calls with the circuit breaker of the API base URL: a run of
	// unavailability failures makes later calls fail at once until the breaker lets a probe
	// through. Nil: no breaker.
	Breakers *connector.Breakers
	// Logger receives failures (component=zoom). Default: discard.
	Logger *slog.Logger
}

// API is the client of Zoom's Cobrowse SDK REST API (read-only: Zoom publishes no call that
// creates, ends or changes a session). It is safe for concurrent use and starts no goroutine.
//
// Every error is a *connector.ServerError with Op and Node (the base URL): 404 is ErrNotFound;
// 401 renews the OAuth token once and retries, and a second 401 is ErrRefused, as are 403 (a
// missing scope) and other 4xx; 408, 429 and 5xx, network failures, time-outs and unusable 2xx
// replies are ErrUnavailable. A 429's Retry-After (seconds or an HTTP date, at most
// MaxRetryAfter) is honoured: until it runs out, calls fail at once with ErrUnavailable and a
// *RateLimitError cause, without reaching Zoom.
type API struct {
	cfg  APIConfig
	node string
	http *http.Client
	log  *slog.Logger
	now  func() time.Time // for tests

	mu           sync.Mutex
	blockedUntil time.Time // a 429's Retry-After
}

// NewAPI checks cfg, fills its defaults and returns an API client.
func NewAPI(cfg APIConfig) (*API, error) {
	var errs []error
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultAPIURL
	}
	cfg.BaseURL = strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if err := connector.CheckBaseURL(cfg.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("zoom: API BaseURL: %w", err))
	}
	if cfg.Tokens == nil {
		errs = append(errs, errors.New("zoom: API Tokens is required"))
	}
	if cfg.PINParam == "" {
		cfg.PINParam = DefaultPINParam
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.PageSize < 30 || cfg.PageSize > 300 {
		errs = append(errs, fmt.Errorf("zoom: API PageSize %d is outside Zoom's [30, 300]", cfg.PageSize))
	}
	if cfg.MaxPages == 0 {
		cfg.MaxPages = DefaultMaxPages
	}
	if cfg.MaxPages < 0 {
		errs = append(errs, fmt.Errorf("zoom: API MaxPages must not be negative (got %d)", cfg.MaxPages))
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("zoom: API MaxBody must not be negative (got %d)", cfg.MaxBody))
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("zoom: API RequestTimeout must not be negative (got %s)", cfg.RequestTimeout))
	}
	if cfg.RoundTripper == nil {
		cfg.RoundTripper = http.DefaultTransport
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &API{cfg: cfg, node: cfg.BaseURL, http: &http.Client{Transport: cfg.RoundTripper, CheckRedirect: noRedirects},
		log: cfg.Logger.With("component", "zoom"), now: time.Now}, nil
}

// Node returns the API base URL: the Node of every error.
func (a *API) Node() string { return a.node }

// LiveUser is a user of a live session as the live-session list gives it. UserID is Zoom's
// per-session id, not necessarily the user_id claim of the user's JWT.
type LiveUser struct {
	UserID   string
	UserName string
	Role     RoleType
}

// LiveSession is a live Cobrowse session.
type LiveSession struct {
	SessionID string
	StartTime time.Time // zero when Zoom gave none or an unreadable one
	PIN       string    // session_pin, upper case
	Users     []LiveUser
}

// SessionDetail is one session, live or past.
type SessionDetail struct {
	SessionID string
	StartTime time.Time
	EndTime   time.Time     // zero while the session is live
	Duration  time.Duration // zero while live or when not given
	PIN       string
	UserCount int
}

// Ended reports whether Zoom gave the session an end time.
func (d SessionDetail) Ended() bool { return !d.EndTime.IsZero() }

// SessionUser is one connection of a user to a session. A user who reconnected may appear more
// than once. (The reply's ip_address is not kept: the daemon has no use for it.)
type SessionUser struct {
	ConnectionID string
	UserID       string
	UserName     string
	Role         RoleType
	DataCenter   string
	JoinTime     time.Time
	LeaveTime    time.Time // zero while connected
	Duration     time.Duration
}

// The wire forms; unknown fields are ignored.
type (
	wireLiveUser struct {
		UserID   flexString `json:"user_id"`
		UserName flexString `json:"user_name"`
		RoleType flexRole   `json:"role_type"`
	}
	wireLiveSession struct {
		SessionID  flexString     `json:"session_id"`
		StartTime  flexTime       `json:"start_time"`
		SessionPIN flexString     `json:"session_pin"`
		Users      []wireLiveUser `json:"users"`
	}
	wireLiveSessions struct {
		NextPageToken flexString        `json:"next_page_token"`
		Sessions      []wireLiveSession `json:"sessions"`
	}
	wireSession struct {
		SessionID  flexString   `json:"session_id"`
		StartTime  flexTime     `json:"start_time"`
		EndTime    flexTime     `json:"end_time"`
		Duration   flexDuration `json:"duration"`
		SessionPIN flexString   `json:"session_pin"`
		UserCount  flexString   `json:"user_count"`
	}
	wireSessionUser struct {
		ConnectionID flexString   `json:"user_connection_id"`
		UserID       flexString   `json:"user_id"`
		UserName     flexString   `json:"user_name"`
		RoleType     flexRole     `json:"role_type"`
		DataCenter   flexString   `json:"data_center"`
		JoinTime     flexTime     `json:"join_time"`
		LeaveTime    flexTime     `json:"leave_time"`
		Duration     flexDuration `json:"duration"`
	}
	wireSessionUsers struct {
		NextPageToken flexString        `json:"next_page_token"`
		Users         []wireSessionUser `json:"users"`
	}
)

// LiveSessionByPIN finds the live session whose PIN is pin (any case): GET
// /cobrowsesdk/live_sessions with the PIN filter (APIConfig.PINParam), following next_page_token
// for at most MaxPages pages. Whether or not Zoom applied the filter, only sessions whose
// session_pin equals the PIN count; if several do (Zoom keeps PINs unique among live sessions, so
// it should not happen) the latest started wins. No match is ErrNotFound; no match within MaxPages
// while Zoom had more pages is ErrNotFound with the cause ErrPageLimit. A pin that is not a
// Cobrowse PIN is ErrNotFound without a call.
func (a *API) LiveSessionByPIN(ctx context.Context, pin string) (LiveSession, error) {
	norm, ok := NormalizePIN(pin)
	if !ok {
		return LiveSession{}, &connector.ServerError{Op: opLiveByPIN, Node: a.node, Kind: connector.ErrNotFound,
			Reason: "not a Cobrowse PIN (1 to 10 letters and digits)"}
	}
	log := a.log.With("token", connector.MaskToken(norm))
	s, err := connector.Execute(a.cfg.Breakers, a.node, opLiveByPIN, func() (LiveSession, error) {
		var page string
		seen, noPIN := 0, 0
		for range a.cfg.MaxPages {
			q := url.Values{"page_size": {strconv.Itoa(a.cfg.PageSize)}, a.cfg.PINParam: {norm}}
			if page != "" {
				q.Set("next_page_token", page)
			}
			var r wireLiveSessions
			if err := a.get(ctx, opLiveByPIN, "/cobrowsesdk/live_sessions?"+q.Encode(), &r); err != nil {
				return LiveSession{}, err
			}
			var best *wireLiveSession
			for i := range r.Sessions {
				w := &r.Sessions[i]
				seen++
				if w.SessionPIN == "" {
					noPIN++
				}
				if w.SessionID == "" || !strings.EqualFold(string(w.SessionPIN), norm) {
					continue
				}
				if best == nil || w.StartTime.After(best.StartTime.Time) {
					best = w
				}
			}
			if best != nil {
				return liveSession(best), nil
			}
			page = string(r.NextPageToken)
			if page == "" {
				if noPIN > 0 {
					log.DebugContext(ctx, "zoom live sessions without session_pin were skipped", "node", a.node, "skipped", noPIN)
				}
				return LiveSession{}, &connector.ServerError{Op: opLiveByPIN, Node: a.node, Kind: connector.ErrNotFound,
					Reason: fmt.Sprintf("no live session with this PIN among %d", seen)}
			}
		}
		log.WarnContext(ctx, "zoom live sessions: PIN not found within the page limit; is the PIN filter honoured?",
			"node", a.node, "max_pages", a.cfg.MaxPages, "sessions_seen", seen, "pin_param", a.cfg.PINParam)
		return LiveSession{}, &connector.ServerError{Op: opLiveByPIN, Node: a.node, Kind: connector.ErrNotFound,
			Reason: fmt.Sprintf("no live session with this PIN in the first %d pages (%d sessions)", a.cfg.MaxPages, seen),
			Err:    ErrPageLimit}
	})
	if err != nil {
		log.DebugContext(ctx, "zoom live session by PIN failed", "node", a.node, "error", err)
	}
	return s, redact(err, func(s string) string { return strings.ReplaceAll(s, norm, connector.MaskToken(norm)) })
}

func liveSession(w *wireLiveSession) LiveSession {
	s := LiveSession{SessionID: string(w.SessionID), StartTime: w.StartTime.Time, PIN: strings.ToUpper(string(w.SessionPIN))}
	for _, u := range w.Users {
		s.Users = append(s.Users, LiveUser{UserID: string(u.UserID), UserName: string(u.UserName), Role: RoleType(u.RoleType)})
	}
	return s
}

// Session gets one session, live or past: GET /cobrowsesdk/sessions/{id}. An unknown id is
// ErrNotFound. (A third-party text adds a session_type=live|past parameter; it is not sent.)
func (a *API) Session(ctx context.Context, id string) (SessionDetail, error) {
	if id == "" {
		return SessionDetail{}, &connector.ServerError{Op: opSession, Node: a.node, Kind: connector.ErrNotFound, Reason: "empty session id"}
	}
	d, err := connector.Execute(a.cfg.Breakers, a.node, opSession, func() (SessionDetail, error) {
		var w wireSession
		if err := a.get(ctx, opSession, "/cobrowsesdk/sessions/"+url.PathEscape(id), &w); err != nil {
			return SessionDetail{}, err
		}
		d := SessionDetail{SessionID: string(w.SessionID), StartTime: w.StartTime.Time, EndTime: w.EndTime.Time,
			Duration: time.Duration(w.Duration), PIN: strings.ToUpper(string(w.SessionPIN))}
		if n, err := strconv.Atoi(string(w.UserCount)); err == nil && n >= 0 {
			d.UserCount = n
		}
		if d.SessionID == "" {
			d.SessionID = id
		}
		return d, nil
	})
	if err != nil {
		a.log.DebugContext(ctx, "zoom get session failed", "node", a.node, "session_id", id, "error", err)
	}
	return d, err
}

// SessionUsers lists the user connections of a session, live or past: GET
// /cobrowsesdk/sessions/{id}/users, following next_page_token for at most MaxPages pages (what was
// read is returned, with no error, when Zoom had more). An unknown id is ErrNotFound.
func (a *API) SessionUsers(ctx context.Context, id string) ([]SessionUser, error) {
	if id == "" {
		return nil, &connector.ServerError{Op: opSessionUsers, Node: a.node, Kind: connector.ErrNotFound, Reason: "empty session id"}
	}
	users, err := connector.Execute(a.cfg.Breakers, a.node, opSessionUsers, func() ([]SessionUser, error) {
		var out []SessionUser
		var page string
		for range a.cfg.MaxPages {
			q := url.Values{"page_size": {strconv.Itoa(a.cfg.PageSize)}}
			if page != "" {
				q.Set("next_page_token", page)
			}
			var r wireSessionUsers
			if err := a.get(ctx, opSessionUsers, "/cobrowsesdk/sessions/"+url.PathEscape(id)+"/users?"+q.Encode(), &r); err != nil {
				return nil, err
			}
			for _, u := range r.Users {
				out = append(out, SessionUser{ConnectionID: string(u.ConnectionID), UserID: string(u.UserID),
					UserName: string(u.UserName), Role: RoleType(u.RoleType), DataCenter: string(u.DataCenter),
					JoinTime: u.JoinTime.Time, LeaveTime: u.LeaveTime.Time, Duration: time.Duration(u.Duration)})
			}
			if page = string(r.NextPageToken); page == "" {
				return out, nil
			}
		}
		a.log.WarnContext(ctx, "zoom session users: more pages than the page limit; the list is cut",
			"node", a.node, "session_id", id, "max_pages", a.cfg.MaxPages, "participants", len(out))
		return out, nil
	})
	if err != nil {
		a.log.DebugContext(ctx, "zoom session users failed", "node", a.node, "session_id", id, "error", err)
	}
	return users, err
}

// get sends one GET with the bearer token and decodes a 2xx reply into v. A 401 invalidates the
// token and the call is sent once more with a fresh one.
func (a *API) get(ctx context.Context, op, path string, v any) error {
	fail := func(kind error, reason string, cause error) error {
		return &connector.ServerError{Op: op, Node: a.node, Kind: kind, Reason: reason, Err: cause}
	}
	if wait := a.blocked(); wait > 0 {
		return fail(connector.ErrUnavailable, "rate limited by an earlier reply", &RateLimitError{RetryAfter: wait})
	}
	for attempt := 0; ; attempt++ {
		tok, err := a.cfg.Tokens.Token(ctx)
		if err != nil {
			// The OAuth endpoint's error (its own Node) is the cause; the call's kind is its kind.
			kind := connector.ErrUnavailable
			if errors.Is(err, connector.ErrRefused) {
				kind = connector.ErrRefused
			}
			return fail(kind, "no access token", err)
		}
		status, hdr, body, err := a.do(ctx, path, tok)
		if err != nil {
			return fail(connector.ErrUnavailable, "", err)
		}
		switch {
		case status >= 200 && status <= 299:
			if err := json.Unmarshal(body, v); err != nil {
				// A 2xx that is not the expected JSON is a proxy or a broken server: transient.
				return fail(connector.ErrUnavailable, "reply is not the expected JSON", err)
			}
			return nil
		case status == http.StatusUnauthorized && attempt == 0:
			a.cfg.Tokens.Invalidate(tok)
			a.log.DebugContext(ctx, "zoom API answered 401; renewing the token once", "node", a.node, "token", connector.MaskToken(tok))
			continue
		case status == http.StatusNotFound:
			return fail(connector.ErrNotFound, zoomReason(status, body), nil)
		case status == http.StatusTooManyRequests:
			wait := a.retryAfter(hdr.Get("Retry-After"))
			return fail(connector.ErrUnavailable, zoomReason(status, body), &RateLimitError{RetryAfter: wait})
		case status == http.StatusRequestTimeout || status >= 500 || status < 200:
			return fail(connector.ErrUnavailable, zoomReason(status, body), nil)
		default: // 401 twice, 403, other 4xx, 3xx (never followed: a redirect of an API call is not expected)
			return fail(connector.ErrRefused, zoomReason(status, body), nil)
		}
	}
}

// do sends one request, bounded by RequestTimeout, and reads at most MaxBody of the reply.
func (a *API) do(ctx context.Context, path, tok string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.node+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, a.cfg.MaxBody)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, body, nil
}

// retryAfter reads a 429's Retry-After (delay-seconds or an HTTP date), caps it at MaxRetryAfter
// and keeps the client quiet until then. Absent or unreadable: zero, and the client is not held.
func (a *API) retryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	now := a.now()
	var wait time.Duration
	if n, ok := parseSeconds(h); ok {
		wait = time.Duration(min(n, int64(MaxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		wait = t.Sub(now)
	}
	wait = min(wait, MaxRetryAfter)
	if wait <= 0 {
		return 0
	}
	a.mu.Lock()
	if until := now.Add(wait); until.After(a.blockedUntil) {
		a.blockedUntil = until
	}
	a.mu.Unlock()
	return wait
}

// blocked returns how long a 429's Retry-After still holds the client.
func (a *API) blocked() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.blockedUntil.IsZero() {
		return 0
	}
	d := a.blockedUntil.Sub(a.now())
	if d <= 0 {
		a.blockedUntil = time.Time{}
		return 0
	}
	return d
}
