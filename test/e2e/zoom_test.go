package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// The Zoom tier: the daemon with Genesys (the default vendor) and Zoom enabled at once, the
// built-in Zoom (zoomtest) sending its signed webhooks through an ingress stand-in to the daemon's
// public listener, and the tests playing the platform's backend (the token endpoint), the
// customer's page and the agent's desk.

const zoomBearer = "e2e-backend-bearer"

type zoomEnv struct {
	*env
	z *zoomtest.Server
}

// newZoomEnv starts NATS, a Co-browse cluster, the built-in Zoom and its ingress; the daemon is
// started by the test.
func newZoomEnv(t *testing.T, zopts zoomtest.Options, mutate func(*configs.Config)) *zoomEnv {
	t.Helper()
	ze := &zoomEnv{}
	ingress := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if a := ze.env.public.Load(); a != nil {
			r.SetURL(&url.URL{Scheme: "http", Host: *a})
		}
	}})
	t.Cleanup(ingress.Close)
	zopts.WebhookURL = ingress.URL + "/zoom/webhook"
	ze.z = zoomtest.New(zopts)
	t.Cleanup(ze.z.Close) // before the ingress closes: no delivery in flight then
	o := ze.z.Options()
	ze.env = newEnv(t, gcbtest.Options{Nodes: 1}, func(c *configs.Config) {
		c.Vendors.Default = configs.VendorGenesys
		c.HTTP.PublicListen = "127.0.0.1:0"
		c.Zoom.Enabled = true
		c.Zoom.SDKKey, c.Zoom.SDKSecret = o.SDKKey, configs.Secret(o.SDKSecret)
		c.Zoom.AccountID, c.Zoom.ClientID, c.Zoom.ClientSecret = o.AccountID, o.ClientID, configs.Secret(o.ClientSecret)
		c.Zoom.APIURL, c.Zoom.OAuthURL = ze.z.APIURL(), ze.z.URL()
		c.Zoom.Webhook.Secret = configs.Secret(zoomtest.DefaultWebhookSecret)
		c.Zoom.TokenEndpoint.BearerSecret = zoomBearer
		c.Zoom.BYOPPollInterval = d(50 * time.Millisecond)
		c.Controller.EndWait = d(3 * time.Second)
		if mutate != nil {
			mutate(c)
		}
	})
	return ze
}

// created publishes the interaction's created event naming Zoom as its vendor.
func (ze *zoomEnv) created(iid, agent string) {
	ze.publish(chat.EventSubject("cc", iid), chat.Event{ID: ze.nextID("ev"), InteractionID: iid, Type: chat.EventCreated,
		AgentID: agent, Vendor: "zoom", At: time.Now().UTC()}, "")
}

// tokenCall plays the platform's backend calling the token endpoint; it returns the status and
// the answer.
func (ze *zoomEnv) tokenCall(bearer string, body any) (int, map[string]any) {
	ze.t.Helper()
	b, _ := json.Marshal(body)
	a := ze.public.Load()
	if a == nil {
		ze.t.Fatal("the daemon has no public listener")
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+*a+"/zoom/token", bytes.NewReader(b))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ze.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&ans)
	return resp.StatusCode, ans
}

// customerToken gets the customer's token for iid from the token endpoint. The interaction is
// known once the daemon saved its created event, which it handles on its own time: a 404 before
// that is asked again, as a backend would.
func (ze *zoomEnv) customerToken(iid string) string {
	ze.t.Helper()
	var status int
	var ans map[string]any
	ze.waitUntil("the interaction is known to the token endpoint", func() bool {
		status, ans = ze.tokenCall(zoomBearer, map[string]string{"interactionId": iid, "role": "customer"})
		return status != http.StatusNotFound
	})
	tok, _ := ans["token"].(string)
	if status != http.StatusOK || tok == "" {
		ze.t.Fatalf("customer token for %s: %d %v", iid, status, ans)
	}
	return tok
}

