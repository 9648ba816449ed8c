package zoomtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// The defaults of Options.
const (
	DefaultAccountID       = "zoomtest-account"
	DefaultClientID        = "zoomtest-client"
	DefaultClientSecret    = "zoomtest-client-secret"
	DefaultSDKKey          = "zoomtest-sdk-key"
	DefaultSDKSecret       = "zoomtest-sdk-secret"
	DefaultWebhookSecret   = "zoomtest-webhook-secret"
	DefaultTokenTTL        = time.Hour
	DefaultCustomerWait    = 3 * time.Minute
	DefaultReconnectWindow = 2 * time.Minute
	DefaultMaxAgents       = 5
	DefaultPINParam        = "pin_code"
	DefaultWebhookAttempts = 3
	DefaultWebhookRetry    = 50 * time.Millisecond
	DefaultWebhookTimeout  = 3 * time.Second
	DefaultWebhookQueue    = 1024
)

// endedKept is how many ended sessions the server remembers for REST and Session.
const endedKept = 10000

// Options configure a Server. The zero value works: default credentials, no webhooks.
type Options struct {
	// The Server-to-Server OAuth app: the token endpoint checks all three.
	AccountID, ClientID, ClientSecret string
	// The Cobrowse SDK credentials the browsers' JWTs are checked with.
	SDKKey, SDKSecret string
	// TokenTTL is the access tokens' lifetime (expires_in). Default 1h.
	TokenTTL time.Duration

	// WebhookURL receives the signed cobrowse.* webhooks; empty: none are sent.
	WebhookURL string
	// WebhookSecret is the secret token that signs them.
	WebhookSecret string
	// WebhookAttempts is how many times a delivery answered with a non-2xx (or not answered) is
	// sent in all. Default 3.
	WebhookAttempts int
	// WebhookRetryDelay is the wait between attempts. Default 50ms.
	WebhookRetryDelay time.Duration
	// WebhookTimeout bounds one attempt. Default 3s (Zoom wants an answer within 3 s).
	WebhookTimeout time.Duration
	// WebhookQueue bounds the deliveries waiting to be sent; when full, new ones are dropped (and
	// counted). Default 1024.
	WebhookQueue int

	// CustomerWait is how long the agents wait for a customer who left before the session ends
	// by itself. Default 3m.
	CustomerWait time.Duration
	// ReconnectWindow is how long a disconnected user (a page refresh) has to reconnect before
	// the session ends by itself. Default 2m.
	ReconnectWindow time.Duration
	// MaxAgents is how many agents a session takes at once. Default 5.
	MaxAgents int

	// PINParam is the query parameter the live-session list filters on. Default "pin_code".
	PINParam string
	// IgnorePINFilter makes the live-session list ignore the PIN filter (as Zoom would if the
	// parameter's name were wrong): every live session is listed.
	IgnorePINFilter bool
	// EchoUserIDs makes REST and webhooks carry the user_id claim of each user's JWT. By default
	// they carry a per-session id of the server's own, unrelated to the JWT (Zoom documents no
	// relation between the two).
	EchoUserIDs bool

	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
}

// Server is an in-process Zoom: the OAuth token endpoint, the Cobrowse REST API and a webhook
// sender, on 127.0.0.1. Tests play the browsers with its Go methods. Close stops it.
type Server struct {
	opts Options
	log  *slog.Logger
	srv  *httptest.Server

	ctx     context.Context // cancelled by Close: releases hung requests, stops the webhook sender
	cancel  context.CancelFunc
	closing <-chan struct{} // ctx.Done()
	once    sync.Once

	mu       sync.Mutex // guards everything below
	closed   bool
	tokens   map[string]time.Time // access token -> expiry
	tokenReq int
	faults   map[Route]*Fault
	requests map[Route]int
	live     map[string]*session // by session id
	byPIN    map[string]*session // live sessions by PIN
	ended    map[string]*session
	endOrder []string
	changed  chan struct{} // closed and replaced on every session state change
	timers   sync.WaitGroup

	hooks *hookSender
}

