package cometd_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// seen is what one HTTP request to the server carried.
type seen struct {
	transport string // websocket: the upgrade
	origin    string
	extra     string
	sticky    string // the seeded gcbSessionServer cookie
	browser   string // BAYEUX_BROWSER
	clientID  string // of the first message with one
}

func recordRequests(srv *bayeuxtest.Server, upgradesOnly bool) *log[seen] {
	l := newLog[seen]()
	srv.OnBody = func(c *bayeuxtest.Call) {
		if c.Transport == cometd.TransportWebSocket && c.Body != nil {
			return // a frame, not a request
		}
		if upgradesOnly && c.Transport != cometd.TransportWebSocket {
			return
		}
		s := seen{transport: c.Transport, origin: c.HTTP.Header.Get("Origin"), extra: c.HTTP.Header.Get("X-Extra")}
		if ck, err := c.HTTP.Cookie("gcbSessionServer"); err == nil {
			s.sticky = ck.Value
		}
		if ck, err := c.HTTP.Cookie(bayeuxtest.BrowserCookie); err == nil {
			s.browser = ck.Value
		}
		for _, m := range c.Body {
			if m.ClientID != "" {
				s.clientID = m.ClientID
				break
			}
		}
		l.add(s)
	}
	return l
}

// TestHeadersAndCookiesOnEveryRequest: Options.Header and the seeded cookies go on every
// long-polling POST and on the websocket upgrade; the BAYEUX_BROWSER cookie set by the handshake
// reply goes on every later POST.
func TestHeadersAndCookiesOnEveryRequest(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			reqs := recordRequests(srv, false)
			c, rec := newClient(t, serve(t, srv), tr, func(o *cometd.Options) {
				o.Header = http.Header{"Origin": {"https://agent.example"}, "X-Extra": {"1"}}
				o.Cookies = []*http.Cookie{{Name: "gcbSessionServer", Value: "node-7"}}
			})
			start(t, c, rec)
			if err := c.Subscribe(ctxT(t), "/a"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctxT(t), "/a", 1); err != nil {
				t.Fatal(err)
			}
			if err := c.Disconnect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			all := reqs.all()
			if tr == cometd.TransportWebSocket && (len(all) != 1 || all[0].transport != tr) {
				t.Fatalf("requests %+v, want one upgrade", all)
			}
			if tr == cometd.TransportLongPolling && len(all) < 5 {
				t.Fatalf("only %d requests", len(all))
			}
			for i, s := range all {
				if s.origin != "https://agent.example" || s.extra != "1" || s.sticky != "node-7" {
					t.Fatalf("request %d carried %+v", i, s)
				}
				if tr == cometd.TransportLongPolling && i > 0 && s.browser == "" {
					t.Fatalf("request %d without the BAYEUX_BROWSER cookie: %+v", i, s)
				}
			}
		})
	}
}

// TestOneCookieJarPerClient: two clients keep their own jars, on the client's own connections
// and when they share one RoundTripper: each gets and sends its own BAYEUX_BROWSER cookie.
func TestOneCookieJarPerClient(t *testing.T) {
	for _, route := range []string{"own", "round-tripper"} {
		t.Run(route, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 50 * time.Millisecond, BrowserCookie: true}
			reqs := recordRequests(srv, false)
			url := serve(t, srv)
			shared := &http.Transport{}
			t.Cleanup(shared.CloseIdleConnections)
			shareRT := func(o *cometd.Options) {
				if route == "round-tripper" {
					o.RoundTripper = shared
				}
			}
			a, recA := newClient(t, url, cometd.TransportLongPolling, shareRT)
			start(t, a, recA)
			b, recB := newClient(t, url, cometd.TransportLongPolling, shareRT)
			start(t, b, recB)
			for _, c := range []*cometd.Client{a, b} {
				if err := c.Subscribe(ctxT(t), "/a"); err != nil {
					t.Fatal(err)
				}
			}
			browsers := map[string]map[string]bool{}
			for _, s := range reqs.all() {
				if s.clientID == "" {
					continue
				}
				if browsers[s.clientID] == nil {
					browsers[s.clientID] = map[string]bool{}
				}
				browsers[s.clientID][s.browser] = true
			}
			ba, bb := browsers[a.ClientID()], browsers[b.ClientID()]
			if len(ba) != 1 || len(bb) != 1 {
				t.Fatalf("browser cookies per client: %v / %v, want exactly one each", ba, bb)
			}
			for k := range ba {
				if k == "" || bb[k] {
					t.Fatalf("clients share BAYEUX_BROWSER %q", k)
				}
			}
		})
	}
}
