package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// vendors are the connectors of the enabled vendors, and what the public listener serves for
// them.
type vendors struct {
	conns []connector.Connector
	// zoom, when enabled: the connector, the minter of its tokens (shared with the token
	// endpoint) and the webhook verifier.
	zoom        *zoom.Connector
	zoomMinter  *zoom.Minter
	zoomWebhook *zoom.Webhook
	// cec, when enabled: its connector, whose app secret a reload may replace.
	cec *cec.Connector
	// breakers are each enabled vendor's circuit breakers, for the metrics, /readyz?verbose and
	// the status endpoint.
	breakers []vendorBreakers
	closers  []func()
}

// close releases every connector, in reverse order of creation.
func (v *vendors) close() {
	for i := len(v.closers) - 1; i >= 0; i-- {
		v.closers[i]()
	}
	v.closers = nil
}

// newVendors builds the connector of each enabled vendor: Genesys when genesys.url is set, Zoom
// when zoom.enabled, CEC when cec.enabled. None makes a network call.
func newVendors(cfg configs.Config, log *slog.Logger) (v *vendors, err error) {
	v = &vendors{}
	built := v // a failed build returns nil: what it made is released through this
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	if cfg.Genesys.URL != "" {
		gc := gcbConfig(cfg, log)
		if gc.TLSConfig, err = vendorTLS("genesys.ca_file", cfg.Genesys.CAFile); err != nil {
			return nil, err
		}
		g, err := gcb.New(gc)
		if err != nil {
			return nil, err
		}
		v.conns = append(v.conns, g)
		v.breakers = append(v.breakers, vendorBreakers{vendor: string(connector.Genesys), breakers: g.Breakers()})
		v.closers = append(v.closers, func() { _ = g.Close() })
	}
	if cfg.Zoom.Enabled {
		if err := v.addZoom(cfg, log); err != nil {
			return nil, fmt.Errorf("zoom: %w", err)
		}
	}
	if cfg.CEC.Enabled {
		e := cfg.CEC
		tc, err := vendorTLS("cec.ca_file", e.CAFile)
		if err != nil {
			return nil, err
		}
		breakers := connector.NewBreakers(breakerSettings(cfg, log))
		c, err := cec.New(cec.Config{
			Domain:         e.Domain,
			AppKey:         e.AppKey,
			AppSecret:      cec.Secret(e.AppSecret.Reveal()),
			TenantSpaceID:  e.TenantSpaceID,
			TokenExpire:    e.TokenExpire.D(),
			RequestTimeout: e.RequestTimeout.D(),
			ReleaseURL:     e.ReleaseURL,
			TLSConfig:      tc,
			Breakers:       breakers,
			Logger:         log,
		})
		if err != nil {
			return nil, fmt.Errorf("cec: %w", err)
		}
		v.conns = append(v.conns, c)
		v.cec = c
		v.breakers = append(v.breakers, vendorBreakers{vendor: string(connector.CEC), breakers: breakers})
		v.closers = append(v.closers, func() { _ = c.Close() })
	}
	return v, nil
}

// breakerSettings are the per-node circuit breakers' settings (controller.breaker.*).
func breakerSettings(cfg configs.Config, log *slog.Logger) connector.BreakerSettings {
	c := cfg.Controller
	return connector.BreakerSettings{
		FailuresToTrip:      uint32(c.Breaker.Failures),
		OpenFor:             c.Breaker.OpenFor.D(),
		HalfOpenMaxRequests: uint32(c.Breaker.HalfOpenRequests),
		Logger:              log,
	}
}

func (v *vendors) addZoom(cfg configs.Config, log *slog.Logger) error {
	z := cfg.Zoom
	minter, err := zoom.NewMinter(zoom.MinterConfig{SDKKey: z.SDKKey, SDKSecret: zoom.Secret(z.SDKSecret.Reveal()), TTL: z.TokenTTL.D()})
	if err != nil {
		return err
	}
	secrets := []zoom.Secret{zoom.Secret(z.Webhook.Secret.Reveal())}
	if z.Webhook.PreviousSecret != "" {
		secrets = append(secrets, zoom.Secret(z.Webhook.PreviousSecret.Reveal()))
	}
	wh, err := zoom.NewWebhook(zoom.WebhookConfig{Secrets: secrets, Window: z.Webhook.Window.D(), MaxBody: int64(z.Webhook.MaxBody)})
	if err != nil {
		return err
	}
	breakers := connector.NewBreakers(breakerSettings(cfg, log))
	tc, err := vendorTLS("zoom.ca_file", z.CAFile)
	if err != nil {
		return err
	}
	requireBound := z.RequireMintedCustomer
	conn, err := zoom.New(zoom.Config{
		Minter: minter,
		OAuth: zoom.OAuthConfig{BaseURL: z.OAuthURL, AccountID: z.AccountID, ClientID: z.ClientID,
			ClientSecret: zoom.Secret(z.ClientSecret.Reveal()), RequestTimeout: z.RequestTimeout.D()},
		REST:                  zoom.APIConfig{BaseURL: z.APIURL, PINParam: z.PINParam, RequestTimeout: z.RequestTimeout.D(), Breakers: breakers},
		DeskURL:               z.DeskURL,
		RequireMintedCustomer: &requireBound,
		RejoinWindow:          z.RejoinWindow.D(),
		BYOPPollInterval:      z.BYOPPollInterval.D(),
		BYOPStartWait:         z.BYOPStartWait.D(),
		AgentSDK:              z.AgentView == configs.AgentViewSDK,
		TLSConfig:             tc,
		Logger:                log,
	})
	if err != nil {
		return err
	}
	v.conns = append(v.conns, conn)
	v.closers = append(v.closers, func() { _ = conn.Close() })
	v.zoom, v.zoomMinter, v.zoomWebhook = conn, minter, wh
	v.breakers = append(v.breakers, vendorBreakers{vendor: string(connector.Zoom), breakers: breakers})
	return nil
}

