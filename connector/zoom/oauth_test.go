package zoom

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

const wait = 5 * time.Second // bound on waiting for something that must happen

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func newZoom(t *testing.T, opts zoomtest.Options) *zoomtest.Server {
	t.Helper()
	z := zoomtest.New(opts)
	t.Cleanup(z.Close)
	return z
}

// clock is a settable clock for the token source and the API client.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// transport is a RoundTripper of its own per test, closed at the end (goleak sees no idle
// connection goroutines), that can hold requests at a gate.
type transport struct {
	rt      *http.Transport
	mu      sync.Mutex
	gate    chan struct{} // when set, requests wait for it to close
	started chan struct{} // when set, a request signals it before waiting at the gate
}

func newTransport(t *testing.T) *transport {
	tr := &transport{rt: &http.Transport{}}
	t.Cleanup(tr.rt.CloseIdleConnections)
	return tr
}

func (tr *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	gate, started := tr.gate, tr.started
	tr.gate, tr.started = nil, nil // only the next request is held
	tr.mu.Unlock()
	if started != nil {
		close(started)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return tr.rt.RoundTrip(r)
}

// hold makes the next request signal started and wait for gate.
func (tr *transport) hold() (started, gate chan struct{}) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.started, tr.gate = make(chan struct{}), make(chan struct{})
	return tr.started, tr.gate
}

func newTokenSource(t *testing.T, z *zoomtest.Server, mod func(*OAuthConfig)) (*TokenSource, *clock) {
	t.Helper()
	o := z.Options()
	cfg := OAuthConfig{BaseURL: z.URL(), AccountID: o.AccountID, ClientID: o.ClientID, ClientSecret: Secret(o.ClientSecret),
		RoundTripper: newTransport(t)}
	if mod != nil {
		mod(&cfg)
	}
	ts, err := NewTokenSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	ts.now = c.now
	return ts, c
}

func wantServerError(t *testing.T, err error, kind error, op, node string) *connector.ServerError {
	t.Helper()
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || !errors.Is(err, kind) || se.Op != op || se.Node != node {
		t.Fatalf("error %v (%T), want a *connector.ServerError %q on %s wrapping %v", err, err, op, node, kind)
	}
	return se
}

func TestTokenSourceCaches(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ts, _ := newTokenSource(t, z, nil)
	ctx := ctxFor(t)
	a, err := ts.Token(ctx)
	if err != nil || a == "" {
		t.Fatalf("Token = %q, %v", a, err)
	}
	b, err := ts.Token(ctx)
	if err != nil || b != a || z.TokenRequests() != 1 {
		t.Fatalf("second Token = %q, %v after %d requests; want the cached %q", b, err, z.TokenRequests(), a)
	}
}

// TestTokenSourceSingleFlight: many callers at once, one request; the waiters get the leader's token.
func TestTokenSourceSingleFlight(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ts, _ := newTokenSource(t, z, nil)
	tr := ts.cfg.RoundTripper.(*transport)
	started, gate := tr.hold()
	const n = 20
	waiting := make(chan struct{}, n)
	ts.c.onWait = func() { waiting <- struct{}{} }
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { toks[i], errs[i] = ts.Token(ctx) })
	}
	<-started
	for range n - 1 {
		<-waiting
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d: %q, %v; caller 0: %q", i, toks[i], errs[i], toks[0])
		}
	}
	if r := z.Requests(zoomtest.RouteOAuth); r != 1 {
		t.Fatalf("%d token requests, want 1", r)
	}
}

func TestTokenSourceRenewsBeforeExpiry(t *testing.T) {
	z := newZoom(t, zoomtest.Options{TokenTTL: time.Hour})
	ts, clk := newTokenSource(t, z, func(c *OAuthConfig) { c.RenewBefore = 5 * time.Minute })
	ctx := ctxFor(t)
	first, _ := ts.Token(ctx)
	clk.add(54 * time.Minute)
	if tok, _ := ts.Token(ctx); tok != first || z.TokenRequests() != 1 {
		t.Fatal("renewed too early")
	}
	clk.add(time.Minute + time.Second)
	second, err := ts.Token(ctx)
	if err != nil || second == first || z.TokenRequests() != 2 {
		t.Fatalf("not renewed within the margin: %v, %d requests", err, z.TokenRequests())
	}
	// A margin longer than half the lifetime is cut to half.
	ts2, clk2 := newTokenSource(t, z, func(c *OAuthConfig) { c.RenewBefore = 50 * time.Minute })
	tok, _ := ts2.Token(ctx)
	clk2.add(29 * time.Minute)
	if again, _ := ts2.Token(ctx); again != tok {
		t.Fatal("a margin over half the lifetime renewed before half of it")
	}
	clk2.add(2 * time.Minute)
	if again, _ := ts2.Token(ctx); again == tok {
		t.Fatal("not renewed after half the lifetime")
	}
}

