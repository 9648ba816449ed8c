package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// SandboxOptions shape `cobrowse-connector sandbox`.
type SandboxOptions struct {
	// Vendors are the vendors whose stand-ins are served; empty: all three.
	Vendors []connector.Vendor
	// NATSPort is the embedded NATS server's port on 127.0.0.1; 0: a free one.
	NATSPort int
	// PublicPort is the port on 127.0.0.1 the printed command gives the daemon's public listener
	// (Zoom's webhooks are sent there); 0: a free one, picked now.
	PublicPort int
	// ControlPort is the port on 127.0.0.1 of the sandbox's endpoints that play the pages; 0: a
	// free one.
	ControlPort int
	// Ready, if set, is called once everything serves and the command is printed.
	Ready func()
}

// sandboxAgent is the agent of the printed examples.
const sandboxAgent = "agent-7"

// ParseSandboxVendors reads --vendor: "all" (or empty), or a comma-separated list of vendors.
func ParseSandboxVendors(s string) ([]connector.Vendor, error) {
	all := []connector.Vendor{connector.Genesys, connector.Zoom, connector.CEC}
	if s = strings.TrimSpace(s); s == "" || s == "all" {
		return all, nil
	}
	var out []connector.Vendor
	for item := range strings.SplitSeq(s, ",") {
		v := connector.Vendor(strings.TrimSpace(item))
		if !slices.Contains(all, v) {
			return nil, fmt.Errorf("%q: want all, or a comma-separated list of genesys, zoom and cec", item)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// sandbox is what Sandbox runs: the stand-ins, the NATS server and the control endpoints.
type sandbox struct {
	out *lockedWriter

	natsURL     string
	publicAddr  string // the daemon's public listener, as the printed command sets it
	internal    string // the daemon's internal listener, likewise
	controlURL  string
	interaction string // the examples' interaction ids start with it

	gcb  *gcbtest.Cluster
	zoom *zoomtest.Server
	cec  *cectest.Server

	mu       sync.Mutex
	created  int                       // Genesys sessions created through the control endpoint
	views    map[string]attach.Handoff // the latest agent page message, by interaction
	starts   map[string]attach.Handoff // the latest customer start page message, by interaction
	zoomSess map[string]string         // the Zoom session the control started, by interaction
	arrived  chan struct{}             // closed and replaced when a page message arrives
}

// Sandbox serves an embedded NATS server with JetStream and the stand-ins of the vendors (a
// 3-node Co-browse Server, Zoom, CEC) on loopback, prints the `run` command that points a daemon
// at them and commands that drive it, and serves the control endpoints that play the customer's
// and the agent's pages. It runs until ctx is done, then stops the control endpoints, the
// stand-ins and NATS, in that order.
func Sandbox(ctx context.Context, w io.Writer, opts SandboxOptions) (err error) {
	vendors := opts.Vendors
	if len(vendors) == 0 {
		vendors, _ = ParseSandboxVendors("all")
	}
	sb := &sandbox{out: &lockedWriter{w: w}, interaction: "sandbox-" + randomID(),
		views: map[string]attach.Handoff{}, starts: map[string]attach.Handoff{}, zoomSess: map[string]string{}, arrived: make(chan struct{})}

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	natsPort := opts.NATSPort
	if natsPort == 0 {
		natsPort = -1
	}
	ns, stopNATS, err := startEmbeddedNATS(configs.EmbeddedNATSConfig{Host: "127.0.0.1", Port: natsPort}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	closers = append(closers, stopNATS)
	sb.natsURL = ns.ClientURL()

	// The daemon's listeners are the daemon's: their addresses are only chosen here, so that
	// Zoom's webhook sender knows where to send. A port picked free now may be taken before the
	// daemon starts; the daemon then refuses to start, naming the key.
	if sb.publicAddr, err = loopbackAddr(opts.PublicPort); err != nil {
		return fmt.Errorf("--public-port: %w", err)
	}
	if sb.internal, err = loopbackAddr(0); err != nil {
		return err
	}

	if slices.Contains(vendors, connector.Genesys) {
		sb.gcb = gcbtest.NewCluster(gcbtest.Options{Nodes: 3, ConnectTimeout: 10 * time.Second, MaxInterval: 10 * time.Second})
		closers = append(closers, sb.gcb.Close)
	}
	if slices.Contains(vendors, connector.Zoom) {
		sb.zoom = zoomtest.New(zoomtest.Options{WebhookURL: "http://" + sb.publicAddr + configs.Default().Zoom.Webhook.Path})
		closers = append(closers, sb.zoom.Close)
	}
	if slices.Contains(vendors, connector.CEC) {
		sb.cec = cectest.New(cectest.Options{})
		closers = append(closers, sb.cec.Close)
	}

	// The pages' side: the page messages the daemon publishes, read as a page would.
	nc, err := nats.Connect(sb.natsURL, nats.Name("cobrowse-connector-sandbox"))
	if err != nil {
		return fmt.Errorf("sandbox: nats: %w", err)
	}
	// Drained, not closed: a page handler still running (a Zoom page ending its session) finishes
	// before the stand-ins it calls are closed.
	closers = append(closers, func() { drainNATS(nc, slog.New(slog.DiscardHandler)) })
	prefix := configs.Default().NATS.Prefix
	for _, subj := range []string{attach.AgentSubject(prefix, "*"), attach.CustomerSubject(prefix, "*")} {
		if _, err := nc.Subscribe(subj, sb.onPage); err != nil {
			return fmt.Errorf("sandbox: nats: %w", err)
		}
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.ControlPort)))
	if err != nil {
		return fmt.Errorf("--control-port: %w", err)
	}
	sb.controlURL = "http://" + ln.Addr().String()
	env := sb.env(vendors)
	if err := checkSandboxEnv(env); err != nil {
		_ = ln.Close()
		return err
	}
	sb.print(vendors, env)

	srv := &http.Server{Handler: sb.handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Closed first (closers run last first): no control request reaches a stand-in being closed.
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		<-served //nolint:errcheck // waits for Serve to return: after a Shutdown its error is ErrServerClosed
	})
	if opts.Ready != nil {
		opts.Ready()
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(sb.out, "\nsandbox: stopping")
		return nil
	case err := <-served:
		served <- err // for the closer
		return fmt.Errorf("sandbox: control endpoints: %w", err)
	}
}

// envVar is one variable of the printed command.
type envVar struct{ name, value string }

// env is the environment of the printed `run` command: each key by its COBROWSE_ name.
func (sb *sandbox) env(vendors []connector.Vendor) []envVar {
	var env []envVar
	set := func(key, value string) { env = append(env, envVar{configs.EnvName(key), value}) }
	set("nats.url", sb.natsURL)
	set("http.listen", sb.internal)
	if sb.gcb != nil {
		set("genesys.url", sb.gcb.URL())
	}
	if sb.zoom != nil {
		o := sb.zoom.Options()
		set("zoom.enabled", "true")
		set("zoom.sdk_key", o.SDKKey)
		set("zoom.sdk_secret", o.SDKSecret)
		set("zoom.account_id", o.AccountID)
		set("zoom.client_id", o.ClientID)
		set("zoom.client_secret", o.ClientSecret)
		set("zoom.oauth_url", sb.zoom.URL())
		set("zoom.api_url", sb.zoom.APIURL())
		set("zoom.webhook.secret", o.WebhookSecret)
		set("zoom.token_endpoint.bearer_secret", demoBearer)
		set("http.public_listen", sb.publicAddr)
	}
	if sb.cec != nil {
		o := sb.cec.Options()
		set("cec.enabled", "true")
		set("cec.domain", sb.cec.URL())
		set("cec.app_key", o.AppKey)
		set("cec.app_secret", o.AppSecret)
		set("cec.tenant_space_id", o.TenantSpaceID)
		set("cec.release_url", sb.cec.ReleaseURL())
	}
	if len(vendors) > 1 {
		set("vendors.default", string(vendors[0]))
	}
	return env
}

// checkSandboxEnv checks the printed command's environment as `run` would read it.
func checkSandboxEnv(env []envVar) error {
	names := make([]string, len(env))
	for i, v := range env {
		names[i] = v.name
	}
	lookup := func(name string) (string, bool) {
		i := slices.IndexFunc(env, func(v envVar) bool { return v.name == name })
		if i < 0 {
			return "", false
		}
		return env[i].value, true
	}
	cfg, err := configs.Parse(configs.DefaultYAML, lookup, names...)
	if err == nil {
		err = cfg.ValidateRun()
	}
	if err != nil {
		return fmt.Errorf("sandbox: the printed command would be refused: %w", err)
	}
	return nil
}

func (sb *sandbox) print(vendors []connector.Vendor, env []envVar) {
	w := sb.out
	fmt.Fprintf(w, "cobrowse-connector sandbox: NATS and the vendors' stand-ins on loopback, for a daemon of your own.\n\n")
	fmt.Fprintf(w, "  NATS (JetStream)                  %s\n", sb.natsURL)
	if sb.gcb != nil {
		fmt.Fprintf(w, "  Co-browse Server (3 nodes)        %s\n", sb.gcb.URL())
	}
	if sb.zoom != nil {
		fmt.Fprintf(w, "  Zoom (OAuth, REST)                %s  (webhooks to http://%s%s)\n", sb.zoom.URL(), sb.publicAddr, configs.Default().Zoom.Webhook.Path)
	}
	if sb.cec != nil {
		fmt.Fprintf(w, "  CEC (API Fabric, web adapter)     %s\n", sb.cec.URL())
	}
	fmt.Fprintf(w, "  the pages (sandbox control)       %s\n", sb.controlURL)

	fmt.Fprintf(w, "\nRun the daemon against them (from a checkout: go run ./cmd/cobrowse-connector run):\n\n")
	for _, v := range env {
		fmt.Fprintf(w, "%s=%s \\\n", v.name, shellQuote(v.value))
	}
	fmt.Fprintf(w, "cobrowse-connector run\n")

	nats := "nats --server " + sb.natsURL
	fmt.Fprintf(w, "\nThen drive it with the nats CLI and curl. Watch everything on the contract's subjects:\n\n")
	fmt.Fprintf(w, "  %s sub 'cc.>'\n", nats)
	fmt.Fprintf(w, "\nEach walk-through below is one interaction; to run one again, change its interaction id\n(a message id the daemon has seen for an interaction is not handled twice).\n")
	for _, v := range vendors {
		id := sb.interaction + "-" + string(v)
		fmt.Fprintf(w, "\n%s, interaction %s:\n", vendorTitle(v), id)
		switch v {
		case connector.Genesys:
			sb.printGenesys(w, nats, id)
		case connector.Zoom:
			sb.printZoom(w, nats, id)
		case connector.CEC:
			sb.printCEC(w, nats, id)
		}
	}
	fmt.Fprintf(w, "\nCtrl-C stops the sandbox.\n\n")
}

func vendorTitle(v connector.Vendor) string {
	switch v {
	case connector.Zoom:
		return "Zoom Cobrowse"
	case connector.CEC:
		return "Huawei CEC"
	}
	return "Genesys Co-browse"
}

func (sb *sandbox) printGenesys(w io.Writer, nats, id string) {
	sess, err := sb.gcb.CreateSession(0)
	token := "NNNNNNNNN"
	if err == nil {
		token = sess.Token()
	}
	step(w, "the interaction is created; "+sandboxAgent+" handles it",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-created", InteractionID: id, Type: chat.EventCreated,
			AgentID: sandboxAgent, Vendor: string(connector.Genesys)}))
	step(w, "the customer's browser started a co-browse session: token "+token+" (for another one: curl -s -X POST "+sb.controlURL+"/genesys/sessions)",
		"")
	step(w, "the customer's page posts the token in the chat: the daemon joins as Controller, attaches CoBrowseAssociated=Yes and sends the agent view to "+sandboxAgent,
		natsPub(nats, chat.ChatSubject("cc", id), chat.Message{ID: id + "-start", InteractionID: id,
			From: chat.Sender{Role: chat.RoleSystem, ID: "cobrowse-widget"}, Text: "{start:" + token + "}"}))
	step(w, "the agent opens the view: the session activates (CoBrowseStartTime)",
		"curl -s -X POST "+shellQuote(sb.controlURL+"/genesys/sessions/"+token+"/agent-join?agent="+sandboxAgent))
	step(w, "the interaction closes: the daemon stops the session (CoBrowseAssociated=No, CoBrowseDuration, CoBrowseEndReason)",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-closed", InteractionID: id, Type: chat.EventClosed}))
}

