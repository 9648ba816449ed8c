// Package gcb is the Genesys Co-browse (GCB 8.5 / 9.0) connector: it joins a co-browse session as
// Controller (role 3) and turns the server's CometD notifications into connector events.
//
// The flow, per co-browse session (see docs/genesys.md for what Genesys leaves open):
//
//  1. Get Session on the cluster URL (GET <cluster>/rest/live/sessions/{token}, with an Origin
//     header) to learn the owning node;
//  2. stick to that node: its sessionServerUrl when the server gives one, otherwise the cluster
//     URL with the gcbSessionServer cookie Get Session set (sent on every CometD request, the
//     WebSocket upgrade and the REST stop);
//  3. a new CometD client (its own cookie jar and connections; the TLS configuration and the
//     dialer are the connector's, shared) handshakes, then calls /service/session/join with role
//     3 beside its first /meta/connect, in the same request or frame (cometd.Client.StartCall);
//     or, when the node has a spare client (handshaken and connected ahead; spare.go), the join
//     call alone goes out on it;
//  4. /service/session/joined, /activated and /deactivated become EventParticipantJoined,
//     EventActivated and EventDeactivated; after deactivated the Bayeux client disconnects when
//     the owner closes the session (or by itself after Config.LeaveGrace);
//  5. a Bayeux re-handshake loses the Genesys join: the session joins again, retrying a refusal
//     within the re-join window (Config.RejoinWindow: the old Controller may still be a member
//     until the server expires it); when the window is over it stops the session through REST
//     and ends with EventLost. A restart's Rejoin follows the same rule;
//  6. Stop uses /service/session/stop, and falls back to the REST stop with the Controller's user
//     token.
//
// Circuit breakers (one per real node, see route.node) and the per-node join slots guard new
// work only: Get Session and new joins. A live session's re-join, its stop and its REST fallback
// never wait for a breaker that other sessions' failures opened; their callers bound them.
//
// A live session has no goroutine of its own: its CometD client's callbacks, which run one at a
// time and in order on the client's short-lived callback goroutine, do its work (events, the
// re-join, the end of the stream), and its timer for a connection that stays down and its REST
// stop join that order through cometd.Client.Post. Its events go to the owner through
// connector.Feeder (no channel), or else through Events, whose channel is made when first needed.
// Its log lines carry its attributes (interaction, token, node, session_id) added per record, not
// through loggers cloned and kept per session. BenchmarkLiveSessions measures what a waiting
// session costs, its CometD client included.
package gcb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// The CometD service channels of a Genesys Co-browse session.
const (
	ChannelJoin        = "/service/session/join"
	ChannelStop        = "/service/session/stop"
	ChannelJoined      = "/service/session/joined"
	ChannelActivated   = "/service/session/activated"
	ChannelDeactivated = "/service/session/deactivated"
)

// Connector is the Genesys Co-browse connector. It is safe for concurrent use.
type Connector struct {
	cfg      Config
	log      *slog.Logger
	rt       http.RoundTripper
	ownRT    *http.Transport                                                      // the transport New made, closed by Close; nil when Config gave one
	http     *http.Client                                                         // REST calls: shared transport, no cookie jar (cookies are set per request)
	dial     func(ctx context.Context, network, address string) (net.Conn, error) // every session's CometD connections
	breakers *connector.Breakers
	slots    *joinSlots // new joins in flight per node
	ws       *wsMemory  // nodes that refused the websocket upgrade
	pre      prefetches // Get Session calls begun ahead of their joins (prefetch.go)
	spares   spares     // started clients that joins take (spare.go)
	life     context.Context
	stop     context.CancelFunc // ends the prefetches; Close
}

var _ connector.Connector = (*Connector)(nil)

