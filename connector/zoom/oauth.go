package zoom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The defaults of OAuthConfig.
const (
	DefaultOAuthURL       = "https://zoom.us"
	DefaultRenewBefore    = 5 * time.Minute
	DefaultRequestTimeout = 10 * time.Second
)

const (
	opOAuth = "oauth token"

	maxOAuthBody = 64 << 10
	// usableFor is how long a cached token must still be valid to be handed out: a call made with
	// it takes a moment to reach Zoom.
	usableFor = 10 * time.Second
	// renewRetry is how long a failed renewal waits before the next try while the old token is
	// still usable, so that a failing OAuth endpoint is not asked on every call.
	renewRetry = 5 * time.Second
)

// OAuthConfig configures a TokenSource: a Zoom Server-to-Server OAuth app on the account that owns
// the Cobrowse SDK app.
type OAuthConfig struct {
	// BaseURL is the OAuth server; the token is POSTed to BaseURL + "/oauth/token". Default
	// DefaultOAuthURL. A trailing slash is removed.
	BaseURL string
	// AccountID, ClientID and ClientSecret are the Server-to-Server OAuth app's credentials.
	// Required. ClientSecret is never logged.
	AccountID    string
	ClientID     string
	ClientSecret Secret
	// RenewBefore is the margin: a cached token is renewed once it has less than this left (or
	// less than half its lifetime, when that is shorter). Default 5m.
	RenewBefore time.Duration
	// RequestTimeout bounds one token request. Default 10s.
	RequestTimeout time.Duration
	// RoundTripper carries the requests. Default http.DefaultTransport.
	RoundTripper http.RoundTripper
	// Logger receives renewals and failures (component=zoom); tokens only masked, the client
	// secret never. Default: discard.
	Logger *slog.Logger
}

func (c OAuthConfig) String() string {
	return fmt.Sprintf("zoom.OAuthConfig{BaseURL:%q AccountID:%q ClientID:%q ClientSecret:%s RenewBefore:%s RequestTimeout:%s}",
		c.BaseURL, c.AccountID, c.ClientID, c.ClientSecret, c.RenewBefore, c.RequestTimeout)
}

// Format prints String for every verb.
func (c OAuthConfig) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without the secret.
func (c OAuthConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("base_url", c.BaseURL), slog.String("account_id", c.AccountID),
		slog.String("client_id", c.ClientID), slog.String("client_secret", c.ClientSecret.String()),
		slog.Duration("renew_before", c.RenewBefore), slog.Duration("request_timeout", c.RequestTimeout))
}

// TokenSource gets and caches the access token of a Server-to-Server OAuth app:
// POST {BaseURL}/oauth/token?grant_type=account_credentials&account_id={AccountID} with HTTP basic
// authentication (client id and secret), answered {access_token, token_type, expires_in, scope}.
//
// One token is shared by every caller. When none is cached (or it is close to expiry) one caller
// asks Zoom and the others wait for that answer: there is at most one request in flight. A token
// is renewed RenewBefore before it expires; while that renewal is in flight, or failed less than a
// few seconds ago, callers keep getting the old token as long as it has a few seconds left. A call
// that Zoom answers 401 hands its token to Invalidate, and the next Token asks for a new one: many
// calls failing at once with the same token cause one renewal.
//
// Errors are *connector.ServerError on the OAuth URL: the endpoint's 400/401 (bad credentials,
// wrong account) and other 4xx are ErrRefused with Zoom's reason; 429, 5xx, a network failure, a
// time-out or an unusable 2xx are ErrUnavailable. It is safe for concurrent use and starts no
// goroutine.
type TokenSource struct {
	cfg    OAuthConfig
	node   string
	tokURL string
	http   *http.Client
	log    *slog.Logger
	now    func() time.Time // for tests
	c      *tokenCache      // behind a pointer: a TokenSource value printed raw shows no token
}

// tokenCache is the cached token and the request in flight.
type tokenCache struct {
	mu sync.Mutex
	// secret is the client secret the next request sends (SetClientSecret swaps it); replaced is
	// the one it replaced, still masked in what a reply to a request that sent it may echo.
	secret, replaced Secret
	tok              string
	expires          time.Time
	renewAt          time.Time
	retryAt          time.Time // a failed renewal: no new try before this while the old token is usable
	flight           *flight
	onWait           func() // for tests: called when a caller starts waiting for a request in flight
}

// flight is one token request and its result, shared by the callers that wait for it.
type flight struct {
	done    chan struct{}
	tok     string
	err     error
	aborted bool // the leading caller gave up (its context ended): another caller asks again
}

