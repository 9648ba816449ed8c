// Package configs holds the daemon's configuration: one Config struct, the default config file
// (default.yaml, embedded as DefaultYAML and baked into the Docker image), strict loading,
// environment overrides, validation, and annotated examples under examples/.
//
// Loading layers three sources, later ones winning: the defaults of default.yaml, the config
// file, the environment (COBROWSE_<PATH>, see EnvVars). It is strict: an unknown key, a value of
// the wrong type, a duplicate key or a second YAML document is refused, naming the key's dotted
// path and its line, and so is a COBROWSE_ variable that overrides no key (Kubernetes service
// links aside, see IsServiceLinkEnv). Validation reports every problem at once, in the order of
// the keys, each as "<key>: <reason>", prefixed with where the value came from ("line 12: " or
// "env COBROWSE_LOG_LEVEL: ") when that is known. The secrets (every key of type Secret, and a password written in a URL) never
// appear in an error message or in log output.
//
// Every key is declared once, in keyTable (keys.go): its dotted path, its default, what it does
// and its checks, built from small reusable checkers (checks.go) that each say in words what they
// require. A constraint between keys is declared once, in rules (rules.go), naming the keys it
// involves. default.yaml and docs/configuration.md are generated from these two tables, and
// Validate runs them. Tests fail when the table and Config do not match one to one, or when a
// generated file is stale.
//
// To add a key: add its field (with matching yaml and json tags) to Config, add one entry to
// keyTable under its section (path, default, doc, checks; a rule to rules if it depends on other
// keys), run `go generate ./configs`, and commit the regenerated default.yaml and
// docs/configuration.md with it. Its environment variable comes from the yaml tags by itself. The
// tests that pin the defaults and the number of keys (wantDefault, TestEnvVars) say so when they
// need the new key too.
//
// The package imports no other package of the project: the daemon maps this struct onto each
// component's own settings.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// DefaultYAML is default.yaml: every key with its default value and a comment saying what it
// does. The Docker image bakes the same file.
//
//go:embed default.yaml
var DefaultYAML []byte

// Config is the whole configuration of the daemon. The yaml (and json) tags are the config
// file's keys; each key's default, documentation and checks are its entry in keyTable.
type Config struct {
	Log LogConfig `yaml:"log" json:"log"`
	// ShutdownTimeout bounds draining in-flight work at SIGINT/SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	// HeapHeadroomMB is how far, in MiB, the heap may grow past what is live before the collector
	// runs (the daemon sets GOGC from it after each collection); 0: Go's own GOGC.
	HeapHeadroomMB int              `yaml:"heap_headroom_mb" json:"heap_headroom_mb"`
	NATS           NATSConfig       `yaml:"nats" json:"nats"`
	Chat           ChatConfig       `yaml:"chat" json:"chat"`
	Controller     ControllerConfig `yaml:"controller" json:"controller"`
	Vendors        VendorsConfig    `yaml:"vendors" json:"vendors"`
	HTTP           HTTPConfig       `yaml:"http" json:"http"`
	Genesys        GenesysConfig    `yaml:"genesys" json:"genesys"`
	Zoom           ZoomConfig       `yaml:"zoom" json:"zoom"`
	CEC            CECConfig        `yaml:"cec" json:"cec"`
	Cluster        ClusterConfig    `yaml:"cluster" json:"cluster"`
}

// ClusterConfig is the "cluster" section: this replica's place in the partitioned consumer group
// that gives each interaction one owner among the replicas (docs/replicas.md).
type ClusterConfig struct {
	// Member is this replica's stable member name (a StatefulSet pod name); instances of one
	// name stand by for each other.
	Member string `yaml:"member" json:"member"`
	// Group is the consumer group's name; its stream is <nats.inbound.stream>-<group>.
	Group string `yaml:"group" json:"group"`
	// Partitions is the group's partition count, fixed when the group is created.
	Partitions int `yaml:"partitions" json:"partitions"`
	// PinnedTTL is how long the server keeps a member's partitions for an instance that stopped
	// pulling, before another instance of the member (or the member restarted) takes them.
	PinnedTTL Duration `yaml:"pinned_ttl" json:"pinned_ttl"`
}