// webhookSink makes a vendor's verified webhook delivery durable: it is published on
// <prefix>.webhook.<vendor> with the delivery's dedupe id as its msg id, and the PubAck is
// waited for (the intake answers the vendor 200 only then). A delivery the stream holds already is
// zoom.ErrReplay.
func webhookSink(js jetstream.JetStream, prefix, vendor string) zoom.Sink {
	subject := chat.WebhookSubject(prefix, vendor)
	return func(ctx context.Context, dedupeID string, body []byte) error {
		msg := nats.NewMsg(subject)
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, vendor+"."+dedupeID)
		ack, err := js.PublishMsg(ctx, msg)
		if err == nil && ack.Duplicate {
			// Stored before, within the stream's duplicate window (which covers the timestamp
			// window): a replay, or a delivery sent again. Nothing is stored twice.
			return zoom.ErrReplay
		}
		return err
	}
}

// resolveWebhook reads a webhook delivery the router consumes: the vendor's session id and the
// signal it means. Only Zoom sends webhooks.
func resolveWebhook(vendor string, body []byte) (string, chat.Signal, bool) {
	if vendor != string(connector.Zoom) {
		return "", chat.Signal{}, false
	}
	ev, err := zoom.DecodeEvent(body)
	if err != nil {
		return "", chat.Signal{}, false
	}
	sig, ok := zoom.SignalOf(ev, body)
	if !ok || sig.SessionID == "" {
		return "", chat.Signal{}, false
	}
	return sig.SessionID, chat.Signal{Source: sig.Source, Type: chat.SignalType(sig.Type), Role: chatRole(sig.Role),
		SessionID: sig.SessionID, At: sig.At}, true
}

func chatRole(r connector.Role) chat.Role {
	switch r {
	case connector.RoleCustomer:
		return chat.RoleCustomer
	case connector.RoleAgent:
		return chat.RoleAgent
	}
	return ""
}

// tokenLookup reads what the token endpoint needs of an interaction from the state bucket, so
// that any replica answers: an interaction is known when its state is saved (its created or
// assigned event was handled).
func tokenLookup(store controller.Store, defaultVendor connector.Vendor) zoom.TokenLookup {
	return func(ctx context.Context, interactionID string) (zoom.TokenState, error) {
		st, rev, err := store.Load(ctx, interactionID)
		if err != nil {
			return zoom.TokenState{}, err
		}
		if rev == 0 {
			return zoom.TokenState{}, zoom.ErrUnknownInteraction
		}
		return tokenState(st, defaultVendor), nil
	}
}

// tokenState is what the token endpoint knows of an interaction's state.
func tokenState(st controller.State, defaultVendor connector.Vendor) zoom.TokenState {
	ts := zoom.TokenState{Vendor: string(st.Vendor), AgentID: st.AgentID, Closed: st.Closed}
	if ts.Vendor == "" {
		ts.Vendor = string(defaultVendor)
	}
	if l := st.Live; l != nil && (l.Handle.Vendor == "" || l.Handle.Vendor == connector.Zoom) {
		ts.Live = true
		ts.Validated = l.Phase == controller.PhaseJoined || l.Phase == controller.PhaseActive
		ts.Ending = l.Phase == controller.PhaseStopping
		ts.PIN = l.Handle.Token
		ts.BYOP = zoom.IsBYOP(l.Handle)
	}
	return ts
}

// routerConfig is the webhook router's config.
func routerConfig(cfg configs.Config, ctrl *controller.Controller, log *slog.Logger) chat.RouterConfig {
	return chat.RouterConfig{
		Prefix:   cfg.NATS.Prefix,
		Stream:   cfg.NATS.Webhook.Stream,
		MaxAge:   cfg.NATS.Webhook.MaxAge.D(),
		Replicas: cfg.NATS.Replicas,
		// A replay inside the timestamp window passes the signature check: it must be a duplicate.
		DuplicateWindow: cfg.Zoom.Webhook.Window.D() + time.Minute,
		PublishTimeout:  cfg.NATS.Outbound.PublishTimeout.D(),
		PinnedTTL:       cfg.Cluster.PinnedTTL.D(),
		Resolve:         resolveWebhook,
		Lookup: func(ctx context.Context, vendor, sessionID string) (string, error) {
			return ctrl.LookupSession(ctx, connector.Vendor(vendor), sessionID)
		},
		Logger: log,
	}
}