// NewTokenSource checks cfg and returns a TokenSource.
func NewTokenSource(cfg OAuthConfig) (*TokenSource, error) {
	var errs []error
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultOAuthURL
	}
	cfg.BaseURL = strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if err := connector.CheckBaseURL(cfg.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("zoom: OAuth BaseURL: %w", err))
	}
	for _, f := range []struct{ name, v string }{
		{"AccountID", cfg.AccountID}, {"ClientID", cfg.ClientID}, {"ClientSecret", string(cfg.ClientSecret)},
	} {
		if strings.TrimSpace(f.v) == "" {
			errs = append(errs, fmt.Errorf("zoom: OAuth %s is required", f.name))
		}
	}
	if strings.Contains(cfg.ClientID, ":") {
		errs = append(errs, errors.New("zoom: OAuth ClientID must not contain ':' (HTTP basic authentication)"))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RenewBefore", &cfg.RenewBefore, DefaultRenewBefore},
		{"RequestTimeout", &cfg.RequestTimeout, DefaultRequestTimeout},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("zoom: OAuth %s must not be negative (got %s)", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
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
	q := url.Values{"grant_type": {"account_credentials"}, "account_id": {cfg.AccountID}}
	return &TokenSource{
		cfg:    cfg,
		node:   cfg.BaseURL,
		tokURL: cfg.BaseURL + "/oauth/token?" + q.Encode(),
		http:   &http.Client{Transport: cfg.RoundTripper, CheckRedirect: noRedirects},
		log:    cfg.Logger.With("component", "zoom"),
		now:    time.Now,
		c:      &tokenCache{secret: cfg.ClientSecret},
	}, nil
}

// SetClientSecret replaces the OAuth app's client secret: the next token request sends it (the
// token cached meanwhile is used until it is due, as usual). An empty secret changes nothing.
func (ts *TokenSource) SetClientSecret(secret Secret) error {
	if strings.TrimSpace(string(secret)) == "" {
		return errors.New("zoom: ClientSecret is required")
	}
	ts.c.mu.Lock()
	defer ts.c.mu.Unlock()
	if secret != ts.c.secret {
		ts.c.secret, ts.c.replaced = secret, ts.c.secret
	}
	return nil
}

// secrets returns the client secret to send and the one it replaced.
func (ts *TokenSource) secrets() (current, replaced Secret) {
	ts.c.mu.Lock()
	defer ts.c.mu.Unlock()
	return ts.c.secret, ts.c.replaced
}

func (ts TokenSource) String() string { return "zoom.TokenSource{" + ts.cfg.String() + "}" }

// Format prints String for every verb.
func (ts TokenSource) Format(f fmt.State, verb rune) { formatAs(f, verb, ts.String()) }

// LogValue shows the source without the secret and the token.
func (ts TokenSource) LogValue() slog.Value { return ts.cfg.LogValue() }

// Token returns a valid access token, asking Zoom only when none is cached or the cached one is
// due for renewal. Cancelling ctx gives up waiting; a request this caller started is then left to
// the next caller.
func (ts *TokenSource) Token(ctx context.Context) (string, error) {
	for {
		ts.c.mu.Lock()
		now := ts.now()
		if ts.c.tok != "" && now.Before(ts.c.renewAt) {
			tok := ts.c.tok
			ts.c.mu.Unlock()
			return tok, nil
		}
		usable := ts.c.tok != "" && now.Before(ts.c.expires.Add(-usableFor))
		if usable && (ts.c.flight != nil || now.Before(ts.c.retryAt)) {
			tok := ts.c.tok
			ts.c.mu.Unlock()
			return tok, nil
		}
		if ts.c.flight == nil {
			f := &flight{done: make(chan struct{})}
			ts.c.flight = f
			ts.c.mu.Unlock()
			return ts.lead(ctx, f)
		}
		f, onWait := ts.c.flight, ts.c.onWait
		ts.c.mu.Unlock()
		if onWait != nil {
			onWait()
		}
		select {
		case <-ctx.Done():
			return "", &connector.ServerError{Op: opOAuth, Node: ts.node, Kind: connector.ErrUnavailable, Err: ctx.Err()}
		case <-f.done:
		}
		if !f.aborted {
			return f.tok, f.err
		}
	}
}

// lead asks Zoom for a token on behalf of every caller waiting on f.
func (ts *TokenSource) lead(ctx context.Context, f *flight) (string, error) {
	start := ts.now()
	tok, life, scope, err := ts.fetch(ctx)

	ts.c.mu.Lock()
	defer ts.c.mu.Unlock()
	defer close(f.done)
	ts.c.flight = nil
	now := ts.now()
	switch {
	case err == nil:
		// The lifetime counts from before the request: a little early, never late.
		ts.c.tok, ts.c.expires = tok, start.Add(life)
		ts.c.renewAt = ts.c.expires.Add(-min(ts.cfg.RenewBefore, life/2))
		ts.c.retryAt = time.Time{}
		f.tok = tok
		ts.log.DebugContext(ctx, "zoom oauth token renewed", "node", ts.node, "token", connector.MaskToken(tok),
			"expires_in", life, "scope", scope)
	case ctx.Err() != nil:
		f.aborted = true
		f.err = err
	case ts.c.tok != "" && now.Before(ts.c.expires.Add(-usableFor)):
		ts.c.retryAt = now.Add(renewRetry)
		f.tok = ts.c.tok
		ts.log.WarnContext(ctx, "zoom oauth token renewal failed; the current token is still valid", "node", ts.node,
			"error", err, "token", connector.MaskToken(ts.c.tok), "expires_in", ts.c.expires.Sub(now))
	default:
		f.err = err
		ts.log.WarnContext(ctx, "zoom oauth token request failed", "node", ts.node, "error", err)
	}
	return f.tok, f.err
}

// Invalidate drops tok from the cache when it is the cached token, so that the next Token asks for
// a new one. An API call that Zoom answered 401 calls it with the token it used; a token already
// replaced is left alone, so that a burst of 401s renews once.
func (ts *TokenSource) Invalidate(tok string) {
	ts.c.mu.Lock()
	defer ts.c.mu.Unlock()
	if tok != "" && tok == ts.c.tok {
		ts.c.tok, ts.c.expires, ts.c.renewAt, ts.c.retryAt = "", time.Time{}, time.Time{}, time.Time{}
		ts.log.Debug("zoom oauth token invalidated", "node", ts.node, "token", connector.MaskToken(tok))
	}
}

// tokenReply is the OAuth endpoint's answer; unknown fields are ignored.
type tokenReply struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
	Scope       string      `json:"scope"`
}

