package zoom

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The defaults of Config.
const (
	// DefaultDeskURL is Zoom's hosted agent desk; the agent's view is DeskURL?access_token=<agent JWT>.
	// us01-zcb.zoom.us is the only production host Zoom's samples show.
	DefaultDeskURL = "https://us01-zcb.zoom.us/sdkapi/zcb/frame-templates/desk"
	// DefaultRejoinWindow bounds how long Rejoin retries while Zoom's REST API is unavailable.
	DefaultRejoinWindow = 30 * time.Second
)

// The operations of the connector, as its errors name them.
const (
	opJoin   = "join"
	opRejoin = "rejoin"
)

// ReasonPINNotBound is the Reason of a join refused because the PIN's session was not started by
// a customer this daemon minted a token for, on the trigger's interaction.
const ReasonPINNotBound = "pin_not_bound"

// ErrPINNotBound is the cause of a join refused with ReasonPINNotBound (the error's kind is
// connector.ErrNotBound, which wraps connector.ErrRefused).
var ErrPINNotBound = errors.New("zoom: the PIN's session has no customer with the token minted for this interaction")

// CustomerNamePrefix starts the user_name of every customer token the daemon mints.
const CustomerNamePrefix = "Customer "

// customerNameHash is how many characters of the customer's user_id follow CustomerNamePrefix in
// its user_name: 16 base32 characters, 80 bits.
const customerNameHash = 16

// CustomerUserName is the user_name of the customer token minted for an interaction:
// "Customer " and the first 16 characters of the customer's user_id (DeriveUserID of the
// interaction, role customer): 25 ASCII characters, what the agent sees as the customer's name in
// the desk. Zoom gives user_name back unchanged in its REST replies and webhooks (unlike user_id,
// which may be an id of its own), so Join compares it to bind a PIN to the interaction. It names
// no person and reveals nothing of the interaction id; 80 bits keep one interaction's name from
// being another's.
func CustomerUserName(interactionID string) string {
	return CustomerNamePrefix + DeriveUserID(interactionID, RoleCustomer, "")[:customerNameHash]
}

// CustomerTokenRequest is what the customer's token is minted with for an interaction: role
// customer, user_id DeriveUserID(interaction, customer), user_name CustomerUserName(interaction).
// Whoever mints the customer page's token (the daemon's token endpoint) must use it, or a join
// with Config.RequireMintedCustomer refuses the PIN.
func CustomerTokenRequest(interactionID string) TokenRequest {
	return TokenRequest{Role: RoleCustomer, UserID: DeriveUserID(interactionID, RoleCustomer, ""),
		UserName: CustomerUserName(interactionID)}
}

// AgentTokenRequest is what an agent's token is minted with: role agent, user_id
// DeriveUserID(interaction, agent, agentID), user_name FitUserName(agentID) (the user_id when that
// is empty).
func AgentTokenRequest(interactionID, agentID string) TokenRequest {
	return TokenRequest{Role: RoleAgent, UserID: DeriveUserID(interactionID, RoleAgent, agentID), UserName: FitUserName(agentID)}
}

// Config configures the Zoom Cobrowse connector.
type Config struct {
	// SDK is the Cobrowse SDK's key and secret and the tokens' lifetime: the minter of the
	// agents' JWTs. Ignored when Minter is set.
	SDK MinterConfig
	// OAuth is the Server-to-Server OAuth app whose token the REST calls carry. Ignored when API
	// is set, or when REST.Tokens is set.
	OAuth OAuthConfig
	// REST configures the REST API client; its Tokens default to a TokenSource built from
	// OAuth. Its Breakers, when set, guard Join's calls only: a re-join never waits for a breaker
	// that other sessions' failures opened. Ignored when API is set.
	REST APIConfig
	// Minter and API, when set, are used as they are (tests, or a caller that shares them).
	Minter *Minter
	API    *API
	// TLSConfig is the TLS of the HTTP transport New makes for the OAuth and REST calls (neither
	// REST.RoundTripper nor OAuth.RoundTripper set): a private CA's RootCAs, say. Nil: the system
	// roots.
	TLSConfig *tls.Config

	// DeskURL is the agent desk; the agent's view is DeskURL?access_token=<agent JWT>. An
	// absolute http(s) URL without credentials, query or fragment. Default DefaultDeskURL.
	DeskURL string
	// RequireMintedCustomer makes Join bind a PIN to the trigger's interaction only when the
	// session's customer carries the user_name of the token minted for that interaction
	// (CustomerUserName); otherwise the join is refused with ReasonPINNotBound. Nil: true. Turning
	// it off lets anyone who types a live session's PIN in a chat have that session attached to
	// the interaction and its agent watch it.
	RequireMintedCustomer *bool
	// RejoinWindow bounds how long Rejoin retries while Zoom's REST API is unavailable. Zero:
	// DefaultRejoinWindow; negative: one attempt.
	RejoinWindow time.Duration
	// BYOPPollInterval is how often a session the daemon created for a request (Bring Your Own
	// PIN) is looked up by its PIN while the customer's page has not started it. Zero:
	// DefaultBYOPPollInterval.
	BYOPPollInterval time.Duration
	// BYOPStartWait bounds the wait for the customer's page to start a created session; then the
	// session is given up (the controller reports join_failed). Zero: DefaultBYOPStartWait.
	BYOPStartWait time.Duration
	// AgentSDK makes the agent's view the agent JWT and the PIN (for an agent page built on Zoom's
	// npm agent SDK, the only agent path for a BYOP session), instead of the desk URL with the
	// agent JWT (Zoom's hosted desk, where the agent types the PIN). The PIN comes with both.
	AgentSDK bool

	// Logger receives the connector's logs (component=zoom). Tokens and PINs only masked, secrets
	// never. Default: discard.
	Logger *slog.Logger
}

