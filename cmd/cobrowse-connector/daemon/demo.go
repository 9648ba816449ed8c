package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// DemoOptions shape the demo's scripted conversation.
type DemoOptions struct {
	// Vendor is the co-browse vendor the demo plays: "genesys" (default), "zoom" or "cec".
	Vendor string
	// End is how the interaction ends: "transferred" (default) or "closed".
	End string
	// Verbose prints every message that crosses NATS on the contract's subjects as its subject and
	// its raw JSON payload, in the order NATS delivers them, instead of a line that describes it
	// (the page messages' credentials, those of the built-in stand-ins, included).
	Verbose bool
	// Pace is the pause between the script's steps, so that a person can follow it; 0 in tests.
	Pace time.Duration
	// Logger receives the daemon's own logs (default: none).
	Logger *slog.Logger
}

// Check refuses a vendor or an ending the demo does not play.
func (o DemoOptions) Check() error {
	switch chat.EventType(o.End) {
	case "", chat.EventTransferred, chat.EventClosed:
	default:
		return fmt.Errorf("--end %q: want transferred or closed", o.End)
	}
	switch o.Vendor {
	case "", string(connector.Genesys), string(connector.Zoom), string(connector.CEC):
	default:
		return fmt.Errorf("--vendor %q: want genesys, zoom or cec", o.Vendor)
	}
	return nil
}

