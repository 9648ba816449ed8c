package cec

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The defaults and bounds of Config.
const (
	// DefaultTokenExpire is the access token lifetime asked of tokenByAkSk (X-Token-Expire):
	// CEC's maximum, so that the token is renewed as seldom as CEC allows.
	DefaultTokenExpire = 3600 * time.Second
	// MaxTokenExpire is CEC's maximum for X-Token-Expire.
	MaxTokenExpire = 3600 * time.Second
	// MinTokenExpire is the shortest lifetime Config accepts: one second, CEC's own unit. A short
	// lifetime is renewed often (at half of it, below two minutes); 3600 s is the sensible value.
	MinTokenExpire = time.Second
	// DefaultRequestTimeout bounds one HTTP request to CEC.
	DefaultRequestTimeout = 10 * time.Second
)

// Config configures the CEC co-browse connector. Its zero value is not usable: Domain, AppKey,
// AppSecret and TenantSpaceID are required.
type Config struct {
	// Domain is the CEC domain's base URL, e.g. https://service.besclouds.com: tokenByAkSk is
	// POSTed to Domain + "/apigovernance/api/oauth/tokenByAkSk", getConnectionInfo to Domain +
	// "/apiaccess/api/cobrowse/getConnectionInfo". An absolute http(s) URL without credentials,
	// query or fragment (connector.CheckBaseURL); a trailing slash is removed. HTTPS in
	// production: CEC calls plain HTTP insecure.
	Domain string
	// AppKey is the API Fabric app key (AK): tokenByAkSk's app_key and every call's x-app-key.
	AppKey string
	// AppSecret is the API Fabric app secret (SK): tokenByAkSk's app_secret. Never printed.
	AppSecret Secret
	// TenantSpaceID is the tenant space every call names in X-TenantSpaceID.
	TenantSpaceID string
	// TokenExpire is the access token lifetime asked of tokenByAkSk (X-Token-Expire), whole
	// seconds within [MinTokenExpire, MaxTokenExpire]. Zero: DefaultTokenExpire (3600 s).
	TokenExpire time.Duration
	// RequestTimeout bounds one HTTP request (tokenByAkSk, getConnectionInfo,
	// releaseConnection). Zero: DefaultRequestTimeout.
	RequestTimeout time.Duration
	// ReleaseURL, when set, is the full URL of the web adapter's releaseConnection, e.g.
	// https://{host}/service-cloud/rest/webadapter/v1/connectionInfo/releaseConnection: Stop and
	// StopHandle call it to end a session at the server. Empty: the pages end the session (the
	// controller sends them the end messages). See docs/cec.md for what it is sent.
	ReleaseURL string
	// Breaker configures the circuit breaker of the domain, which guards Join only: a stop or a
	// re-join never waits for a breaker that other sessions' failures opened. Its Logger
	// defaults to Logger. Ignored when Breakers is set.
	Breaker connector.BreakerSettings
	// Breakers, when set, is the set of per-node breakers Join goes through (one shared with other
	// vendors' connectors); the domain is its node.
	Breakers *connector.Breakers
	// Logger receives the connector's logs (component=cec). Access tokens and connectParams only
	// masked, the app secret never. Default: discard.
	Logger *slog.Logger
	// RoundTripper carries the HTTP requests (tests). Default: a transport of the connector's
	// own, released by Close.
	RoundTripper http.RoundTripper
	// TLSConfig is the TLS of the transport the connector makes (RoundTripper nil): a private
	// CA's RootCAs, say. Nil: the system roots.
	TLSConfig *tls.Config
	// Now is the clock (tests): token renewal, activation and deactivation times, room ids.
	// Default time.Now.
	Now func() time.Time
}

func (c Config) String() string {
	return fmt.Sprintf("cec.Config{Domain:%q AppKey:%q AppSecret:%s TenantSpaceID:%q TokenExpire:%s RequestTimeout:%s ReleaseURL:%q}",
		c.Domain, c.AppKey, c.AppSecret, c.TenantSpaceID, c.TokenExpire, c.RequestTimeout, c.ReleaseURL)
}

// Format prints String for every verb.
func (c Config) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without its secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("domain", c.Domain), slog.String("app_key", c.AppKey),
		slog.String("app_secret", c.AppSecret.String()), slog.String("tenant_space_id", c.TenantSpaceID),
		slog.Duration("token_expire", c.TokenExpire), slog.Duration("request_timeout", c.RequestTimeout),
		slog.String("release_url", c.ReleaseURL))
}

// check fills cfg's defaults and reports every problem at once.
func (c *Config) check() error {
	var errs []error
	c.Domain = strings.TrimRight(strings.TrimSpace(c.Domain), "/")
	if c.Domain == "" {
		errs = append(errs, errors.New("cec: Domain is required"))
	} else if err := connector.CheckBaseURL(c.Domain); err != nil {
		errs = append(errs, fmt.Errorf("cec: Domain: %w", err))
	}
	for _, f := range []struct{ name, v string }{{"AppKey", c.AppKey}, {"TenantSpaceID", c.TenantSpaceID}} {
		switch {
		case f.v == "":
			errs = append(errs, fmt.Errorf("cec: %s is required", f.name))
		case !headerSafe(f.v):
			errs = append(errs, fmt.Errorf("cec: %s must be printable ASCII without surrounding space (it is sent as a header)", f.name))
		}
	}
	if strings.TrimSpace(string(c.AppSecret)) == "" {
		errs = append(errs, errors.New("cec: AppSecret is required"))
	}
	switch {
	case c.TokenExpire == 0:
		c.TokenExpire = DefaultTokenExpire
	case c.TokenExpire < MinTokenExpire || c.TokenExpire > MaxTokenExpire || c.TokenExpire%time.Second != 0:
		errs = append(errs, fmt.Errorf("cec: TokenExpire must be whole seconds within [%s, %s] (got %s)",
			MinTokenExpire, MaxTokenExpire, c.TokenExpire))
	}
	switch {
	case c.RequestTimeout == 0:
		c.RequestTimeout = DefaultRequestTimeout
	case c.RequestTimeout < 0:
		errs = append(errs, fmt.Errorf("cec: RequestTimeout must not be negative (got %s)", c.RequestTimeout))
	}
	c.ReleaseURL = strings.TrimSpace(c.ReleaseURL)
	if c.ReleaseURL != "" {
		if err := connector.CheckBaseURL(c.ReleaseURL); err != nil {
			errs = append(errs, fmt.Errorf("cec: ReleaseURL: %w", err))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Breaker.Logger == nil {
		c.Breaker.Logger = c.Logger
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return errors.Join(errs...)
}