func (sb *sandbox) printZoom(w io.Writer, nats, id string) {
	step(w, "the interaction is created, for Zoom; "+sandboxAgent+" handles it",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-created", InteractionID: id, Type: chat.EventCreated,
			AgentID: sandboxAgent, Vendor: string(connector.Zoom)}))
	step(w, "the customer's page gets its token from the daemon's token endpoint and starts a session; the answer has its PIN",
		"curl -s -X POST "+shellQuote(sb.controlURL+"/zoom/sessions?interaction="+id))
	step(w, "the customer types the PIN in the chat (put it in place of PIN): the daemon joins and sends the desk URL to "+sandboxAgent,
		natsPub(nats, chat.ChatSubject("cc", id), chat.Message{ID: id + "-start", InteractionID: id,
			From: chat.Sender{Role: chat.RoleCustomer, ID: "customer-1"}, Text: "{start:PIN}"}))
	step(w, "the agent's desk joins with that view: the session activates, and Zoom's webhooks say so",
		"curl -s -X POST "+shellQuote(sb.controlURL+"/zoom/agent-join?interaction="+id))
	step(w, "the interaction closes: the daemon asks the pages to end the session; the sandbox's customer page does",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-closed", InteractionID: id, Type: chat.EventClosed}))
}

func (sb *sandbox) printCEC(w io.Writer, nats, id string) {
	step(w, "the interaction is created, for CEC; "+sandboxAgent+" handles it",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-created", InteractionID: id, Type: chat.EventCreated,
			AgentID: sandboxAgent, Vendor: string(connector.CEC)}))
	step(w, "the bot asks for co-browse: the daemon gets both sides' connection information and sends each page its own",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-requested", InteractionID: id, Type: chat.EventCobrowseRequested,
			RequestedBy: &chat.Sender{Role: chat.RoleBot, ID: "assistant"}}))
	step(w, "both pages open the room with what they were sent",
		"curl -s -X POST "+shellQuote(sb.controlURL+"/cec/connect?interaction="+id))
	step(w, "the agent's page reports that the agent joined: the session activates",
		natsPub(nats, chat.SignalSubject("cc", id, chat.SourceAgent), chat.Signal{ID: id + "-agent-joined", InteractionID: id,
			Source: chat.SourceAgent, Type: chat.SignalUserJoined, Role: chat.RoleAgent}))
	step(w, "the interaction closes: the daemon releases the room",
		natsPub(nats, chat.EventSubject("cc", id), chat.Event{ID: id + "-closed", InteractionID: id, Type: chat.EventClosed}))
}