// New checks cfg, fills its defaults and returns a Connector.
func New(cfg Config) (*Connector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Connector{cfg: cfg, log: cfg.Logger.With("component", "gcb"), rt: cfg.RoundTripper, breakers: cfg.Breakers,
		slots: newJoinSlots(cfg.MaxConcurrentJoins), ws: newWSMemory(cfg.WebSocketRefusalTTL)}
	c.life, c.stop = context.WithCancel(context.Background())
	c.spares.per, c.spares.idle = max(cfg.SpareClients, 0), spareIdle
	if c.rt == nil {
		c.ownRT = http.DefaultTransport.(*http.Transport).Clone()
		if cfg.TLSConfig != nil {
			c.ownRT.TLSClientConfig = cfg.TLSConfig
		}
		c.rt = c.ownRT
	}
	// One dialer for every session's CometD connections (TCP keep-alive as net/http's).
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	c.dial = d.DialContext
	if c.breakers == nil {
		bs := cfg.Breaker
		if bs.Logger == nil {
			bs.Logger = cfg.Logger
		}
		c.breakers = connector.NewBreakers(bs)
	}
	c.http = &http.Client{Transport: c.rt}
	return c, nil
}

// Vendor returns connector.Genesys.
func (c *Connector) Vendor() connector.Vendor { return connector.Genesys }

// MatchStart accepts exactly nine ASCII digits, the Genesys session token (leading zeros kept).
func (c *Connector) MatchStart(token string) (string, bool) { return token, validToken(token) }

// Breakers returns the per-node circuit breakers the connector uses.
func (c *Connector) Breakers() *connector.Breakers { return c.breakers }

// Close ends the prefetches in flight, disconnects the spare clients (each bounded by
// DisconnectTimeout, all at once) and releases the idle connections of the HTTP transport the
// connector made for itself (a transport given in Config is left alone). Sessions are not
// touched: close them first.
func (c *Connector) Close() error {
	c.pre.mu.Lock()
	c.stop() // under the lock: no Prefetch starts after this
	c.pre.mu.Unlock()
	c.pre.wg.Wait()
	c.closeSpares()
	if c.ownRT != nil {
		c.ownRT.CloseIdleConnections()
	}
	return nil
}

// Join finds the session's owning node, connects to it and joins as Controller. The name sent on
// join is the trigger's AgentID (or Config.ControllerName). Errors are *connector.ServerError
// wrapping ErrNotFound (unknown token, not live), ErrRefused (the server said no; Reason has its
// words) or ErrUnavailable (network, 5xx, time-out, open breaker, no free join slot on the node).
//
// A new join goes through the node's circuit breaker and takes one of the node's join slots
// (Config.MaxConcurrentJoins): these protect a node from new work, never a live session.
func (c *Connector) Join(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	if t.Token == "" {
		// A cobrowse_requested: Genesys sessions are created by the customer's page only.
		return nil, &connector.ServerError{Op: opJoin, Node: c.cfg.ClusterURL, Kind: connector.ErrUnsupported,
			Reason: "Genesys Co-browse sessions are started by the customer's page; the daemon cannot create one"}
	}
	if !validToken(t.Token) {
		return nil, invalidToken(opJoin, c.cfg.ClusterURL)
	}
	log := c.log.With("interaction", t.InteractionID, "token", connector.MaskToken(t.Token))
	r, ok := c.prefetched(ctx, t.Token)
	if !ok {
		var err error
		if r, err = c.locate(ctx, log, t.Token); err != nil {
			return nil, err
		}
	}
	node := r.node()
	wctx, cancel := context.WithTimeout(ctx, c.cfg.JoinTimeout/2)
	release, err := c.slots.acquire(wctx, node)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrUnavailable, Err: ctx.Err()}
		}
		log.DebugContext(ctx, "no free join slot on the node", "node", node)
		return nil, busyError(opJoin, node, c.cfg.MaxConcurrentJoins)
	}
	defer release()
	s, err := connector.Execute(c.breakers, node, opJoin, func() (*session, error) {
		return c.connect(ctx, opJoin, r, params{token: t.Token, agentID: t.AgentID, interactionID: t.InteractionID, ready: t.Ready}, nil)
	})
	if err == nil || !errors.Is(err, connector.ErrUnavailable) {
		// The node answered: keep a spare client there for the next join (spare.go).
		c.refillSoon(r)
	}
	if err != nil {
		log.DebugContext(ctx, "join failed", "node", node, "error", err)
		return nil, err
	}
	return s, nil
}

