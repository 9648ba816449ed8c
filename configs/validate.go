package configs

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// Validate checks every value and returns an *Error listing every problem, each as
// "<key>: <reason>", or nil. It checks everything but that a vendor is enabled and that
// vendors.default names an enabled one, which only `run` needs (the demo mode brings its own
// vendor servers): use ValidateRun there. Parse and Load call Validate.
func (c Config) Validate() error { return c.validate(false) }

// ValidateRun is Validate plus what only `cobrowse-connector run` needs: at least one vendor
// enabled (genesys.url set, zoom.enabled or cec.enabled) and vendors.default naming an enabled one.
func (c Config) ValidateRun() error { return c.validate(true) }

func (c Config) validate(run bool) error {
	l := c.problems(run)
	if len(l.problems) == 0 {
		return nil
	}
	return &Error{Problems: l.problems, More: l.more}
}

// SweepSchedule parses Sweep as the controller does (cron.ParseStandard), refusing what
// Validate refuses.
func (c ControllerConfig) SweepSchedule() (cron.Schedule, error) { return parseSweep(c.Sweep) }

// The allowed values, in the order messages list them.
var (
	logLevels  = []string{LogDebug, LogInfo, LogWarn, LogError}
	logFormats = []string{LogFormatAuto, LogFormatText, LogFormatJSON}
	roles      = []string{RoleCustomer, RoleAgent, RoleBot, RoleSystem}
	transports = []string{TransportWebSocket, TransportLongPolling}
	natsScheme = []string{"nats", "tls", "ws", "wss"}

	// jsName is a JetStream stream, consumer or key-value bucket name as the config allows it.
	jsName   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
)

// maxPayload is the largest max_payload NATS supports (its MAX_PAYLOAD_MAX_SIZE).
const maxPayload = 8 << 20