// step prints one numbered step of a walk-through: what it does, and the command (none: a note).
func step(w io.Writer, what, command string) {
	fmt.Fprintf(w, "  # %s\n", what)
	if command != "" {
		fmt.Fprintf(w, "  %s\n", command)
	}
}

// natsPub is the nats CLI command that publishes v on subject.
func natsPub(nats, subject string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the contract's own types
	}
	return nats + " pub " + subject + " " + shellQuote(string(b))
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain characters.
func shellQuote(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:@,-+=%", r))
	}) < 0
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// loopbackAddr is 127.0.0.1:port, or 127.0.0.1 and a port free now when port is 0.
func loopbackAddr(port int) (string, error) {
	if port != 0 {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func randomID() string {
	return strings.ToLower(rand.Text()[:6])
}

// onPage keeps the latest page messages, as the pages would receive them; the customer's page of a
// Zoom session the sandbox started obeys an end request.
func (sb *sandbox) onPage(m *nats.Msg) {
	var h attach.Handoff
	if err := json.Unmarshal(m.Data, &h); err != nil {
		return
	}
	sb.mu.Lock()
	switch {
	case !h.ToCustomer && h.Kind == attach.HandoffView:
		sb.views[h.InteractionID] = h
	case h.ToCustomer && h.Kind == attach.HandoffStart:
		sb.starts[h.InteractionID] = h
	}
	close(sb.arrived)
	sb.arrived = make(chan struct{})
	zoomID := sb.zoomSess[h.InteractionID]
	sb.mu.Unlock()
	if h.ToCustomer && h.Kind == attach.HandoffEnd && h.Vendor == string(connector.Zoom) && zoomID != "" && sb.zoom != nil {
		if err := sb.zoom.End(zoomID); err == nil {
			sb.note("the customer's page of %s ends Zoom session %s, as the daemon asked", h.InteractionID, zoomID)
		}
	}
}

// pageWait bounds how long a control request waits for the page message it acts on: a person may
// run the command as soon as the message shows in `nats sub`, before the sandbox's own
// subscription has it.
const pageWait = 5 * time.Second

// pages returns the latest agent view and customer start of the interaction, waiting up to
// pageWait until ready says they are what the request needs.
func (sb *sandbox) pages(ctx context.Context, id string, ready func(view, start attach.Handoff, okView, okStart bool) bool) (view, start attach.Handoff, ok bool) {
	t := time.NewTimer(pageWait)
	defer t.Stop()
	for {
		sb.mu.Lock()
		view, okView := sb.views[id]
		start, okStart := sb.starts[id]
		arrived := sb.arrived
		sb.mu.Unlock()
		if ready(view, start, okView, okStart) {
			return view, start, true
		}
		select {
		case <-arrived:
		case <-t.C:
			return view, start, false
		case <-ctx.Done():
			return view, start, false
		}
	}
}

func (sb *sandbox) note(format string, args ...any) {
	fmt.Fprintf(sb.out, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// handler serves the control endpoints: each plays a page, answers JSON and notes what it did.
func (sb *sandbox) handler() http.Handler {
	mux := http.NewServeMux()
	fail := func(rw http.ResponseWriter, status int, err error) {
		writeControl(rw, status, map[string]string{"error": err.Error()})
	}
	if sb.gcb != nil {
		mux.HandleFunc("POST /genesys/sessions", func(rw http.ResponseWriter, r *http.Request) {
			sb.mu.Lock()
			sb.created++
			node := sb.created % len(sb.gcb.Nodes())
			sb.mu.Unlock()
			s, err := sb.gcb.CreateSession(node)
			if err != nil {
				fail(rw, http.StatusServiceUnavailable, err)
				return
			}
			sb.note("the customer's browser starts a co-browse session on %s: token %s", s.Node().Name(), s.Token())
			writeControl(rw, http.StatusOK, map[string]string{"token": s.Token(), "node": s.Node().Name()})
		})
		mux.HandleFunc("POST /genesys/sessions/{token}/agent-join", func(rw http.ResponseWriter, r *http.Request) {
			s := sb.gcb.Session(r.PathValue("token"))
			agent := r.URL.Query().Get("agent")
			if s == nil || agent == "" {
				fail(rw, http.StatusNotFound, errors.New("want a live session's token and ?agent=ID"))
				return
			}
			if err := s.AgentJoin(agent, agent); err != nil {
				fail(rw, http.StatusConflict, err)
				return
			}
			sb.note("agent %s opens the view of session %s", agent, s.Token())
			writeControl(rw, http.StatusOK, map[string]string{"token": s.Token(), "state": fmt.Sprint(s.State())})
		})
		mux.HandleFunc("POST /genesys/sessions/{token}/customer-exit", func(rw http.ResponseWriter, r *http.Request) {
			s := sb.gcb.Session(r.PathValue("token"))
			if s == nil {
				fail(rw, http.StatusNotFound, errors.New("no such session"))
				return
			}
			if err := s.CustomerExit(); err != nil {
				fail(rw, http.StatusConflict, err)
				return
			}
			sb.note("the customer leaves session %s", s.Token())
			writeControl(rw, http.StatusOK, map[string]string{"token": s.Token(), "state": fmt.Sprint(s.State())})
		})
	}
	if sb.zoom != nil {
		mux.HandleFunc("POST /zoom/sessions", func(rw http.ResponseWriter, r *http.Request) {
			id := r.URL.Query().Get("interaction")
			if id == "" {
				fail(rw, http.StatusBadRequest, errors.New("want ?interaction=ID"))
				return
			}
			tok, err := demoToken(r.Context(), "http://"+sb.publicAddr, id)
			if err != nil {
				fail(rw, http.StatusBadGateway, fmt.Errorf("the daemon's token endpoint: %w", err))
				return
			}
			s, err := sb.zoom.CustomerStart(tok, "")
			if err != nil {
				fail(rw, http.StatusConflict, err)
				return
			}
			sb.mu.Lock()
			sb.zoomSess[id] = s.ID
			sb.mu.Unlock()
			sb.note("the customer's page of %s starts Zoom session %s: PIN %s", id, s.ID, s.PIN)
			writeControl(rw, http.StatusOK, map[string]string{"sessionId": s.ID, "pin": s.PIN})
		})
		mux.HandleFunc("POST /zoom/agent-join", func(rw http.ResponseWriter, r *http.Request) {
			id := r.URL.Query().Get("interaction")
			view, _, ok := sb.pages(r.Context(), id, func(view, _ attach.Handoff, okView, _ bool) bool {
				return okView && view.Vendor == string(connector.Zoom)
			})
			if !ok {
				fail(rw, http.StatusNotFound, errors.New("no Zoom agent view was sent for that interaction yet"))
				return
			}
			jwt := view.Token
			if u, err := url.Parse(view.URL); err == nil && jwt == "" {
				jwt = u.Query().Get("access_token")
			}
			if _, err := sb.zoom.AgentJoin(jwt, view.PIN); err != nil {
				fail(rw, http.StatusConflict, err)
				return
			}
			sb.note("agent %s's desk joins Zoom session %s", view.AgentID, view.SessionID)
			writeControl(rw, http.StatusOK, map[string]string{"sessionId": view.SessionID, "agent": view.AgentID})
		})
	}
	if sb.cec != nil {
		mux.HandleFunc("POST /cec/connect", func(rw http.ResponseWriter, r *http.Request) {
			id := r.URL.Query().Get("interaction")
			view, start, ok := sb.pages(r.Context(), id, func(view, start attach.Handoff, okView, okStart bool) bool {
				return okView && okStart && start.Vendor == string(connector.CEC) && view.RoomID == start.RoomID
			})
			if !ok {
				fail(rw, http.StatusNotFound, errors.New("the daemon has not sent both CEC pages their connection information for that interaction yet"))
				return
			}
			if err := sb.cec.Connect(cectest.RoleRecorder, start.RoomID, start.WSSURL, start.ConnectParam); err != nil {
				fail(rw, http.StatusConflict, fmt.Errorf("the customer's page: %w", err))
				return
			}
			if err := sb.cec.Connect(cectest.RoleReplayer, view.RoomID, view.WSSURL, view.ConnectParam); err != nil {
				fail(rw, http.StatusConflict, fmt.Errorf("the agent's page: %w", err))
				return
			}
			sb.note("the customer's page and agent %s's page open CEC room %s", view.AgentID, view.RoomID)
			writeControl(rw, http.StatusOK, map[string]string{"roomId": view.RoomID})
		})
	}
	return http.MaxBytesHandler(mux, 1<<10)
}

func writeControl(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	b, _ := json.Marshal(v)
	_, _ = rw.Write(append(b, '\n'))
}

// lockedWriter serialises the writes of the sandbox's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
