package configs

import (
	"slices"
	"strings"
)

// A rule is a constraint between keys, declared once in rules: keys are the keys it involves
// (each one's documentation lists it), doc says it in words, and check reports a problem at the
// key the user has to change. A run rule is checked by ValidateRun only.
type rule struct {
	keys  []string
	doc   string
	run   bool
	check func(c *Config, r *report)
}

// rules are the constraints between keys, in no particular order: problems are reported in the
// order of the keys (see Config.problems).
var rules = []rule{
	{
		keys: []string{"nats.url", "nats.embedded.enabled"},
		doc:  "Required by `run` unless nats.embedded.enabled is true.",
		run:  true,
		check: func(c *Config, r *report) {
			if c.NATS.URL == "" && !c.NATS.Embedded.Enabled {
				r.addf("nats.url", "required: the daemon reads and publishes on the contact center's NATS (nats.embedded.enabled: true starts an embedded server, for development)")
			}
		},
	},
	{
		keys: []string{"nats.user", "nats.password"},
		doc:  "nats.password needs nats.user.",
		check: func(c *Config, r *report) {
			if c.NATS.Password != "" && c.NATS.User == "" {
				r.addf("nats.password", "set without nats.user")
			}
		},
	},
	{
		keys:  []string{"nats.user", "nats.password", "nats.token", "nats.credentials_file", "nats.nkey_seed_file"},
		doc:   "One way to authenticate at most: nats.user and nats.password, nats.token, nats.credentials_file or nats.nkey_seed_file.",
		check: natsAuthExclusive,
	},
	{
		keys:  []string{"nats.tls.cert_file", "nats.tls.key_file"},
		doc:   "nats.tls.cert_file and nats.tls.key_file go together: both or neither.",
		check: func(c *Config, r *report) { certKeyPair(r, "nats.tls", c.NATS.TLS.CertFile, c.NATS.TLS.KeyFile) },
	},
	{
		// The server's own rule (nats-server, server/consumer.go: a BackOff longer than
		// MaxDeliver is refused unless MaxDeliver is -1). chat.Config checks the same.
		keys: []string{"nats.inbound.backoff", "nats.inbound.max_deliver"},
		doc:  "nats.inbound.backoff has at most nats.inbound.max_deliver steps (NATS refuses more).",
		check: func(c *Config, r *report) {
			in := c.NATS.Inbound
			if in.MaxDeliver >= 1 && len(in.Backoff) > in.MaxDeliver {
				r.addf("nats.inbound.backoff", "has %d steps, must be at most max_deliver (%d)", len(in.Backoff), in.MaxDeliver)
			}
		},
	},
	{
		keys:  []string{"nats.inbound.stream", "nats.outbound.stream", "nats.outbound.handoff_stream", "nats.webhook.stream"},
		doc:   "The inbound, outbound, handoff and webhook streams are four different streams.",
		check: distinctStreams,
	},
	{
		keys: []string{"nats.outbound.max_age", "nats.outbound.duplicate_window"},
		doc:  "nats.outbound.max_age is 0s or at least nats.outbound.duplicate_window.",
		check: func(c *Config, r *report) {
			o := c.NATS.Outbound
			if o.MaxAge.Duration > 0 && o.MaxAge.Duration < o.DuplicateWindow.Duration {
				r.addf("nats.outbound.max_age", "must be at least duplicate_window (%s)", o.DuplicateWindow)
			}
		},
	},
	{
		keys: []string{"controller.retention", "nats.outbound.duplicate_window"},
		doc:  "controller.retention is 0s or longer than nats.outbound.duplicate_window.",
		check: func(c *Config, r *report) {
			if d := c.Controller.Retention.Duration; d > 0 && d <= c.NATS.Outbound.DuplicateWindow.Duration {
				r.addf("controller.retention", "must be longer than nats.outbound.duplicate_window (%s), or 0s", c.NATS.Outbound.DuplicateWindow)
			}
		},
	},
	{
		keys: []string{"vendors.default", "genesys.url", "zoom.enabled", "cec.enabled"},
		doc:  "vendors.default is required when several vendors are enabled.",
		check: func(c *Config, r *report) {
			if enabled := c.EnabledVendors(); c.Vendors.Default == "" && len(enabled) > 1 {
				r.addf("vendors.default", "required when several vendors are enabled (%s)", strings.Join(enabled, ", "))
			}
		},
	},
	{
		keys: []string{"vendors.default", "genesys.url", "zoom.enabled", "cec.enabled"},
		doc:  "`run` requires vendors.default, when set, to name an enabled vendor.",
		run:  true,
		check: func(c *Config, r *report) {
			d := c.Vendors.Default
			if slices.Contains(vendors, d) && !slices.Contains(c.EnabledVendors(), d) {
				r.addf("vendors.default", "%s is not enabled", quote(d))
			}
		},
	},
	{
		keys: []string{"genesys.url", "zoom.enabled", "cec.enabled"},
		doc:  "`run` requires a vendor: genesys.url set, zoom.enabled or cec.enabled.",
		run:  true,
		check: func(c *Config, r *report) {
			if len(c.EnabledVendors()) == 0 {
				r.addf("genesys.url", "required: no vendor is enabled (set genesys.url, zoom.enabled or cec.enabled)")
			}
		},
	},
	{
		keys: []string{"http.public_tls.cert_file", "http.public_tls.key_file"},
		doc:  "http.public_tls.cert_file and http.public_tls.key_file go together: both or neither.",
		check: func(c *Config, r *report) {
			certKeyPair(r, "http.public_tls", c.HTTP.PublicTLS.CertFile, c.HTTP.PublicTLS.KeyFile)
		},
	},
	{
		keys: []string{"http.public_tls.client_ca_file", "http.public_tls.cert_file"},
		doc:  "http.public_tls.client_ca_file needs http.public_tls.cert_file and key_file.",
		check: func(c *Config, r *report) {
			if t := c.HTTP.PublicTLS; t.ClientCAFile != "" && t.CertFile == "" {
				r.addf("http.public_tls.client_ca_file", "needs cert_file and key_file: client certificates come over TLS")
			}
		},
	},
	{
		keys: []string{"zoom.enabled", "zoom.sdk_key", "zoom.sdk_secret", "zoom.account_id", "zoom.client_id",
			"zoom.client_secret", "zoom.webhook.secret"},
		doc: "zoom.sdk_key, zoom.sdk_secret, zoom.account_id, zoom.client_id, zoom.client_secret and " +
			"zoom.webhook.secret are required when zoom.enabled is true.",
		check: zoomCredentials,
	},
	{
		keys: []string{"zoom.enabled", "http.public_listen"},
		doc:  "http.public_listen is required when zoom.enabled is true.",
		check: func(c *Config, r *report) {
			if c.Zoom.Enabled && c.HTTP.PublicListen == "" {
				r.addf("http.public_listen", "required when zoom.enabled is true (Zoom's webhooks and the token endpoint arrive there)")
			}
		},
	},
	{
		keys: []string{"zoom.enabled", "zoom.token_endpoint.bearer_secret", "zoom.token_endpoint.client_cert"},
		doc:  "When zoom.enabled is true, zoom.token_endpoint.bearer_secret is required unless zoom.token_endpoint.client_cert is true.",
		check: func(c *Config, r *report) {
			if t := c.Zoom.TokenEndpoint; c.Zoom.Enabled && t.BearerSecret == "" && !t.ClientCert {
				r.addf("zoom.token_endpoint.bearer_secret", "required when zoom.enabled is true, unless zoom.token_endpoint.client_cert is true: the token endpoint is never open")
			}
		},
	},
	{
		keys: []string{"nats.webhook.max_age", "zoom.webhook.window", "zoom.enabled"},
		doc:  "When zoom.enabled is true, nats.webhook.max_age is at least zoom.webhook.window.",
		check: func(c *Config, r *report) {
			a, w := c.NATS.Webhook.MaxAge.Duration, c.Zoom.Webhook.Window
			if c.Zoom.Enabled && a > 0 && a < w.Duration {
				r.addf("nats.webhook.max_age", "must be at least zoom.webhook.window (%s): a replayed delivery the window accepts must still be found as a duplicate", w)
			}
		},
	},
	{
		keys: []string{"zoom.token_endpoint.client_cert", "http.public_tls.client_ca_file"},
		doc:  "zoom.token_endpoint.client_cert needs http.public_tls.client_ca_file.",
		check: func(c *Config, r *report) {
			if c.Zoom.TokenEndpoint.ClientCert && c.HTTP.PublicTLS.ClientCAFile == "" {
				r.addf("zoom.token_endpoint.client_cert", "needs http.public_tls.client_ca_file to verify the certificates")
			}
		},
	},
	{
		keys: []string{"zoom.webhook.previous_secret", "zoom.webhook.secret"},
		doc:  "zoom.webhook.previous_secret needs zoom.webhook.secret.",
		check: func(c *Config, r *report) {
			if w := c.Zoom.Webhook; w.PreviousSecret != "" && w.Secret == "" {
				r.addf("zoom.webhook.previous_secret", "set without zoom.webhook.secret")
			}
		},
	},
	{
		keys: []string{"zoom.token_endpoint.previous_bearer_secret", "zoom.token_endpoint.bearer_secret"},
		doc:  "zoom.token_endpoint.previous_bearer_secret needs zoom.token_endpoint.bearer_secret.",
		check: func(c *Config, r *report) {
			if t := c.Zoom.TokenEndpoint; t.PreviousBearerSecret != "" && t.BearerSecret == "" {
				r.addf("zoom.token_endpoint.previous_bearer_secret", "set without zoom.token_endpoint.bearer_secret")
			}
		},
	},
	{
		keys: []string{"zoom.webhook.path", "zoom.token_endpoint.path"},
		doc:  "zoom.webhook.path and zoom.token_endpoint.path differ.",
		check: func(c *Config, r *report) {
			if p := c.Zoom.Webhook.Path; p != "" && p == c.Zoom.TokenEndpoint.Path {
				r.addf("zoom.token_endpoint.path", "must differ from zoom.webhook.path")
			}
		},
	},
	{
		keys:  []string{"cec.enabled", "cec.domain", "cec.app_key", "cec.app_secret", "cec.tenant_space_id"},
		doc:   "cec.domain, cec.app_key, cec.app_secret and cec.tenant_space_id are required when cec.enabled is true.",
		check: cecCredentials,
	},
}