func (c Config) problems(run bool) problemList {
	var l problemList

	oneOf(&l, "log.level", c.Log.Level, logLevels)
	oneOf(&l, "log.format", c.Log.Format, logFormats)
	positive(&l, "shutdown_timeout", c.ShutdownTimeout)

	// nats
	n := c.NATS
	if n.URL != "" {
		entries := strings.Split(n.URL, ",")
		for i, entry := range entries {
			reason := checkNATSURL(strings.TrimSpace(entry))
			switch {
			case reason == "":
			case len(entries) > 1:
				l.addf("nats.url", "entry %d: %s", i, reason)
			default:
				l.addf("nats.url", "%s", reason)
			}
		}
	}
	if n.Password != "" && n.User == "" {
		l.addf("nats.password", "set without nats.user")
	}
	if n.Token != "" && (n.User != "" || n.Password != "") {
		l.addf("nats.token", "use either nats.token or nats.user and nats.password, not both")
	}
	if n.CredentialsFile != "" && (n.User != "" || n.Password != "" || n.Token != "") {
		l.addf("nats.credentials_file", "use either nats.credentials_file or nats.user/nats.password or nats.token, not several")
	}
	if n.NKeySeedFile != "" && (n.User != "" || n.Password != "" || n.Token != "" || n.CredentialsFile != "") {
		l.addf("nats.nkey_seed_file", "use one way to authenticate: nats.nkey_seed_file, nats.credentials_file, nats.user/nats.password or nats.token")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		l.addf("nats.tls", "cert_file and key_file go together: set both or neither")
	}
	positive(&l, "nats.connect_wait", n.ConnectWait)
	if run && n.URL == "" && !n.Embedded.Enabled {
		l.addf("nats.url", "required: the daemon reads and publishes on the contact center's NATS (nats.embedded.enabled: true starts an embedded server, for development)")
	}
	switch h := n.Embedded.Host; {
	case h == "":
		l.addf("nats.embedded.host", "required")
	case net.ParseIP(h) == nil && (len(h) > 253 || !hostName.MatchString(h)):
		l.addf("nats.embedded.host", "%s is not a host name or an IP address", quote(h))
	}
	if p := n.Embedded.Port; p != -1 && (p < 1 || p > 65535) {
		l.addf("nats.embedded.port", "must be -1 (a random port) or between 1 and 65535")
	}
	switch {
	case n.Prefix == "":
		l.addf("nats.prefix", "required")
	case strings.ContainsAny(n.Prefix, ".*>") || strings.IndexFunc(n.Prefix, notSubjectRune) >= 0:
		l.addf("nats.prefix", "must be a single NATS subject token")
	}
	jetStreamName(&l, "nats.inbound.stream", n.Inbound.Stream)
	jetStreamName(&l, "nats.inbound.durable", n.Inbound.Durable)
	if n.Inbound.MaxPayload < 1 || n.Inbound.MaxPayload > maxPayload {
		l.addf("nats.inbound.max_payload", "must be between 1 and %d (8 MiB)", maxPayload)
	}
	positive(&l, "nats.inbound.ack_wait", n.Inbound.AckWait)
	if n.Inbound.MaxDeliver < 1 {
		l.addf("nats.inbound.max_deliver", "must be at least 1")
	} else if len(n.Inbound.Backoff) >= n.Inbound.MaxDeliver {
		l.addf("nats.inbound.backoff", "has %d steps, must be fewer than max_deliver (%d)", len(n.Inbound.Backoff), n.Inbound.MaxDeliver)
	}
	for i, step := range n.Inbound.Backoff {
		positive(&l, index("nats.inbound.backoff", i), step)
	}
	if n.Inbound.MaxAckPending < 1 {
		l.addf("nats.inbound.max_ack_pending", "must be > 0")
	}
	jetStreamName(&l, "nats.outbound.stream", n.Outbound.Stream)
	if n.Outbound.Stream != "" && n.Outbound.Stream == n.Inbound.Stream {
		l.addf("nats.outbound.stream", "must differ from nats.inbound.stream")
	}
	positive(&l, "nats.outbound.duplicate_window", n.Outbound.DuplicateWindow)
	positive(&l, "nats.outbound.publish_timeout", n.Outbound.PublishTimeout)
	jetStreamName(&l, "nats.outbound.handoff_stream", n.Outbound.HandoffStream)
	if s := n.Outbound.HandoffStream; s != "" && (s == n.Outbound.Stream || s == n.Inbound.Stream) {
		l.addf("nats.outbound.handoff_stream", "must differ from nats.inbound.stream and nats.outbound.stream")
	}
	positive(&l, "nats.outbound.handoff_max_age", n.Outbound.HandoffMaxAge)
	jetStreamName(&l, "nats.kv_bucket", n.KVBucket)
	between(&l, "nats.replicas", n.Replicas, 1, 5)
	jetStreamName(&l, "cluster.member", c.Cluster.Member)
	jetStreamName(&l, "cluster.group", c.Cluster.Group)
	between(&l, "cluster.partitions", c.Cluster.Partitions, 1, 1024)
	if c.Cluster.PinnedTTL.Duration < time.Second {
		l.addf("cluster.pinned_ttl", "must be at least 1s")
	}
	notNegative(&l, "nats.kv_ttl", n.KVTTL)
	notNegative(&l, "nats.inbound.max_age", n.Inbound.MaxAge)
	notNegative(&l, "nats.outbound.max_age", n.Outbound.MaxAge)
	if a, w := n.Outbound.MaxAge.Duration, n.Outbound.DuplicateWindow.Duration; a > 0 && a < w {
		l.addf("nats.outbound.max_age", "must be at least duplicate_window (%s)", n.Outbound.DuplicateWindow)
	}

	// chat
	if len(c.Chat.TriggerRoles) == 0 {
		l.addf("chat.trigger_roles", "must name at least one role (%s)", strings.Join(roles, ", "))
	}
	listOf(&l, "chat.trigger_roles", c.Chat.TriggerRoles, roles, "a role")

	// controller
	ct := c.Controller
	positive(&l, "controller.no_agent_join", ct.NoAgentJoin)
	positive(&l, "controller.inactivity", ct.Inactivity)
	if ct.Sweep == "" {
		l.addf("controller.sweep", "required")
	} else if _, err := parseSweep(ct.Sweep); err != nil {
		l.addf("controller.sweep", "%v", err)
	}
	positive(&l, "controller.stop_wait", ct.StopWait)
	positive(&l, "controller.join_timeout", ct.JoinTimeout)
	if ct.MaxInteractions < 1 {
		l.addf("controller.max_interactions", "must be > 0")
	}
	positive(&l, "controller.retry_delay", ct.RetryDelay)
	positive(&l, "controller.stop_retry", ct.StopRetry)
	atMost(&l, "controller.stop_retry", ct.StopRetry, time.Minute)
	count32(&l, "controller.breaker.failures", ct.Breaker.Failures)
	positive(&l, "controller.breaker.open_for", ct.Breaker.OpenFor)
	count32(&l, "controller.breaker.half_open_requests", ct.Breaker.HalfOpenRequests)

	// genesys
	g := c.Genesys
	switch reason := checkBaseURL(g.URL); {
	case g.URL == "":
		if run && len(c.EnabledVendors()) == 0 {
			l.addf("genesys.url", "required: no vendor is enabled (set genesys.url, zoom.enabled or cec.enabled)")
		}
	case reason != "":
		l.addf("genesys.url", "%s", reason)
	default:
		u, _ := url.Parse(g.URL)
		if u.User != nil {
			// The URL reaches logs, errors and the agent view URL; the reason never quotes it.
			l.addf("genesys.url", "must not carry credentials (Genesys Co-browse has no URL authentication)")
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(g.URL, "#") {
			l.addf("genesys.url", "must not have a query or a fragment")
		}
	}
	if g.Origin != "" {
		if reason := checkOrigin(g.Origin); reason != "" {
			l.addf("genesys.origin", "%s", reason)
		}
	}
	if p := g.CometDPath; !strings.HasPrefix(p, "/") || (p != "/" && strings.HasSuffix(p, "/")) || strings.ContainsAny(p, "?# ") {
		l.addf("genesys.cometd_path", "must be a path starting with '/', without a trailing slash, query or fragment")
	}
	if len(g.Transports) == 0 {
		l.addf("genesys.transports", "must name at least one transport (%s)", strings.Join(transports, ", "))
	}
	listOf(&l, "genesys.transports", g.Transports, transports, "a transport")
	positive(&l, "genesys.request_timeout", g.RequestTimeout)
	positive(&l, "genesys.max_network_delay", g.MaxNetworkDelay)
	positive(&l, "genesys.lost_after", g.LostAfter)
	if !strings.Contains(g.AgentViewFragment, "{token}") {
		l.addf("genesys.agent_view_fragment", "must contain {token}")
	}
	notNegativeMeaning(&l, "genesys.rejoin_window", g.RejoinWindow, "twice the maxInterval of the server's handshake advice, else 30s")
	between(&l, "genesys.max_concurrent_joins", g.MaxConcurrentJoins, 1, maxConcurrentJoins)
	notNegativeMeaning(&l, "genesys.websocket_refusal_ttl", g.WebSocketRefusalTTL, "not remembered")

	c.vendorProblems(&l, run)
	return l
}

// EnabledVendors lists the enabled vendors in a fixed order: genesys (genesys.url set), zoom
// (zoom.enabled), cec (cec.enabled).
func (c Config) EnabledVendors() []string {
	var out []string
	if c.Genesys.URL != "" {
		out = append(out, VendorGenesys)
	}
	if c.Zoom.Enabled {
		out = append(out, VendorZoom)
	}
	if c.CEC.Enabled {
		out = append(out, VendorCEC)
	}
	return out
}

// DefaultVendor is vendors.default, or the one enabled vendor when it is empty ("" when none or
// several are enabled: ValidateRun refuses that).
func (c Config) DefaultVendor() string {
	if c.Vendors.Default != "" {
		return c.Vendors.Default
	}
	if v := c.EnabledVendors(); len(v) == 1 {
		return v[0]
	}
	return ""
}

// vendorProblems checks vendors, http, zoom, nats.webhook, controller.end_wait and cec. What a
// vendor needs only when it is enabled is checked then; what is set is checked always.
func (c Config) vendorProblems(l *problemList, run bool) {
	vendors := []string{VendorGenesys, VendorZoom, VendorCEC}
	enabled := c.EnabledVendors()
	switch d := c.Vendors.Default; {
	case d != "" && !slices.Contains(vendors, d):
		l.addf("vendors.default", "%s is not one of %s", quote(d), strings.Join(vendors, ", "))
	case d != "" && run && !slices.Contains(enabled, d):
		l.addf("vendors.default", "%s is not enabled", quote(d))
	case d == "" && len(enabled) > 1:
		l.addf("vendors.default", "required when several vendors are enabled (%s)", strings.Join(enabled, ", "))
	}
	positive(l, "controller.end_wait", c.Controller.EndWait)
	notNegativeMeaning(l, "controller.retention", c.Controller.Retention, "kept until deleted")
	if r := c.Controller.Retention.Duration; r > 0 && r <= c.NATS.Outbound.DuplicateWindow.Duration {
		l.addf("controller.retention", "must be longer than nats.outbound.duplicate_window (%s), or 0s", c.NATS.Outbound.DuplicateWindow)
	}
	notNegativeMeaning(l, "zoom.rotation_overlap", c.Zoom.RotationOverlap, "a replaced secret is refused at once")
	jetStreamName(l, "nats.webhook.stream", c.NATS.Webhook.Stream)
	if s := c.NATS.Webhook.Stream; s != "" && (s == c.NATS.Inbound.Stream || s == c.NATS.Outbound.Stream || s == c.NATS.Outbound.HandoffStream) {
		l.addf("nats.webhook.stream", "must differ from the inbound, outbound and handoff streams")
	}
	positive(l, "nats.webhook.max_age", c.NATS.Webhook.MaxAge)

	// http
	h := c.HTTP
	if h.Listen != "" {
		if reason := checkListen(h.Listen); reason != "" {
			l.addf("http.listen", "%s", reason)
		}
	}
	if h.PublicListen != "" {
		if reason := checkListen(h.PublicListen); reason != "" {
			l.addf("http.public_listen", "%s", reason)
		}
	}
	if (h.PublicTLS.CertFile == "") != (h.PublicTLS.KeyFile == "") {
		l.addf("http.public_tls", "cert_file and key_file go together: set both or neither")
	}
	if h.PublicTLS.ClientCAFile != "" && h.PublicTLS.CertFile == "" {
		l.addf("http.public_tls.client_ca_file", "needs cert_file and key_file: client certificates come over TLS")
	}
	positive(l, "http.read_header_timeout", h.ReadHeaderTimeout)
	positive(l, "http.read_timeout", h.ReadTimeout)
	positive(l, "http.write_timeout", h.WriteTimeout)
	positive(l, "http.idle_timeout", h.IdleTimeout)
	between(l, "http.max_header_bytes", h.MaxHeaderBytes, 1024, 1<<20)

	// zoom
	z := c.Zoom
	for _, u := range []struct{ key, v string }{{"zoom.api_url", z.APIURL}, {"zoom.oauth_url", z.OAuthURL}, {"zoom.desk_url", z.DeskURL}} {
		if reason := checkServiceURL(u.v); reason != "" {
			l.addf(u.key, "%s", reason)
		}
	}
	if z.TokenTTL.Duration < 30*time.Minute || z.TokenTTL.Duration > 48*time.Hour || z.TokenTTL.Duration%time.Second != 0 {
		l.addf("zoom.token_ttl", "must be whole seconds within Zoom's [30m, 48h]")
	}
	oneOf(l, "zoom.agent_view", z.AgentView, []string{AgentViewDesk, AgentViewSDK})
	if z.PINParam == "" || strings.ContainsAny(z.PINParam, "&=?# ") {
		l.addf("zoom.pin_param", "must be a query parameter name")
	}
	positive(l, "zoom.request_timeout", z.RequestTimeout)
	positive(l, "zoom.rejoin_window", z.RejoinWindow)
	positive(l, "zoom.byop_poll_interval", z.BYOPPollInterval)
	positive(l, "zoom.byop_start_wait", z.BYOPStartWait)
	positive(l, "zoom.webhook.window", z.Webhook.Window)
	between(l, "zoom.webhook.max_body", z.Webhook.MaxBody, 1024, 1<<20)
	httpPath(l, "zoom.webhook.path", z.Webhook.Path)
	httpPath(l, "zoom.token_endpoint.path", z.TokenEndpoint.Path)
	if z.Webhook.Path != "" && z.Webhook.Path == z.TokenEndpoint.Path {
		l.addf("zoom.token_endpoint.path", "must differ from zoom.webhook.path")
	}
	if z.Enabled {
		for _, r := range []struct{ key, v string }{{"zoom.sdk_key", z.SDKKey}, {"zoom.sdk_secret", string(z.SDKSecret)},
			{"zoom.account_id", z.AccountID}, {"zoom.client_id", z.ClientID}, {"zoom.client_secret", string(z.ClientSecret)},
			{"zoom.webhook.secret", string(z.Webhook.Secret)}} {
			if strings.TrimSpace(r.v) == "" {
				l.addf(r.key, "required when zoom.enabled is true")
			}
		}
		if h.PublicListen == "" {
			l.addf("http.public_listen", "required when zoom.enabled is true (Zoom's webhooks and the token endpoint arrive there)")
		}
		if z.TokenEndpoint.BearerSecret == "" && !z.TokenEndpoint.ClientCert {
			l.addf("zoom.token_endpoint.bearer_secret", "required when zoom.enabled is true, unless zoom.token_endpoint.client_cert is true: the token endpoint is never open")
		}
	}
	if z.Enabled && c.NATS.Webhook.MaxAge.Duration > 0 && c.NATS.Webhook.MaxAge.Duration < z.Webhook.Window.Duration {
		l.addf("nats.webhook.max_age", "must be at least zoom.webhook.window (%s): a replayed delivery the window accepts must still be found as a duplicate", z.Webhook.Window)
	}
	if z.TokenEndpoint.ClientCert && h.PublicTLS.ClientCAFile == "" {
		l.addf("zoom.token_endpoint.client_cert", "needs http.public_tls.client_ca_file to verify the certificates")
	}
	if z.Webhook.PreviousSecret != "" && z.Webhook.Secret == "" {
		l.addf("zoom.webhook.previous_secret", "set without zoom.webhook.secret")
	}
	if z.TokenEndpoint.PreviousBearerSecret != "" && z.TokenEndpoint.BearerSecret == "" {
		l.addf("zoom.token_endpoint.previous_bearer_secret", "set without zoom.token_endpoint.bearer_secret")
	}

	// cec
	e := c.CEC
	if e.Domain != "" {
		if reason := checkServiceURL(e.Domain); reason != "" {
			l.addf("cec.domain", "%s", reason)
		}
	}
	if e.ReleaseURL != "" {
		if reason := checkServiceURL(e.ReleaseURL); reason != "" {
			l.addf("cec.release_url", "%s", reason)
		}
	}
	if e.TokenExpire.Duration <= 0 || e.TokenExpire.Duration > time.Hour || e.TokenExpire.Duration%time.Second != 0 {
		l.addf("cec.token_expire", "must be whole seconds, more than 0s and at most 1h (X-Token-Expire <= 3600)")
	}
	positive(l, "cec.request_timeout", e.RequestTimeout)
	if e.Enabled {
		for _, r := range []struct{ key, v string }{{"cec.domain", e.Domain}, {"cec.app_key", e.AppKey},
			{"cec.app_secret", string(e.AppSecret)}, {"cec.tenant_space_id", e.TenantSpaceID}} {
			if strings.TrimSpace(r.v) == "" {
				l.addf(r.key, "required when cec.enabled is true")
			}
		}
	}
}

// checkServiceURL returns what is wrong with a vendor's URL, "" if nothing: checkBaseURL, without
// credentials, a query or a fragment. The reason never quotes the URL.
func checkServiceURL(s string) string {
	if s == "" {
		return "required"
	}
	if reason := checkBaseURL(s); reason != "" {
		return reason
	}
	u, _ := url.Parse(s)
	switch {
	case u.User != nil:
		return "must not carry credentials"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a query or a fragment"
	}
	return ""
}

// checkListen returns what is wrong with a listen address, "" if nothing: host:port with a port
// from 0 to 65535 (0: any free port) and an optional host name or IP address.
func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%s is not host:port (like :8443 or 0.0.0.0:8443)", quote(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "has a port out of range"
	}
	if host != "" && net.ParseIP(host) == nil && (len(host) > 253 || !hostName.MatchString(host)) {
		return fmt.Sprintf("%s is not a host name or an IP address", quote(host))
	}
	return ""
}

