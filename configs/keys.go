package configs

import (
	"time"
)

//go:generate go run ./internal/cmd/genconfig

// entry declares one config key: a leaf (a value) or a section (a mapping of keys). keyTable
// holds one entry per field of Config, sections included, in the order of default.yaml: each
// section before its keys.
type entry struct {
	path    string // the dotted path: "nats.inbound.max_deliver"
	section bool   // a mapping of keys, with no value of its own
	// def is the default, of the field's type (a plain string will do for a Secret); nil for a
	// section.
	def any
	// doc says what the key does, for default.yaml's comment and docs/configuration.md: sentences
	// the generator wraps; "\n" starts a new line.
	doc    string
	checks []check // what Validate requires of the value; the rules between keys are in rules
	gap    bool    // default.yaml leaves a blank line above it (top-level keys always have one)
}

// dur is a duration for the table; it panics on a typo, which the tests then show.
func dur(s string) Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return Duration{d}
}

// keyTable is every config key: its default, its documentation and its checks.
var keyTable = []entry{
	{path: "log", section: true,
		doc: "The daemon's log."},
	{path: "log.level", def: LogInfo, checks: []check{oneOf(logLevels...)},
		doc: "Lowest level logged: debug, info, warn or error."},
	{path: "log.format", def: LogFormatAuto, checks: []check{oneOf(logFormats...)},
		doc: "auto: coloured text on a terminal, JSON lines otherwise; text: plain key=value text; json: " +
			"JSON lines."},

	{path: "shutdown_timeout", def: dur("15s"), checks: []check{positive()},
		doc: "At SIGINT/SIGTERM the daemon stops taking new messages and drains in-flight work for at most " +
			"this long before it tears down its connections."},

	{path: "heap_headroom_mb", def: 16, checks: []check{between(0, 1<<16, "")},
		doc: "How far, in MiB, the heap may grow past what is live before Go's collector runs: after each " +
			"collection `run` sets GOGC to give about this much room, within a quarter and four times the live " +
			"heap. Much room for few live sessions (bursts of joins and closes collect seldom), little for " +
			"many that only wait (docs/scaling.md). 0: Go's own (GOGC=100, the heap grows to twice what is " +
			"live). A GOGC set in the environment wins over it."},

	{path: "nats", section: true,
		doc: "The contact center's NATS: the connection, the embedded server for development, and the " +
			"streams, consumers and bucket of the NATS contract (docs/nats-contract.md)."},
	{path: "nats.url", def: "", checks: []check{optional(natsURLs())},
		doc: "The contact-center NATS: one URL or a comma-separated list (nats://, tls://, ws://, wss://, or " +
			"host:port; a path only on ws:// and wss://). REQUIRED for `cobrowse-connector run`, unless " +
			"embedded.enabled is true (development: the daemon then starts its own NATS server with " +
			"JetStream and says so in its log). Credentials written in the URL (nats://user:pass@host) are " +
			"masked in logs."},
	{path: "nats.name", def: "cobrowse-connector",
		doc: "The client connection name, as the NATS server shows it (e.g. in `nats server report " +
			"connections`)."},
	{path: "nats.connect_wait", def: dur("10m"), checks: []check{positive()},
		doc: "How long `run` keeps retrying the first connection to NATS at start before it gives up and " +
			"exits (meanwhile it logs that it is not ready). Covers a NATS cluster that starts after the " +
			"daemon."},
	{path: "nats.user", def: "",
		doc: "Authentication: use at most one of user + password, token, credentials_file or nkey_seed_file.\n" +
			"User name for user/password authentication."},
	{path: "nats.password", def: "",
		doc: "Password for user/password authentication. A secret: masked in every log line and error " +
			"message."},
	{path: "nats.token", def: "",
		doc: "Token authentication. A secret: masked in every log line and error message."},
	{path: "nats.credentials_file", def: "", checks: []check{optional(filePath())},
		doc: "Path to a NATS .creds file (a user JWT and its NKey seed), for decentralized JWT " +
			"authentication."},
	{path: "nats.nkey_seed_file", def: "", checks: []check{optional(filePath())},
		doc: "Path to a file holding an NKey seed (SU...), for NKey authentication. Not with the others " +
			"above."},
	{path: "nats.tls", section: true,
		doc: "TLS of the connection (tls:// URLs, or a server that requires TLS)."},
	{path: "nats.tls.ca_file", def: "", checks: []check{optional(filePath())},
		doc: "PEM file of the CA certificates that verify the NATS servers; empty: the system's."},
	{path: "nats.tls.cert_file", def: "", checks: []check{optional(filePath())},
		doc: "PEM client certificate, for a server that verifies clients (set with key_file, or neither)."},
	{path: "nats.tls.key_file", def: "", checks: []check{optional(filePath())},
		doc: "The client certificate's private key (PEM)."},

	{path: "nats.embedded", section: true, gap: true,
		doc: "The embedded server, for a demo or local development (the demo uses it on its own); not for " +
			"production (one node, no persistence unless store_dir is set)."},
	{path: "nats.embedded.enabled", def: false,
		doc: "true: with an empty url, start the embedded server. false (the default): `run` without url is " +
			"refused, so that a production daemon never runs on a NATS of its own that nobody publishes to."},
	{path: "nats.embedded.host", def: "127.0.0.1", checks: []check{hostOrIP()},
		doc: "Interface the embedded server listens on. Keep it on loopback unless other processes must " +
			"connect."},
	{path: "nats.embedded.port", def: 4222, checks: []check{portOrRandom()},
		doc: "Client port; -1 picks a random free port (the log says which)."},
	{path: "nats.embedded.store_dir", def: "", checks: []check{optional(filePath())},
		doc: "JetStream storage directory. Empty: a temporary directory removed at exit (state is lost)."},

	{path: "nats.prefix", def: "cc", checks: []check{subjectToken()}, gap: true,
		doc: "The first token of every subject of the NATS contract: <prefix>.chat.<interactionId>.message, " +
			"<prefix>.interaction.<interactionId>.event, <prefix>.interaction.<interactionId>.attach, " +
			"<prefix>.cobrowse.<interactionId>.<event>, <prefix>.agent.<agentId>.cobrowse. One subject " +
			"token: no '.', '*', '>' or spaces."},

	{path: "nats.inbound", section: true, gap: true,
		doc: "What the daemon reads: chat messages and interaction events, from one stream so that the chat " +
			"and the events of an interaction keep their publish order."},
	{path: "nats.inbound.stream", def: "CC_INBOUND", checks: []check{jetStreamName()},
		doc: "The stream that captures <prefix>.chat.*.message and <prefix>.interaction.*.event. Created " +
			"only when no stream captures those subjects yet; an existing stream is used as it is."},
	{path: "nats.inbound.durable", def: "cobrowse-connector", checks: []check{jetStreamName()},
		doc: "The durable pull consumer a release before the consumer group read the stream with: found at " +
			"start, it is drained, then deleted, and the daemon goes on with the group (see cluster)."},
	{path: "nats.inbound.max_payload", def: 65536, checks: []check{between(1, maxPayload, " (8 MiB)")},
		doc: "Largest inbound payload accepted, in bytes (64 KiB). A larger message is terminated as " +
			"malformed and logged once."},
	{path: "nats.inbound.ack_wait", def: dur("30s"), checks: []check{positive()},
		doc: "How long the server waits for the daemon to ack a delivered message before it redelivers it."},
	{path: "nats.inbound.max_deliver", def: 6, checks: []check{atLeastInt(1)},
		doc: "Deliveries of one message, the first included. A message still failing for a transient cause " +
			"after the last one is logged and published as a `failed` lifecycle event, never dropped " +
			"silently."},
	{path: "nats.inbound.backoff", def: []Duration{dur("1s"), dur("5s"), dur("15s"), dur("30s"), dur("60s")},
		checks: []check{each(positive())},
		doc: "Delays before the redeliveries of a message that failed for a transient cause: step n is the " +
			"wait after the n-th failed delivery, the last step repeating. At most max_deliver steps (NATS " +
			"refuses more)."},
	{path: "nats.inbound.max_ack_pending", def: 20000, checks: []check{positiveInt()},
		doc: "Most messages delivered and not yet acked at once: the backpressure on the daemon."},
	{path: "nats.inbound.max_age", def: dur("168h"), checks: []check{notNegative("no limit")},
		doc: "Age limit of the inbound stream when the daemon creates it (a stream setting: an existing " +
			"stream keeps its own). Messages are acked within seconds; the week leaves room to replay a " +
			"day's traffic after an incident. 0s: no limit."},

	{path: "nats.outbound", section: true, gap: true,
		doc: "What the daemon publishes: attached data, co-browse lifecycle events and agent views."},
	{path: "nats.outbound.stream", def: "CC_COBROWSE", checks: []check{jetStreamName()},
		doc: "The stream that captures <prefix>.interaction.*.attach and <prefix>.cobrowse.*.*, what " +
			"reporting reads. Created only when no stream captures those subjects yet."},
	{path: "nats.outbound.duplicate_window", def: dur("24h"), checks: []check{positive()},
		doc: "How long the stream remembers a Nats-Msg-Id to drop a republished duplicate (a stream setting: " +
			"applied only when the daemon creates the stream)."},
	{path: "nats.outbound.publish_timeout", def: dur("5s"), checks: []check{positive()},
		doc: "Bound on one publish, waiting for the stream's PubAck."},
	{path: "nats.outbound.max_age", def: dur("720h"), checks: []check{notNegative("no limit")},
		doc: "Age limit of the outbound stream when the daemon creates it (a stream setting: an existing " +
			"stream keeps its own). Reporting pipelines read it with their own durable consumers; 30 days " +
			"covers a pipeline stopped for a long weekend and more. Must be at least duplicate_window. 0s: " +
			"no limit."},
	{path: "nats.outbound.handoff_stream", def: "CC_HANDOFF", checks: []check{jetStreamName()},
		doc: "The stream of the page messages: <prefix>.agent.<agentId>.cobrowse (the agent's view) and " +
			"<prefix>.customer.<interactionId>.cobrowse (what the customer page needs). They may carry " +
			"credentials (a Zoom JWT, CEC connection parameters), so they live apart from what reporting " +
			"reads, for a short time. Created only when no stream captures those subjects yet."},
	{path: "nats.outbound.handoff_max_age", def: dur("15m"), checks: []check{positive()},
		doc: "Age limit of the handoff stream when the daemon creates it (its duplicate window too): a page " +
			"that was not there within this long gets nothing. Must be more than 0s."},

	{path: "nats.kv_bucket", def: "cobrowse_interactions", checks: []check{jetStreamName()}, gap: true,
		doc: "The JetStream key-value bucket holding each interaction's state (seq, counters, the live " +
			"session, the Controller's userToken), saved before the inbound message is acked."},
	{path: "nats.kv_ttl", def: dur("0s"), checks: []check{notNegative("no limit")},
		doc: "The state bucket's TTL, set only when the daemon creates the bucket. 0s (the default) keeps " +
			"each interaction's state until it is deleted, which is what keeps the attach seq from ever " +
			"restarting. An operator who sets a TTL bounds the bucket's size, but an interaction touched " +
			"again after that long starts over at seq 1."},

	{path: "nats.replicas", def: 1, checks: []check{between(1, 5, "")}, gap: true,
		doc: "The replica count (1 to 5) of every stream and of the bucket the daemon creates: 3 on a NATS " +
			"cluster, so that losing a node loses no message and no state. Streams and buckets that exist " +
			"already keep their own (placement and replicas are the operator's then)."},

	{path: "nats.webhook", section: true, gap: true,
		doc: "Vendors' webhook deliveries (<prefix>.webhook.<vendor>), made durable by the public listener " +
			"before it answers the vendor, and routed by the daemon to the interaction that holds the " +
			"session."},
	{path: "nats.webhook.stream", def: "CC_WEBHOOK", checks: []check{jetStreamName()},
		doc: "The stream that captures <prefix>.webhook.*. Created only when no stream captures it yet."},
	{path: "nats.webhook.max_age", def: dur("1h"), checks: []check{positive()},
		doc: "Age limit of the webhook stream when the daemon creates it: a delivery is worth routing for " +
			"minutes, not days."},

	{path: "chat", section: true,
		doc: "The chat messages the daemon reads."},
	{path: "chat.trigger_roles", def: []string{RoleCustomer, RoleBot, RoleSystem}, checks: []check{someOf("a role", "role", roles...)},
		doc: "Senders whose chat messages can start co-browse ({start:NNNNNNNNN} or <start:NNNNNNNNN>). " +
			"Roles: customer, agent, bot, system."},

	{path: "controller", section: true,
		doc: "The session policy: the timers, limits and retries of the interactions the daemon follows."},
	{path: "controller.no_agent_join", def: dur("3m"), checks: []check{positive()},
		doc: "After the Controller joins, an agent must join within this long, or the session is stopped " +
			"with the end reason no_agent_join."},
	{path: "controller.inactivity", def: dur("30m"), checks: []check{positive()},
		doc: "A session with no chat message and no interaction event for this long is stopped with the end " +
			"reason interaction_timeout."},
	{path: "controller.sweep", def: "@every 30s", checks: []check{cronSpec()},
		doc: "When the sweep runs that catches the timeouts a timer missed: a standard 5-field cron spec " +
			"(minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\") or a descriptor (@hourly, " +
			"\"@every 30s\"). @every takes whole seconds, at least 1s."},
	{path: "controller.stop_wait", def: dur("5s"), checks: []check{positive()},
		doc: "How long stopping a session waits for the server's deactivated notification before it takes " +
			"the stop reply's times (or now) and writes the final attached data."},
	{path: "controller.join_timeout", def: dur("20s"), checks: []check{positive()},
		doc: "Bound on one join as Controller: Get Session, the CometD handshake and connect, and the join " +
			"call."},
	{path: "controller.max_interactions", def: 20000, checks: []check{positiveInt()},
		doc: "Most interactions followed at once (one actor each). Beyond it, messages of further " +
			"interactions are retried later."},
	{path: "controller.retry_delay", def: dur("10s"), checks: []check{positive()},
		doc: "When the Co-browse Server is unavailable (or its circuit breaker is open), the inbound message " +
			"is nak'ed with this delay and retried."},
	{path: "controller.stop_retry", def: dur("2s"), checks: []check{positive(), atMost(time.Minute)},
		doc: "A stop that failed by every route (CometD, then REST) is tried again after this delay by the " +
			"interaction itself, instead of waiting for the next sweep. At most 1m."},
	{path: "controller.end_wait", def: dur("30s"), checks: []check{positive()},
		doc: "For a vendor whose sessions end in the pages (Zoom; CEC without release_url): after the daemon " +
			"asked the pages to end a session, how long it waits for the vendor's word that it ended before " +
			"it writes the final attached data anyway."},
	{path: "controller.stop_on_shutdown", def: false,
		doc: "At SIGINT/SIGTERM: false leaves live co-browse sessions running, saved, for the next start to " +
			"re-join (a restart or a rolling update); true stops them with end reason \"shutdown\" (a sidecar " +
			"removed for good)."},
	{path: "controller.retention", def: dur("168h"), checks: []check{notNegative("kept until deleted")},
		doc: "A closed interaction's state (its attach seq, counters, sessions) is purged from the bucket " +
			"this long after the close. Must be longer than nats.outbound.duplicate_window: a message of " +
			"the interaction replayed after the purge starts it over at seq 1. 0s: kept until deleted."},
	{path: "controller.breaker", section: true,
		doc: "One circuit breaker per Co-browse Server node."},
	{path: "controller.breaker.failures", def: 5, checks: []check{count32()},
		doc: "Consecutive unavailability failures that open a node's breaker."},
	{path: "controller.breaker.open_for", def: dur("30s"), checks: []check{positive()},
		doc: "How long an open breaker rejects calls before it lets probe calls through (half-open)."},
	{path: "controller.breaker.half_open_requests", def: 1, checks: []check{count32()},
		doc: "Probe calls a half-open breaker lets through; all succeed: it closes; one fails: it opens " +
			"again."},

	{path: "cluster", section: true,
		doc: "Replicas share the interactions through a partitioned consumer group on the inbound stream: " +
			"each interaction (by its id) falls in one partition, each partition is read by one member at a " +
			"time."},
	{path: "cluster.member", def: "main", checks: []check{jetStreamName()},
		doc: "This replica's stable member name: a StatefulSet pod name, for example (env " +
			"COBROWSE_CLUSTER_MEMBER from the pod's name). Two instances with the same name never both act: " +
			"one stands by. A new group starts with this member alone; `cobrowse-connector cluster add` " +
			"adds the others (docs/replicas.md)."},
	{path: "cluster.group", def: "cobrowse", checks: []check{jetStreamName()},
		doc: "The group's name; its work-queue stream is <nats.inbound.stream>-<group>."},
	{path: "cluster.partitions", def: 16, checks: []check{between(1, 1024, "")},
		doc: "The partition count (1 to 1024), fixed when the group is created: at most this many members " +
			"share the work. Changing it later is refused at start."},
	{path: "cluster.pinned_ttl", def: dur("10s"), checks: []check{atLeast(time.Second)},
		doc: "How long the server keeps a member's partitions for an instance that stopped pulling (killed, " +
			"cut off), before the member restarted (or a standby instance of it) takes them over. A replica " +
			"stopped with SIGTERM hands them over at once."},

	{path: "vendors", section: true,
		doc: "Which vendor serves an interaction."},
	{path: "vendors.default", def: "", checks: []check{optional(oneOf(vendors...))},
		doc: "The vendor of an interaction whose created or assigned event names none (cobrowseVendor): " +
			"genesys, zoom or cec. Empty: the one vendor enabled; required when several are. Genesys is " +
			"enabled by setting genesys.url, Zoom by zoom.enabled, CEC by cec.enabled; `run` needs at least " +
			"one."},

	{path: "http", section: true,
		doc: "The daemon's HTTP listeners, internal and public, and their time-outs."},
	{path: "http.listen", def: ":9180", checks: []check{optional(listenAddr())},
		doc: "The internal listener (host:port): /metrics (Prometheus), /healthz, /readyz and, when pprof is " +
			"true, /debug/pprof. For the pod's probes and the metrics scraper, not for the internet. Empty: " +
			"none (and no probe can reach the daemon; `cobrowse-connector health` needs it)."},
	{path: "http.pprof", def: false,
		doc: "Serve /debug/pprof on the internal listener (CPU and heap profiles; leave off unless needed)."},
	{path: "http.public_listen", def: "", checks: []check{optional(listenAddr())},
		doc: "The public listener (host:port) of the vendor endpoints: Zoom's webhooks (zoom.webhook.path) " +
			"and the token endpoint (zoom.token_endpoint.path). Empty: none; Zoom needs it. Put it behind " +
			"the ingress that terminates TLS, or give it a certificate below."},
	{path: "http.public_tls", section: true,
		doc: "TLS on the public listener itself (usually the ingress terminates TLS instead)."},
	{path: "http.public_tls.cert_file", def: "", checks: []check{optional(filePath())},
		doc: "A certificate (PEM file) to serve TLS with; set with key_file, or neither."},
	{path: "http.public_tls.key_file", def: "", checks: []check{optional(filePath())},
		doc: "The certificate's private key (PEM file)."},
	{path: "http.public_tls.client_ca_file", def: "", checks: []check{optional(filePath())},
		doc: "The CA (PEM) of the client certificates the listener accepts (mTLS): a verified client " +
			"certificate authenticates a token request when zoom.token_endpoint.client_cert is true."},
	{path: "http.read_header_timeout", def: dur("5s"), checks: []check{positive()},
		doc: "How long the listener waits for a request's headers."},
	{path: "http.read_timeout", def: dur("10s"), checks: []check{positive()},
		doc: "How long it waits for a whole request, body included."},
	{path: "http.write_timeout", def: dur("10s"), checks: []check{positive()},
		doc: "How long writing an answer may take."},
	{path: "http.idle_timeout", def: dur("60s"), checks: []check{positive()},
		doc: "How long an idle keep-alive connection is kept."},
	{path: "http.max_header_bytes", def: 16384, checks: []check{between(1024, 1<<20, "")},
		doc: "Largest request header block, in bytes."},

	{path: "genesys", section: true,
		doc: "Genesys Co-browse (docs/genesys.md)."},
	{path: "genesys.url", def: "", checks: []check{optional(genesysURL())},
		doc: "The Co-browse cluster URL (the load balancer), e.g. http://gcb.example:8700/cobrowse: http or " +
			"https, no trailing slash, no query. Setting it enables Genesys; set it here or with " +
			"COBROWSE_GENESYS_URL (the demo mode brings its own Co-browse Server)."},
	{path: "genesys.origin", def: "", checks: []check{optional(origin())},
		doc: "The Origin header sent on Get Session and the REST stop (Genesys checks it against its " +
			"allowedOrigins). Empty: the url's scheme://host[:port]."},
	{path: "genesys.cometd_path", def: "/cometd", checks: []check{endpointPath()},
		doc: "The CometD endpoint below a node or cluster URL."},
	{path: "genesys.transports", def: []string{TransportWebSocket, TransportLongPolling},
		checks: []check{someOf("a transport", "transport", transports...)},
		doc:    "CometD transports, in order of preference: websocket, long-polling."},
	{path: "genesys.request_timeout", def: dur("10s"), checks: []check{positive()},
		doc: "Bound on each REST call (Get Session, the REST stop)."},
	{path: "genesys.max_network_delay", def: dur("10s"), checks: []check{positive()},
		doc: "How long a normal Bayeux request may take on top of the server's long-poll timeout."},
	{path: "genesys.lost_after", def: dur("60s"), checks: []check{positive()},
		doc: "A session's Bayeux connection down (the client retrying) this long counts as lost: the session " +
			"ends with the reason server_lost."},
	{path: "genesys.agent_view_fragment", def: "nosidinput=1&sid={token}", checks: []check{contains("{token}")},
		doc: "The agent view URL's fragment (after '#' on <node>/slave.html). {token} (required) becomes the " +
			"9-digit session token, {sessionId} the sessionHistoryId. The token's parameter name (\"sid\") is " +
			"inferred, not documented by Genesys: check it against your slave.html."},
	{path: "genesys.controller_name", def: "",
		doc: "The name the Controller joins with when the trigger names no agent (with an agent, its id is " +
			"sent, so that the server enforces one session per agent). Empty: no name."},
	{path: "genesys.rejoin_window", def: dur("0s"),
		checks: []check{notNegative("twice the maxInterval of the server's handshake advice, else 30s")},
		doc: "After a daemon restart or a Bayeux re-handshake, the server may refuse to re-join a live " +
			"session while it still holds the old Controller connection (until it expires it). The re-join " +
			"is retried with backoff for this long; then the session is stopped through REST and ends as " +
			"server_lost. 0s: twice the maxInterval of the server's handshake advice plus its connect " +
			"timeout (a long-poll held by a killed daemon ends only then), else 30s."},
	{path: "genesys.max_concurrent_joins", def: 16, checks: []check{between(1, maxConcurrentJoins, "")},
		doc: "Joins in flight at once per Co-browse Server node (1 to 10000). A further new join waits: its " +
			"inbound message is nak'ed with a delay and retried."},
	{path: "genesys.spare_clients", def: 1, checks: []check{between(0, maxSpareClients, " (0: none)")},
		doc: "Started Bayeux clients (handshaken and connected, joined to nothing) kept per Co-browse " +
			"node that a join went to, so that the next join there sends only its join call: the connection, " +
			"the handshake and the first connect, about half of a cold join's time at the server, are done " +
			"ahead. A node without a join for 10 minutes loses its spares. 0: none, every join handshakes."},
	{path: "genesys.websocket_refusal_ttl", def: dur("10m"), checks: []check{notNegative("not remembered")},
		doc: "How long a node's refusal of the websocket upgrade is remembered, so that later sessions on " +
			"that node go straight to long-polling. 0s: not remembered (every session tries websocket " +
			"first)."},
	{path: "genesys.ca_file", def: "", checks: []check{optional(filePath())},
		doc: "PEM file of the CA certificates trusted for the Co-browse Server's https:// and wss:// (a " +
			"private CA); empty: the system's."},

	{path: "zoom", section: true},
	{path: "zoom.enabled", def: false,
		doc: "Zoom Cobrowse (see docs/zoom.md). Needs the SDK credentials, a Server-to-Server OAuth app " +
			"(scopes to read live sessions and sessions), the webhook secret token and http.public_listen " +
			"(the webhooks and the token endpoint arrive there)."},
	{path: "zoom.sdk_key", def: "",
		doc: "The Cobrowse SDK key: the JWTs' app_key (public: it is in the customer page's script URL)."},
	{path: "zoom.sdk_secret", def: "",
		doc: "The Cobrowse SDK secret that signs the JWTs. A secret: masked everywhere."},
	{path: "zoom.token_ttl", def: dur("2h"), checks: []check{wholeSeconds(30*time.Minute, 48*time.Hour, "must be whole seconds within Zoom's [30m, 48h]")},
		doc: "Lifetime (exp - iat) of the JWTs the daemon mints, within Zoom's [30m, 48h]."},
	{path: "zoom.account_id", def: "",
		doc: "The Server-to-Server OAuth app's account id."},
	{path: "zoom.client_id", def: "",
		doc: "The Server-to-Server OAuth app's client id."},
	{path: "zoom.client_secret", def: "",
		doc: "The Server-to-Server OAuth app's client secret. A secret: masked everywhere."},
	{path: "zoom.api_url", def: "https://api.zoom.us/v2", checks: []check{serviceURL()},
		doc: "Zoom's REST API (change it only for a test server)."},
	{path: "zoom.oauth_url", def: "https://zoom.us", checks: []check{serviceURL()},
		doc: "Zoom's OAuth server (change it only for a test server)."},
	{path: "zoom.desk_url", def: "https://us01-zcb.zoom.us/sdkapi/zcb/frame-templates/desk", checks: []check{serviceURL()},
		doc: "Zoom's hosted agent desk: with agent_view desk, the agent gets <desk_url>?access_token=<agent " +
			"JWT>."},
	{path: "zoom.agent_view", def: AgentViewDesk, checks: []check{oneOf(AgentViewDesk, AgentViewSDK)},
		doc: "What the agent gets on <prefix>.agent.<agentId>.cobrowse: desk (the desk URL with an agent " +
			"JWT, and the PIN, which the agent types in the desk) or sdk (the agent JWT and the PIN, for an " +
			"agent page built on Zoom's npm agent SDK, the only agent path Zoom documents for a " +
			"daemon-chosen PIN)."},
	{path: "zoom.pin_param", def: "pin_code", checks: []check{queryParam()},
		doc: "The query parameter that filters live sessions by PIN (Zoom's changelog names pin_code; the " +
			"daemon also filters what it gets by the PIN itself)."},
	{path: "zoom.request_timeout", def: dur("10s"), checks: []check{positive()},
		doc: "Bound on each REST and OAuth request."},
	{path: "zoom.require_minted_customer", def: true,
		doc: "A PIN typed in chat is accepted only when its session's customer started it with the token the " +
			"daemon minted for this interaction (else join_failed with reason pin_not_bound). Turning it " +
			"off lets any live session's PIN typed in a chat be attached to that interaction and watched by " +
			"its agent."},
	{path: "zoom.rejoin_window", def: dur("30s"), checks: []check{positive()},
		doc: "After a restart, how long a live session's re-check with Zoom's REST API is retried while Zoom " +
			"is unavailable; then the session ends as server_lost."},
	{path: "zoom.byop_poll_interval", def: dur("2s"), checks: []check{positive()},
		doc: "A session the daemon creates for a cobrowse_requested event (its own PIN, Bring Your Own PIN): " +
			"how often its PIN is looked up while the customer's page has not started it."},
	{path: "zoom.byop_start_wait", def: dur("2m"), checks: []check{positive()},
		doc: "How long the daemon waits for the customer's page to start a session it created; then the " +
			"request fails (join_failed) and the page is asked to end it."},
	{path: "zoom.webhook", section: true,
		doc: "The webhook endpoint on the public listener."},
	{path: "zoom.webhook.path", def: "/zoom/webhook", checks: []check{httpPath()},
		doc: "Its path: the Event notification endpoint URL of the Zoom app is https://<your ingress><path>."},
	{path: "zoom.webhook.secret", def: "",
		doc: "The app's webhook secret token. A secret: masked everywhere."},
	{path: "zoom.webhook.previous_secret", def: "",
		doc: "The previous secret token, still accepted during a rotation. A secret."},
	{path: "zoom.webhook.window", def: dur("5m"), checks: []check{positive()},
		doc: "How far a delivery's x-zm-request-timestamp may be from now: an older replay is refused."},
	{path: "zoom.webhook.max_body", def: 65536, checks: []check{between(1024, 1<<20, "")},
		doc: "Largest delivery body, in bytes."},
	{path: "zoom.token_endpoint", section: true,
		doc: "The token endpoint on the public listener, for the platform's backend (see docs/zoom.md)."},
	{path: "zoom.token_endpoint.path", def: "/zoom/token", checks: []check{httpPath()},
		doc: "Its path: the backend POSTs {interactionId, role, agentId?} there and gets {token}."},
	{path: "zoom.token_endpoint.bearer_secret", def: "",
		doc: "The bearer secret a caller sends (Authorization: Bearer <secret>). A secret: masked " +
			"everywhere. Required unless client_cert is true."},
	{path: "zoom.token_endpoint.previous_bearer_secret", def: "",
		doc: "The previous bearer secret, still accepted during a rotation. A secret."},
	{path: "zoom.token_endpoint.client_cert", def: false,
		doc: "true: a TLS client certificate verified against http.public_tls.client_ca_file authenticates a " +
			"caller as the bearer secret does."},
	{path: "zoom.rotation_overlap", def: dur("1h"), checks: []check{notNegative("a replaced secret is refused at once")},
		doc: "After a reload (SIGHUP) that changes zoom.webhook.secret or zoom.token_endpoint.bearer_secret, " +
			"the replaced value stays accepted this long beside the new one, so that senders can move over."},
	{path: "zoom.ca_file", def: "", checks: []check{optional(filePath())},
		doc: "PEM file of the CA certificates trusted for Zoom's HTTPS (api_url, oauth_url); empty: the " +
			"system's."},

	{path: "cec", section: true},
	{path: "cec.enabled", def: false,
		doc: "Huawei CEC co-browsing (API Fabric getConnectionInfo; see docs/cec.md)."},
	{path: "cec.domain", def: "", checks: []check{optional(serviceURL())},
		doc: "The API Fabric base URL (https://<host>:<port>), no trailing slash."},
	{path: "cec.app_key", def: "",
		doc: "The app key (AK) of tokenByAkSk."},
	{path: "cec.app_secret", def: "",
		doc: "The app secret (SK) of tokenByAkSk. A secret: masked everywhere."},
	{path: "cec.tenant_space_id", def: "",
		doc: "The tenant space (X-TenantSpaceID) of every call."},
	{path: "cec.token_expire", def: dur("1h"),
		checks: []check{wholeSeconds(time.Second, time.Hour, "must be whole seconds, more than 0s and at most 1h (X-Token-Expire <= 3600)")},
		doc: "The AccessToken's lifetime asked of tokenByAkSk (X-Token-Expire), at most 1h; renewed before " +
			"it ends."},
	{path: "cec.request_timeout", def: dur("10s"), checks: []check{positive()},
		doc: "Bound on each API Fabric request."},
	{path: "cec.release_url", def: "", checks: []check{optional(serviceURL())},
		doc: "The web-adapter's releaseConnection URL. Set: a stop releases the room there and ends the " +
			"session at once. Empty: the pages are asked to end it and the daemon waits for their word."},
	{path: "cec.ca_file", def: "", checks: []check{optional(filePath())},
		doc: "PEM file of the CA certificates trusted for API Fabric's HTTPS (domain, release_url); empty: " +
			"the system's."},
}