// Demo runs the main job on embedded defaults: an embedded NATS server, a 3-node built-in
// Co-browse Server (gcbtest) and the real daemon, then plays a scripted conversation through the
// NATS contract and prints, as it happens, every message on the contact-center subjects. What it
// prints is read back from NATS, not from the script: the session id shown is the one the
// Co-browse Server issued.
func Demo(ctx context.Context, w io.Writer, opts DemoOptions) error {
	if err := opts.Check(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	end := chat.EventType(opts.End)
	if end == "" {
		end = chat.EventTransferred
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch opts.Vendor {
	case string(connector.Zoom):
		return demoZoom(ctx, w, opts, end, log)
	case string(connector.CEC):
		return demoCEC(ctx, w, opts, end, log)
	}
	cluster := gcbtest.NewCluster(gcbtest.Options{Nodes: 3, ConnectTimeout: 2 * time.Second, MaxInterval: 10 * time.Second})
	defer cluster.Close()

	cfg := demoConfig()
	cfg.Genesys.URL = cluster.URL()
	d, err := startDemoDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	p := newDemoPrinter(w, opts)
	fmt.Fprintf(w, "cobrowse-connector demo: embedded NATS at %s, Co-browse cluster of 3 nodes at %s\n\n", d.natsURL, cluster.URL())
	return d.finish(p.play(ctx, d.natsURL, cluster, end))
}

// demoConfig is the embedded defaults every demo starts from: an embedded NATS server on a
// random port with a temporary store.
func demoConfig() configs.Config {
	cfg := configs.Default()
	cfg.NATS.URL = ""
	cfg.NATS.Embedded.Enabled = true
	cfg.NATS.Embedded.Port = -1
	cfg.NATS.Embedded.StoreDir = ""
	cfg.ShutdownTimeout = configs.Duration{Duration: 10 * time.Second}
	cfg.HTTP.Listen = "" // no internal listener: nothing probes a demo, and several may run at once
	return cfg
}

// demoDaemon is the daemon a demo runs, with its NATS URL and public listener.
type demoDaemon struct {
	natsURL, public string
	stop            context.CancelFunc
	done            chan error
}

// startDemoDaemon runs the daemon on cfg and waits until it consumes.
func startDemoDaemon(ctx context.Context, cfg configs.Config, log *slog.Logger) (*demoDaemon, error) {
	if err := cfg.ValidateRun(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	d := &demoDaemon{stop: stop, done: make(chan error, 1)}
	ready := make(chan string, 1)
	public := make(chan string, 1)
	go func() {
		d.done <- Run(runCtx, cfg, Options{Logger: log, Ready: func(u string) { ready <- u }, PublicAddr: func(a string) { public <- a }})
	}()
	select {
	case d.natsURL = <-ready:
	case err := <-d.done:
		stop()
		return nil, fmt.Errorf("demo: daemon did not start: %w", err)
	case <-time.After(30 * time.Second):
		stop()
		<-d.done //nolint:errcheck // waits for the daemon to stop: its error is the timeout's consequence
		return nil, errors.New("demo: daemon did not start within 30s")
	}
	select {
	case d.public = <-public:
	default:
	}
	return d, nil
}

// finish stops the daemon and returns the script's error, else the daemon's.
func (d *demoDaemon) finish(scriptErr error) error {
	d.stop()
	if err := <-d.done; err != nil && scriptErr == nil {
		scriptErr = fmt.Errorf("demo: daemon: %w", err)
	}
	return scriptErr
}

// demoScript plays the platform: it publishes the interaction's chat, events and signals on the
// NATS contract, while its printer shows everything that crosses NATS.
type demoScript struct {
	p   *demoPrinter
	js  jetstream.JetStream
	ctx context.Context
	seq int
}

// script connects to NATS, subscribes to every subject of the contract for the printer and
// returns the script with its release.
func (p *demoPrinter) script(ctx context.Context, natsURL string) (*demoScript, func(), error) {
	nc, err := nats.Connect(natsURL, nats.Name("cobrowse-connector-demo"))
	if err != nil {
		return nil, nil, err
	}
	// The printer reads until the script ends; a message after that is not waited for.
	stopped := make(chan struct{})
	sub, err := nc.Subscribe("cc.>", func(m *nats.Msg) {
		select {
		case p.msgs <- demoMsg{subject: m.Subject, data: m.Data}:
		case <-stopped:
		}
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return &demoScript{p: p, js: js, ctx: ctx}, func() { close(stopped); _ = sub.Unsubscribe(); nc.Close() }, nil
}

func (s *demoScript) publish(subject string, v any) error {
	s.seq++
	b, _ := json.Marshal(v)
	_, err := s.js.PublishMsg(s.ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprintf("demo-%d", s.seq)}}})
	return err
}

// say publishes a chat message of the demo's interaction.
func (s *demoScript) say(role chat.Role, who, text string) error {
	return s.publish(chat.ChatSubject("cc", demoInteraction), chat.Message{
		ID: fmt.Sprintf("chat-%d", s.seq+1), InteractionID: demoInteraction,
		From: chat.Sender{Role: role, ID: who, Name: who}, Text: text, SentAt: time.Now().UTC(),
	})
}

// event publishes an interaction event of the demo's interaction.
func (s *demoScript) event(ev chat.Event) error {
	ev.ID, ev.InteractionID, ev.At = fmt.Sprintf("event-%d", s.seq+1), demoInteraction, time.Now().UTC()
	return s.publish(chat.EventSubject("cc", demoInteraction), ev)
}

// report publishes a page's signal about the demo's interaction.
func (s *demoScript) report(source string, typ chat.SignalType, role chat.Role) error {
	return s.publish(chat.SignalSubject("cc", demoInteraction, source), chat.Signal{ID: fmt.Sprintf("signal-%d", s.seq+1),
		InteractionID: demoInteraction, Source: source, Type: typ, Role: role, At: time.Now().UTC()})
}

// agentHelpsThenEnds plays the middle of every demo's conversation once the session is active:
// the agent's remark, seen as the chat's chatTotal-th message, then the interaction's end.
func (s *demoScript) agentHelpsThenEnds(chatTotal int, end chat.EventType) error {
	s.p.pause(s.ctx)
	if err := s.say(chat.RoleAgent, demoAgent, "I can see the form. The IBAN field wants no spaces."); err != nil {
		return err
	}
	if err := s.p.await(s.ctx, chat.ChatSubject("cc", demoInteraction), chatTotal); err != nil {
		return err
	}
	s.p.pause(s.ctx)
	return s.end(end)
}

// end publishes the interaction's end: a transfer to the next agent, or a close.
func (s *demoScript) end(end chat.EventType) error {
	if end == chat.EventTransferred {
		return s.event(chat.Event{Type: chat.EventTransferred, ToAgentID: demoNextAgent})
	}
	return s.event(chat.Event{Type: chat.EventClosed})
}

func newDemoPrinter(w io.Writer, opts DemoOptions) *demoPrinter {
	return &demoPrinter{w: w, start: time.Now(), msgs: make(chan demoMsg, 256), pace: opts.Pace, verbose: opts.Verbose, seen: map[string]int{}}
}

// demoMsg is one message seen on NATS, or a note of the demo's own (a webhook seen).
type demoMsg struct {
	subject string
	data    []byte
	note    string
}

type demoPrinter struct {
	w        io.Writer
	start    time.Time
	msgs     chan demoMsg
	pace     time.Duration
	verbose  bool           // raw subjects and payloads instead of descriptions
	seen     map[string]int // messages printed, per subject
	last     attach.Update
	lastPage attach.Handoff // the latest page message
}

// pause waits the demo's pace, printing what arrives meanwhile.
func (p *demoPrinter) pause(ctx context.Context) {
	if p.pace <= 0 {
		return
	}
	t := time.NewTimer(p.pace)
	defer t.Stop()
	for {
		select {
		case m := <-p.msgs:
			p.print(m)
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

const (
	demoInteraction = "demo-interaction-1"
	demoAgent       = "agent-7"
	demoNextAgent   = "agent-9"
)

func (p *demoPrinter) play(ctx context.Context, natsURL string, cluster *gcbtest.Cluster, end chat.EventType) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	sc, release, err := p.script(ctx, natsURL)
	if err != nil {
		return err
	}
	defer release()
	say := sc.say
	chatSubj := chat.ChatSubject("cc", demoInteraction)
	attachSubj := attach.UpdateSubject("cc", demoInteraction)

	steps := []func() error{
		func() error { return sc.event(chat.Event{Type: chat.EventCreated, AgentID: demoAgent}) },
		func() error {
			return say(chat.RoleCustomer, "customer-42", "Hi, I am stuck on the loan application form.")
		},
		func() error {
			return say(chat.RoleAgent, demoAgent, "Happy to help. Shall we co-browse? Click 'Co-browse' on the page.")
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
		p.pause(ctx)
	}
	if err := p.await(ctx, chatSubj, 2); err != nil {
		return err
	}

	// The customer's browser starts a co-browse session on a node; its page posts the token.
	p.pause(ctx)
	sess, err := cluster.CreateSession(1)
	if err != nil {
		return err
	}
	p.note("customer's browser starts a co-browse session on %s (token %s)", sess.Node().Name(), connector.MaskToken(sess.Token()))
	if err := say(chat.RoleSystem, "cobrowse-widget", "{start:"+sess.Token()+"}"); err != nil {
		return err
	}
	if err := p.await(ctx, "cc.agent."+demoAgent+".cobrowse", 1); err != nil {
		return err
	}
	p.pause(ctx)
	p.note("agent %s opens the agent view; slave.html joins the session", demoAgent)
	if err := sess.AgentJoin(demoAgent, "Agent Seven"); err != nil {
		return err
	}
	// The activated event and its attach: the second attach.
	if err := p.await(ctx, attachSubj, 2); err != nil {
		return err
	}
	if err := sc.agentHelpsThenEnds(4, end); err != nil {
		return err
	}
	if err := p.await(ctx, attachSubj, 3); err != nil {
		return err
	}
	return p.summary(sess)
}

// await prints messages as they come until total messages have been seen on subject, counted
// from the start of the demo.
func (p *demoPrinter) await(ctx context.Context, subject string, total int) error {
	for p.seen[subject] < total {
		select {
		case m := <-p.msgs:
			p.print(m)
		case <-ctx.Done():
			return fmt.Errorf("demo: waiting for %s: %w", subject, ctx.Err())
		}
	}
	return nil
}

func (p *demoPrinter) stamp() string {
	return fmt.Sprintf("%6.2fs", time.Since(p.start).Seconds())
}

func (p *demoPrinter) note(format string, args ...any) {
	fmt.Fprintf(p.w, "%s  --   %s\n", p.stamp(), fmt.Sprintf(format, args...))
}

func (p *demoPrinter) print(m demoMsg) {
	if m.note != "" {
		fmt.Fprintf(p.w, "%s  %s\n", p.stamp(), m.note)
		return
	}
	p.seen[m.subject]++
	parts := strings.Split(m.subject, ".")
	ts := p.stamp()
	// Every message is decoded (the script reads the last attach and page message); verbose shows
	// it raw instead of described.
	w := p.w
	if p.verbose {
		fmt.Fprintf(w, "%s  %s %s\n", ts, m.subject, m.data)
		w = io.Discard
	}
	switch {
	case len(parts) == 4 && parts[1] == "chat":
		var c chat.Message
		_ = json.Unmarshal(m.data, &c)
		fmt.Fprintf(w, "%s  chat %-8s %s: %s\n", ts, c.From.Role, c.From.ID, c.Text)
	case len(parts) == 4 && parts[1] == "interaction" && parts[3] == "event":
		var e chat.Event
		_ = json.Unmarshal(m.data, &e)
		fmt.Fprintf(w, "%s  interaction %s%s\n", ts, e.Type, agentSuffix(e))
	case len(parts) == 4 && parts[1] == "interaction" && parts[3] == "attach":
		var u attach.Update
		_ = json.Unmarshal(m.data, &u)
		p.last = u
		fmt.Fprintf(w, "%s  ATTACH #%d to %s (changed: %s)\n", ts, u.Seq, u.InteractionID, strings.Join(u.Changed, ", "))
		for _, kv := range dataLines(u.Data) {
			fmt.Fprintf(w, "          %s\n", kv)
		}
	case len(parts) == 4 && parts[1] == "cobrowse":
		var e attach.Lifecycle
		_ = json.Unmarshal(m.data, &e)
		line := fmt.Sprintf("%s  CO-BROWSE %s: session %s", ts, e.Event, e.SessionID)
		if e.SessionToken != "" {
			line += ", token " + e.SessionToken
		}
		if e.Reason != "" {
			line += ", reason " + e.Reason
		}
		if e.ActivationTime != 0 {
			line += ", activated " + time.UnixMilli(e.ActivationTime).UTC().Format("15:04:05.000")
		}
		if e.DeactivationTime != 0 {
			line += ", deactivated " + time.UnixMilli(e.DeactivationTime).UTC().Format("15:04:05.000")
		}
		fmt.Fprintln(w, line)
	case len(parts) == 3 && parts[1] == "webhook":
		var env struct {
			Event string `json:"event"`
		}
		_ = json.Unmarshal(m.data, &env)
		fmt.Fprintf(w, "%s  webhook %s stored in NATS (%s) for the router\n", ts, env.Event, m.subject)
	case len(parts) == 4 && parts[1] == "signal":
		var g chat.Signal
		_ = json.Unmarshal(m.data, &g)
		role := ""
		if g.Role != "" {
			role = " (" + string(g.Role) + ")"
		}
		about := ""
		if g.SessionID != "" {
			about = " about session " + g.SessionID
		}
		fmt.Fprintf(w, "%s  signal %s %s%s%s for interaction %s\n", ts, g.Source, g.Type, role, about, g.InteractionID)
	case len(parts) == 4 && (parts[1] == "agent" || parts[1] == "customer"):
		var h attach.Handoff
		_ = json.Unmarshal(m.data, &h)
		p.lastPage = h
		fmt.Fprintf(w, "%s  %s\n", ts, pageLine(parts[1], parts[2], h))
	default:
		fmt.Fprintf(w, "%s  %s %s\n", ts, m.subject, m.data)
	}
}

// pageLine describes a page message, its credentials shown only in part.
func pageLine(to, id string, h attach.Handoff) string {
	who := "the customer's page"
	if to == "agent" {
		who = "agent " + id
	}
	if h.Kind == attach.HandoffView && h.URL != "" && h.Token == "" {
		line := "AGENT VIEW for " + id + ": " + maskQuery(h.URL)
		if h.PIN != "" {
			line += ", PIN " + h.PIN
		}
		return line
	}
	line := fmt.Sprintf("PAGE %s to %s", h.Kind, who)
	if h.RoomID != "" {
		line += ", room " + h.RoomID + ", " + h.WSSURL + ", connectParam " + shortSecret(h.ConnectParam)
	}
	if h.Token != "" {
		line += ", token " + shortSecret(h.Token)
	}
	if h.PIN != "" {
		line += ", PIN " + h.PIN
	}
	return line
}

// maskQuery masks the values of a URL's query (the desk URL carries the agent's JWT there).
func maskQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery == "" {
		return raw
	}
	q := u.Query()
	parts := make([]string, 0, len(q))
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, k+"="+shortSecret(v))
		}
	}
	u.RawQuery = ""
	return u.String() + "?" + strings.Join(parts, "&")
}

// shortSecret shows a credential (a JWT) by its last four characters and its length.
func shortSecret(s string) string {
	if len(s) <= 12 {
		return connector.MaskToken(s)
	}
	return fmt.Sprintf("...%s (%d characters)", s[len(s)-4:], len(s))
}

func agentSuffix(e chat.Event) string {
	switch {
	case e.ToAgentID != "":
		return " to " + e.ToAgentID
	case e.AgentID != "":
		return " (agent " + e.AgentID + ")"
	}
	return ""
}

// dataLines renders the attached data in the contract's key order.
func dataLines(d attach.Data) []string {
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	add(attach.KeyAssociated, d.Associated)
	if d.SessionsQuantity > 0 {
		add(attach.KeySessionsQuantity, fmt.Sprint(d.SessionsQuantity))
	}
	add(attach.KeySessionID, d.SessionID)
	if d.StartTime != "" {
		add(attach.KeyStartTime, d.StartTime+" ("+startTimeText(d.StartTime)+")")
	}
	if d.Duration != nil {
		add(attach.KeyDuration, fmt.Sprint(*d.Duration))
	}
	add(attach.KeyEndReason, d.EndReason)
	return out
}

func startTimeText(ms string) string {
	var v int64
	if _, err := fmt.Sscan(ms, &v); err != nil {
		return "?"
	}
	return time.UnixMilli(v).UTC().Format(time.RFC3339Nano)
}

func (p *demoPrinter) summary(sess *gcbtest.Session) error {
	d := p.last.Data
	fmt.Fprintf(p.w, "\nSummary for interaction %s:\n", demoInteraction)
	for _, kv := range dataLines(d) {
		fmt.Fprintf(p.w, "  %s\n", kv)
	}
	act, deact := sess.Times()
	fmt.Fprintf(p.w, "  Co-browse Server: session %s is %s (ended by %s; active %s)\n",
		sess.HistoryID(), sess.State(), sess.EndedBy(), deact.Sub(act).Round(time.Millisecond))
	if d.Associated != "No" || d.SessionID != sess.HistoryID() || d.StartTime == "" || d.EndReason == "" {
		return errors.New("demo: the final attached data is incomplete")
	}
	return nil
}