// httpPath refuses an HTTP path that does not start with '/' or that carries a query, a fragment
// or a space.
func httpPath(l *problemList, key, p string) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
		l.addf(key, "must be a path starting with '/', without a query, fragment or space")
	}
}

// maxConcurrentJoins bounds genesys.max_concurrent_joins.
const maxConcurrentJoins = 10000

func notNegative(l *problemList, key string, d Duration) {
	notNegativeMeaning(l, key, d, "no limit")
}

// notNegativeMeaning refuses a negative duration, saying what 0s means for the key.
func notNegativeMeaning(l *problemList, key string, d Duration, zero string) {
	if d.Duration < 0 {
		l.addf(key, "must not be negative (0s: %s)", zero)
	}
}

// atMost refuses a duration above limit (a non-positive one is left to positive).
func atMost(l *problemList, key string, d Duration, limit time.Duration) {
	if d.Duration > limit {
		l.addf(key, "must be at most %s", Duration{limit})
	}
}

func between(l *problemList, key string, n, lo, hi int) {
	if n < lo || n > hi {
		l.addf(key, "must be between %d and %d", lo, hi)
	}
}

func positive(l *problemList, key string, d Duration) {
	if d.Duration <= 0 {
		l.addf(key, "must be > 0")
	}
}

func count32(l *problemList, key string, n int) {
	switch {
	case n < 1:
		l.addf(key, "must be > 0")
	case n > math.MaxUint32:
		l.addf(key, "must be at most %d", uint32(math.MaxUint32))
	}
}