// Rejoin joins a live session again as Controller after a daemon restart, on the node saved in h
// (with its stickiness cookie); a handle without a usable node URL is located again through Get
// Session. The old Controller may still be a member (a killed daemon sends no /meta/disconnect),
// so a refused join, or a node that cannot be reached, is retried with backoff within the
// re-join window (Config.RejoinWindow) before Rejoin gives up with the last error. Only "the
// session is gone" (ErrNotFound, ErrNotLive) ends it at once. Cancel ctx to give up earlier.
//
// Rejoin does not go through the circuit breakers: it is a live session's own recovery, which
// other sessions' failures must not refuse.
func (c *Connector) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	d := decodeHandle(h)
	if h.Vendor != "" && h.Vendor != connector.Genesys {
		return nil, &connector.ServerError{Op: opRejoin, Node: d.NodeURL, Kind: connector.ErrNotFound,
			Err: fmt.Errorf("gcb: handle is for vendor %q", h.Vendor)}
	}
	if !validToken(h.Token) {
		return nil, invalidToken(opRejoin, d.NodeURL)
	}
	log := c.log.With("interaction", h.InteractionID, "session_id", h.SessionID, "token", connector.MaskToken(h.Token))
	p := params{token: h.Token, agentID: h.AgentID, interactionID: h.InteractionID, sessionID: h.SessionID}
	w := &rejoinState{start: time.Now()}
	for {
		r, err := c.handleRoute(ctx, log, h)
		if err == nil {
			var s *session
			if s, err = c.connect(ctx, opRejoin, r, p, w); err == nil {
				return s, nil
			}
		}
		if !retryable(ctx, err) || time.Since(w.start) >= c.rejoinWindow(w.advice) {
			log.DebugContext(ctx, "re-join failed", "error", err, "attempt", w.attempts)
			return nil, err
		}
		d := c.retryDelay(w.attempts)
		w.attempts++
		log.InfoContext(ctx, "re-join not possible yet; retrying", "error", err, "retry_in", d)
		if !waitRetry(ctx, d) {
			return nil, err
		}
	}
}

// rejoinState is one re-join's progress across its attempts.
type rejoinState struct {
	start    time.Time
	attempts int
	advice   *cometd.Advice // the latest handshake advice from the node
}

// params are what a session is joined with.
type params struct {
	token, agentID, interactionID string
	sessionID                     string                          // known on a re-join
	ready                         func(ctx context.Context) error // Trigger.Ready: waited for before the join call
}

// StopHandle stops a session without a live connection: the REST stop with the saved user token
// on the saved node (with the saved stickiness cookie). A session the server no longer knows is
// taken as already ended: no error, zero times.
func (c *Connector) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	d := decodeHandle(h)
	if d.UserToken == "" {
		return connector.Times{}, &connector.ServerError{Op: opRESTStop, Node: d.NodeURL, Kind: connector.ErrNotFound,
			Reason: "handle has no user token"}
	}
	log := c.log.With("interaction", h.InteractionID, "session_id", h.SessionID, "token", connector.MaskToken(h.Token),
		"user_token", connector.MaskToken(d.UserToken))
	r, err := c.handleRoute(ctx, log, h)
	if err != nil {
		if isNotFound(err) {
			return connector.Times{}, nil
		}
		return connector.Times{}, err
	}
	t, err := c.restStop(ctx, r, d.UserToken)
	if err != nil {
		if isNotFound(err) {
			log.InfoContext(ctx, "REST stop: session already ended", "node", r.node())
			return connector.Times{}, nil
		}
		return connector.Times{}, err
	}
	log.InfoContext(ctx, "session stopped through REST", "node", r.node())
	return t, nil
}

// EndHandoffs returns none: StopHandle ends a Genesys session at the server.
func (c *Connector) EndHandoffs(connector.Handle, string) []connector.Handoff { return nil }