func (c Config) String() string {
	req := "default(true)"
	if c.RequireMintedCustomer != nil {
		req = fmt.Sprint(*c.RequireMintedCustomer)
	}
	return fmt.Sprintf("zoom.Config{SDK:%s OAuth:%s REST:%q DeskURL:%q RequireMintedCustomer:%s RejoinWindow:%s API:%v Minter:%v}",
		c.SDK, c.OAuth, c.REST.BaseURL, c.DeskURL, req, c.RejoinWindow, c.API != nil, c.Minter != nil)
}

// Format prints String for every verb.
func (c Config) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without its secrets.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Any("sdk", c.SDK), slog.Any("oauth", c.OAuth), slog.String("rest_url", c.REST.BaseURL),
		slog.String("desk_url", c.DeskURL), slog.Duration("rejoin_window", c.RejoinWindow)}
	if c.RequireMintedCustomer != nil {
		attrs = append(attrs, slog.Bool("require_minted_customer", *c.RequireMintedCustomer))
	}
	return slog.GroupValue(attrs...)
}

// Connector is the Zoom Cobrowse connector, for the customer-initiated PIN flow: the customer's
// page starts a session (its token minted for the interaction), the customer types the PIN in the
// chat, and Join finds the live session by that PIN. The daemon never joins a Zoom session
// itself: a Session is the daemon's record of one, whose events come as signals (Zoom's webhooks
// after the daemon's router), whose agent views are minted tokens in the desk URL, and whose end
// is asked of the pages. It is safe for concurrent use.
type Connector struct {
	cfg           Config
	requireBound  bool
	desk          string
	minter        *Minter
	api           *API // Join's calls: through REST.Breakers when set
	rejoinAPI     *API // Rejoin's calls: never through a breaker New set up
	log           *slog.Logger
	ownRT         *http.Transport // the transport New made, closed by Close; nil when none was made
	tokens        *TokenSource    // the OAuth token source New made; nil when the config gave the API or its tokens
	now           func() time.Time
	retryDelay    time.Duration // Rejoin's first retry delay
	maxRetryDelay time.Duration
	pollInterval  time.Duration // BYOPPollInterval
	startWait     time.Duration // BYOPStartWait
	pollTimeout   time.Duration // one look-up of a created session's PIN
}

var _ connector.Connector = (*Connector)(nil)