func oneOf(l *problemList, key, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		l.addf(key, "%s is not one of %s", quote(v), strings.Join(allowed, ", "))
	}
}

// listOf checks that every item is allowed and listed once.
func listOf(l *problemList, key string, items, allowed []string, what string) {
	for i, v := range items {
		switch {
		case !slices.Contains(allowed, v):
			l.addf(index(key, i), "%s is not %s (%s)", quote(v), what, strings.Join(allowed, ", "))
		case slices.Index(items, v) < i:
			l.addf(index(key, i), "%s is listed twice", quote(v))
		}
	}
}

func jetStreamName(l *problemList, key, v string) {
	switch {
	case v == "":
		l.addf(key, "required")
	case !jsName.MatchString(v):
		l.addf(key, "%s is not a valid JetStream name (letters, digits, '-' and '_')", quote(v))
	}
}

func notSubjectRune(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }

// checkNATSURL returns what is wrong with one entry of nats.url, "" if nothing. An entry is a URL
// (nats://, tls://, ws://, wss://) or host[:port], as the NATS client reads it: a non-empty host
// name or IP address, a port from 1 to 65535 when one is given, no query or fragment, and no path
// but on ws:// and wss://. A password in the entry never appears in the reason.
func checkNATSURL(entry string) string {
	if entry == "" {
		return "is empty"
	}
	shown := quote(redactURL(entry))
	notNATS := shown + " is not a NATS URL (nats://, tls://, ws://, wss:// or host:port)"
	s := entry
	if !strings.Contains(s, "://") {
		if strings.ContainsAny(s, "/?#") {
			return notNATS // "nats//host", "nats:/host", "host:4222/x": not host:port
		}
		s = "nats://" + s // as the NATS client reads host:port
	}
	u, err := url.Parse(s)
	if err != nil {
		return shown + " is not a valid URL"
	}
	if !slices.Contains(natsScheme, u.Scheme) {
		return notNATS
	}
	if reason := checkHostPort(u); reason != "" {
		return shown + " " + reason
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return shown + " has a query or a fragment"
	}
	if (u.Path != "" || u.RawPath != "") && u.Scheme != "ws" && u.Scheme != "wss" {
		return shown + " has a path (only ws:// and wss:// URLs take one)"
	}
	return ""
}

