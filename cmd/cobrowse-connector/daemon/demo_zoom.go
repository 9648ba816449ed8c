package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// demoBearer is the token endpoint's bearer secret in the demo (the platform's backend sends it).
const demoBearer = "demo-backend-bearer-secret"

// demoZoom is the demo on Zoom: the built-in Zoom (zoomtest) plays Zoom's servers and sends its
// signed webhooks, through a stand-in for the ingress, to the daemon's public listener. The
// customer's page gets its token from the daemon's token endpoint, starts a session, and the
// customer types the PIN in the chat; the agent's desk opens the view the daemon pushed; at the
// end the daemon asks both pages to end the session, and they do.
func demoZoom(ctx context.Context, w io.Writer, opts DemoOptions, end chat.EventType, log *slog.Logger) error {
	// The ingress: Zoom's webhooks reach the daemon's public listener through it once the
	// daemon listens (its port is chosen at start).
	var target atomic.Pointer[url.URL]
	ingress := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		if t := target.Load(); t != nil {
			r.SetURL(t)
		}
	}}
	p := newDemoPrinter(w, opts)
	ingressSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		r.Body = io.NopCloser(bytes.NewReader(body))
		var env struct {
			Event string `json:"event"`
		}
		_ = json.Unmarshal(body, &env)
		rec := &statusRecorder{ResponseWriter: rw, status: http.StatusOK}
		ingress.ServeHTTP(rec, r)
		// Printed among the NATS messages; dropped rather than waited for when the printer lags.
		select {
		case p.msgs <- demoMsg{note: fmt.Sprintf("WEBHOOK %s from Zoom -> %d", env.Event, rec.status)}:
		default:
		}
	}))
	defer ingressSrv.Close()

	z := zoomtest.New(zoomtest.Options{WebhookURL: ingressSrv.URL + "/zoom/webhook"})
	defer z.Close()
	o := z.Options()

	cfg := demoConfig()
	cfg.HTTP.PublicListen = "127.0.0.1:0"
	cfg.Zoom.Enabled = true
	cfg.Zoom.SDKKey, cfg.Zoom.SDKSecret = o.SDKKey, configs.Secret(o.SDKSecret)
	cfg.Zoom.AccountID, cfg.Zoom.ClientID, cfg.Zoom.ClientSecret = o.AccountID, o.ClientID, configs.Secret(o.ClientSecret)
	cfg.Zoom.APIURL, cfg.Zoom.OAuthURL = z.APIURL(), z.URL()
	cfg.Zoom.Webhook.Secret = configs.Secret(zoomtest.DefaultWebhookSecret)
	cfg.Zoom.TokenEndpoint.BearerSecret = demoBearer
	cfg.Zoom.BYOPPollInterval = configs.Duration{Duration: 200 * time.Millisecond}
	cfg.Controller.EndWait = configs.Duration{Duration: 10 * time.Second}
	d, err := startDemoDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	target.Store(&url.URL{Scheme: "http", Host: d.public})
	fmt.Fprintf(w, "cobrowse-connector demo on Zoom: embedded NATS at %s, built-in Zoom at %s, the daemon's public listener at %s behind an ingress at %s\n\n",
		d.natsURL, z.URL(), d.public, ingressSrv.URL)
	return d.finish(p.playZoom(ctx, d.natsURL, "http://"+d.public, z, end))
}