// New starts a Server on 127.0.0.1:0. It panics if it cannot listen, as httptest.NewServer does.
func New(opts Options) *Server {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&opts.AccountID, DefaultAccountID)
	def(&opts.ClientID, DefaultClientID)
	def(&opts.ClientSecret, DefaultClientSecret)
	def(&opts.SDKKey, DefaultSDKKey)
	def(&opts.SDKSecret, DefaultSDKSecret)
	def(&opts.WebhookSecret, DefaultWebhookSecret)
	def(&opts.PINParam, DefaultPINParam)
	defD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	defD(&opts.TokenTTL, DefaultTokenTTL)
	defD(&opts.CustomerWait, DefaultCustomerWait)
	defD(&opts.ReconnectWindow, DefaultReconnectWindow)
	defD(&opts.WebhookRetryDelay, DefaultWebhookRetry)
	defD(&opts.WebhookTimeout, DefaultWebhookTimeout)
	if opts.WebhookAttempts <= 0 {
		opts.WebhookAttempts = DefaultWebhookAttempts
	}
	if opts.WebhookQueue <= 0 {
		opts.WebhookQueue = DefaultWebhookQueue
	}
	if opts.MaxAgents <= 0 {
		opts.MaxAgents = DefaultMaxAgents
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "zoomtest"),
		tokens:   make(map[string]time.Time),
		faults:   make(map[Route]*Fault),
		requests: make(map[Route]int),
		live:     make(map[string]*session),
		byPIN:    make(map[string]*session),
		ended:    make(map[string]*session),
		changed:  make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.closing = s.ctx.Done()
	s.hooks = newHookSender(s)
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", s.route(RouteOAuth, s.serveToken))
	mux.HandleFunc("GET /v2/cobrowsesdk/live_sessions", s.route(RouteLiveSessions, s.authed(s.serveLiveSessions)))
	mux.HandleFunc("GET /v2/cobrowsesdk/past_sessions", s.route(RoutePastSessions, s.authed(s.servePastSessions)))
	mux.HandleFunc("GET /v2/cobrowsesdk/sessions/{id}", s.route(RouteSession, s.authed(s.serveSession)))
	mux.HandleFunc("GET /v2/cobrowsesdk/sessions/{id}/users", s.route(RouteSessionUsers, s.authed(s.serveSessionUsers)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "message": "No such route."})
	})
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the server's base URL, http://127.0.0.1:port: the OAuth base (token at URL + "/oauth/token").
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the REST API's base, URL + "/v2".
func (s *Server) APIURL() string { return s.srv.URL + "/v2" }

// Options returns the options in effect (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Close stops the server: hung requests are released, auto-end timers stopped (and any that is
// running waited for), queued webhooks discarded and the webhook sender waited for, then the HTTP
// server closed. Every goroutine the server started has ended when Close returns. Safe to call
// more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		for _, ss := range s.live {
			ss.stopTimers(s)
		}
		s.hooks.closeQueueLocked()
		s.mu.Unlock()
		s.cancel()
		s.timers.Wait()
		s.hooks.wait()
		s.srv.Close()
	})
}

// Route names a group of HTTP endpoints, for faults and counters.
type Route string

// The routes.
const (
	RouteAll          Route = ""              // every route (for SetFault)
	RouteOAuth        Route = "oauth"         // POST /oauth/token
	RouteLiveSessions Route = "live_sessions" // GET /v2/cobrowsesdk/live_sessions
	RoutePastSessions Route = "past_sessions" // GET /v2/cobrowsesdk/past_sessions
	RouteSession      Route = "session"       // GET /v2/cobrowsesdk/sessions/{id}
	RouteSessionUsers Route = "session_users" // GET /v2/cobrowsesdk/sessions/{id}/users
)

// Fault makes a route misbehave.
type Fault struct {
	// Status, when non-zero, answers the request with this status and a Zoom-style JSON error,
	// before anything else is checked.
	Status int
	// RetryAfter is sent as the Retry-After header with Status (meant for 429).
	RetryAfter string
	// Hang holds the request unanswered until the client gives up or the server closes.
	Hang bool
	// Times is how many requests the fault affects; zero: every request until ClearFaults.
	Times int
}

