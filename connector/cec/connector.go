package cec

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// ReasonNoAgent is the Reason of a join refused because the trigger names no agent: the agent's
// side (the replayer) is asked for with the agent's id as workNo, so a room without an agent
// cannot be made.
const ReasonNoAgent = "no agent assigned to the interaction"

// Connector is the Huawei CEC co-browse connector. CEC's co-browse runs between two browsers over
// CEC's WebSocket: the customer's page records (role recorder), the agent's view replays (role
// replayer). The daemon never opens that WebSocket: for a request (a trigger without a token) it
// asks API Fabric's getConnectionInfo for both sides of a new room and hands each page its side
// (HandoffStart to the customer, HandoffView to the agent). A Session is the daemon's record of
// the room, with no connection behind it: its events come as the pages' signals, and its end is
// the release of the room (when a release URL is configured) or the pages' own. It is safe for
// concurrent use.
type Connector struct {
	cfg      Config
	api      *client
	breakers *connector.Breakers // Join only
	log      *slog.Logger
	ownRT    *http.Transport // the transport New made, closed by Close; nil when the config gave one

	lastMilli atomic.Int64 // the last room id's milliseconds
}

var _ connector.Connector = (*Connector)(nil)

// New checks cfg, fills its defaults and returns a Connector. It makes no network call.
func New(cfg Config) (*Connector, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Connector{cfg: cfg, log: cfg.Logger.With("component", "cec", "vendor", connector.CEC)}
	rt := cfg.RoundTripper
	if rt == nil {
		c.ownRT = http.DefaultTransport.(*http.Transport).Clone()
		if cfg.TLSConfig != nil {
			c.ownRT.TLSClientConfig = cfg.TLSConfig
		}
		rt = c.ownRT
	}
	c.api = newClient(cfg, rt, c.log)
	c.breakers = cfg.Breakers
	if c.breakers == nil {
		c.breakers = connector.NewBreakers(cfg.Breaker)
	}
	c.log.Debug("cec connector ready", "config", cfg)
	return c, nil
}

// SetAppSecret replaces the app secret (SK): the next access token request sends it (the token
// cached meanwhile is used until it is due, as usual). An empty secret changes nothing.
func (c *Connector) SetAppSecret(secret Secret) error {
	if strings.TrimSpace(string(secret)) == "" {
		return errors.New("cec: AppSecret is required")
	}
	c.api.setAppSecret(secret)
	return nil
}

// Breakers are the connector's circuit breakers (of its joins), for a look at their states.
func (c *Connector) Breakers() *connector.Breakers { return c.breakers }

func (c *Connector) String() string {
	return fmt.Sprintf("cec.Connector{Domain:%q AppKey:%q TenantSpaceID:%q Release:%v}",
		c.cfg.Domain, c.cfg.AppKey, c.cfg.TenantSpaceID, c.cfg.ReleaseURL != "")
}

// Format prints String for every verb: the connector holds the app secret and the access token.
func (c *Connector) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// Vendor returns connector.CEC.
func (c *Connector) Vendor() connector.Vendor { return connector.CEC }

// MatchStart accepts nothing: CEC has no start token a customer types in the chat (its sessions
// are made by the daemon on request).
func (c *Connector) MatchStart(string) (string, bool) { return "", false }

// Close releases the idle connections of the HTTP transport New made (a transport given in the
// config is left alone). It makes no network call; sessions hold nothing to release.
func (c *Connector) Close() error {
	if c.ownRT != nil {
		c.ownRT.CloseIdleConnections()
	}
	return nil
}

// Join makes a new room for a request (a trigger without a token: cobrowse_requested) and
// returns the daemon's record of it, once CEC gave the connection info of both sides:
//
//  1. the access token (tokenByAkSk, cached and shared; see tokens);
//  2. getConnectionInfo {roomId, role: recorder}: the customer's side;
//  3. getConnectionInfo {roomId: the room CEC echoed, role: replayer, workNo: the agent}: the
//     agent's side, which must be in the same room.
//
// The room id is NewRoomID(t.InteractionID): every session has its own. A trigger with a token is
// ErrUnsupported (CEC has no customer-typed start). A trigger without an agent is refused
// (ErrRefused, ReasonNoAgent), after step 1: a CEC that cannot be reached is reported unavailable
// (retried later, when an agent may be assigned) rather than the request refused for good.
// The calls go through the domain's circuit breaker. Errors are *connector.ServerError with Op
// "join", the CEC call named at the start of the Reason, CEC's errorCode and errorReason after it.
// Nothing is released when the agent's side fails: no page was given the customer's side.
func (c *Connector) Join(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	node := c.api.node
	if t.Token != "" {
		return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrUnsupported,
			Reason: "CEC has no start token a customer types; the daemon makes CEC rooms on request"}
	}
	if t.InteractionID == "" {
		return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrRefused,
			Reason: "no interaction id to name the room after"}
	}
	room := c.NewRoomID(t.InteractionID)
	log := c.log.With("interaction", t.InteractionID, "session_id", room, "agent", t.AgentID, "node", node)
	d, err := connector.Execute(c.breakers, node, opJoin, func() (handleData, error) {
		return c.makeRoom(ctx, t, room)
	})
	if err != nil {
		log.InfoContext(ctx, "join: no CEC room", "error", err)
		return nil, err
	}
	h := connector.Handle{Vendor: connector.CEC, SessionID: d.RoomID, AgentID: t.AgentID, InteractionID: t.InteractionID,
		Data: d.encode()}
	log.InfoContext(ctx, "made the CEC room: connection info for the customer and the agent (no connection: the session's events come as the pages' signals)",
		"session_id", d.RoomID)
	return newSession(c, h, d), nil
}

