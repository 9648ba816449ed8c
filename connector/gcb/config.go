package gcb

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// The defaults of Config.
const (
	DefaultCometDPath          = "/cometd"
	DefaultRequestTimeout      = 10 * time.Second
	DefaultMaxNetworkDelay     = 10 * time.Second
	DefaultBackoffIncrement    = time.Second
	DefaultMaxBackoff          = 30 * time.Second
	DefaultJoinTimeout         = 20 * time.Second
	DefaultStopTimeout         = 5 * time.Second
	DefaultDisconnectTimeout   = 2 * time.Second
	DefaultLeaveGrace          = 5 * time.Second
	DefaultLostAfter           = 60 * time.Second
	DefaultAgentViewPath       = "/slave.html"
	DefaultEventBuffer         = 16
	DefaultMaxConcurrentJoins  = 16
	DefaultWebSocketRefusalTTL = 10 * time.Minute
	DefaultSpareClients        = 1

	// DefaultRejoinWindow is the re-join window when the server's handshake advice gave no
	// maxInterval (see Config.RejoinWindow).
	DefaultRejoinWindow = 30 * time.Second

	// DefaultAgentViewFragment is the fragment of the agent view URL (slave.html#...).
	//
	// [INFERRED] Genesys documents only that the parameters live in the fragment and start with
	// "nosidinput=1"; the name of the parameter that carries the 9-digit token is not in any
	// public text ("sid" is a guess). Check it against a real slave.html before production and
	// set Config.AgentViewFragment accordingly.
	DefaultAgentViewFragment = "nosidinput=1&sid={token}"
)

