package cectest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// The defaults of Options.
const (
	DefaultAppKey        = "cectest-app-key"
	DefaultAppSecret     = "cectest-app-secret"
	DefaultTenantSpaceID = "cectest-tenant-space"
	// DefaultMaxRoomID is the longest roomId getConnectionInfo accepts, in bytes. CEC documents
	// no limit; 64 is the longest id the CEC multimedia library documents (its record ids).
	DefaultMaxRoomID = 64
	// DefaultWSSURL is the internal WebSocket address handed out as wssUrl: one no page can reach.
	DefaultWSSURL = "wss://cec-internal.invalid:8443/ws/cobrowse/1"
)

// The paths the server serves, as CEC documents them.
const (
	PathToken          = "/apigovernance/api/oauth/tokenByAkSk"
	PathConnectionInfo = "/apiaccess/api/cobrowse/getConnectionInfo"
	PathRelease        = "/service-cloud/rest/webadapter/v1/connectionInfo/releaseConnection"
)

// MaxTokenExpire is the longest lifetime tokenByAkSk grants, in seconds: X-Token-Expire above it
// is refused.
const MaxTokenExpire = 3600

// Route names one of the server's operations, for faults and request counts.
type Route string

// The routes.
const (
	RouteToken          Route = "tokenByAkSk"
	RouteConnectionInfo Route = "getConnectionInfo"
	RouteRelease        Route = "releaseConnection"
	// RouteAll applies a fault to every route (SetFault only).
	RouteAll Route = "*"
)

// Role is a co-browse role as getConnectionInfo names it.
type Role string

// The roles.
const (
	RoleRecorder Role = "recorder" // the customer's page, whose DOM is shared
	RoleReplayer Role = "replayer" // the agent's view
)

// Options configure a Server. The zero value works: default credentials, tokens as long as asked.
type Options struct {
	// AppKey and AppSecret are the API Fabric app's credentials tokenByAkSk checks; AppKey is
	// also the x-app-key every other call must carry.
	AppKey, AppSecret string
	// TenantSpaceID is the tenant space the X-TenantSpaceID header must name.
	TenantSpaceID string
	// TokenTTL caps the access tokens' lifetime: a token lives what X-Token-Expire asked, at
	// most TokenTTL when set. Expires in the reply says what it got.
	TokenTTL time.Duration
	// MaxRoomID is the longest roomId accepted, in bytes; a longer one is answered success:false.
	// Default DefaultMaxRoomID.
	MaxRoomID int
	// WSSURLOut is the external WebSocket address handed out as wssUrlOut, the one pages must
	// connect to. Default "wss://<server host>/ws/cobrowse/1" (nothing listens for WebSockets
	// there: the pages are played with Connect).
	WSSURLOut string
	// WSSURL is the internal address handed out as wssUrl. Default DefaultWSSURL.
	WSSURL string
	// Now is the server's clock, for token expiry. Default time.Now.
	Now func() time.Time
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
}

// Fault is a failure a route answers with instead of doing its work, for the next Times requests
// (0: until ClearFaults). Exactly one of Status, Refuse and Hang is meant to be set; Hang wins over
// Status, Status over Refuse.
type Fault struct {
	// Status answers this HTTP status with the route's JSON error body (ErrorCode and ErrorReason
	// when set): 401, 429 and 5xx are the useful ones.
	Status int
	// Refuse answers 200 with the route's business failure: getConnectionInfo success:false,
	// releaseConnection a retCode other than "0", tokenByAkSk an error body without a token.
	Refuse bool
	// ErrorCode and ErrorReason are the failure's code and words. Defaults per route.
	ErrorCode   string
	ErrorReason string
	// Hang answers nothing until the client gives up or the server closes.
	Hang bool
	// Times is how many requests the fault applies to; 0 means every request until ClearFaults.
	Times int
}

// Server is an in-process CEC: API Fabric's tokenByAkSk and getConnectionInfo, and the web
// adapter's releaseConnection, on 127.0.0.1. Tests play the pages with Connect and Disconnect.
// Close stops it.
type Server struct {
	opts Options
	log  *slog.Logger
	srv  *httptest.Server

	closing chan struct{} // closed by Close: releases hung requests and waits
	once    sync.Once

	mu           sync.Mutex // guards everything below
	tokens       map[string]*token
	issuedTokens int
	faults       map[Route]*Fault
	requests     map[Route]int
	rooms        map[string]*room
	order        []string      // room ids in creation order
	changed      chan struct{} // closed and replaced on every change a wait may be waiting for
}

type token struct {
	appKey  string
	expires time.Time
}

// New starts a Server on 127.0.0.1:0. It panics if it cannot listen, as httptest.NewServer does.
func New(opts Options) *Server {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&opts.AppKey, DefaultAppKey)
	def(&opts.AppSecret, DefaultAppSecret)
	def(&opts.TenantSpaceID, DefaultTenantSpaceID)
	def(&opts.WSSURL, DefaultWSSURL)
	if opts.MaxRoomID <= 0 {
		opts.MaxRoomID = DefaultMaxRoomID
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "cectest"),
		closing:  make(chan struct{}),
		tokens:   make(map[string]*token),
		faults:   make(map[Route]*Fault),
		requests: make(map[Route]int),
		rooms:    make(map[string]*room),
		changed:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathToken, s.route(RouteToken, s.serveToken))
	mux.HandleFunc(PathConnectionInfo, s.route(RouteConnectionInfo, s.serveConnectionInfo))
	mux.HandleFunc(PathRelease, s.route(RouteRelease, s.serveRelease))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"success": false, "errorCode": 404, "errorReason": "no such resource"})
	})
	s.srv = httptest.NewServer(mux)
	if s.opts.WSSURLOut == "" {
		s.opts.WSSURLOut = "wss://" + s.srv.Listener.Addr().String() + "/ws/cobrowse/1"
	}
	return s
}