// TestTokenSourceRenewalFailure: while the cached token is still valid a failed renewal hands it
// out, and waits a few seconds before trying again; once it is about to expire the error shows.
func TestTokenSourceRenewalFailure(t *testing.T) {
	z := newZoom(t, zoomtest.Options{TokenTTL: time.Hour})
	ts, clk := newTokenSource(t, z, nil)
	ctx := ctxFor(t)
	old, _ := ts.Token(ctx)
	z.SetFault(zoomtest.RouteOAuth, zoomtest.Fault{Status: http.StatusServiceUnavailable})
	clk.add(57 * time.Minute)
	if tok, err := ts.Token(ctx); tok != old || err != nil {
		t.Fatalf("Token during a failed renewal = %q, %v; want the old token", tok, err)
	}
	if tok, err := ts.Token(ctx); tok != old || err != nil || z.Requests(zoomtest.RouteOAuth) != 2 {
		t.Fatalf("Token right after a failed renewal = %q, %v after %d requests; want the old token and no new request",
			tok, err, z.Requests(zoomtest.RouteOAuth))
	}
	clk.add(renewRetry)
	_, _ = ts.Token(ctx)
	if r := z.Requests(zoomtest.RouteOAuth); r != 3 {
		t.Fatalf("%d requests, want a retry after renewRetry", r)
	}
	clk.add(3*time.Minute - renewRetry - usableFor + time.Second)
	_, err := ts.Token(ctx)
	wantServerError(t, err, connector.ErrUnavailable, opOAuth, z.URL())
	z.ClearFaults()
	if tok, err := ts.Token(ctx); err != nil || tok == old {
		t.Fatalf("after the fault: %q, %v", tok, err)
	}
}

func TestTokenSourceInvalidate(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ts, _ := newTokenSource(t, z, nil)
	ctx := ctxFor(t)
	a, _ := ts.Token(ctx)
	ts.Invalidate("some-other-token")
	if b, _ := ts.Token(ctx); b != a {
		t.Fatal("invalidating another token dropped the cached one")
	}
	ts.Invalidate(a)
	b, _ := ts.Token(ctx)
	if b == a || z.TokenRequests() != 2 {
		t.Fatal("Invalidate did not make Token ask again")
	}
	ts.Invalidate(a) // a late 401 with the old token: nothing happens
	if c, _ := ts.Token(ctx); c != b || z.TokenRequests() != 2 {
		t.Fatal("a late Invalidate of a replaced token renewed again")
	}
}

// TestTokenSourceLeaderGivesUp: the caller whose request is in flight gives up; a waiting caller
// asks again and gets a token.
func TestTokenSourceLeaderGivesUp(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ts, _ := newTokenSource(t, z, nil)
	tr := ts.cfg.RoundTripper.(*transport)
	started, gate := tr.hold()
	defer close(gate)
	waiting := make(chan struct{}, 1)
	ts.c.onWait = func() { waiting <- struct{}{} }

	leaderCtx, cancelLeader := context.WithCancel(ctxFor(t))
	leaderErr := make(chan error, 1)
	go func() { _, err := ts.Token(leaderCtx); leaderErr <- err }()
	<-started
	var tok string
	var err error
	done := make(chan struct{})
	go func() { tok, err = ts.Token(ctxFor(t)); close(done) }()
	<-waiting
	cancelLeader()
	if e := <-leaderErr; !errors.Is(e, context.Canceled) || !errors.Is(e, connector.ErrUnavailable) {
		t.Fatalf("leader: %v", e)
	}
	<-done
	if err != nil || tok == "" || z.TokenRequests() != 1 {
		t.Fatalf("waiter: %q, %v, %d tokens issued", tok, err, z.TokenRequests())
	}
}