// pinSession plays the customer's page starting a session with the token the daemon minted for
// iid, and the customer typing its PIN in the chat; it waits for the joined event and the first
// attach, and returns the Zoom session and the agent's view.
func (ze *zoomEnv) pinSession(iid string) (zoomtest.Session, attach.Handoff) {
	ze.t.Helper()
	s, err := ze.z.CustomerStart(ze.customerToken(iid), "")
	if err != nil {
		ze.t.Fatal(err)
	}
	ze.startMsg(iid, s.PIN)
	if j := ze.expectLifecycle(iid, attach.Joined); j.SessionID != s.ID || j.Vendor != "zoom" {
		ze.t.Fatalf("joined %+v, want Zoom session %s", j, s.ID)
	}
	if u := ze.expectUpdate(iid); u.Data.Associated != "Yes" || u.Data.SessionID != s.ID || u.Data.SessionsQuantity != 1 {
		ze.t.Fatalf("first attach %+v", u.Data)
	}
	return s, ze.expectPage(iid, attach.HandoffView)
}

// expectPage returns the next page message of iid, which must be of kind.
func (ze *zoomEnv) expectPage(iid string, kind attach.HandoffKind) attach.Handoff {
	ze.t.Helper()
	m := ze.expect(iid, "cobrowse")
	var h attach.Handoff
	if err := json.Unmarshal(m.data, &h); err != nil {
		ze.t.Fatal(err)
	}
	if h.Kind != kind {
		ze.t.Fatalf("page message %s %+v, want %s", m.subject, h, kind)
	}
	if strings.HasPrefix(m.subject, "cc.customer.") {
		h.ToCustomer = true
	}
	return h
}

// agentJoins plays the agent's desk opening the view: the agent token from the desk URL, the PIN.
func (ze *zoomEnv) agentJoins(view attach.Handoff) zoomtest.User {
	ze.t.Helper()
	u, err := url.Parse(view.URL)
	if err != nil || !strings.HasPrefix(view.URL, zoom.DefaultDeskURL+"?") {
		ze.t.Fatalf("view URL %q is not the desk's: %v", view.URL, err)
	}
	user, err := ze.z.AgentJoin(u.Query().Get("access_token"), view.PIN)
	if err != nil {
		ze.t.Fatalf("the desk's join: %v", err)
	}
	return user
}

// expectActivated waits for the activated event and its attach (CoBrowseStartTime).
func (ze *zoomEnv) expectActivated(iid string) {
	ze.t.Helper()
	ze.expectLifecycle(iid, attach.Activated)
	if u := ze.expectUpdate(iid); u.Data.StartTime == "" {
		ze.t.Fatalf("activated attach without CoBrowseStartTime: %+v", u.Data)
	}
}

// endsInPages expects the end requests to the customer's page and the agent's, and plays the
// customer's page obeying (session.end()).
func (ze *zoomEnv) endsInPages(iid, agent string, s zoomtest.Session, obey bool) {
	ze.t.Helper()
	seen := map[string]bool{}
	for range 2 {
		h := ze.expectPage(iid, attach.HandoffEnd)
		if h.Token != "" || h.PIN != "" || h.URL != "" {
			ze.t.Fatalf("an end carries credentials: %+v", h)
		}
		if h.ToCustomer {
			seen["customer"] = true
		} else {
			seen[h.AgentID] = true
		}
	}
	if !seen["customer"] || !seen[agent] {
		ze.t.Fatalf("end requests to %v, want the customer's page and %s", seen, agent)
	}
	if obey {
		if err := ze.z.End(s.ID); err != nil {
			ze.t.Fatal(err)
		}
	}
}