// locate runs Get Session and the stickiness decision.
func (c *Connector) locate(ctx context.Context, log *slog.Logger, token string) (route, error) {
	info, err := c.getSession(ctx, token)
	if err != nil {
		log.DebugContext(ctx, "get session failed", "error", err)
		return route{}, err
	}
	r := chooseRoute(c.cfg.ClusterURL, info.ServerURL, info.Cookie)
	switch {
	case strings.HasSuffix(r.Why, "no-cookie"):
		// Not invented: the cookie's format is not documented. With one node, or a load
		// balancer that routes otherwise, this still works.
		log.WarnContext(ctx, "no sessionServerUrl and no gcbSessionServer cookie from Get Session; using the cluster URL without stickiness",
			"node", r.node(), "server", info.ServerName, "routing", r.Why)
	case strings.HasPrefix(r.Why, "bad-server-url"):
		log.WarnContext(ctx, "unusable sessionServerUrl; staying on the cluster URL",
			"session_server_url", clip(info.ServerURL), "routing", r.Why)
	default:
		log.DebugContext(ctx, "session located", "node", r.node(), "server", info.ServerName, "routing", r.Why)
	}
	return r, nil
}

// handleRoute is the route saved in h, or a fresh one from Get Session when h has no usable node.
func (c *Connector) handleRoute(ctx context.Context, log *slog.Logger, h connector.Handle) (route, error) {
	d := decodeHandle(h)
	node := strings.TrimRight(d.NodeURL, "/")
	if node != "" && connector.CheckBaseURL(node) == nil {
		return route{NodeURL: node, Sticky: d.Sticky, Why: "handle"}, nil
	}
	if !validToken(h.Token) {
		return route{}, invalidToken(opGetSession, c.cfg.ClusterURL)
	}
	return c.locate(ctx, log, h.Token)
}

// connect creates the session's CometD client on r, starts it and joins as Controller, bounded by
// JoinTimeout. A re-join (rj not nil) repeats a refused join call on the same Bayeux session
// within the re-join window. On failure everything is released.
func (c *Connector) connect(ctx context.Context, op string, r route, p params, rj *rejoinState) (*session, error) {
	s := newSession(c, r, p)
	jctx, cancel := context.WithTimeout(ctx, c.cfg.JoinTimeout)
	defer cancel()
	reply, err := func() (joinReply, error) {
		if rj == nil {
			if client := c.takeSpare(r, s); client != nil {
				// Handshaken and connected ahead: only the join call goes out, once the join
				// marker is saved.
				s.client, s.spare = client, true
				if p.ready != nil {
					if err := p.ready(jctx); err != nil {
						return joinReply{}, err
					}
				}
				return s.joinCall(jctx, op)
			}
		}
		client, err := cometd.New(c.clientOptions(r, s.onMessage, s.onState, s.clientLog()))
		if err != nil {
			return joinReply{}, &connector.ServerError{Op: op, Node: r.NodeURL, Kind: connector.ErrUnavailable,
				Err: fmt.Errorf("creating the CometD client: %w", err)}
		}
		s.client = client
		if rj == nil {
			// The join goes out with the first connect (one round trip less than a join after
			// Start), once the join marker is saved (Trigger.Ready).
			var readyErr error
			var ready func(context.Context) error
			if p.ready != nil {
				ready = func(ctx context.Context) error {
					readyErr = p.ready(ctx)
					return readyErr
				}
			}
			raw, err := client.StartCall(jctx, ChannelJoin, s.joinRequest(), ready)
			c.noteTransport(s)
			switch {
			case readyErr != nil:
				return joinReply{}, readyErr
			case err != nil:
				return joinReply{}, redact(bayeuxError(op, s.nodeURL, err), s.token)
			}
			reply, err := checkJoinReply(op, s.nodeURL, raw)
			return reply, redact(err, s.token)
		}
		err = client.Start(jctx)
		c.noteTransport(s)
		if err != nil {
			return joinReply{}, bayeuxError(op, r.NodeURL, err)
		}
		adv := client.Advice()
		rj.advice = &adv
		// The re-join's own bound is its window, not JoinTimeout: each call is bounded alone.
		return s.joinUntil(ctx, op, rj)
	}()
	if err != nil {
		if s.client != nil {
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*c.cfg.DisconnectTimeout)
			_ = s.shutdownClient(sctx)
			scancel()
		}
		return nil, err
	}
	s.begin(reply)
	return s, nil
}

