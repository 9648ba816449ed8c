package cec

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

const (
	// renewFraction: a token is renewed once this fraction of its lifetime is left (80 % used)...
	renewFraction = 5
	// renewAtLeast: ...or this much, when that is more (but never more than half the lifetime).
	renewAtLeast = 60 * time.Second
	// usableFor is how long a cached token must still be valid to be handed out while its
	// renewal is in flight or has just failed: a call made with it takes a moment to reach CEC.
	usableFor = 10 * time.Second
	// renewRetry is how long a failed renewal waits before the next try while the old token is
	// still usable, so that a failing tokenByAkSk is not asked on every call.
	renewRetry = 5 * time.Second
	// maxTokenBody bounds tokenByAkSk's reply.
	maxTokenBody = 64 << 10
)

// tokens gets and caches the tenant's API Fabric access token (tokenByAkSk):
// POST {Domain}/apigovernance/api/oauth/tokenByAkSk, headers Content-Type: application/json and
// X-Token-Expire: <seconds>, body {"app_key","app_secret"}, answered {"AccessToken","Expires",...}.
//
// One token is shared by every caller: the connector serves one tenant (one app key), so every
// session's calls carry the same token. When none is cached (or it is due for renewal) one caller
// asks CEC and the others wait for that answer: at most one request is in flight, however many
// sessions start at once. A token is renewed once a fifth of its lifetime is left, or a minute
// when that is more (never more than half of it); while that renewal is in flight, or failed less
// than renewRetry ago, callers keep getting the old token as long as it has usableFor left. A call
// that CEC answers 401 hands its token to invalidate, and the next token call asks for a new one:
// many calls failing at once with the same token cause one renewal.
//
// Errors are *connector.ServerError for op "tokenByAkSk" on the domain: 400, 401, 403 and other
// 4xx (bad app key or secret) are ErrRefused with CEC's words; 408, 429, 5xx, a network failure, a
// time-out or an unusable 2xx are ErrUnavailable. It is safe for concurrent use and starts no
// goroutine.
type tokens struct {
	c       *client
	onWait  func() // for tests: called when a caller starts waiting for the request in flight
	onFetch func() // for tests: called when a request is about to be sent

	mu      sync.Mutex
	tok     string
	expires time.Time
	renewAt time.Time
	usable  time.Time // the old token is handed out during a renewal until then
	retryAt time.Time // a failed renewal: no new try before this while the old token is usable
	flight  *flight
}

// flight is one token request and its result, shared by the callers that wait for it.
type flight struct {
	done    chan struct{}
	tok     string
	err     error
	aborted bool // the leading caller gave up (its context ended): another caller asks again
}

// String keeps a printed token cache from showing the token.
func (t *tokens) String() string { return "cec.tokens{" + connector.MaskToken(t.current()) + "}" }

func (t *tokens) current() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tok
}

// token returns a valid access token, asking CEC only when none is cached or the cached one is
// due for renewal. Cancelling ctx gives up waiting; a request this caller started is then left to
// the next caller.
func (t *tokens) token(ctx context.Context) (string, error) {
	for {
		t.mu.Lock()
		now := t.c.now()
		if t.tok != "" && now.Before(t.renewAt) {
			tok := t.tok
			t.mu.Unlock()
			return tok, nil
		}
		usable := t.tok != "" && now.Before(t.usable)
		if usable && (t.flight != nil || now.Before(t.retryAt)) {
			tok := t.tok
			t.mu.Unlock()
			return tok, nil
		}
		if t.flight == nil {
			f := &flight{done: make(chan struct{})}
			t.flight = f
			t.mu.Unlock()
			return t.lead(ctx, f)
		}
		f, onWait := t.flight, t.onWait
		t.mu.Unlock()
		if onWait != nil {
			onWait()
		}
		select {
		case <-ctx.Done():
			return "", &connector.ServerError{Op: opToken, Node: t.c.node, Kind: connector.ErrUnavailable, Err: ctx.Err()}
		case <-f.done:
		}
		if !f.aborted {
			return f.tok, f.err
		}
	}
}