// TestZoomPINToActivatedAndTransfer: the whole Zoom flow on a daemon that serves Genesys by
// default: the token endpoint, the PIN in chat (validated through REST, bound to the interaction),
// the desk URL with an agent token, the agent's join webhook (activated, CoBrowseStartTime), a
// re-fetch of the agent token, and the end on transfer: end requests to both pages, the final
// attach when session_ended arrives; no more tokens afterwards.
func TestZoomPINToActivatedAndTransfer(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	s, view := ze.pinSession("i-1")
	if view.AgentID != "agent-1" || view.PIN != s.PIN || view.Vendor != "zoom" {
		t.Fatalf("view %+v", view)
	}
	ze.agentJoins(view)
	ze.expectActivated("i-1")

	// The agent's desk re-fetches its token; another agent gets none.
	if status, ans := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "agent", "agentId": "agent-1"}); status != http.StatusOK || ans["pin"] != s.PIN {
		t.Fatalf("agent token re-fetch: %d %v", status, ans)
	}
	if status, _ := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "agent", "agentId": "agent-2"}); status != http.StatusForbidden {
		t.Fatalf("a foreign agent's token: %d, want 403", status)
	}

	ze.event("i-1", chat.EventTransferred, "agent-2")
	ze.endsInPages("i-1", "agent-1", s, true)
	u := ze.expectEnd("i-1", "interaction_transferred")
	if u.Data.SessionID != s.ID || u.Data.Duration == nil {
		t.Fatalf("final attach %+v", u.Data)
	}
	if z, _ := ze.z.Session(s.ID); z.Live() || z.EndedBy != zoomtest.EndedByEnd {
		t.Fatalf("Zoom session %+v: want ended by the page's end", z)
	}
	if status, _ := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "agent", "agentId": "agent-2"}); status != http.StatusForbidden {
		t.Fatalf("an agent token after the end: %d, want 403", status)
	}
	ze.noSecretsLogged(s.PIN)
}

// noSecretsLogged checks the daemon's whole log (debug level): no secret of the config, no whole
// JWT, and the PINs only masked.
func (ze *zoomEnv) noSecretsLogged(pins ...string) {
	ze.t.Helper()
	logs := ze.logs.String()
	o := ze.z.Options()
	for _, secret := range []string{o.SDKSecret, o.ClientSecret, zoomtest.DefaultWebhookSecret, zoomBearer} {
		if strings.Contains(logs, secret) {
			ze.t.Errorf("the log shows a secret (%d characters)", len(secret))
		}
	}
	if jwt := regexp.MustCompile(`eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+`).FindString(logs); jwt != "" {
		ze.t.Errorf("the log shows a whole JWT: ...%s", jwt[len(jwt)-6:])
	}
	for _, pin := range pins {
		if regexp.MustCompile(`\b` + pin + `\b`).MatchString(logs) {
			ze.t.Errorf("the log shows the PIN %s unmasked", pin)
		}
	}
}

// TestZoomEndPaths: each way a Zoom session ends, with its end reason and its final attach.
func TestZoomEndPaths(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		end    func(ze *zoomEnv, iid string, s zoomtest.Session)
	}{
		{"closed", "interaction_closed", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			ze.event(iid, chat.EventClosed, "")
			ze.endsInPages(iid, "agent-1", s, true)
		}},
		{"timeout", "interaction_timeout", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			ze.event(iid, chat.EventTimeout, "")
			ze.endsInPages(iid, "agent-1", s, true)
		}},
		{"operator stop", "operator_stop", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			ze.publish(chat.SignalSubject("cc", iid, chat.SourceOperator),
				chat.Signal{ID: ze.nextID("sig"), InteractionID: iid, Source: chat.SourceOperator, Type: chat.SignalStop}, "")
			ze.endsInPages(iid, "agent-1", s, true)
		}},
		{"customer leaves", "participant_exit", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			if err := ze.z.CustomerLeave(s.ID); err != nil {
				ze.t.Fatal(err)
			}
		}},
		{"Zoom ends it by itself (the customer's page lost its connection)", "participant_exit", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			// No leave: the page is gone; Zoom ends the session after its reconnect window.
			if err := ze.z.Disconnect(s.ID, s.Users[0].UserID); err != nil {
				ze.t.Fatal(err)
			}
		}},
		{"the pages never confirm the end", "interaction_closed", func(ze *zoomEnv, iid string, s zoomtest.Session) {
			// No session_ended: the end wait (3s here) writes the final attach anyway.
			ze.event(iid, chat.EventClosed, "")
			ze.endsInPages(iid, "agent-1", s, false)
		}},
	}
	ze := newZoomEnv(t, zoomtest.Options{ReconnectWindow: 500 * time.Millisecond}, nil)
	ze.startDaemon()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ze.env.t = t
			iid := fmt.Sprintf("i-end-%d", i)
			ze.created(iid, "agent-1")
			s, view := ze.pinSession(iid)
			ze.agentJoins(view)
			ze.expectActivated(iid)
			c.end(ze, iid, s)
			if u := ze.expectEnd(iid, c.reason); u.Data.SessionID != s.ID {
				t.Fatalf("final attach %+v", u.Data)
			}
		})
	}
}