// makeRoom is Join's calls, run through the breaker.
func (c *Connector) makeRoom(ctx context.Context, t connector.Trigger, room string) (handleData, error) {
	if _, err := c.api.tokens.token(ctx); err != nil {
		return handleData{}, relabel(opJoin, err)
	}
	if t.AgentID == "" {
		return handleData{}, &connector.ServerError{Op: opJoin, Node: c.api.node, Kind: connector.ErrRefused, Reason: ReasonNoAgent}
	}
	rec, err := c.api.connectionInfo(ctx, room, RoleRecorder, "")
	if err != nil {
		return handleData{}, relabel(opJoin, err)
	}
	if rec.RoomID != room {
		c.log.WarnContext(ctx, "CEC gave the room another id than asked; using CEC's", "interaction", t.InteractionID,
			"session_id", rec.RoomID, "asked", room)
	}
	rep, err := c.api.connectionInfo(ctx, rec.RoomID, RoleReplayer, t.AgentID)
	if err != nil {
		return handleData{}, relabel(opJoin, err)
	}
	if rep.RoomID != rec.RoomID {
		return handleData{}, &connector.ServerError{Op: opJoin, Node: c.api.node, Kind: connector.ErrUnavailable,
			Reason: fmt.Sprintf("%s: CEC put the agent in room %q, the customer in %q: the two sides must share a room", opConnect, rep.RoomID, rec.RoomID)}
	}
	return handleData{RoomID: rec.RoomID, WorkNo: t.AgentID, Customer: rec.side(), Agent: rep.side()}, nil
}

// Rejoin rebuilds the daemon's record of a session saved before a restart from the handle's Data
// (the room, and both sides' connection info, so that the pages' messages can be sent again),
// without a network call: CEC has no call that tells whether a room is live, and the session has
// no connection to re-open. So it never reports ErrNotLive: a room whose end the pages reported
// is ended in the controller's state, which does not re-join it. A handle of another vendor, or
// without a room, is ErrNotFound. The rebuilt session is not activated: the agent page's next
// user_joined activates it (the controller keeps the activation it had saved).
func (c *Connector) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	node := c.api.node
	if h.Vendor != "" && h.Vendor != connector.CEC {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrNotFound,
			Reason: fmt.Sprintf("handle is for vendor %q", h.Vendor)}
	}
	if err := ctx.Err(); err != nil {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrUnavailable, Err: err}
	}
	d := decodeHandle(h)
	if d.RoomID == "" {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrNotFound, Reason: "handle has no room id"}
	}
	h.Vendor, h.Token, h.SessionID = connector.CEC, "", d.RoomID
	if h.AgentID == "" {
		h.AgentID = d.WorkNo
	}
	h.Data = d.encode()
	log := c.log.With("interaction", h.InteractionID, "session_id", d.RoomID, "agent", h.AgentID)
	if d.Customer == nil || d.Agent == nil {
		log.WarnContext(ctx, "re-join: the handle lacks a side's connection info; its page message cannot be sent again",
			"has_customer", d.Customer != nil, "has_agent", d.Agent != nil)
	}
	log.InfoContext(ctx, "re-joined the CEC room from its handle (CEC has no session query: nothing was asked of it)")
	return newSession(c, h, d), nil
}

// StopHandle ends a session without the daemon's record of it. With a release URL it calls
// releaseConnection for the handle's room (no circuit breaker) and returns Times{Deactivation:
// now}: the room ended at the server then. Without one it calls nothing and returns no times and
// no error: the pages end the session, asked by EndHandoffs. Errors are *connector.ServerError
// with Op "stop"; a handle without a room is ErrNotFound.
func (c *Connector) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	d := decodeHandle(h)
	log := c.log.With("interaction", h.InteractionID, "session_id", d.RoomID)
	if c.cfg.ReleaseURL == "" {
		log.InfoContext(ctx, "stop through the handle: no release URL; the pages end the session")
		return connector.Times{}, nil
	}
	if d.RoomID == "" {
		return connector.Times{}, &connector.ServerError{Op: opStop, Node: c.cfg.ReleaseURL, Kind: connector.ErrNotFound,
			Reason: "handle has no room id"}
	}
	if err := c.api.release(ctx, d.RoomID); err != nil {
		log.WarnContext(ctx, "stop through the handle: release failed", "error", err)
		return connector.Times{}, relabel(opStop, err)
	}
	now := c.cfg.Now()
	log.InfoContext(ctx, "stop through the handle: the room was released")
	return connector.Times{Deactivation: now}, nil
}