// vendors are the values of vendors.default.
var vendors = []string{VendorGenesys, VendorZoom, VendorCEC}

// natsAuthExclusive refuses two ways of authenticating to NATS at once.
func natsAuthExclusive(c *Config, r *report) {
	n := c.NATS
	userPass := n.User != "" || n.Password != ""
	if n.Token != "" && userPass {
		r.addf("nats.token", "use either nats.token or nats.user and nats.password, not both")
	}
	if n.CredentialsFile != "" && (userPass || n.Token != "") {
		r.addf("nats.credentials_file", "use either nats.credentials_file or nats.user/nats.password or nats.token, not several")
	}
	if n.NKeySeedFile != "" && (userPass || n.Token != "" || n.CredentialsFile != "") {
		r.addf("nats.nkey_seed_file", "use one way to authenticate: nats.nkey_seed_file, nats.credentials_file, nats.user/nats.password or nats.token")
	}
}

// certKeyPair refuses a certificate without its key or a key without its certificate.
func certKeyPair(r *report, section, cert, key string) {
	if (cert == "") != (key == "") {
		r.addf(section, "cert_file and key_file go together: set both or neither")
	}
}

// distinctStreams refuses a stream name given to two of the daemon's streams (an empty one is
// refused as required by its own check).
func distinctStreams(c *Config, r *report) {
	in, out := c.NATS.Inbound.Stream, c.NATS.Outbound
	if out.Stream != "" && out.Stream == in {
		r.addf("nats.outbound.stream", "must differ from nats.inbound.stream")
	}
	if s := out.HandoffStream; s != "" && (s == out.Stream || s == in) {
		r.addf("nats.outbound.handoff_stream", "must differ from nats.inbound.stream and nats.outbound.stream")
	}
	if s := c.NATS.Webhook.Stream; s != "" && (s == in || s == out.Stream || s == out.HandoffStream) {
		r.addf("nats.webhook.stream", "must differ from the inbound, outbound and handoff streams")
	}
}