// The vendors of VendorsConfig.Default.
const (
	VendorGenesys = "genesys"
	VendorZoom    = "zoom"
	VendorCEC     = "cec"
)

// VendorsConfig is the "vendors" section: which vendor serves an interaction whose events name
// none (cobrowseVendor).
type VendorsConfig struct {
	// Default is the vendor of an interaction whose created or assigned event names none:
	// genesys, zoom or cec, and enabled. Empty: the one enabled vendor (required when several are).
	Default string `yaml:"default" json:"default"`
}

// HTTPConfig is the "http" section: the internal listener (metrics, health, pprof) and the public
// listener of the vendor endpoints (Zoom's webhooks and token endpoint), with their time-outs.
type HTTPConfig struct {
	// Listen is host:port of the internal listener (metrics, health, readiness, pprof); empty: none.
	Listen string `yaml:"listen" json:"listen"`
	// Pprof serves /debug/pprof on the internal listener.
	Pprof bool `yaml:"pprof" json:"pprof"`
	// PublicListen is host:port of the public listener; empty: none (a vendor that needs it
	// refuses to start without it).
	PublicListen      string          `yaml:"public_listen" json:"public_listen"`
	PublicTLS         TLSServerConfig `yaml:"public_tls" json:"public_tls"`
	ReadHeaderTimeout Duration        `yaml:"read_header_timeout" json:"read_header_timeout"`
	ReadTimeout       Duration        `yaml:"read_timeout" json:"read_timeout"`
	WriteTimeout      Duration        `yaml:"write_timeout" json:"write_timeout"`
	IdleTimeout       Duration        `yaml:"idle_timeout" json:"idle_timeout"`
	MaxHeaderBytes    int             `yaml:"max_header_bytes" json:"max_header_bytes"`
}

// TLSServerConfig is a listener's TLS: a certificate and its key (both or neither), and
// optionally the CA of the client certificates it accepts (mTLS).
type TLSServerConfig struct {
	CertFile     string `yaml:"cert_file" json:"cert_file"`
	KeyFile      string `yaml:"key_file" json:"key_file"`
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file"`
}

// The values of ZoomConfig.AgentView.
const (
	AgentViewDesk = "desk" // Zoom's hosted desk URL with the agent JWT (the agent types the PIN)
	AgentViewSDK  = "sdk"  // the agent JWT and the PIN, for an agent page on Zoom's npm agent SDK
)

// ZoomConfig is the "zoom" section: Zoom Cobrowse.
type ZoomConfig struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// SDKKey and SDKSecret are the Cobrowse SDK credentials that sign the JWTs.
	SDKKey    string   `yaml:"sdk_key" json:"sdk_key"`
	SDKSecret Secret   `yaml:"sdk_secret" json:"sdk_secret"`
	TokenTTL  Duration `yaml:"token_ttl" json:"token_ttl"` // exp - iat of the JWTs, within [30m, 48h]
	// AccountID, ClientID and ClientSecret are the Server-to-Server OAuth app of the REST calls.
	AccountID      string   `yaml:"account_id" json:"account_id"`
	ClientID       string   `yaml:"client_id" json:"client_id"`
	ClientSecret   Secret   `yaml:"client_secret" json:"client_secret"`
	APIURL         string   `yaml:"api_url" json:"api_url"`
	OAuthURL       string   `yaml:"oauth_url" json:"oauth_url"`
	DeskURL        string   `yaml:"desk_url" json:"desk_url"`
	AgentView      string   `yaml:"agent_view" json:"agent_view"` // AgentViewDesk or AgentViewSDK
	PINParam       string   `yaml:"pin_param" json:"pin_param"`   // the live_sessions PIN filter's name
	RequestTimeout Duration `yaml:"request_timeout" json:"request_timeout"`
	// RequireMintedCustomer binds a PIN typed in chat to the interaction only when its session's
	// customer carries the token the daemon minted for that interaction.
	RequireMintedCustomer bool                    `yaml:"require_minted_customer" json:"require_minted_customer"`
	RejoinWindow          Duration                `yaml:"rejoin_window" json:"rejoin_window"`
	BYOPPollInterval      Duration                `yaml:"byop_poll_interval" json:"byop_poll_interval"`
	BYOPStartWait         Duration                `yaml:"byop_start_wait" json:"byop_start_wait"`
	Webhook               ZoomWebhookConfig       `yaml:"webhook" json:"webhook"`
	TokenEndpoint         ZoomTokenEndpointConfig `yaml:"token_endpoint" json:"token_endpoint"`
	// RotationOverlap is how long a webhook secret or bearer secret replaced by a reload (SIGHUP)
	// stays accepted beside the new one.
	RotationOverlap Duration `yaml:"rotation_overlap" json:"rotation_overlap"`
	// CAFile is a PEM file of the CA certificates trusted for Zoom's HTTPS (REST and OAuth);
	// empty: the system's.
	CAFile string `yaml:"ca_file" json:"ca_file"`
}

