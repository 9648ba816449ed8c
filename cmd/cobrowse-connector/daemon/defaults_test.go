package daemon

import (
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// TestComponentDefaultsAgree: where a component has a default of its own for a setting the
// daemon fills from a config key, that default is what configs.Default() maps onto it. A
// component used without the daemon (tests, tools) then behaves as the daemon does with the
// default config, and a default changed in one place only fails here. configs is the source: a
// disagreement is fixed in the component.
//
// The chat consumer, the webhook router, the Genesys connector, the controller and the breakers
// are mapped by the daemon's own functions; the publisher, the state bucket, Zoom and CEC are
// mapped inline in Run and newVendors, so their mapping is written out here as they do it.
func TestComponentDefaultsAgree(t *testing.T) {
	def := configs.Default()
	log := slog.New(slog.DiscardHandler)

	chatGot, chatWant := chatConfig(def, log), chat.DefaultConfig()
	router := routerConfig(def, nil, log)
	gcbGot, gcbWant := gcbConfig(def, log), gcb.DefaultConfig()
	ctrlGot, ctrlWant := controllerConfig(def, log), controller.DefaultConfig()
	brkGot, brkWant := breakerSettings(def, log), connector.DefaultBreakerSettings()
	attachWant := attach.DefaultConfig()

	for _, c := range []struct {
		key       string // the config key
		component string // the component's setting
		got, want any    // what the daemon maps the default onto it; the component's own default
	}{
		// chat.Config (chatConfig)
		{"nats.prefix", "chat.Config.Prefix", chatGot.Prefix, chatWant.Prefix},
		{"nats.inbound.stream", "chat.Config.Stream", chatGot.Stream, chatWant.Stream},
		{"nats.inbound.durable", "chat.Config.Durable", chatGot.Durable, chatWant.Durable},
		{"nats.inbound.max_payload", "chat.Config.MaxPayload", chatGot.MaxPayload, chatWant.MaxPayload},
		{"nats.inbound.ack_wait", "chat.Config.AckWait", chatGot.AckWait, chatWant.AckWait},
		{"nats.inbound.max_deliver", "chat.Config.MaxDeliver", chatGot.MaxDeliver, chatWant.MaxDeliver},
		{"nats.inbound.backoff", "chat.Config.Backoff", chatGot.Backoff, chatWant.Backoff},
		{"nats.inbound.max_ack_pending", "chat.Config.MaxAckPending", chatGot.MaxAckPending, chatWant.MaxAckPending},
		{"nats.replicas", "chat.Config.Replicas", chatGot.Replicas, chatWant.Replicas},
		{"chat.trigger_roles", "chat.Config.TriggerRoles", chatGot.TriggerRoles, chatWant.TriggerRoles},
		{"cluster.group", "chat.Config.Group", chatGot.Group, chatWant.Group},
		{"cluster.member", "chat.Config.Member", chatGot.Member, chatWant.Member},
		{"cluster.partitions", "chat.Config.Partitions", chatGot.Partitions, chatWant.Partitions},
		{"cluster.pinned_ttl", "chat.Config.PinnedTTL", chatGot.PinnedTTL, chatWant.PinnedTTL},

		// chat.RouterConfig (routerConfig)
		{"nats.prefix", "chat.RouterConfig.Prefix", router.Prefix, chat.DefaultPrefix},
		{"nats.webhook.stream", "chat.RouterConfig.Stream", router.Stream, chat.DefaultWebhookStream},
		{"nats.webhook.max_age", "chat.RouterConfig.MaxAge", router.MaxAge, chat.DefaultWebhookMaxAge},
		{"nats.outbound.publish_timeout", "chat.RouterConfig.PublishTimeout", router.PublishTimeout, chat.DefaultPublishTimeout},
		{"cluster.pinned_ttl", "chat.RouterConfig.PinnedTTL", router.PinnedTTL, chat.DefaultPinnedTTL},

		// attach.Config (Run)
		{"nats.prefix", "attach.Config.Prefix", def.NATS.Prefix, attachWant.Prefix},
		{"nats.outbound.stream", "attach.Config.Stream", def.NATS.Outbound.Stream, attachWant.Stream},
		{"nats.outbound.duplicate_window", "attach.Config.DuplicateWindow", def.NATS.Outbound.DuplicateWindow.D(), attachWant.DuplicateWindow},
		{"nats.outbound.publish_timeout", "attach.Config.PublishTimeout", def.NATS.Outbound.PublishTimeout.D(), attachWant.PublishTimeout},
		{"nats.outbound.handoff_stream", "attach.Config.HandoffStream", def.NATS.Outbound.HandoffStream, attachWant.HandoffStream},
		{"nats.outbound.handoff_max_age", "attach.Config.HandoffMaxAge", def.NATS.Outbound.HandoffMaxAge.D(), attachWant.HandoffMaxAge},
		{"nats.replicas", "attach.Config.Replicas", def.NATS.Replicas, attachWant.Replicas},

		// controller.KVConfig (Run)
		{"nats.kv_bucket", "controller.KVConfig.Bucket", def.NATS.KVBucket, controller.DefaultBucket},

		// gcb.Config (gcbConfig)
		{"genesys.cometd_path", "gcb.Config.CometDPath", gcbGot.CometDPath, gcbWant.CometDPath},
		{"genesys.transports", "gcb.Config.Transports", gcbGot.Transports, gcbWant.Transports},
		{"genesys.request_timeout", "gcb.Config.RequestTimeout", gcbGot.RequestTimeout, gcbWant.RequestTimeout},
		{"genesys.max_network_delay", "gcb.Config.MaxNetworkDelay", gcbGot.MaxNetworkDelay, gcbWant.MaxNetworkDelay},
		{"genesys.lost_after", "gcb.Config.LostAfter", gcbGot.LostAfter, gcbWant.LostAfter},
		{"genesys.agent_view_fragment", "gcb.Config.AgentViewFragment", gcbGot.AgentViewFragment, gcbWant.AgentViewFragment},
		{"genesys.rejoin_window", "gcb.Config.RejoinWindow", gcbGot.RejoinWindow, gcbWant.RejoinWindow},
		{"genesys.max_concurrent_joins", "gcb.Config.MaxConcurrentJoins", gcbGot.MaxConcurrentJoins, gcbWant.MaxConcurrentJoins},
		{"genesys.spare_clients", "gcb.Config.SpareClients", gcbGot.SpareClients, gcbWant.SpareClients},
		{"genesys.websocket_refusal_ttl", "gcb.Config.WebSocketRefusalTTL", gcbGot.WebSocketRefusalTTL, gcbWant.WebSocketRefusalTTL},
		{"controller.join_timeout", "gcb.Config.JoinTimeout", gcbGot.JoinTimeout, gcbWant.JoinTimeout},
		{"controller.stop_wait", "gcb.Config.StopTimeout", gcbGot.StopTimeout, gcbWant.StopTimeout},

		// connector.BreakerSettings (breakerSettings: gcb, cec and zoom)
		{"controller.breaker.failures", "connector.BreakerSettings.FailuresToTrip", brkGot.FailuresToTrip, brkWant.FailuresToTrip},
		{"controller.breaker.open_for", "connector.BreakerSettings.OpenFor", brkGot.OpenFor, brkWant.OpenFor},
		{"controller.breaker.half_open_requests", "connector.BreakerSettings.HalfOpenMaxRequests", brkGot.HalfOpenMaxRequests, brkWant.HalfOpenMaxRequests},

		// controller.Config (controllerConfig)
		{"controller.stop_wait", "controller.Config.StopWait", ctrlGot.StopWait, ctrlWant.StopWait},
		{"controller.join_timeout", "controller.Config.JoinTimeout", ctrlGot.JoinTimeout, ctrlWant.JoinTimeout},
		{"nats.outbound.publish_timeout", "controller.Config.PublishTimeout", ctrlGot.PublishTimeout, ctrlWant.PublishTimeout},
		{"controller.retry_delay", "controller.Config.RetryDelay", ctrlGot.RetryDelay, ctrlWant.RetryDelay},
		{"controller.stop_retry", "controller.Config.StopRetry", ctrlGot.StopRetry, ctrlWant.StopRetry},
		{"controller.end_wait", "controller.Config.EndWait", ctrlGot.EndWait, ctrlWant.EndWait},
		{"controller.max_interactions", "controller.Config.MaxInteractions", ctrlGot.MaxInteractions, ctrlWant.MaxInteractions},
		{"controller.sweep", "controller.Config.Sweep", ctrlGot.Sweep, ctrlWant.Sweep},

		// zoom (addZoom)
		{"zoom.token_ttl", "zoom.MinterConfig.TTL", def.Zoom.TokenTTL.D(), zoom.DefaultTokenTTL},
		{"zoom.oauth_url", "zoom.OAuthConfig.BaseURL", def.Zoom.OAuthURL, zoom.DefaultOAuthURL},
		{"zoom.api_url", "zoom.APIConfig.BaseURL", def.Zoom.APIURL, zoom.DefaultAPIURL},
		{"zoom.pin_param", "zoom.APIConfig.PINParam", def.Zoom.PINParam, zoom.DefaultPINParam},
		{"zoom.request_timeout", "zoom.OAuthConfig and APIConfig.RequestTimeout", def.Zoom.RequestTimeout.D(), zoom.DefaultRequestTimeout},
		{"zoom.desk_url", "zoom.Config.DeskURL", def.Zoom.DeskURL, zoom.DefaultDeskURL},
		{"zoom.rejoin_window", "zoom.Config.RejoinWindow", def.Zoom.RejoinWindow.D(), zoom.DefaultRejoinWindow},
		{"zoom.byop_poll_interval", "zoom.Config.BYOPPollInterval", def.Zoom.BYOPPollInterval.D(), zoom.DefaultBYOPPollInterval},
		{"zoom.byop_start_wait", "zoom.Config.BYOPStartWait", def.Zoom.BYOPStartWait.D(), zoom.DefaultBYOPStartWait},
		{"zoom.webhook.window", "zoom.WebhookConfig.Window", def.Zoom.Webhook.Window.D(), zoom.DefaultWebhookWindow},
		{"zoom.webhook.max_body", "zoom.WebhookConfig.MaxBody", int64(def.Zoom.Webhook.MaxBody), int64(zoom.DefaultWebhookMaxBody)},

		// cec.Config (newVendors)
		{"cec.token_expire", "cec.Config.TokenExpire", def.CEC.TokenExpire.D(), cec.DefaultTokenExpire},
		{"cec.request_timeout", "cec.Config.RequestTimeout", def.CEC.RequestTimeout.D(), cec.DefaultRequestTimeout},
	} {
		if !isKey(c.key) {
			t.Errorf("%s: not a config key", c.key)
			continue
		}
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: the default config gives %s %v, the component's own default is %v", c.key, c.component, c.got, c.want)
		}
	}
}

func isKey(path string) bool {
	return slices.ContainsFunc(configs.Keys(), func(k configs.Key) bool { return k.Path == path && !k.Section })
}

// TestChatConfigCarriesDurations: the lists the daemon maps keep their values (a guard for the
// comparison above, which would pass on two empty lists).
func TestChatConfigCarriesDurations(t *testing.T) {
	got := chatConfig(configs.Default(), slog.New(slog.DiscardHandler))
	if want := []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}; !slices.Equal(got.Backoff, want) {
		t.Fatalf("backoff %v, want %v", got.Backoff, want)
	}
	if len(got.TriggerRoles) != 3 {
		t.Fatalf("trigger roles %v", got.TriggerRoles)
	}
}
