package cec

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

// joinMany runs n Joins at once and fails the test on any error. It returns the rooms.
func joinMany(t *testing.T, c *Connector, n int, prefix string) []string {
	t.Helper()
	ctx := ctxFor(t)
	rooms := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := c.Join(ctx, trigger(prefix+"-"+strconv.Itoa(i)))
			errs[i] = err
			if err == nil {
				rooms[i] = s.Handle().SessionID
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Join %d: %v", i, err)
		}
	}
	return rooms
}

// TestTokenSharedByConcurrentJoins: 50 Joins at once, with the first token request held until
// the 49 others wait for it, cause exactly one tokenByAkSk; every session gets its own room.
func TestTokenSharedByConcurrentJoins(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	g := newGate(t)
	cfg := config(s, false)
	cfg.RoundTripper = g
	c := newConnector(t, cfg)
	const n = 50
	waiting := make(chan struct{}, n)
	c.api.tokens.onWait = func() { waiting <- struct{}{} }
	started, open := g.hold(PathToken)

	done := make(chan []string)
	go func() { done <- joinMany(t, c, n, "i-many") }()
	<-started
	for range n - 1 {
		select {
		case <-waiting:
		case <-time.After(wait):
			t.Fatal("the other Joins did not wait for the token request in flight")
		}
	}
	close(open)
	rooms := <-done
	if got := s.Requests(cectest.RouteToken); got != 1 {
		t.Fatalf("%d tokenByAkSk requests for %d concurrent Joins, want 1", got, n)
	}
	if got := s.Requests(cectest.RouteConnectionInfo); got != 2*n {
		t.Fatalf("%d getConnectionInfo requests, want %d", got, 2*n)
	}
	seen := map[string]bool{}
	for _, r := range rooms {
		if seen[r] {
			t.Fatalf("room %q made twice", r)
		}
		seen[r] = true
	}
}

// TestTokenRenewedBeforeExpiry: the token is renewed once 80 % of its lifetime passed, or a
// minute before it expires when that is later (but never later than half its lifetime); the
// lifetime is what CEC says (Expires) when shorter than what was asked.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		ttl   time.Duration // cectest's cap; 0: as asked (3600 s)
		renew time.Duration // when the cached token must be renewed
	}{
		{0, 2880 * time.Second},
		{600 * time.Second, 480 * time.Second},
		{120 * time.Second, 60 * time.Second},
		{60 * time.Second, 30 * time.Second},
	} {
		t.Run(tc.renew.String(), func(t *testing.T) {
			s := newCEC(t, cectest.Options{TokenTTL: tc.ttl})
			clk := newClock()
			cfg := config(s, false)
			cfg.Now = clk.now
			c := newConnector(t, cfg)
			join(t, c, trigger("i-1"))
			clk.add(tc.renew - time.Second)
			join(t, c, trigger("i-2"))
			if got := s.Requests(cectest.RouteToken); got != 1 {
				t.Fatalf("%d token requests a second before the renewal point, want 1", got)
			}
			clk.add(2 * time.Second)
			join(t, c, trigger("i-3"))
			if got := s.Requests(cectest.RouteToken); got != 2 {
				t.Fatalf("%d token requests after the renewal point, want 2", got)
			}
		})
	}
}

// TestTokenRenewalUnderConcurrency: past the renewal point, 50 Joins at once renew once.
func TestTokenRenewalUnderConcurrency(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, false)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	join(t, c, trigger("i-0"))
	clk.add(3000 * time.Second)
	joinMany(t, c, 50, "i-renew")
	if got := s.Requests(cectest.RouteToken); got != 2 {
		t.Fatalf("%d token requests, want 2 (the first, one renewal)", got)
	}
	// Past the token's expiry as the connector counts it, the next call renews too.
	clk.add(time.Hour)
	join(t, c, trigger("i-late"))
	if got := s.Requests(cectest.RouteToken); got != 3 {
		t.Fatalf("%d token requests after the expiry, want 3", got)
	}
}

// TestTokenRenewedOnceOn401: CEC expired the tokens before the connector expected it: the 401 of
// getConnectionInfo renews once and the call is sent again; a burst of such 401s renews once.
func TestTokenRenewedOnceOn401(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	c := newConnector(t, config(s, false))
	join(t, c, trigger("i-1"))
	s.ExpireTokens()
	join(t, c, trigger("i-2"))
	if got := s.Requests(cectest.RouteToken); got != 2 {
		t.Fatalf("%d token requests, want 2", got)
	}
	// first join 2, second join 1 refused + 2
	if got := s.Requests(cectest.RouteConnectionInfo); got != 5 {
		t.Fatalf("%d getConnectionInfo requests, want 5", got)
	}
	s.RevokeTokens()
	joinMany(t, c, 30, "i-burst")
	if got := s.Requests(cectest.RouteToken); got != 3 {
		t.Fatalf("%d token requests after a burst of 401s, want 3 (one renewal)", got)
	}
}