// New checks cfg, fills its defaults and returns a Connector. It makes no network call.
func New(cfg Config) (*Connector, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Connector{cfg: cfg, requireBound: cfg.RequireMintedCustomer == nil || *cfg.RequireMintedCustomer,
		log: cfg.Logger.With("component", "zoom"), now: time.Now, retryDelay: 250 * time.Millisecond,
		maxRetryDelay: 5 * time.Second, pollInterval: cfg.BYOPPollInterval, startWait: cfg.BYOPStartWait, pollTimeout: 10 * time.Second}
	if c.pollInterval <= 0 {
		c.pollInterval = DefaultBYOPPollInterval
	}
	if c.startWait <= 0 {
		c.startWait = DefaultBYOPStartWait
	}
	var errs []error
	c.desk = strings.TrimSpace(cfg.DeskURL)
	if c.desk == "" {
		c.desk = DefaultDeskURL
	}
	if err := connector.CheckBaseURL(c.desk); err != nil {
		errs = append(errs, fmt.Errorf("zoom: DeskURL: %w", err))
	}
	if cfg.RejoinWindow == 0 {
		c.cfg.RejoinWindow = DefaultRejoinWindow
	}
	c.minter = cfg.Minter
	if c.minter == nil {
		m, err := NewMinter(cfg.SDK)
		if err != nil {
			errs = append(errs, err)
		}
		c.minter = m
	}
	c.api, c.rejoinAPI = cfg.API, cfg.API
	if c.api == nil {
		var err error
		if c.api, c.rejoinAPI, err = c.newAPI(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.log.Debug("zoom connector ready", "config", c.cfg, "require_minted_customer", c.requireBound, "desk_url", c.desk)
	return c, nil
}

// newAPI builds the REST client and, unless REST.Tokens is set, its TokenSource, on one HTTP
// transport of the connector's own when neither config gives one. With REST.Breakers set, the
// client of the re-joins is a second one without them, sharing the token source.
func (c *Connector) newAPI(cfg Config) (join, rejoin *API, err error) {
	transport := func() http.RoundTripper {
		if c.ownRT == nil {
			c.ownRT = http.DefaultTransport.(*http.Transport).Clone()
			if cfg.TLSConfig != nil {
				c.ownRT.TLSClientConfig = cfg.TLSConfig
			}
		}
		return c.ownRT
	}
	rest := cfg.REST
	if rest.Logger == nil {
		rest.Logger = cfg.Logger
	}
	if rest.RoundTripper == nil {
		rest.RoundTripper = transport()
	}
	if rest.Tokens == nil {
		oauth := cfg.OAuth
		if oauth.Logger == nil {
			oauth.Logger = cfg.Logger
		}
		if oauth.RoundTripper == nil {
			oauth.RoundTripper = transport()
		}
		ts, err := NewTokenSource(oauth)
		if err != nil {
			return nil, nil, err
		}
		rest.Tokens = ts
		c.tokens = ts
	}
	if join, err = NewAPI(rest); err != nil || rest.Breakers == nil {
		return join, join, err
	}
	rest.Breakers = nil
	rejoin, err = NewAPI(rest)
	return join, rejoin, err
}

// SetClientSecret replaces the OAuth app's client secret, used at the next token request (see
// TokenSource.SetClientSecret). A connector given its API or its token source by its config has
// no token source of its own: an error.
func (c *Connector) SetClientSecret(secret Secret) error {
	if c.tokens == nil {
		return errors.New("zoom: the connector's OAuth token source is not its own")
	}
	return c.tokens.SetClientSecret(secret)
}

func (c *Connector) String() string {
	return fmt.Sprintf("zoom.Connector{API:%q DeskURL:%q Minter:%s RequireMintedCustomer:%v}", c.api.Node(), c.desk, c.minter, c.requireBound)
}

// Format prints String for every verb.
func (c *Connector) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// Vendor returns connector.Zoom.
func (c *Connector) Vendor() connector.Vendor { return connector.Zoom }

// IndexesSessions: a Zoom webhook names the session by its id only (connector.Indexed).
func (c *Connector) IndexesSessions() {}

// MatchStart accepts a Cobrowse PIN, returned upper-cased (see the package's MatchStart).
func (c *Connector) MatchStart(token string) (string, bool) { return MatchStart(token) }

// Close releases the idle connections of the HTTP transport New made (a transport given in the
// config is left alone). It makes no network call; sessions hold nothing to release.
func (c *Connector) Close() error {
	if c.ownRT != nil {
		c.ownRT.CloseIdleConnections()
	}
	return nil
}

// Join finds the live session whose PIN is the trigger's token (LiveSessionByPIN) and returns the
// daemon's record of it. With RequireMintedCustomer (the default) the session's users must include
// a customer whose user_name is CustomerUserName(t.InteractionID); otherwise the join is refused:
// a *connector.ServerError of kind ErrNotBound (which wraps ErrRefused), Reason ReasonPINNotBound,
// cause ErrPINNotBound.
// Errors are *connector.ServerError with Op "join": an unknown PIN (or one that is not a Cobrowse
// PIN) ErrNotFound, Zoom's refusals ErrRefused, Zoom unavailable ErrUnavailable. A trigger without
// a token (a request: the bot or the agent asked) creates a session with the daemon's own PIN,
// which the customer's page starts (Bring Your Own PIN): see create.
func (c *Connector) Join(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	node := c.api.Node()
	if t.Token == "" {
		return c.create(ctx, t)
	}
	pin, ok := NormalizePIN(t.Token)
	if !ok {
		return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrNotFound,
			Reason: "not a Cobrowse PIN (1 to 10 letters and digits)"}
	}
	log := c.log.With("interaction", t.InteractionID, "token", connector.MaskToken(pin))
	live, err := c.api.LiveSessionByPIN(ctx, pin)
	if err != nil {
		log.DebugContext(ctx, "join: no live session for the PIN", "error", err)
		return nil, relabel(opJoin, node, err)
	}
	log = log.With("session_id", live.SessionID)
	if c.requireBound {
		if t.InteractionID == "" || !hasCustomerNamed(live.Users, CustomerUserName(t.InteractionID)) {
			log.WarnContext(ctx, "join refused: the PIN's session was not started with the customer token minted for this interaction",
				"participants", len(live.Users))
			return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrNotBound, Reason: ReasonPINNotBound,
				Err: ErrPINNotBound}
		}
	}
	h := connector.Handle{Vendor: connector.Zoom, Token: pin, SessionID: live.SessionID, AgentID: t.AgentID,
		InteractionID: t.InteractionID, Data: handleData{PIN: pin, SessionID: live.SessionID}.encode()}
	s := newSession(c, h, participantsOf(live.Users), false)
	log.InfoContext(ctx, "joined the Zoom session (no connection: its events come as signals)", "participants", len(live.Users))
	return s, nil
}

