package zoom

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/connectortest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// TestConformance runs the vendor-neutral conformance suite against zoomtest.
//
// Zoom's events come as signals and its end happens in the pages, so the harness plays what the
// daemon's other parts do around the connector:
//
//   - the webhook router: zoomtest posts its signed webhooks to an httptest server, which verifies
//     and decodes them (Webhook.Receive), turns each into a signal (SignalOf) and hands it to the
//     sessions the "controller" holds for that Zoom session id (Session.Signal); the events are
//     queued per session and read through the NextEvent hook;
//   - the controller around a stop: Stop, then the end page messages (Handoffs(HandoffEnd)),
//     which the pages obey (zoomtest.End). "Ended by the daemon" is: the daemon asked, and a
//     page ended the session (zoomtest's EndedByEnd);
//   - the pages: the customer's page starts the session with a customer token minted for the
//     interaction (CustomerTokenRequest), the agent's desk joins with the agent token taken from
//     the view's URL (access_token) and the PIN of the view.
//
// After a stop through the handle the controller publishes Connector.EndHandoffs; the harness
// plays the pages obeying them.
func TestConformance(t *testing.T) {
	e := newConformanceEnv(t)
	connectortest.Run(t, connectortest.Harness{
		Vendor:     connector.Zoom,
		New:        func(t *testing.T) connector.Connector { return e.connector(t, e.config(t)) },
		NewSession: e.newCustomer,
		// Not a Cobrowse PIN: a hyphen. The unknown PIN has letters: Zoom's own PINs are digits.
		NotAToken:    "123-456",
		UnknownToken: "NOSUCH0PIN",
		Unreachable: func(t *testing.T) connector.Connector {
			cfg := e.config(t)
			dead := "http://" + connectortest.ClosedAddr(t)
			cfg.OAuth.BaseURL, cfg.REST.BaseURL = dead, dead+"/v2"
			return e.connector(t, cfg)
		},
		NextEvent:  e.nextEvent,
		PageStarts: e.pageStarts,
	})
}

// conformanceEnv is one zoomtest server, its webhook receiver and the sessions the harness's
// "controller" holds.
type conformanceEnv struct {
	z      *zoomtest.Server
	wh     *Webhook
	minter *Minter

	mu       sync.Mutex
	held     map[*heldSession]bool
	endAsked map[string]bool // Zoom session ids whose end the daemon asked of the pages
}

func newConformanceEnv(t *testing.T) *conformanceEnv {
	e := &conformanceEnv{held: map[*heldSession]bool{}, endAsked: map[string]bool{}}
	var err error
	if e.wh, err = NewWebhook(WebhookConfig{Secrets: []Secret{zoomtest.DefaultWebhookSecret}}); err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(e.serveWebhook(t))
	t.Cleanup(hook.Close) // after z.Close (cleanups run last first): no delivery is in flight then
	e.z = newZoom(t, zoomtest.Options{WebhookURL: hook.URL})
	o := e.z.Options()
	if e.minter, err = NewMinter(MinterConfig{SDKKey: o.SDKKey, SDKSecret: Secret(o.SDKSecret)}); err != nil {
		t.Fatal(err)
	}
	return e
}