func TestTokenSourceErrors(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ctx := ctxFor(t)
	const wrong = "WRONG-CLIENT-SECRET"
	for _, tc := range []struct {
		name   string
		mod    func(*OAuthConfig)
		fault  *zoomtest.Fault
		kind   error
		reason string
	}{
		{"bad secret", func(c *OAuthConfig) { c.ClientSecret = wrong }, nil, connector.ErrRefused, "Invalid client_id or client_secret (invalid_client)"},
		{"bad client", func(c *OAuthConfig) { c.ClientID = "nobody" }, nil, connector.ErrRefused, "HTTP 401"},
		{"bad account", func(c *OAuthConfig) { c.AccountID = "other" }, nil, connector.ErrRefused, "HTTP 400: Invalid account_id"},
		{"429", nil, &zoomtest.Fault{Status: 429, Times: 1}, connector.ErrUnavailable, "HTTP 429"},
		{"500", nil, &zoomtest.Fault{Status: 500, Times: 1}, connector.ErrUnavailable, "HTTP 500"},
		{"hang", func(c *OAuthConfig) { c.RequestTimeout = 50 * time.Millisecond }, &zoomtest.Fault{Hang: true, Times: 1}, connector.ErrUnavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				z.SetFault(zoomtest.RouteOAuth, *tc.fault)
			}
			ts, _ := newTokenSource(t, z, tc.mod)
			tok, err := ts.Token(ctx)
			se := wantServerError(t, err, tc.kind, opOAuth, z.URL())
			if tok != "" || !strings.Contains(se.Reason, tc.reason) {
				t.Fatalf("Token = %q, %v; want reason %q", tok, err, tc.reason)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), z.Options().ClientSecret) {
				t.Fatalf("the error shows the client secret: %v", err)
			}
		})
	}
	t.Run("network", func(t *testing.T) {
		dead := zoomtest.New(zoomtest.Options{})
		dead.Close()
		ts, _ := newTokenSource(t, dead, nil)
		_, err := ts.Token(ctx)
		wantServerError(t, err, connector.ErrUnavailable, opOAuth, dead.URL())
	})
}

func TestTokenSourceHidesSecrets(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	var logs strings.Builder
	ts, _ := newTokenSource(t, z, func(c *OAuthConfig) { c.Logger = newTextLogger(&logs) })
	tok, err := ts.Token(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	assertHidden(t, []string{z.Options().ClientSecret, tok}, ts, *ts, ts.cfg, &ts.cfg)
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), z.Options().ClientSecret) {
		t.Fatalf("logs show a secret or the token:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), connector.MaskToken(tok)) {
		t.Fatalf("the renewal is not logged with the masked token:\n%s", logs.String())
	}
}

func TestNewTokenSourceChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  OAuthConfig
		want string
	}{
		{OAuthConfig{ClientID: "c", ClientSecret: "s"}, "AccountID"},
		{OAuthConfig{AccountID: "a", ClientSecret: "s"}, "ClientID"},
		{OAuthConfig{AccountID: "a", ClientID: "c"}, "ClientSecret"},
		{OAuthConfig{AccountID: "a", ClientID: "c:d", ClientSecret: "s"}, "':'"},
		{OAuthConfig{AccountID: "a", ClientID: "c", ClientSecret: "s", BaseURL: "https://u:p@zoom.us"}, "credentials"},
		{OAuthConfig{AccountID: "a", ClientID: "c", ClientSecret: "s", BaseURL: "ftp://zoom.us"}, "scheme"},
		{OAuthConfig{AccountID: "a", ClientID: "c", ClientSecret: "s", RenewBefore: -1}, "RenewBefore"},
	} {
		if _, err := NewTokenSource(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewTokenSource(%v) = %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
	ts, err := NewTokenSource(OAuthConfig{AccountID: "a b", ClientID: "c", ClientSecret: "s"})
	if err != nil || ts.tokURL != "https://zoom.us/oauth/token?account_id=a+b&grant_type=account_credentials" {
		t.Fatalf("%v %q", err, ts.tokURL)
	}
}