// SetFault makes route (RouteAll: every route) misbehave as f says. A route's own fault is used
// before RouteAll's.
func (s *Server) SetFault(route Route, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// Requests returns how many requests route received (RouteAll: every route), faulted ones
// included.
func (s *Server) Requests(route Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requestsLocked(route)
}

func (s *Server) requestsLocked(route Route) int {
	if route == RouteAll {
		n := 0
		for _, v := range s.requests {
			n += v
		}
		return n
	}
	return s.requests[route]
}

// WaitRequests waits until route (RouteAll: every route) has received at least n requests: a
// test that hangs a route learns that the request it sent has arrived.
func (s *Server) WaitRequests(ctx context.Context, route Route, n int) error {
	return s.waitFor(ctx, func() bool { return s.requestsLocked(route) >= n })
}

// route counts a request, applies the route's fault, then serves it.
func (s *Server) route(name Route, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[name]++
		s.notifyLocked()
		f := s.faults[name]
		if f == nil {
			f = s.faults[RouteAll]
		}
		var fault Fault
		if f != nil {
			fault = *f
			if f.Times > 0 {
				if f.Times--; f.Times == 0 {
					for k, v := range s.faults {
						if v == f {
							delete(s.faults, k)
						}
					}
				}
			}
		}
		s.mu.Unlock()
		switch {
		case fault.Hang:
			select {
			case <-r.Context().Done():
			case <-s.closing:
			}
			return
		case fault.Status != 0:
			if fault.RetryAfter != "" {
				w.Header().Set("Retry-After", fault.RetryAfter)
			}
			writeJSON(w, fault.Status, map[string]any{"code": fault.Status, "message": "Injected fault: " + http.StatusText(fault.Status)})
			return
		}
		h(w, r)
	}
}

// RevokeTokens forgets every access token: the next API call with any of them gets 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// TokenRequests returns how many access tokens the token endpoint issued.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReq
}

// serveToken is the Server-to-Server OAuth token endpoint.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	oauthErr := func(status int, reason, code string) {
		writeJSON(w, status, map[string]any{"reason": reason, "error": code})
	}
	if r.Method != http.MethodPost {
		oauthErr(http.StatusMethodNotAllowed, "Method not allowed", "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.opts.ClientID || secret != s.opts.ClientSecret {
		oauthErr(http.StatusUnauthorized, "Invalid client_id or client_secret", "invalid_client")
		return
	}
	q := r.URL.Query()
	if q.Get("grant_type") != "account_credentials" {
		oauthErr(http.StatusBadRequest, "Unsupported grant type", "unsupported_grant_type")
		return
	}
	if q.Get("account_id") != s.opts.AccountID {
		oauthErr(http.StatusBadRequest, "Invalid account_id", "invalid_request")
		return
	}
	tok := randomToken()
	s.mu.Lock()
	now := time.Now()
	for t, exp := range s.tokens { // forget expired tokens, so the map stays small
		if now.After(exp) {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = now.Add(s.opts.TokenTTL)
	s.tokenReq++
	s.mu.Unlock()
	secs := int64((s.opts.TokenTTL + time.Second - 1) / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "bearer",
		"expires_in":   secs,
		"scope":        "cobrowse_sdk:read:list_live_sessions:admin cobrowse_sdk:read:session:admin cobrowse_sdk:read:list_session_users:admin",
		"api_url":      s.srv.URL, // an extra field, as Zoom's reply may carry: clients must ignore what they do not know
	})
}

// authed checks the bearer token of an API call: unknown or expired is 401 (Zoom's code 124).
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		const prefix = "Bearer "
		auth := r.Header.Get("Authorization")
		tok := ""
		if len(auth) > len(prefix) && strings.EqualFold(auth[:len(prefix)], prefix) {
			tok = auth[len(prefix):]
		}
		s.mu.Lock()
		exp, ok := s.tokens[tok]
		s.mu.Unlock()
		switch {
		case !ok:
			writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 124, "message": "Invalid access token."})
		case time.Now().After(exp):
			writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 124, "message": "Access token is expired."})
		default:
			h(w, r)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomToken() string {
	return "zt." + rand.Text() + rand.Text()
}

// notifyLocked wakes the waiters of session changes. s.mu is held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor waits until cond (called with s.mu held) holds, ctx ends or the server closes.
func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		case <-ch:
		}
	}
}