// fetch sends one token request.
func (ts *TokenSource) fetch(ctx context.Context) (tok string, life time.Duration, scope string, err error) {
	defer func() { err = redact(err, ts.mask) }()
	fail := func(kind error, reason string, cause error) error {
		return &connector.ServerError{Op: opOAuth, Node: ts.node, Kind: kind, Reason: reason, Err: cause}
	}
	rctx, cancel := context.WithTimeout(ctx, ts.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ts.tokURL, http.NoBody)
	if err != nil {
		return "", 0, "", fail(connector.ErrRefused, "", err)
	}
	secret, _ := ts.secrets()
	req.SetBasicAuth(ts.cfg.ClientID, string(secret))
	req.Header.Set("Accept", "application/json")
	resp, err := ts.http.Do(req)
	if err != nil {
		return "", 0, "", fail(connector.ErrUnavailable, "", err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, maxOAuthBody)
	if err != nil {
		return "", 0, "", fail(connector.ErrUnavailable, "", err)
	}
	switch st := resp.StatusCode; {
	case st == http.StatusTooManyRequests || st >= 500 || st < 200 || st == http.StatusRequestTimeout:
		return "", 0, "", fail(connector.ErrUnavailable, zoomReason(st, body), nil)
	case st >= 300:
		return "", 0, "", fail(connector.ErrRefused, zoomReason(st, body), nil)
	}
	var r tokenReply
	if err := json.Unmarshal(body, &r); err != nil {
		// A 2xx that is not the token JSON is a proxy or a broken server, not a refusal.
		return "", 0, "", fail(connector.ErrUnavailable, "token reply is not JSON", err)
	}
	if r.AccessToken == "" {
		return "", 0, "", fail(connector.ErrUnavailable, "token reply has no access_token", nil)
	}
	if r.TokenType != "" && !strings.EqualFold(r.TokenType, "bearer") {
		return "", 0, "", fail(connector.ErrUnavailable, "token reply has token_type "+clip(r.TokenType)+", not bearer", nil)
	}
	// expires_in is seconds. Missing or unreadable: zero, so the token serves this call only and
	// the next call asks again (nothing is assumed about its lifetime).
	if n, err := r.ExpiresIn.Int64(); err == nil && n > 0 && n < 1<<31 {
		life = time.Duration(n) * time.Second
	}
	return r.AccessToken, life, r.Scope, nil
}

func (ts *TokenSource) mask(s string) string {
	current, replaced := ts.secrets()
	return maskAll(s, string(current), string(replaced))
}