// lead asks CEC for a token on behalf of every caller waiting on f.
func (t *tokens) lead(ctx context.Context, f *flight) (string, error) {
	if t.onFetch != nil {
		t.onFetch()
	}
	start := t.c.now()
	tok, life, err := t.fetch(ctx)

	t.mu.Lock()
	defer t.mu.Unlock()
	defer close(f.done)
	t.flight = nil
	now := t.c.now()
	log := t.c.log.With("node", t.c.node)
	switch {
	case err == nil:
		// The lifetime counts from before the request: a little early, never late.
		t.tok, t.expires = tok, start.Add(life)
		t.renewAt = t.expires.Add(-min(max(life/renewFraction, renewAtLeast), life/2))
		t.usable = t.expires.Add(-min(usableFor, life/4))
		t.retryAt = time.Time{}
		f.tok = tok
		log.DebugContext(ctx, "cec access token renewed", "token", connector.MaskToken(tok),
			"expires_in", life, "renew_in", t.renewAt.Sub(now))
	case ctx.Err() != nil:
		f.aborted = true
		f.err = err
	case t.tok != "" && now.Before(t.usable):
		t.retryAt = now.Add(renewRetry)
		f.tok = t.tok
		log.WarnContext(ctx, "cec access token renewal failed; the current token is still valid", "error", err,
			"token", connector.MaskToken(t.tok), "expires_in", t.expires.Sub(now))
	default:
		f.err = err
		log.WarnContext(ctx, "cec access token request failed", "error", err)
	}
	return f.tok, f.err
}

// invalidate drops tok from the cache when it is the cached token, so that the next token call
// asks for a new one. A call that CEC answered 401 calls it with the token it used; a token
// already replaced is left alone, so that a burst of 401s renews once.
func (t *tokens) invalidate(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok != "" && tok == t.tok {
		t.tok, t.expires, t.renewAt, t.usable, t.retryAt = "", time.Time{}, time.Time{}, time.Time{}, time.Time{}
		t.c.log.Debug("cec access token invalidated", "node", t.c.node, "token", connector.MaskToken(tok))
	}
}

// fetch sends one tokenByAkSk request. The lifetime is what CEC says the token has, at most what
// was asked (a server that says more is not trusted beyond what was asked; one that says nothing
// is taken to have granted it).
func (t *tokens) fetch(ctx context.Context) (tok string, life time.Duration, err error) {
	c := t.c
	defer func() { err = c.redact(err) }()
	fail := func(kind error, reason string, cause error) error {
		return &connector.ServerError{Op: opToken, Node: c.node, Kind: kind, Reason: reason, Err: cause}
	}
	body, _ := json.Marshal(map[string]string{"app_key": c.cfg.AppKey, "app_secret": string(c.secret.Load().current)})
	hdr := http.Header{}
	hdr.Set("X-Token-Expire", strconv.FormatInt(int64(c.cfg.TokenExpire/time.Second), 10))
	status, reply, err := c.post(ctx, c.tokenURL, hdr, body, maxTokenBody)
	if err != nil {
		return "", 0, fail(connector.ErrUnavailable, "", err)
	}
	if kind := statusKind(status); kind != nil {
		return "", 0, fail(kind, serverReason(status, reply), nil)
	}
	r, err := decodeTokenReply(reply)
	if err != nil {
		// A 2xx that is not the token JSON is a proxy or a broken server, not a refusal.
		return "", 0, fail(connector.ErrUnavailable, "reply is not JSON", err)
	}
	switch {
	case r.AccessToken == "" && r.Failure != "":
		return "", 0, fail(connector.ErrRefused, r.Failure, nil)
	case r.AccessToken == "":
		return "", 0, fail(connector.ErrUnavailable, "reply has no AccessToken", nil)
	case !headerSafe(r.AccessToken):
		return "", 0, fail(connector.ErrUnavailable, "reply's AccessToken cannot be sent in a header", nil)
	}
	life = c.cfg.TokenExpire
	if r.Expires > 0 && r.Expires < life {
		life = r.Expires
	}
	return r.AccessToken, life, nil
}