// TestZoomOneOfSeveralAgentsLeaving: a second agent in the session who leaves ends nothing; the
// session goes on until the interaction closes.
func TestZoomOneOfSeveralAgentsLeaving(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	s, view := ze.pinSession("i-1")
	ze.agentJoins(view)
	ze.expectActivated("i-1")
	o := ze.z.Options()
	m, err := zoom.NewMinter(zoom.MinterConfig{SDKKey: o.SDKKey, SDKSecret: zoom.Secret(o.SDKSecret)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Mint(zoom.AgentTokenRequest("i-1", "supervisor-1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := ze.z.AgentJoin(tok.JWT, s.PIN)
	if err != nil {
		t.Fatal(err)
	}
	if err := ze.z.AgentLeave(s.ID, second.UserID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ze.z.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	// The leave is routed and handled before the close that follows it (one interaction, one order).
	ze.event("i-1", chat.EventClosed, "")
	ze.endsInPages("i-1", "agent-1", s, true)
	ze.expectEnd("i-1", "interaction_closed")
}

// TestZoomNoAgentJoin: the daemon's own no_agent_join timer applies to Zoom sessions.
func TestZoomNoAgentJoin(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, func(c *configs.Config) { c.Controller.NoAgentJoin = d(time.Second) })
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	s, _ := ze.pinSession("i-1")
	ze.endsInPages("i-1", "agent-1", s, true)
	ze.expectEnd("i-1", "no_agent_join")
}

// TestZoomPINNotBound: a PIN of a session started with a token minted for another interaction
// is refused: pin_not_bound, no session attached.
func TestZoomPINNotBound(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	ze.created("i-2", "agent-2")
	s, err := ze.z.CustomerStart(ze.customerToken("i-2"), "")
	if err != nil {
		t.Fatal(err)
	}
	ze.startMsg("i-1", s.PIN)
	if f := ze.expectLifecycle("i-1", attach.Failed); f.Reason != "pin_not_bound" {
		t.Fatalf("failed %+v, want pin_not_bound", f)
	}
	for _, m := range ze.outbound("i-1") {
		if strings.HasSuffix(m.subject, ".attach") || strings.HasSuffix(m.subject, ".joined") {
			t.Fatalf("a foreign PIN was attached: %s %s", m.subject, m.data)
		}
	}
}

// TestZoomBYOPRequest: the bot asks for co-browse: the daemon chooses the PIN, gives the
// customer's page a token with enable_byop and the PIN, and the session counts as joined once
// the page started it; then as any other session.
func TestZoomBYOPRequest(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	ze.publish(chat.EventSubject("cc", "i-1"), chat.Event{ID: ze.nextID("ev"), InteractionID: "i-1",
		Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot, ID: "bot-1"}}, "")
	start := ze.expectPage("i-1", attach.HandoffStart)
	if !start.ToCustomer || start.Token == "" || len(start.PIN) != zoom.BYOPPINLength {
		t.Fatalf("start page message %+v", start)
	}
	// The customer's page may re-fetch its token meanwhile: it carries enable_byop and the PIN.
	if status, ans := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "customer"}); status != http.StatusOK || ans["pin"] != start.PIN {
		t.Fatalf("customer token re-fetch while starting: %d %v", status, ans)
	}
	s, err := ze.z.CustomerStart(start.Token, start.PIN)
	if err != nil {
		t.Fatalf("the page starts the session with the daemon's PIN: %v", err)
	}
	if j := ze.expectLifecycle("i-1", attach.Joined); j.SessionID != s.ID {
		t.Fatalf("joined %+v", j)
	}
	if u := ze.expectUpdate("i-1"); u.Data.SessionID != s.ID {
		t.Fatalf("attach %+v", u.Data)
	}
	view := ze.expectPage("i-1", attach.HandoffView)
	ze.agentJoins(view)
	ze.expectActivated("i-1")
	ze.event("i-1", chat.EventClosed, "")
	ze.endsInPages("i-1", "agent-1", s, true)
	ze.expectEnd("i-1", "interaction_closed")
	ze.noSecretsLogged(s.PIN)
}

// TestZoomBYOPNeverStarted: a page that never starts the created session: join_failed after the
// start wait, the page asked to end it, nothing attached.
func TestZoomBYOPNeverStarted(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, func(c *configs.Config) { c.Zoom.BYOPStartWait = d(time.Second) })
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	ze.publish(chat.EventSubject("cc", "i-1"), chat.Event{ID: ze.nextID("ev"), InteractionID: "i-1",
		Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleAgent, ID: "agent-1"}}, "")
	ze.expectPage("i-1", attach.HandoffStart)
	if f := ze.expectLifecycle("i-1", attach.Failed); f.Reason != "join_failed" {
		t.Fatalf("failed %+v", f)
	}
	if h := ze.expectPage("i-1", attach.HandoffEnd); !h.ToCustomer {
		t.Fatalf("end %+v, want the customer's page first", h)
	}
}