// ZoomWebhookConfig is "zoom.webhook": the webhook endpoint on the public listener.
type ZoomWebhookConfig struct {
	Path           string   `yaml:"path" json:"path"`
	Secret         Secret   `yaml:"secret" json:"secret"`                   // the app's webhook secret token
	PreviousSecret Secret   `yaml:"previous_secret" json:"previous_secret"` // still accepted during a rotation
	Window         Duration `yaml:"window" json:"window"`                   // how far the timestamp may be from now
	MaxBody        int      `yaml:"max_body" json:"max_body"`               // bytes
}

// ZoomTokenEndpointConfig is "zoom.token_endpoint": the token endpoint on the public listener.
type ZoomTokenEndpointConfig struct {
	Path                 string `yaml:"path" json:"path"`
	BearerSecret         Secret `yaml:"bearer_secret" json:"bearer_secret"`
	PreviousBearerSecret Secret `yaml:"previous_bearer_secret" json:"previous_bearer_secret"`
	// ClientCert: a TLS client certificate verified against http.public_tls.client_ca_file
	// authenticates a caller too.
	ClientCert bool `yaml:"client_cert" json:"client_cert"`
}

// CECConfig is the "cec" section: Huawei CEC co-browsing (API Fabric).
type CECConfig struct {
	Enabled        bool     `yaml:"enabled" json:"enabled"`
	Domain         string   `yaml:"domain" json:"domain"` // the API Fabric base URL
	AppKey         string   `yaml:"app_key" json:"app_key"`
	AppSecret      Secret   `yaml:"app_secret" json:"app_secret"`
	TenantSpaceID  string   `yaml:"tenant_space_id" json:"tenant_space_id"`
	TokenExpire    Duration `yaml:"token_expire" json:"token_expire"` // X-Token-Expire, at most 1h
	RequestTimeout Duration `yaml:"request_timeout" json:"request_timeout"`
	ReleaseURL     string   `yaml:"release_url" json:"release_url"` // the web-adapter releaseConnection; empty: the pages end it
	CAFile         string   `yaml:"ca_file" json:"ca_file"`         // PEM CA certificates for API Fabric's HTTPS; empty: the system's
}

// The values of LogConfig.Level.
const (
	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"
)