// Config configures the Genesys Co-browse connector. The zero value of every field but
// ClusterURL takes its default.
type Config struct {
	// ClusterURL is the Co-browse cluster's URL (the load balancer, Genesys "[cluster] url"),
	// e.g. "http://cobrowse.example:8700/cobrowse". Required. A trailing slash is removed. It
	// must not carry credentials (http://user:pass@...): Genesys Co-browse has no URL
	// authentication, and the URL reaches logs, errors and the agent view URL.
	ClusterURL string

	// Origin is the Origin header sent on Get Session (Genesys 9.0 checks it against
	// "[cross-origin] allowedOrigins") and on the REST stop. Default: the cluster URL's
	// scheme://host[:port].
	Origin string

	// CometDPath is the CometD endpoint below a node or cluster URL. Default "/cometd".
	// [INFERRED]: the usual CometD servlet mapping; Genesys does not document it.
	CometDPath string

	// Transports is the CometD transport preference. Default websocket, then long-polling.
	Transports []string

	// RequestTimeout bounds each REST call (Get Session, REST stop). Default 10s.
	RequestTimeout time.Duration

	// MaxNetworkDelay, BackoffIncrement and MaxBackoff tune the CometD client: how long a normal
	// Bayeux request may take, and the reconnect backoff's step and cap.
	// Defaults 10s, 1s, 30s.
	MaxNetworkDelay  time.Duration
	BackoffIncrement time.Duration
	MaxBackoff       time.Duration

	// JoinTimeout bounds a join as Controller: the CometD handshake and first connect plus the
	// /service/session/join call. It also bounds each attempt of a re-join. Default 20s.
	JoinTimeout time.Duration

	// StopTimeout bounds the CometD /service/session/stop call; when it runs out, Stop falls back
	// to the REST stop. Default 5s.
	StopTimeout time.Duration

	// DisconnectTimeout bounds the /meta/disconnect sent when a session ends or is closed.
	// Default 2s.
	DisconnectTimeout time.Duration

	// LeaveGrace is how long a session that ended (deactivated) keeps its Bayeux client for its
	// owner's Close, which sends the /meta/disconnect; past it the client disconnects by itself.
	// Default 5s.
	LeaveGrace time.Duration

	// RejoinWindow bounds how long a live session's re-join (after a daemon restart, or after a
	// Bayeux re-handshake) is retried while the server refuses it or cannot be reached. A
	// Controller that went away without /meta/disconnect (a killed daemon) stays a member until
	// the server expires its Bayeux session, and the server refuses a second Controller until
	// then; Genesys does not document the words of that refusal, so any refusal counts as "the old
	// Controller is still present" until the window is over. Zero: twice the maxInterval of the
	// server's handshake advice plus its connect timeout (a long-poll held by a killed client is
	// noticed only when the hold ends), else DefaultRejoinWindow.
	RejoinWindow time.Duration

	// MaxConcurrentJoins bounds the new joins in flight at once per node (per sessionServerUrl,
	// or per stickiness cookie value on the cluster URL), so that a burst of start messages does
	// not flood one node. A join that finds no free slot within half of JoinTimeout fails as
	// unavailable (connector.ErrUnavailable wrapping ErrNodeBusy): the caller retries it later.
	// Re-joins and stops of live sessions are not bounded. Default 16.
	MaxConcurrentJoins int

	// WebSocketRefusalTTL is how long a node's refusal of the websocket upgrade is remembered:
	// meanwhile new sessions on that node use the next transport (long-polling) at once instead of
	// paying a refused upgrade each. Zero: DefaultWebSocketRefusalTTL; negative: not remembered.
	WebSocketRefusalTTL time.Duration

	// SpareClients is how many started CometD clients (handshaken, connected, joined to nothing)
	// the connector keeps per route it has joined on, so that a new join there sends only its
	// join call (see spare.go). Zero: DefaultSpareClients; negative: none, every join handshakes.
	SpareClients int

	// LostAfter is how long a session's Bayeux connection may stay disconnected (the CometD client
	// retrying) before the session counts as lost (EventLost, after a best-effort REST stop).
	// Default 60s.
	LostAfter time.Duration

	// AgentViewPath is the agent page below the node URL. Default "/slave.html".
	AgentViewPath string

	// AgentViewFragment is the template of the agent view URL's fragment (after '#'; Genesys
	// passes slave.html's parameters in the fragment, never the query). The placeholders
	// {token} (the 9-digit session token) and {sessionId} (the sessionHistoryId) are replaced,
	// query-escaped. It must contain {token}. Default DefaultAgentViewFragment, which is
	// [INFERRED]: see there.
	AgentViewFragment string

	// ControllerName is the "name" sent on join when the trigger names no agent. When the
	// trigger has an AgentID, the agent id is sent as the name instead, so that the server can
	// enforce one live session per agent. Optional: without either, no name is sent.
	ControllerName string

	// EventBuffer is the capacity of a session's event channel (made when Events is first called,
	// or an event comes before Feed; a fed session has none). Default 16.
	EventBuffer int

	// RoundTripper is the HTTP transport of the REST calls. Default: a clone of
	// http.DefaultTransport (with TLSConfig) owned by the Connector and closed by Connector.Close.
	//
	// When set, it also carries the CometD long-polling requests of every session (through
	// net/http: for an HTTP proxy, or a test transport), at net/http's cost per connection (two
	// goroutines and its buffers). Left nil, the sessions use the CometD client's own lean
	// HTTP/1.1 and websocket connections, which dial directly (no proxy).
	RoundTripper http.RoundTripper

	// TLSConfig is used for https nodes: by every session's CometD connections, and by the REST
	// calls when RoundTripper is nil. Nil means the system roots. One is shared by all sessions.
	TLSConfig *tls.Config

	// Breakers are the per-node circuit breakers every server call goes through. Share one set
	// between connectors that talk to the same nodes. Default: a new set built from Breaker.
	Breakers *connector.Breakers
	// Breaker configures the default Breakers (ignored when Breakers is set).
	Breaker connector.BreakerSettings

	// Logger receives the connector's logs (component=gcb). Session and user tokens are logged
	// masked, cookie values never. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig is the zero Config with every default filled in: what each zero field means.
// ClusterURL, which is required, and Origin, which is derived from it, stay empty.
func DefaultConfig() Config {
	c, _ := Config{}.withDefaults() // refused for its missing ClusterURL only
	return c
}

// withDefaults returns a copy of c with every zero field set to its default and checks the rest.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	c.ClusterURL = strings.TrimRight(strings.TrimSpace(c.ClusterURL), "/")
	if c.ClusterURL == "" {
		errs = append(errs, errors.New("gcb: ClusterURL is required"))
	} else if err := connector.CheckBaseURL(c.ClusterURL); err != nil {
		errs = append(errs, fmt.Errorf("gcb: ClusterURL: %w", err))
	}
	if c.Origin == "" && len(errs) == 0 {
		u, _ := url.Parse(c.ClusterURL)
		c.Origin = u.Scheme + "://" + u.Host
	}
	if c.CometDPath == "" {
		c.CometDPath = DefaultCometDPath
	}
	if !strings.HasPrefix(c.CometDPath, "/") {
		errs = append(errs, fmt.Errorf("gcb: CometDPath %q must start with '/'", c.CometDPath))
	}
	if len(c.Transports) == 0 {
		c.Transports = []string{cometd.TransportWebSocket, cometd.TransportLongPolling}
	} else {
		c.Transports = append([]string(nil), c.Transports...)
	}
	for _, tr := range c.Transports {
		if tr != cometd.TransportWebSocket && tr != cometd.TransportLongPolling {
			errs = append(errs, fmt.Errorf("gcb: unknown transport %q (want %q or %q)", tr, cometd.TransportWebSocket, cometd.TransportLongPolling))
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RequestTimeout", &c.RequestTimeout, DefaultRequestTimeout},
		{"MaxNetworkDelay", &c.MaxNetworkDelay, DefaultMaxNetworkDelay},
		{"BackoffIncrement", &c.BackoffIncrement, DefaultBackoffIncrement},
		{"MaxBackoff", &c.MaxBackoff, DefaultMaxBackoff},
		{"JoinTimeout", &c.JoinTimeout, DefaultJoinTimeout},
		{"StopTimeout", &c.StopTimeout, DefaultStopTimeout},
		{"DisconnectTimeout", &c.DisconnectTimeout, DefaultDisconnectTimeout},
		{"LeaveGrace", &c.LeaveGrace, DefaultLeaveGrace},
		{"LostAfter", &c.LostAfter, DefaultLostAfter},
		{"RejoinWindow", &c.RejoinWindow, 0},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("gcb: %s must not be negative (got %s)", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if c.WebSocketRefusalTTL == 0 {
		c.WebSocketRefusalTTL = DefaultWebSocketRefusalTTL
	}
	if c.MaxConcurrentJoins < 0 {
		errs = append(errs, fmt.Errorf("gcb: MaxConcurrentJoins must not be negative (got %d)", c.MaxConcurrentJoins))
	} else if c.MaxConcurrentJoins == 0 {
		c.MaxConcurrentJoins = DefaultMaxConcurrentJoins
	}
	if c.SpareClients == 0 {
		c.SpareClients = DefaultSpareClients
	} else if c.SpareClients > maxSpareClients {
		errs = append(errs, fmt.Errorf("gcb: SpareClients must be at most %d (got %d)", maxSpareClients, c.SpareClients))
	}
	if c.AgentViewPath == "" {
		c.AgentViewPath = DefaultAgentViewPath
	}
	if !strings.HasPrefix(c.AgentViewPath, "/") {
		errs = append(errs, fmt.Errorf("gcb: AgentViewPath %q must start with '/'", c.AgentViewPath))
	}
	if c.AgentViewFragment == "" {
		c.AgentViewFragment = DefaultAgentViewFragment
	}
	c.AgentViewFragment = strings.TrimPrefix(c.AgentViewFragment, "#")
	if !strings.Contains(c.AgentViewFragment, "{token}") {
		errs = append(errs, fmt.Errorf("gcb: AgentViewFragment %q must contain {token}", c.AgentViewFragment))
	}
	if c.EventBuffer < 0 {
		errs = append(errs, fmt.Errorf("gcb: EventBuffer must not be negative (got %d)", c.EventBuffer))
	} else if c.EventBuffer == 0 {
		c.EventBuffer = DefaultEventBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, errors.Join(errs...)
}