// TestZoomRestartWithALiveSession: a daemon restarted while a Zoom session is live finds it again
// through Zoom's REST API, and the session goes on: the agent's join after the restart activates
// it, and a close ends it.
func TestZoomRestartWithALiveSession(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	ze.created("i-1", "agent-1")
	s, view := ze.pinSession("i-1")
	ze.stopDaemon()
	ze.startDaemon()
	ze.agentJoins(view)
	ze.expectActivated("i-1")
	ze.event("i-1", chat.EventClosed, "")
	ze.endsInPages("i-1", "agent-1", s, true)
	ze.expectEnd("i-1", "interaction_closed")
}

// TestZoomBadInputChangesNothing: a webhook with a bad signature or a stale timestamp is refused
// (401) and stored nowhere, a replay of a stored one is refused (400) and stored once; token requests without credentials, for an unknown interaction or
// with a caller-chosen user id are refused (401, 404, 400) and mint nothing.
func TestZoomBadInputChangesNothing(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	ze.startDaemon()
	a := *ze.public.Load()
	body := []byte(`{"event":"cobrowse.session_ended","event_ts":1,"payload":{"object":{"session_id":"x"}}}`)
	post := func(ts, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a+"/zoom/webhook", bytes.NewReader(body))
		req.Header.Set(zoom.HeaderTimestamp, ts)
		req.Header.Set(zoom.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := fmt.Sprint(time.Now().Unix())
	if st := post(now, "v0=00"); st != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", st)
	}
	if st := post("1000", "v0=00"); st != http.StatusUnauthorized {
		t.Fatalf("stale timestamp: %d", st)
	}
	// A good delivery is stored; the same delivery again (a replay inside the window) is refused.
	if st := post(now, zoomtest.Sign(zoomtest.DefaultWebhookSecret, now, body)); st != http.StatusOK {
		t.Fatalf("a good delivery: %d", st)
	}
	if st := post(now, zoomtest.Sign(zoomtest.DefaultWebhookSecret, now, body)); st != http.StatusBadRequest {
		t.Fatalf("a replay: %d, want 400", st)
	}
	info, err := ze.js.Stream(context.Background(), "CC_WEBHOOK")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%d webhooks stored, want the good one once", n)
	}
	if st, _ := ze.tokenCall("", map[string]string{"interactionId": "i-1", "role": "customer"}); st != http.StatusUnauthorized {
		t.Fatalf("no bearer: %d", st)
	}
	if st, _ := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "never-seen", "role": "customer"}); st != http.StatusNotFound {
		t.Fatalf("unknown interaction: %d", st)
	}
	ze.created("i-1", "agent-1")
	ze.waitUntil("the interaction's state is saved", func() bool {
		st, _ := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "customer"})
		return st == http.StatusOK
	})
	if st, ans := ze.tokenCall(zoomBearer, map[string]string{"interactionId": "i-1", "role": "customer", "userId": "me"}); st != http.StatusBadRequest || ans["errors"] == nil {
		t.Fatalf("caller's user id: %d %v", st, ans)
	}
	if n := strings.Count(ze.logs.String(), "audit: token minted"); n != 1 {
		t.Fatalf("%d tokens minted, want the one accepted request's", n)
	}
}