// TestToken401AfterRenewal: a 401 to the renewed token too is a refusal, with CEC's words.
func TestToken401AfterRenewal(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	c := newConnector(t, config(s, false))
	s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Status: http.StatusUnauthorized, ErrorReason: "token invalid", Times: 2})
	_, err := c.Join(ctxFor(t), trigger("i-1"))
	se := wantServerError(t, err, connector.ErrRefused, opJoin)
	if !strings.Contains(se.Reason, "getConnectionInfo") || !strings.Contains(se.Reason, "HTTP 401") || !strings.Contains(se.Reason, "token invalid") {
		t.Fatalf("reason %q: want the call, the status and CEC's words", se.Reason)
	}
	if got := s.Requests(cectest.RouteToken); got != 2 {
		t.Fatalf("%d token requests, want 2 (one renewal)", got)
	}
}

// TestTokenRenewalFailure: while the cached token is still valid a failed renewal hands it out
// and waits a few seconds before trying again; once it is about to expire the error shows.
func TestTokenRenewalFailure(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	clk := newClock()
	cfg := config(s, false)
	cfg.Now = clk.now
	c := newConnector(t, cfg)
	join(t, c, trigger("i-1"))
	s.SetFault(cectest.RouteToken, cectest.Fault{Status: http.StatusServiceUnavailable})
	clk.add(3000 * time.Second)
	join(t, c, trigger("i-2")) // the renewal fails; the old token serves
	join(t, c, trigger("i-3")) // no new try yet
	if got := s.Requests(cectest.RouteToken); got != 2 {
		t.Fatalf("%d token requests, want 2 (no retry within %s)", got, renewRetry)
	}
	clk.add(renewRetry)
	join(t, c, trigger("i-4"))
	if got := s.Requests(cectest.RouteToken); got != 3 {
		t.Fatalf("%d token requests, want 3 (a retry after %s)", got, renewRetry)
	}
	clk.add(600*time.Second - usableFor) // within usableFor of the expiry
	_, err := c.Join(ctxFor(t), trigger("i-5"))
	se := wantServerError(t, err, connector.ErrUnavailable, opJoin)
	if !strings.HasPrefix(se.Reason, opToken) {
		t.Fatalf("reason %q: want the token call named", se.Reason)
	}
	s.ClearFaults()
	join(t, c, trigger("i-6"))
}

// TestTokenLeaderGivesUp: the caller whose request is in flight gives up (its context ends); a
// caller waiting for it asks again and gets a token.
func TestTokenLeaderGivesUp(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	g := newGate(t)
	cfg := config(s, false)
	cfg.RoundTripper = g
	c := newConnector(t, cfg)
	waiting := make(chan struct{}, 1)
	c.api.tokens.onWait = func() { waiting <- struct{}{} }
	started, open := g.hold(PathToken)
	defer close(open)
	lctx, cancel := context.WithCancel(ctxFor(t))
	leader := make(chan error, 1)
	go func() { _, err := c.api.tokens.token(lctx); leader <- err }()
	<-started
	follower := make(chan error, 1)
	go func() { _, err := c.api.tokens.token(ctxFor(t)); follower <- err }()
	<-waiting
	cancel()
	if err := <-leader; err == nil {
		t.Fatal("the leader got a token after giving up")
	}
	if err := <-follower; err != nil {
		t.Fatalf("the waiting caller: %v, want a token of its own request", err)
	}
	if got := s.Requests(cectest.RouteToken); got != 1 {
		t.Fatalf("%d token requests reached CEC, want 1 (the held one never did)", got)
	}
}

// headerCapture records the headers of every request.
type headerCapture struct {
	rt  http.RoundTripper
	mu  sync.Mutex
	got map[string][]http.Header // by path
}

func (h *headerCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.got[r.URL.Path] = append(h.got[r.URL.Path], r.Header.Clone())
	h.mu.Unlock()
	return h.rt.RoundTrip(r)
}

// TestRequestHeaders: X-Token-Expire is the configured lifetime in seconds; every API Fabric call
// carries x-app-key, Authorization: Bearer and X-TenantSpaceID (cectest refuses a call without).
func TestRequestHeaders(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &headerCapture{rt: tr, got: map[string][]http.Header{}}
	cfg := config(s, true)
	cfg.RoundTripper = hc
	cfg.TokenExpire = 600 * time.Second
	c := newConnector(t, cfg)
	sess := join(t, c, trigger("i-1"))
	if _, err := sess.Stop(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	tok := hc.got[PathToken]
	if len(tok) != 1 || tok[0].Get("X-Token-Expire") != "600" || !strings.HasPrefix(tok[0].Get("Content-Type"), "application/json") {
		t.Fatalf("token request headers %v: want X-Token-Expire 600 and JSON", tok)
	}
	o := s.Options()
	for _, p := range []string{PathConnectionInfo, cectest.PathRelease} {
		for _, h := range hc.got[p] {
			if h.Get("x-app-key") != o.AppKey || h.Get("X-TenantSpaceID") != o.TenantSpaceID || !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
				t.Fatalf("%s headers lack x-app-key, X-TenantSpaceID or the bearer token", p)
			}
		}
	}
	if len(hc.got[PathConnectionInfo]) != 2 || len(hc.got[cectest.PathRelease]) != 1 {
		t.Fatalf("calls %d getConnectionInfo, %d release; want 2 and 1", len(hc.got[PathConnectionInfo]), len(hc.got[cectest.PathRelease]))
	}
}