// hasCustomerNamed reports whether a customer of users has the user_name name.
func hasCustomerNamed(users []LiveUser, name string) bool {
	for _, u := range users {
		if u.Role == RoleCustomer && u.UserName == name {
			return true
		}
	}
	return false
}

func participantsOf(users []LiveUser) []connector.Participant {
	out := make([]connector.Participant, 0, len(users))
	for _, u := range users {
		out = append(out, connector.Participant{ID: u.UserID, Role: connectorRole(u.Role), Name: u.UserName})
	}
	return out
}

// connectorRole maps a Zoom role onto the connector's; RoleUnknown is 0.
func connectorRole(r RoleType) connector.Role {
	switch r {
	case RoleCustomer:
		return connector.RoleCustomer
	case RoleAgent:
		return connector.RoleAgent
	}
	return 0
}

// Rejoin rebuilds the daemon's record of a session saved before a restart, from the handle's Data
// (the PIN and the session id; the handle's own Token and SessionID when Data lacks them), and
// confirms it with Zoom: GET the session (ended: ErrNotLive; unknown: ErrNotFound) and its users
// (the present ones are the Participants; an agent present counts as the session's activation, so
// a later join signal does not activate it twice). While Zoom is unavailable it retries, with a
// backoff that honours a 429's Retry-After, within Config.RejoinWindow, then returns the last
// ErrUnavailable; a refusal (ErrRefused: a missing scope, bad credentials) is returned at once.
// Errors are *connector.ServerError with Op "rejoin". Its calls go through no circuit breaker
// (REST.Breakers guard Join only), unless Config.API is given with breakers of its own.
func (c *Connector) Rejoin(ctx context.Context, h connector.Handle) (connector.Session, error) {
	node := c.api.Node()
	if h.Vendor != "" && h.Vendor != connector.Zoom {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrNotFound,
			Reason: fmt.Sprintf("handle is for vendor %q", h.Vendor)}
	}
	d := decodeHandle(h)
	if d.SessionID == "" && d.BYOP && d.PIN != "" {
		return c.rejoinPending(h, d), nil
	}
	if d.SessionID == "" {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrNotFound, Reason: "handle has no session id"}
	}
	h.Vendor, h.Token, h.SessionID = connector.Zoom, d.PIN, d.SessionID
	h.Data = d.encode()
	log := c.log.With("interaction", h.InteractionID, "session_id", d.SessionID, "token", connector.MaskToken(d.PIN))
	start := time.Now()
	delay := c.retryDelay
	for attempt := 1; ; attempt++ {
		s, err := c.rejoinOnce(ctx, h)
		if err == nil {
			log.InfoContext(ctx, "re-joined the Zoom session", "attempt", attempt)
			return s, nil
		}
		if !errors.Is(err, connector.ErrUnavailable) || ctx.Err() != nil {
			log.DebugContext(ctx, "re-join failed", "error", err, "attempt", attempt)
			return nil, err
		}
		wait := delay
		if ra, ok := RetryAfter(err); ok && ra > wait {
			wait = ra
		}
		if c.cfg.RejoinWindow < 0 || time.Since(start)+wait > c.cfg.RejoinWindow {
			log.WarnContext(ctx, "re-join: Zoom unavailable for the whole re-join window", "error", err, "attempt", attempt,
				"rejoin_window", c.cfg.RejoinWindow)
			return nil, err
		}
		log.InfoContext(ctx, "re-join: Zoom unavailable; retrying", "error", err, "retry_in", wait)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		}
		delay = min(2*delay, c.maxRetryDelay)
	}
}