// clientOptions are the options of a CometD client on r.
func (c *Connector) clientOptions(r route, onMessage func(cometd.Message), onState func(cometd.StateEvent), log *slog.Logger) cometd.Options {
	return cometd.Options{
		URL:              r.NodeURL + c.cfg.CometDPath,
		Transports:       c.transportsFor(r.node()),
		Cookies:          r.stickyCookies(),
		TLSConfig:        c.cfg.TLSConfig,
		Dial:             c.dial,
		RoundTripper:     c.cfg.RoundTripper, // nil: the client's own lean transports
		MaxNetworkDelay:  c.cfg.MaxNetworkDelay,
		BackoffIncrement: c.cfg.BackoffIncrement,
		MaxBackoff:       c.cfg.MaxBackoff,
		Logger:           log,
		OnMessage:        onMessage,
		OnState:          onState,
	}
}

// joinUntil calls /service/session/join as Controller until the server accepts, retrying a
// refusal or a failed call with backoff until the re-join window that began at rj.start is over.
// Each call is bounded by JoinTimeout; ctx (or the session's Close) ends the wait early.
func (s *session) joinUntil(ctx context.Context, op string, rj *rejoinState) (joinReply, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, s.c.cfg.JoinTimeout)
		reply, err := s.joinCall(cctx, op)
		cancel()
		if err == nil {
			return reply, nil
		}
		if !retryable(ctx, err) || time.Since(rj.start) >= s.c.rejoinWindow(rj.advice) {
			return joinReply{}, err
		}
		d := s.c.retryDelay(rj.attempts)
		rj.attempts++
		s.log().InfoContext(ctx, "re-join refused or failed; the old Controller may still be present, retrying",
			"error", err, "retry_in", d, "attempt", rj.attempts)
		if !waitRetry(ctx, d) {
			return joinReply{}, err
		}
	}
}

// joinCall calls /service/session/join as Controller on the session's client and checks the reply.
func (s *session) joinCall(ctx context.Context, op string) (joinReply, error) {
	r, err := s.decodeJoin(ctx, op, s.joinRequest())
	return r, redact(err, s.token)
}

// joinRequest is the data of a /service/session/join as Controller.
func (s *session) joinRequest() map[string]any {
	req := map[string]any{"sessionToken": s.token, "role": int(connector.RoleController)}
	if name := s.joinName(); name != "" {
		req["name"] = name
	}
	return req
}

func (s *session) decodeJoin(ctx context.Context, op string, req map[string]any) (joinReply, error) {
	node := s.nodeURL
	raw, err := s.client.Call(ctx, ChannelJoin, req)
	if err != nil {
		return joinReply{}, bayeuxError(op, node, err)
	}
	return checkJoinReply(op, node, raw)
}

// checkJoinReply decodes a join reply's data and checks it. A reply without userToken or without
// sessionHistoryId is a refusal: without the one the session cannot be stopped, without the other
// it has no id for reporting and every lifecycle event for it would be invalid. On Join and
// Rejoin, connect then disconnects and closes the client; after a re-handshake's re-join, the
// session is lost (REST stop with the saved user token, EventLost, client closed).
func checkJoinReply(op, node string, raw json.RawMessage) (joinReply, error) {
	var r joinReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return joinReply{}, &connector.ServerError{Op: op, Node: node, Kind: connector.ErrUnavailable,
			Reason: clip(string(raw)), Err: fmt.Errorf("decoding join reply: %w", err)}
	}
	if r.Error != "" {
		return joinReply{}, bayeuxError(op, node, cometd.ParseError(ChannelJoin, r.Error))
	}
	if r.UserToken == "" {
		return joinReply{}, &connector.ServerError{Op: op, Node: node, Kind: connector.ErrRefused,
			Reason: "join reply without userToken: " + clip(string(raw))}
	}
	if r.SessionHistoryID == "" {
		return joinReply{}, &connector.ServerError{Op: op, Node: node, Kind: connector.ErrRefused,
			Reason: "join reply carries no sessionHistoryId"}
	}
	return r, nil
}