// zoomCredentials requires Zoom's credentials and webhook secret when Zoom is enabled.
func zoomCredentials(c *Config, r *report) {
	z := c.Zoom
	if z.Enabled {
		requireAll(r, "zoom.enabled", map[string]string{"zoom.sdk_key": z.SDKKey, "zoom.sdk_secret": string(z.SDKSecret),
			"zoom.account_id": z.AccountID, "zoom.client_id": z.ClientID, "zoom.client_secret": string(z.ClientSecret),
			"zoom.webhook.secret": string(z.Webhook.Secret)})
	}
}

// cecCredentials requires CEC's domain and credentials when CEC is enabled.
func cecCredentials(c *Config, r *report) {
	e := c.CEC
	if e.Enabled {
		requireAll(r, "cec.enabled", map[string]string{"cec.domain": e.Domain, "cec.app_key": e.AppKey,
			"cec.app_secret": string(e.AppSecret), "cec.tenant_space_id": e.TenantSpaceID})
	}
}

// requireAll refuses each of values (key -> value) that is blank, saying that switchKey, true,
// requires it. The map's order does not matter: Config.problems sorts the problems by key.
func requireAll(r *report, switchKey string, values map[string]string) {
	for key, v := range values {
		if strings.TrimSpace(v) == "" {
			r.addf(key, "required when %s is true", switchKey)
		}
	}
}
