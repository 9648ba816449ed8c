package configs

import (
	"fmt"
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
	case hasQueryOrFragment(u, s):
		return "must not have a query or a fragment"
	}
	return ""
}

// hasQueryOrFragment reports whether the URL s, parsed as u, has a query or a fragment, even an
// empty one ("x?", "x#").
func hasQueryOrFragment(u *url.URL, s string) bool {
	return u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#")
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

// maxConcurrentJoins bounds genesys.max_concurrent_joins.
const maxConcurrentJoins = 10000

// maxSpareClients bounds genesys.spare_clients (gcb's own bound).
const maxSpareClients = 16

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
	if hasQueryOrFragment(u, s) {
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