// bayeuxError turns a CometD failure into a *connector.ServerError. A successful:false reply is an
// answer from the server: "402"/"401" (unknown Bayeux client), "406" (local time-out), "408", "429" and
// 5xx codes are unavailability; 404/410 or words like "not found" mean the session is gone; any
// other code is a refusal with the server's words as Reason. Anything that is not a reply
// (transport failure, time-out, client stopped) is unavailability.
func bayeuxError(op, node string, err error) error {
	if se, ok := errors.AsType[*connector.ServerError](err); ok {
		return se
	}
	ce, ok := errors.AsType[*cometd.Error](err)
	if !ok {
		return &connector.ServerError{Op: op, Node: node, Kind: connector.ErrUnavailable, Err: err}
	}
	reason := strings.TrimSpace(ce.Message)
	if reason == "" {
		reason = ce.Raw
	}
	return &connector.ServerError{Op: op, Node: node, Kind: bayeuxKind(ce), Reason: clip(reason), Err: err}
}

func bayeuxKind(ce *cometd.Error) error {
	text := strings.ToLower(ce.Message + " " + ce.Raw)
	switch {
	case ce.SessionUnknown() || ce.Code == 406 || ce.Code == 408 || ce.Code == 429 || ce.Code >= 500:
		return connector.ErrUnavailable
	case ce.Code == 410, strings.Contains(text, "ended"), strings.Contains(text, "not live"):
		return connector.ErrNotLive
	case ce.Code == 404,
		strings.Contains(text, "not found"), strings.Contains(text, "no such session"),
		strings.Contains(text, "unknown session"):
		return connector.ErrNotFound
	}
	return connector.ErrRefused
}

func invalidToken(op, node string) error {
	return &connector.ServerError{Op: op, Node: node, Kind: connector.ErrNotFound, Err: ErrInvalidToken}
}

// handleData is the Genesys part of a saved handle (connector.Handle.Data): what a re-join and the
// REST stop need. The names are those the handle had before its vendor data became opaque.
type handleData struct {
	UserToken string `json:"userToken,omitempty"` // the Controller's own token: the REST stop needs it
	NodeURL   string `json:"nodeUrl,omitempty"`   // the owning node's URL, or the cluster URL under cookie stickiness
	Sticky    string `json:"sticky,omitempty"`    // the gcbSessionServer cookie value, when the cluster URL is used
}

func (d handleData) encode() json.RawMessage {
	b, _ := json.Marshal(d) // three strings: cannot fail
	return b
}

// decodeHandle reads the Genesys data of a handle; a handle without it (or with data of another
// shape) reads as empty, and the caller falls back on Get Session.
func decodeHandle(h connector.Handle) handleData {
	var d handleData
	if len(h.Data) > 0 {
		_ = json.Unmarshal(h.Data, &d)
	}
	return d
}

// NewHandle builds a Genesys handle from its parts, for tools and tests that hold a saved
// session's fields.
func NewHandle(token, sessionID, userToken, nodeURL, sticky string) connector.Handle {
	return connector.Handle{Vendor: connector.Genesys, Token: token, SessionID: sessionID,
		Data: handleData{UserToken: userToken, NodeURL: nodeURL, Sticky: sticky}.encode()}
}

// HandleParts returns the Genesys data of a handle: the user token, the node URL and the sticky
// cookie value.
func HandleParts(h connector.Handle) (userToken, nodeURL, sticky string) {
	d := decodeHandle(h)
	return d.UserToken, d.NodeURL, d.Sticky
}