// The values of LogConfig.Format.
const (
	LogFormatAuto = "auto" // coloured text (tint) on a terminal, JSON otherwise
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// LogConfig is the "log" section.
type LogConfig struct {
	Level  string `yaml:"level" json:"level"`   // LogDebug, LogInfo, LogWarn or LogError
	Format string `yaml:"format" json:"format"` // LogFormatAuto, LogFormatText or LogFormatJSON
}

// NATSConfig is the "nats" section: the connection, the embedded server and the JetStream
// names and limits of the NATS contract.
type NATSConfig struct {
	// URL is one NATS URL or a comma-separated list. Empty: start an embedded server with
	// JetStream (Embedded). It may carry user:password, which Redacted masks.
	URL             string             `yaml:"url" json:"url"`
	Name            string             `yaml:"name" json:"name"`                 // client connection name
	ConnectWait     Duration           `yaml:"connect_wait" json:"connect_wait"` // how long `run` retries the first connection
	User            string             `yaml:"user" json:"user"`
	Password        Secret             `yaml:"password" json:"password"`
	Token           Secret             `yaml:"token" json:"token"`
	CredentialsFile string             `yaml:"credentials_file" json:"credentials_file"` // path to a .creds file
	NKeySeedFile    string             `yaml:"nkey_seed_file" json:"nkey_seed_file"`     // path to an NKey seed file
	TLS             NATSTLSConfig      `yaml:"tls" json:"tls"`
	Embedded        EmbeddedNATSConfig `yaml:"embedded" json:"embedded"`
	Prefix          string             `yaml:"prefix" json:"prefix"` // first subject token of the contract
	Inbound         InboundConfig      `yaml:"inbound" json:"inbound"`
	Outbound        OutboundConfig     `yaml:"outbound" json:"outbound"`
	KVBucket        string             `yaml:"kv_bucket" json:"kv_bucket"`
	KVTTL           Duration           `yaml:"kv_ttl" json:"kv_ttl"` // 0: kept until deleted
	// Replicas is the replica count of every stream and of the bucket the daemon creates (3 on
	// a NATS cluster); existing ones keep their own.
	Replicas int                 `yaml:"replicas" json:"replicas"`
	Webhook  WebhookStreamConfig `yaml:"webhook" json:"webhook"`
}

// WebhookStreamConfig is "nats.webhook": the stream that holds vendors' webhook deliveries
// (<prefix>.webhook.<vendor>) between the public listener and the router.
type WebhookStreamConfig struct {
	Stream string   `yaml:"stream" json:"stream"`
	MaxAge Duration `yaml:"max_age" json:"max_age"`
}

// NATSTLSConfig is "nats.tls": the TLS of the NATS connection: the CA that verifies the servers
// and the client certificate the servers may ask for.
type NATSTLSConfig struct {
	CAFile   string `yaml:"ca_file" json:"ca_file"`
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// EmbeddedNATSConfig is "nats.embedded": the embedded server, for development and the demo.
type EmbeddedNATSConfig struct {
	// Enabled starts the embedded server when nats.url is empty. Off, `run` without nats.url is
	// refused: a production daemon on a NATS of its own would process nothing.
	Enabled  bool   `yaml:"enabled" json:"enabled"`
	Host     string `yaml:"host" json:"host"`
	Port     int    `yaml:"port" json:"port"`           // -1: a random port
	StoreDir string `yaml:"store_dir" json:"store_dir"` // empty: a temp dir removed at exit
}

// InboundConfig is "nats.inbound": the stream and durable consumer the daemon reads.
type InboundConfig struct {
	Stream        string     `yaml:"stream" json:"stream"`
	Durable       string     `yaml:"durable" json:"durable"`
	MaxPayload    int        `yaml:"max_payload" json:"max_payload"` // bytes
	AckWait       Duration   `yaml:"ack_wait" json:"ack_wait"`
	MaxDeliver    int        `yaml:"max_deliver" json:"max_deliver"`
	Backoff       []Duration `yaml:"backoff" json:"backoff"` // at most MaxDeliver steps
	MaxAckPending int        `yaml:"max_ack_pending" json:"max_ack_pending"`
	MaxAge        Duration   `yaml:"max_age" json:"max_age"` // of a stream the daemon creates; 0: no limit
}

// OutboundConfig is "nats.outbound": the stream the daemon publishes to.
type OutboundConfig struct {
	Stream          string   `yaml:"stream" json:"stream"`
	DuplicateWindow Duration `yaml:"duplicate_window" json:"duplicate_window"`
	PublishTimeout  Duration `yaml:"publish_timeout" json:"publish_timeout"`
	MaxAge          Duration `yaml:"max_age" json:"max_age"` // of a stream the daemon creates; 0: no limit
	// HandoffStream holds the page messages (<prefix>.agent.*.cobrowse, <prefix>.customer.*.cobrowse),
	// which may carry credentials, apart from what reporting reads.
	HandoffStream string   `yaml:"handoff_stream" json:"handoff_stream"`
	HandoffMaxAge Duration `yaml:"handoff_max_age" json:"handoff_max_age"` // of the handoff stream the daemon creates; > 0
}

// The chat roles of the NATS contract.
const (
	RoleCustomer = "customer"
	RoleAgent    = "agent"
	RoleBot      = "bot"
	RoleSystem   = "system"
)

// ChatConfig is the "chat" section.
type ChatConfig struct {
	// TriggerRoles are the sender roles whose messages can start co-browse.
	TriggerRoles []string `yaml:"trigger_roles" json:"trigger_roles"`
}

// ControllerConfig is the "controller" section: the session policy.
type ControllerConfig struct {
	NoAgentJoin Duration `yaml:"no_agent_join" json:"no_agent_join"` // then stop: no_agent_join
	Inactivity  Duration `yaml:"inactivity" json:"inactivity"`       // then stop: interaction_timeout
	// Sweep is a cron spec as cron.ParseStandard reads it: 5 fields or a descriptor such as
	// "@every 30s". SweepSchedule parses it.
	Sweep           string   `yaml:"sweep" json:"sweep"`
	StopWait        Duration `yaml:"stop_wait" json:"stop_wait"`
	JoinTimeout     Duration `yaml:"join_timeout" json:"join_timeout"`
	MaxInteractions int      `yaml:"max_interactions" json:"max_interactions"`
	RetryDelay      Duration `yaml:"retry_delay" json:"retry_delay"`
	// StopRetry is the delay before a stop that failed by every route (CometD, REST) is tried
	// again by the interaction's actor. At most one minute.
	StopRetry Duration `yaml:"stop_retry" json:"stop_retry"`
	// EndWait bounds the wait for the vendor's word that a session the pages were asked to end
	// has ended (Zoom; CEC without a release call); then it ends anyway.
	EndWait        Duration `yaml:"end_wait" json:"end_wait"`
	StopOnShutdown bool     `yaml:"stop_on_shutdown" json:"stop_on_shutdown"`
	// Retention is how long a closed interaction's state is kept before it is purged; 0: kept.
	Retention Duration      `yaml:"retention" json:"retention"`
	Breaker   BreakerConfig `yaml:"breaker" json:"breaker"`
}

// BreakerConfig is "controller.breaker": one circuit breaker per Co-browse Server node.
type BreakerConfig struct {
	Failures         int      `yaml:"failures" json:"failures"` // consecutive failures that open it
	OpenFor          Duration `yaml:"open_for" json:"open_for"`
	HalfOpenRequests int      `yaml:"half_open_requests" json:"half_open_requests"`
}

// The CometD transports of GenesysConfig.Transports.
const (
	TransportWebSocket   = "websocket"
	TransportLongPolling = "long-polling"
)

// GenesysConfig is the "genesys" section: the Genesys Co-browse cluster.
type GenesysConfig struct {
	// URL is the Co-browse cluster URL, e.g. http://gcb.example:8700/cobrowse (no trailing
	// slash). Required by ValidateRun, not by Validate (the demo mode brings its own server).
	URL               string   `yaml:"url" json:"url"`
	Origin            string   `yaml:"origin" json:"origin"` // empty: derived from URL
	CometDPath        string   `yaml:"cometd_path" json:"cometd_path"`
	Transports        []string `yaml:"transports" json:"transports"`
	RequestTimeout    Duration `yaml:"request_timeout" json:"request_timeout"`
	MaxNetworkDelay   Duration `yaml:"max_network_delay" json:"max_network_delay"`
	LostAfter         Duration `yaml:"lost_after" json:"lost_after"`
	AgentViewFragment string   `yaml:"agent_view_fragment" json:"agent_view_fragment"` // must contain {token}
	ControllerName    string   `yaml:"controller_name" json:"controller_name"`
	// RejoinWindow is how long a refused re-join of a live session (after a restart or a Bayeux
	// re-handshake) is retried with backoff before the session is stopped through REST and ended
	// as server_lost. 0: twice the maxInterval of the server's handshake advice plus its connect
	// timeout, else 30s.
	RejoinWindow Duration `yaml:"rejoin_window" json:"rejoin_window"`
	// MaxConcurrentJoins bounds the joins in flight at once per Co-browse node (1 to 10000);
	// further new joins wait (their inbound message is nak'ed with a delay).
	MaxConcurrentJoins int `yaml:"max_concurrent_joins" json:"max_concurrent_joins"`
	// SpareClients is how many started Bayeux clients are kept per node a join went to, for the
	// next joins there (0 to 16; 0: none).
	SpareClients int `yaml:"spare_clients" json:"spare_clients"`
	// WebSocketRefusalTTL is how long a node's refusal of the websocket upgrade is remembered, so
	// that later sessions on that node go straight to long-polling. 0: not remembered.
	WebSocketRefusalTTL Duration `yaml:"websocket_refusal_ttl" json:"websocket_refusal_ttl"`
	// CAFile is a PEM file of the CA certificates trusted for the Co-browse Server's HTTPS (and
	// wss), instead of the system's; empty: the system's.
	CAFile string `yaml:"ca_file" json:"ca_file"`
}

// Default returns the embedded default.yaml, decoded. It neither applies the environment nor
// validates (the defaults pass Validate but not ValidateRun: genesys.url is empty). It panics
// only if the embedded file is broken, which a test guards against.
func Default() Config {
	var c Config
	d := newDecoder()
	d.document(DefaultYAML, &c)
	if len(d.problems) > 0 {
		panic(fmt.Sprintf("configs: the embedded default.yaml is broken: %v", d.err("")))
	}
	return c
}

// Load reads the config file at path (the embedded default when path is ""), applies the
// environment overrides (os.LookupEnv), refuses an unknown COBROWSE_ variable (os.Environ, see
// Parse) and validates with Validate. The daemon's `run` also calls ValidateRun on the result. A
// refused config returns an *Error naming the file.
func Load(path string) (Config, error) {
	data := DefaultYAML
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	cfg, err := Parse(data, os.LookupEnv, os.Environ()...)
	if e, ok := errors.AsType[*Error](err); ok {
		e.File = path
	}
	return cfg, err
}

// Parse is the core of Load: it decodes data ON TOP of Default() (absent keys keep their
// default; a list given replaces the default list; empty data means all defaults), then applies
// the environment overrides found through env (nil: none; Load passes os.LookupEnv), then runs
// Validate. Every refusal is an *Error listing every problem found at that stage: the file and
// the environment first, then (only when they were readable) validation.
//
// environ, optional, lists the environment's variables as os.Environ does ("NAME=value"; a bare
// NAME will do): a name that starts with EnvPrefix but overrides no key is refused (a typo would
// otherwise be ignored), save the service links Kubernetes injects (see IsServiceLinkEnv). Only
// the names are read; the values come from env. Load passes os.Environ().
func Parse(data []byte, env func(string) (string, bool), environ ...string) (Config, error) {
	cfg := Default()
	d := newDecoder()
	d.document(data, &cfg)
	if env != nil {
		d.applyEnv(&cfg, env)
	}
	d.unknownEnv(environ)
	if len(d.problems) > 0 {
		return Config{}, d.err("")
	}
	if l := cfg.problems(false); len(l.problems) > 0 {
		d.locate(l.problems)
		d.problemList = l
		return Config{}, d.err("")
	}
	return cfg, nil
}

// yamlLine finds the "yaml: line N: " prefix of a yaml.v3 syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// document decodes one YAML document onto cfg, recording problems in d.
func (d *decoder) document(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // no document at all (empty, or only comments): all defaults
		}
		d.syntax(err)
		return
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.add(Problem{Line: next.Line, Reason: "a second YAML document: the config is one document (remove the '---')"})
		return
	case !errors.Is(err, io.EOF):
		d.syntax(err)
		return
	}
	if len(doc.Content) == 0 {
		return
	}
	top := doc.Content[0]
	if resolve(top).Kind == yaml.ScalarNode && isNull(resolve(top)) {
		return
	}
	if resolve(top).Kind != yaml.MappingNode {
		d.add(Problem{Line: top.Line, Reason: "the config must be a mapping of keys, not " + kindName(resolve(top))})
		return
	}
	d.value(top, reflect.ValueOf(cfg).Elem(), "")
}

// syntax records a YAML syntax error, keeping its line.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	p := Problem{}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.Reason = "invalid YAML: " + msg
	d.add(p)
}