func (p *demoPrinter) playZoom(ctx context.Context, natsURL, public string, z *zoomtest.Server, end chat.EventType) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	sc, release, err := p.script(ctx, natsURL)
	if err != nil {
		return err
	}
	defer release()

	say, event := sc.say, sc.event
	chatSubj := chat.ChatSubject("cc", demoInteraction)
	attachSubj := attach.UpdateSubject("cc", demoInteraction)
	agentSubj := attach.AgentSubject("cc", demoAgent)
	customerSubj := attach.CustomerSubject("cc", demoInteraction)

	if err := event(chat.Event{Type: chat.EventCreated, AgentID: demoAgent, Vendor: string(connector.Zoom)}); err != nil {
		return err
	}
	p.pause(ctx)
	if err := say(chat.RoleCustomer, "customer-42", "Hi, I am stuck on the loan application form."); err != nil {
		return err
	}
	if err := say(chat.RoleAgent, demoAgent, "Happy to help. Shall we co-browse? Click 'Co-browse' on the page and type the PIN here."); err != nil {
		return err
	}
	if err := p.await(ctx, chatSubj, 2); err != nil {
		return err
	}
	p.pause(ctx)

	// The customer's page asks the platform's backend for its token; the backend asks the daemon.
	tok, err := demoToken(ctx, public, demoInteraction)
	if err != nil {
		return err
	}
	p.note("the platform's backend gets the customer's token from the daemon's token endpoint: %s", shortSecret(tok))
	s, err := z.CustomerStart(tok, "")
	if err != nil {
		return fmt.Errorf("demo: the customer's page starts the session: %w", err)
	}
	p.note("the customer's page starts a Zoom Cobrowse session with it; Zoom gives the PIN %s", s.PIN)
	if err := say(chat.RoleCustomer, "customer-42", "{start:"+s.PIN+"}"); err != nil {
		return err
	}
	if err := p.await(ctx, agentSubj, 1); err != nil {
		return err
	}
	p.pause(ctx)
	view := p.lastPage
	u, err := url.Parse(view.URL)
	if err != nil {
		return fmt.Errorf("demo: the agent's view: %w", err)
	}
	p.note("agent %s opens the desk URL; the desk joins with the agent token and the PIN", demoAgent)
	if _, err := z.AgentJoin(u.Query().Get("access_token"), view.PIN); err != nil {
		return fmt.Errorf("demo: the agent's desk joins: %w", err)
	}
	if err := p.await(ctx, attachSubj, 2); err != nil { // the activated attach
		return err
	}
	if err := sc.agentHelpsThenEnds(4, end); err != nil {
		return err
	}
	// Zoom has no server-side end: the daemon asks the pages, and the customer's page ends it.
	if err := p.await(ctx, customerSubj, 1); err != nil {
		return err
	}
	p.note("the customer's page obeys the end request: session.end()")
	if err := z.End(s.ID); err != nil {
		return fmt.Errorf("demo: the page ends the session: %w", err)
	}
	if err := p.await(ctx, attachSubj, 3); err != nil {
		return err
	}
	ended, _ := z.Session(s.ID)
	d := p.last.Data
	fmt.Fprintf(p.w, "\nSummary for interaction %s:\n", demoInteraction)
	for _, kv := range dataLines(d) {
		fmt.Fprintf(p.w, "  %s\n", kv)
	}
	fmt.Fprintf(p.w, "  Zoom: session %s is %s (ended by %s)\n", ended.ID, liveText(ended.Live()), ended.EndedBy)
	if d.Associated != "No" || d.SessionID != s.ID || d.StartTime == "" || d.EndReason != "interaction_"+string(end) {
		return errors.New("demo: the final attached data is incomplete")
	}
	return nil
}

func liveText(live bool) string {
	if live {
		return "live"
	}
	return "ended"
}

// demoToken plays the platform's backend asking the daemon's token endpoint for the customer's
// token. The interaction is known once the daemon saved its created event, on its own time: a 404
// before that is asked again for a few seconds, as a backend would.
func demoToken(ctx context.Context, public, interactionID string) (string, error) {
	body, _ := json.Marshal(map[string]string{"interactionId": interactionID, "role": "customer"})
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	giveUp := time.After(5 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, public+"/zoom/token", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+demoBearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("demo: token endpoint: %w", err)
		}
		var ans struct {
			Token string `json:"token"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&ans)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && err == nil && ans.Token != "":
			return ans.Token, nil
		case resp.StatusCode != http.StatusNotFound:
			return "", fmt.Errorf("demo: token endpoint answered %d: %v", resp.StatusCode, err)
		}
		select {
		case <-retry.C:
		case <-giveUp:
			return "", errors.New("demo: token endpoint: the interaction stayed unknown")
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// statusRecorder keeps the status an http.Handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