// urlHostName is a host name in a URL: dot-separated labels of letters, digits, '-' and '_' (which
// Docker and some DNS servers allow), not starting or ending with '-', with an optional final dot.
var urlHostName = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$`)

// checkHostPort returns what is wrong with the host and port of a parsed URL, "" if nothing: the
// host must be a host name or an IPv4 address, or an IPv6 address in brackets; a port, when the URL
// has a ':' after the host, must be a number from 1 to 65535. The reason never quotes the URL.
func checkHostPort(u *url.URL) string {
	host := u.Hostname()
	if host == "" {
		return "has no host"
	}
	if strings.HasPrefix(u.Host, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "has an invalid host name"
		}
	} else if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return "has an invalid host name" // an IPv6 address without brackets
		}
	} else if len(host) > 253 || !urlHostName.MatchString(host) {
		return "has an invalid host name"
	}
	switch p := u.Port(); {
	case p == "" && strings.HasSuffix(u.Host, ":"):
		return "has an empty port"
	case p != "":
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has a port out of range"
		}
	}
	return ""
}

// checkBaseURL returns what is wrong with genesys.url, "" if nothing: an absolute http or https
// URL with a valid host and port and no trailing slash. Credentials, a query and a fragment are
// checked by the caller. The reason never quotes the URL (it might carry a password).
func checkBaseURL(s string) string {
	const base = "must be an http or https URL without a trailing slash"
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "is not a valid URL (a space or a control character)"
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a valid URL"
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || !strings.HasPrefix(s[len(u.Scheme):], "://") {
		return base
	}
	if reason := checkHostPort(u); reason != "" {
		if reason == "has no host" {
			return base
		}
		return reason
	}
	if strings.HasSuffix(s, "/") {
		return base
	}
	return ""
}

// checkOrigin returns what is wrong with genesys.origin, "" if nothing: scheme://host[:port] for
// http or https, and nothing more.
func checkOrigin(s string) string {
	const origin = "must be an origin: http or https, a host and an optional port (like https://agent.example.com)"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || s != u.Scheme+"://"+u.Host {
		return origin
	}
	return checkHostPort(u)
}

// parseSweep parses a sweep spec with cron.ParseStandard, guarding the parser's panic on a
// timezone prefix without a spec after it, and refusing an @every that cron would round (it runs
// whole seconds, at least one).
func parseSweep(spec string) (sched cron.Schedule, err error) {
	rest := spec
	if strings.HasPrefix(rest, "TZ=") || strings.HasPrefix(rest, "CRON_TZ=") {
		_, after, ok := strings.Cut(rest, " ")
		if !ok {
			return nil, fmt.Errorf("invalid cron spec: a time zone without a schedule")
		}
		rest = strings.TrimSpace(after)
	}
	if every, ok := strings.CutPrefix(rest, "@every "); ok {
		if d, perr := time.ParseDuration(strings.TrimSpace(every)); perr == nil && (d < time.Second || d%time.Second != 0) {
			return nil, fmt.Errorf("invalid cron spec: @every takes whole seconds, at least 1s")
		}
	}
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("invalid cron spec: %v", r)
		}
	}()
	sched, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid cron spec: %w", err)
	}
	return sched, nil
}