// serveWebhook is the router's part: verify, decode, turn into a signal, hand it to the sessions
// held for its Zoom session id.
func (e *conformanceEnv) serveWebhook(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := e.wh.ReadBody(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		ev, reply, err := e.wh.Receive(r.Header, body)
		if err != nil {
			t.Errorf("webhook refused: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if reply != nil {
			w.WriteHeader(http.StatusBadRequest) // zoomtest sends no validation unless asked
			return
		}
		if sig, ok := SignalOf(ev, body); ok {
			held := e.heldFor(ev.SessionID)
			for _, h := range held {
				for _, got := range h.Session.Signal(sig) {
					select {
					case h.events <- got:
					default:
						t.Errorf("session %s: event queue full", ev.SessionID)
					}
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// heldFor returns the held sessions whose Zoom session id is id now (a created session has one
// only once started).
func (e *conformanceEnv) heldFor(id string) []*heldSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*heldSession
	for h := range e.held {
		if h.Handle().SessionID == id {
			out = append(out, h)
		}
	}
	return out
}

// config is a connector's config on zoomtest, through the config path (OAuth and REST built by New).
func (e *conformanceEnv) config(t *testing.T) Config {
	o := e.z.Options()
	return Config{
		SDK:   MinterConfig{SDKKey: o.SDKKey, SDKSecret: Secret(o.SDKSecret)},
		OAuth: OAuthConfig{BaseURL: e.z.URL(), AccountID: o.AccountID, ClientID: o.ClientID, ClientSecret: Secret(o.ClientSecret)},
		REST:  APIConfig{BaseURL: e.z.APIURL()},
		// A created session is found live soon after the page starts it.
		BYOPPollInterval: 20 * time.Millisecond,
	}
}

func (e *conformanceEnv) connector(t *testing.T, cfg Config) connector.Connector {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &heldConnector{Connector: c, env: e}
}

// heldConnector is the connector as the harness's controller uses it: the sessions it joins are
// held (they receive the signals of their Zoom session id), and a stop through a handle is
// followed by the pages' end.
type heldConnector struct {
	*Connector
	env *conformanceEnv
}

func (c *heldConnector) Join(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	s, err := c.Connector.Join(ctx, t)
	if err != nil {
		return nil, err
	}
	return c.env.hold(s), nil
}

func (c *heldConnector) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	s, err := c.Connector.Rejoin(ctx, h)
	if err != nil {
		return nil, err
	}
	return c.env.hold(s), nil
}

// StopHandle stops through the handle, then the pages obey the end request the controller would
// send (see TestConformance: the controller cannot build it from a Session here).
func (c *heldConnector) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	times, err := c.Connector.StopHandle(ctx, h)
	if err == nil {
		c.env.pagesEnd(h.SessionID)
	}
	return times, err
}

// heldSession is a session the harness's controller holds, with its queue of events.
type heldSession struct {
	connector.Session
	env    *conformanceEnv
	events chan connector.Event
}

func (e *conformanceEnv) hold(s connector.Session) *heldSession {
	h := &heldSession{Session: s, env: e, events: make(chan connector.Event, 64)}
	e.mu.Lock()
	e.held[h] = true
	e.mu.Unlock()
	return h
}

// Stop is the controller's stop: the vendor's Stop, then the end page messages, which the pages
// obey.
func (h *heldSession) Stop(ctx context.Context) (connector.Times, error) {
	times, err := h.Session.Stop(ctx)
	if err != nil {
		return times, err
	}
	if ends := h.Session.Handoffs(connector.HandoffEnd, h.Handle().AgentID); len(ends) > 0 {
		h.env.pagesEnd(h.Handle().SessionID)
	}
	return times, nil
}

// Pending is the held session's.
func (h *heldSession) Pending() bool { return connector.IsPending(h.Session) }

// Close releases the session and stops handing it signals.
func (h *heldSession) Close(ctx context.Context) error {
	h.env.mu.Lock()
	delete(h.env.held, h)
	h.env.mu.Unlock()
	return h.Session.Close(ctx)
}

// pagesEnd plays a page obeying an end request: session.end(). A session already over is fine.
func (e *conformanceEnv) pagesEnd(sessionID string) {
	e.mu.Lock()
	e.endAsked[sessionID] = true
	e.mu.Unlock()
	_ = e.z.End(sessionID)
}

func (e *conformanceEnv) nextEvent(t *testing.T, s connector.Session) (connector.Event, bool) {
	t.Helper()
	h, ok := s.(*heldSession)
	if !ok {
		t.Fatalf("session %T is not one the harness holds", s)
	}
	timer := time.NewTimer(connectortest.Wait)
	defer timer.Stop()
	select {
	case ev := <-h.events:
		return ev, true
	case <-timer.C:
		t.Fatalf("no session event within %s", connectortest.Wait)
		return connector.Event{}, false
	}
}

// newCustomer plays the customer's page: session.start with the token minted for the
// interaction; Zoom makes a 6-digit PIN.
func (e *conformanceEnv) newCustomer(t *testing.T, iid string) connectortest.Customer {
	t.Helper()
	tok, err := e.minter.Mint(CustomerTokenRequest(iid))
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.z.CustomerStart(tok.JWT, "")
	if err != nil {
		t.Fatal(err)
	}
	return &zoomCustomer{env: e, s: s}
}

// pageStarts plays the customer's page starting a created session: session.start with the token
// and the PIN of the start page message (Bring Your Own PIN).
func (e *conformanceEnv) pageStarts(t *testing.T, _ string, start []connector.Handoff) connectortest.Customer {
	t.Helper()
	if len(start) != 1 || start[0].Token == "" || start[0].PIN == "" {
		t.Fatalf("start page messages %+v: want one with a token and a PIN", start)
	}
	s, err := e.z.CustomerStart(start[0].Token, start[0].PIN)
	if err != nil {
		t.Fatalf("CustomerStart with the daemon's PIN: %v", err)
	}
	if !s.BYOP || s.PIN != start[0].PIN {
		t.Fatalf("zoomtest session %+v: want the daemon's PIN", s)
	}
	return &zoomCustomer{env: e, s: s}
}

// zoomCustomer plays the customer's page and the agent's desk of one zoomtest session.
type zoomCustomer struct {
	env *conformanceEnv
	s   zoomtest.Session
}

func (c *zoomCustomer) Token() string { return c.s.PIN }

// AgentJoins plays the desk opening the view the session gives the interaction's agent: the JWT
// in the URL's access_token, and the view's PIN.
func (c *zoomCustomer) AgentJoins(t *testing.T, s connector.Session) {
	t.Helper()
	agent := s.Handle().AgentID
	views := s.Handoffs(connector.HandoffView, agent)
	if len(views) != 1 || views[0].AgentID != agent || views[0].PIN != c.s.PIN {
		t.Fatalf("views %d for %q: want one with the PIN", len(views), agent)
	}
	u, err := url.Parse(views[0].URL)
	if err != nil || !strings.HasPrefix(views[0].URL, DefaultDeskURL+"?") {
		t.Fatalf("view URL is not the desk's: %v", err)
	}
	if _, err := c.env.z.AgentJoin(u.Query().Get("access_token"), views[0].PIN); err != nil {
		t.Fatalf("AgentJoin: %v", err)
	}
}

func (c *zoomCustomer) Leaves(t *testing.T) {
	t.Helper()
	if err := c.env.z.CustomerLeave(c.s.ID); err != nil {
		t.Fatalf("CustomerLeave: %v", err)
	}
}

// Ended: the daemon ended the session when it asked the pages to and a page did (session.end()).
func (c *zoomCustomer) Ended(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectortest.Wait)
	defer cancel()
	s, err := c.env.z.WaitEnded(ctx, c.s.ID)
	if err != nil {
		t.Fatalf("session not ended: %v", err)
	}
	c.env.mu.Lock()
	asked := c.env.endAsked[c.s.ID]
	c.env.mu.Unlock()
	return asked && s.EndedBy == zoomtest.EndedByEnd
}

func (c *zoomCustomer) Live() bool {
	s, ok := c.env.z.Session(c.s.ID)
	return ok && s.Live()
}