// EndHandoffs returns the end requests for a session stopped through its handle: an end to the
// customer's page, to the handle's agent and to agentID (when another). Without a release URL
// they are what ends the session; with one (StopHandle released the room) they tell the pages,
// which learn it from no one else, and they reach the pages even when the release failed.
func (c *Connector) EndHandoffs(h connector.Handle, agentID string) []connector.Handoff {
	agent := h.AgentID
	if agent == "" {
		agent = decodeHandle(h).WorkNo
	}
	return endHandoffs(agent, agentID)
}

// endHandoffs are the end requests: to the customer's page, to the session's agent (whose view
// holds the room) and to agentID when it is another (after a transfer the controller names the
// new agent, who holds nothing: the end costs it nothing).
func endHandoffs(sessionAgent, agentID string) []connector.Handoff {
	out := []connector.Handoff{{Kind: connector.HandoffEnd, ToCustomer: true}}
	for _, a := range []string{sessionAgent, agentID} {
		if a != "" && (len(out) == 1 || out[1].AgentID != a) {
			out = append(out, connector.Handoff{Kind: connector.HandoffEnd, AgentID: a})
		}
	}
	return out
}

// NewRoomID makes the room id of a new session of interactionID: "<interactionId>-<suffix>", the
// suffix being the clock's Unix milliseconds in base 36 (8 characters until 2059), never the same
// twice in a connector (a second id in the same millisecond takes the next one), and 4 random
// base-36 characters against another process's ids, so that every session of an interaction has
// its own room. Characters other than ASCII letters, digits, '-' and '_' become
// '_' (the id goes into a URL or a path on CEC's side, as far as anyone knows), and the
// interaction part is cut so that the whole fits in 64 bytes (CEC documents no limit; 64 is the
// longest id its multimedia library documents).
func (c *Connector) NewRoomID(interactionID string) string {
	suffix := strconv.FormatInt(c.nextMilli(), 36) + randomBase36(4)
	var b strings.Builder
	for _, r := range interactionID {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	prefix := b.String()
	if limit := maxRoomID - 1 - len(suffix); len(prefix) > limit {
		prefix = prefix[:limit]
	}
	return prefix + "-" + suffix
}

// nextMilli is the clock's Unix milliseconds, or one more than the last it returned when the
// clock has not moved on (or went back).
func (c *Connector) nextMilli() int64 {
	now := c.cfg.Now().UnixMilli()
	for {
		last := c.lastMilli.Load()
		next := max(now, last+1)
		if c.lastMilli.CompareAndSwap(last, next) {
			return next
		}
	}
}

// randomBase36 is n random characters of [0-9a-z].
func randomBase36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)] // the slight bias is of no consequence for uniqueness
	}
	return string(b)
}

// side is one page's connection info, as saved in the handle.
type side struct {
	WSSURL       string `json:"wssUrl"`             // wssUrlOut: what the page opens
	WSSURLIn     string `json:"wssUrlIn,omitempty"` // wssUrl, CEC's internal address, for the record
	ConnectParam string `json:"connectParam"`       // a credential
}

func (i connInfo) side() *side {
	return &side{WSSURL: i.WSSURL, WSSURLIn: i.WSSURLIn, ConnectParam: i.ConnectParam}
}

// handleData is the CEC part of a saved handle (connector.Handle.Data): the room, the agent it
// was made for, and both sides' connection info, so that a restarted daemon can send the pages
// their messages again. It holds credentials (the connectParams): never log it.
type handleData struct {
	RoomID   string `json:"roomId"`
	WorkNo   string `json:"workNo,omitempty"`
	Customer *side  `json:"customer,omitempty"`
	Agent    *side  `json:"agent,omitempty"`
}

func (d handleData) encode() json.RawMessage {
	b, _ := json.Marshal(d) // strings only: cannot fail
	return b
}

// decodeHandle reads the CEC data of a handle; the room defaults to the handle's SessionID. Data
// that does not decode counts as none.
func decodeHandle(h connector.Handle) handleData {
	var d handleData
	if len(h.Data) > 0 {
		if json.Unmarshal(h.Data, &d) != nil {
			d = handleData{}
		}
	}
	if d.RoomID == "" {
		d.RoomID = h.SessionID
	}
	for _, s := range []**side{&d.Customer, &d.Agent} {
		if *s != nil && ((*s).WSSURL == "" || (*s).ConnectParam == "") {
			*s = nil // unusable: no page message can be made of it
		}
	}
	return d
}

// now is the connector's clock.
func (c *Connector) now() time.Time { return c.cfg.Now() }