// URL is the server's base URL, http://127.0.0.1:port: the CEC domain of a client's config.
func (s *Server) URL() string { return s.srv.URL }

// ReleaseURL is the full URL of releaseConnection: URL + PathRelease.
func (s *Server) ReleaseURL() string { return s.srv.URL + PathRelease }

// Options returns the options in effect (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Close releases hung requests and closes the server; every goroutine it started has ended when
// Close returns. Safe to call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.srv.Close()
	})
}

// SetFault makes route (or every route, RouteAll) answer f instead of doing its work. A fault is
// applied before any check of the request, after it is counted.
func (s *Server) SetFault(route Route, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	routes := []Route{route}
	if route == RouteAll {
		routes = []Route{RouteToken, RouteConnectionInfo, RouteRelease}
	}
	for _, r := range routes {
		c := f
		s.faults[r] = &c
	}
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// Requests counts the requests route received, faulted and refused ones included.
func (s *Server) Requests(route Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// WaitRequests waits until route has received at least n requests (a test that hangs a route
// learns so that its request arrived), or ctx ends.
func (s *Server) WaitRequests(ctx context.Context, route Route, n int) error {
	return s.waitFor(ctx, func() bool { return s.requests[route] >= n },
		func() string { return fmt.Sprintf("%d %s requests, want %d", s.requests[route], route, n) })
}

// ExpireTokens makes every access token issued so far expired: the next call with one is
// answered 401 "token expired". Tokens issued later are not affected.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opts.Now().Add(-time.Second)
	for _, t := range s.tokens {
		t.expires = past
	}
}

// RevokeTokens forgets every access token issued so far: the next call with one is answered 401
// "invalid token".
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// TokenValid reports whether tok is an access token the server issued and that has not expired.
func (s *Server) TokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	return ok && s.opts.Now().Before(t.expires)
}

// waitFor waits until cond (called with s.mu held) holds, or ctx ends; the error then says what
// was seen.
func (s *Server) waitFor(ctx context.Context, cond func() bool, seen func() string) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			msg := seen()
			s.mu.Unlock()
			return fmt.Errorf("cectest: %s: %w", msg, ctx.Err())
		case <-s.closing:
			return errors.New("cectest: server closed")
		}
	}
}

// changedLocked wakes the waits. s.mu is held.
func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// route counts a request, applies the route's fault if any, and otherwise serves it.
func (s *Server) route(r Route, serve http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.requests[r]++
		var fault *Fault
		if f := s.faults[r]; f != nil {
			c := *f
			fault = &c
			if f.Times > 0 {
				if f.Times--; f.Times == 0 {
					delete(s.faults, r)
				}
			}
		}
		s.changedLocked()
		s.mu.Unlock()
		if fault == nil {
			serve(w, req)
			return
		}
		s.log.Debug("fault", "route", r, "status", fault.Status, "refuse", fault.Refuse, "hang", fault.Hang)
		switch {
		case fault.Hang:
			select {
			case <-req.Context().Done():
			case <-s.closing:
			}
		case fault.Status != 0:
			writeError(w, r, fault.Status, fault.ErrorCode, fault.ErrorReason)
		default:
			writeError(w, r, http.StatusOK, fault.ErrorCode, fault.ErrorReason)
		}
	}
}

// writeError writes route's error body. tokenByAkSk answers {"error_code","error_msg"} (the API
// gateway's form; CEC documents none), getConnectionInfo {"success":false,"data":null,
// "errorCode","errorReason"} as documented, releaseConnection {"retCode","retMsg"} as documented.
func writeError(w http.ResponseWriter, r Route, status int, code, reason string) {
	if code == "" {
		code = fmt.Sprint(status)
		if status == http.StatusOK {
			code = "1"
		}
	}
	if reason == "" {
		reason = http.StatusText(status)
		if status == http.StatusOK {
			reason = "refused by cectest"
		}
	}
	switch r {
	case RouteToken:
		writeJSON(w, status, map[string]any{"error_code": code, "error_msg": reason})
	case RouteRelease:
		writeJSON(w, status, map[string]any{"retCode": code, "retMsg": reason})
	default:
		// errorCode is documented as a Number; a code that is not one is sent as a string.
		var c any = code
		if json.Valid([]byte(code)) && strings.Trim(code, "0123456789-") == "" {
			c = json.RawMessage(code)
		}
		writeJSON(w, status, map[string]any{"success": false, "data": nil, "errorCode": c, "errorReason": reason})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// randomString is n random bytes in standard base64 with padding: it holds '+', '/' and '=',
// so that a client that does not treat it as opaque shows it.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.StdEncoding.EncodeToString(b)
}

// uuid is a random version 4 UUID: the room id CEC makes when none is given.
func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