// rejoinOnce is one attempt of Rejoin.
func (c *Connector) rejoinOnce(ctx context.Context, h connector.Handle) (*session, error) {
	node := c.rejoinAPI.Node()
	det, err := c.rejoinAPI.Session(ctx, h.SessionID)
	if err != nil {
		return nil, relabel(opRejoin, node, err)
	}
	if det.Ended() {
		return nil, &connector.ServerError{Op: opRejoin, Node: node, Kind: connector.ErrNotLive,
			Reason: "the session ended at " + det.EndTime.UTC().Format(time.RFC3339)}
	}
	users, err := c.rejoinAPI.SessionUsers(ctx, h.SessionID)
	if err != nil {
		return nil, relabel(opRejoin, node, err)
	}
	var present []connector.Participant
	agent := false
	for _, u := range users {
		if !u.LeaveTime.IsZero() {
			continue
		}
		present = append(present, connector.Participant{ID: u.UserID, Role: connectorRole(u.Role), Name: u.UserName})
		agent = agent || u.Role == RoleAgent
	}
	return newSession(c, h, present, agent), nil
}

// StopHandle stops a session without the daemon's record of it. Zoom has no call that ends a
// session: it ends in the pages (session.end()), which the controller asks through the end page
// messages. So StopHandle calls nothing and returns no error (nor times).
func (c *Connector) StopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	c.log.InfoContext(ctx, "stop through the handle: Zoom has no server-side end; the pages end the session",
		"interaction", h.InteractionID, "session_id", h.SessionID)
	return connector.Times{}, nil
}

// EndHandoffs asks the pages to end a session stopped through its handle (after a restart, or
// when no session is left): Zoom has no server-side end, so StopHandle calls nothing and the end
// requests are what ends it. The controller publishes them.
func (c *Connector) EndHandoffs(_ connector.Handle, agentID string) []connector.Handoff {
	return endHandoffs(agentID)
}

// relabel makes a REST client's error the connector operation's: the same kind, the REST call
// named in the reason, the same cause.
func relabel(op, node string, err error) error {
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok {
		return &connector.ServerError{Op: op, Node: node, Kind: connector.ErrUnavailable, Err: err}
	}
	reason := se.Op
	if se.Reason != "" {
		reason += ": " + se.Reason
	}
	return &connector.ServerError{Op: op, Node: se.Node, Kind: se.Kind, Reason: reason, Err: se.Err}
}

// handleData is the Zoom part of a saved handle (connector.Handle.Data): what Rejoin needs. No
// secret: the PIN is the only credential, and the handle's Token holds it too.
type handleData struct {
	PIN       string `json:"pin,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
	// BYOP: the daemon created the session with its own PIN for a request.
	BYOP bool `json:"byop,omitempty"`
	// StartBy (Unix seconds) ends the wait for the customer's page to start a created session
	// that has no session id yet.
	StartBy int64 `json:"startBy,omitempty"`
}

func (d handleData) encode() json.RawMessage {
	b, _ := json.Marshal(d) // strings, a bool and a number: cannot fail
	return b
}

// decodeHandle reads the Zoom data of a handle; what it lacks is taken from the handle's Token
// and SessionID.
func decodeHandle(h connector.Handle) handleData {
	var d handleData
	if len(h.Data) > 0 {
		_ = json.Unmarshal(h.Data, &d)
	}
	if d.PIN == "" {
		d.PIN = h.Token
	}
	if pin, ok := NormalizePIN(d.PIN); ok {
		d.PIN = pin
	}
	if d.SessionID == "" {
		d.SessionID = h.SessionID
	}
	return d
}

// deskURL is the agent's view: the desk with the agent JWT in access_token.
func (c *Connector) deskURL(jwt string) string {
	return c.desk + "?" + url.Values{"access_token": {jwt}}.Encode()
}
