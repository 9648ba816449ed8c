package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoSession is the error a Router's Lookup returns (wrapped) for a session no interaction
// holds (yet). controller.ErrNoSession wraps it.
var ErrNoSession = errors.New("no interaction holds the session")

// Defaults for RouterConfig.
const (
	DefaultWebhookStream    = "CC_WEBHOOK"
	DefaultRouterDurable    = "cobrowse-connector-router"
	DefaultWebhookMaxAge    = time.Hour
	DefaultRouterMaxDeliver = 10
	DefaultRouterRetry      = 2 * time.Second
	DefaultRouterAckWait    = 30 * time.Second
	DefaultPublishTimeout   = 5 * time.Second
)

// WebhookSubject is the subject a vendor's raw webhook body is published on (by the daemon's
// webhook intake) for the Router: <prefix>.webhook.<vendor>. An empty prefix means DefaultPrefix.
func WebhookSubject(prefix, vendor string) string {
	return orDefaultPrefix(prefix) + ".webhook." + vendor
}

// RouterConfig configures a Router. The zero value of every optional field means its default.
type RouterConfig struct {
	// Prefix is the subject prefix. Default "cc".
	Prefix string
	// Stream is the name of the webhook stream created when no stream captures
	// <prefix>.webhook.* yet; an existing stream that captures it is used as it is.
	// Default "CC_WEBHOOK".
	Stream string
	// Durable is the durable pull consumer's name. Default "cobrowse-connector-router".
	Durable string
	// MaxAge is the age limit of the stream when NewRouter creates it: a webhook is worth
	// routing for minutes, not days. Default 1h.
	MaxAge time.Duration
	// Replicas is the stream's replica count when NewRouter creates it (3 on a cluster). 1 to
	// 5; default 1.
	Replicas int
	// DuplicateWindow is the stream's duplicate window when NewRouter creates it (at most
	// MaxAge): a delivery stored again within it is dropped. Set it to at least the webhooks'
	// timestamp window, so that a replay the signature check still accepts is a duplicate.
	// Default DuplicateWindow (2m).
	DuplicateWindow time.Duration
	// AckWait is the consumer's ack wait: how long one webhook may be worked on before the
	// server redelivers it. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one webhook: a webhook of a session no interaction
	// holds, or one that keeps failing, is terminated on its MaxDeliver-th delivery. Default 10.
	MaxDeliver int
	// RetryDelay is the delay of a nak: a session not known yet, a lookup or a publish that
	// failed. Default 2s.
	RetryDelay time.Duration
	// PublishTimeout bounds one publish of a signal, PubAck included, and one Lookup. Default 5s.
	PublishTimeout time.Duration
	// PinnedTTL: the router's consumer is pinned, so that of several replicas one routes at a
	// time and one session's webhooks keep their order; another replica takes over once the
	// routing one stopped pulling for this long (or at once after LetGo). Default 10s.
	PinnedTTL time.Duration

	// Resolve reads a vendor's webhook body: the vendor's session id and the signal it says.
	// ok false: the body means nothing the router can route (it is terminated). Required.
	Resolve func(vendor string, body []byte) (sessionID string, sig Signal, ok bool)
	// Lookup finds the interaction that holds the vendor's session; an error wrapping
	// ErrNoSession when none does (yet). Required.
	Lookup func(ctx context.Context, vendor, sessionID string) (interactionID string, err error)

	// Logger receives the router's logs, scoped with component=router. Default slog.Default().
	Logger *slog.Logger
}

func (cfg RouterConfig) withDefaults() (RouterConfig, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultWebhookStream
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultRouterDurable
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultWebhookMaxAge
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultRouterAckWait
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = DefaultRouterMaxDeliver
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = DefaultRouterRetry
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.PinnedTTL == 0 {
		cfg.PinnedTTL = DefaultPinnedTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !validPrefix(cfg.Prefix) {
		bad("router: prefix %q: want dot-separated tokens without wildcards or spaces", cfg.Prefix)
	}
	if !validName(cfg.Stream) {
		bad("router: stream %q: want a name without '.', '*', '>' or spaces", cfg.Stream)
	}
	if !validName(cfg.Durable) {
		bad("router: durable %q: want a name without '.', '*', '>' or spaces", cfg.Durable)
	}
	if cfg.MaxAge < 0 || cfg.AckWait < 0 || cfg.RetryDelay < 0 || cfg.PublishTimeout < 0 {
		bad("router: max age, ack wait, retry delay and publish timeout must be > 0")
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		bad("router: replicas %d: want 1 to 5", cfg.Replicas)
	}
	if cfg.PinnedTTL < time.Second {
		bad("router: pinned ttl %v: want at least 1s", cfg.PinnedTTL)
	}
	if cfg.MaxDeliver < 1 {
		bad("router: max deliver %d: want > 0", cfg.MaxDeliver)
	}
	if cfg.Resolve == nil {
		bad("router: Resolve is required")
	}
	if cfg.Lookup == nil {
		bad("router: Lookup is required")
	}
	return cfg, errors.Join(errs...)
}

// Router turns vendors' webhooks into signals. It reads the raw webhook bodies the daemon's intake
// stored on <prefix>.webhook.<vendor>, with a durable pull consumer and explicit acks, and for
// each: Resolve reads the vendor's session id and the signal, Lookup finds the interaction that
// holds the session, and the signal is published on <prefix>.signal.<interactionId>.<vendor>
// (id: the webhook's Nats-Msg-Id; msg id signal.<vendor>.<that id>, so that a webhook routed twice
// is stored once) and its PubAck awaited; only then is the webhook acked.
//
//   - A body Resolve cannot read, or whose signal cannot be published as it is (an interaction id
//     that is no subject token): terminated, logged once.
//   - A session no interaction holds yet (a session_started before the daemon joined): nak'd with
//     RetryDelay, and on the MaxDeliver-th delivery terminated, logged once.
//   - A lookup or a publish that failed: nak'd with RetryDelay; terminated and logged at error on
//     the last delivery.
type Router struct {
	js      jetstream.JetStream
	cfg     RouterConfig
	log     *slog.Logger
	subject string // <prefix>.webhook.*
	stream  string
	cons    atomic.Pointer[jetstream.Consumer]
	running atomic.Bool
	pin     atomic.Pointer[string] // the pin id the server last handed this router

	// Test hooks, set before Run. afterPublish, when it returns true, has the router nak the
	// webhook at once instead of acking it (a daemon stopped between the PubAck and the ack).
	// onSettle sees every verdict: "ack", "nak" or "term".
	afterPublish func(msgID string) bool
	onSettle     func(seq uint64, verdict string)
}

// NewRouter ensures the webhook stream and the router's durable consumer.
func NewRouter(ctx context.Context, js jetstream.JetStream, cfg RouterConfig) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Router{
		js:      js,
		cfg:     cfg,
		log:     cfg.Logger.With("component", "router"),
		subject: cfg.Prefix + ".webhook.*",
	}
	if err := r.ensure(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// StreamName is the name of the webhook stream the router reads.
func (r *Router) StreamName() string { return r.stream }

// webhookDescription describes the webhook stream the daemon creates.
const webhookDescription = "cobrowse-connector: vendors' raw webhook bodies, for the webhook router"

func (r *Router) ensure(ctx context.Context) error {
	if r.stream == "" {
		name, err := r.ensureStream(ctx)
		if err != nil {
			return err
		}
		r.stream = name
	}
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.stream, jetstream.ConsumerConfig{
		Durable:       r.cfg.Durable,
		Description:   "cobrowse-connector: the webhook router",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		MaxDeliver:    r.cfg.MaxDeliver,
		FilterSubject: r.subject,
		// One replica routes at a time (an earlier release's consumer is updated in place).
		PriorityGroups: []string{priorityGroup},
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      r.cfg.PinnedTTL,
	})
	if err != nil {
		return fmt.Errorf("router: consumer %s on stream %s: %w", r.cfg.Durable, r.stream, err)
	}
	r.cons.Store(&cons)
	return nil
}

// ensureStream returns the stream that captures <prefix>.webhook.*, creating it when no stream
// captures any of it. A stream that captures only part of it, or several streams, is an error.
func (r *Router) ensureStream(ctx context.Context) (string, error) {
	find := func() (string, bool, error) {
		infos, err := streamsCapturing(ctx, r.js, r.subject)
		if err != nil {
			return "", false, fmt.Errorf("router: %w", err)
		}
		if len(infos) == 0 {
			return "", false, nil
		}
		if why := ownerProblem(r.subject, infos); why != "" {
			return "", false, errors.New("router: " + why)
		}
		return infos[0].Config.Name, true, nil
	}
	name, found, err := find()
	if err != nil {
		return "", err
	}
	if found {
		r.log.Info("using the existing webhook stream", "stream", name, "subject", r.subject)
		return name, nil
	}
	_, err = r.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        r.cfg.Stream,
		Description: webhookDescription,
		Subjects:    []string{r.subject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Duplicates:  min(max(DuplicateWindow, r.cfg.DuplicateWindow), r.cfg.MaxAge),
		Replicas:    max(r.cfg.Replicas, 1),
		MaxAge:      r.cfg.MaxAge,
		Metadata:    map[string]string{createdMarker: "1"},
	})
	if err != nil {
		// Another instance may have created it meanwhile: look again before giving up.
		if name, found, ferr := find(); ferr == nil && found {
			return name, nil
		}
		return "", fmt.Errorf("router: create stream %s: %w", r.cfg.Stream, err)
	}
	r.log.Info("created the webhook stream", "stream", r.cfg.Stream, "subject", r.subject, "max_age", r.cfg.MaxAge)
	return r.cfg.Stream, nil
}

// Run routes webhooks, one at a time in stream order, until ctx is done; it returns nil then, and
// an error only when the NATS connection is closed for good. Every goroutine it starts has ended
// when it returns. A webhook being routed when ctx ends is nak'd for prompt redelivery. Run must
// not be called concurrently with itself.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("router: Run is already running")
	}
	defer r.running.Store(false)
	r.log.Info("routing webhooks", "stream", r.stream, "consumer", r.cfg.Durable)
	retry := retryMin
	failing := 0
	for {
		if ctx.Err() != nil {
			r.log.Info("webhook router stopped")
			return nil
		}
		if r.js.Conn().IsClosed() {
			return fmt.Errorf("router: pull from %s: %w", r.stream, nats.ErrConnectionClosed)
		}
		err := r.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			continue
		case err == nil:
			if failing > 0 {
				r.log.Info("pulling webhooks again", "failures", failing)
			}
			failing, retry = 0, retryMin
			continue
		}
		failing++
		if failing == 1 {
			r.log.Warn("pulling webhooks failed; retrying", "error", err)
		} else {
			r.log.Debug("pulling webhooks failed; retrying", "error", err, "failures", failing)
		}
		if consumerGone(err) {
			if eerr := r.ensure(ctx); eerr != nil {
				r.log.Debug("ensuring the webhook consumer failed", "error", eerr)
			}
		}
		sleep(ctx, retry)
		retry = min(retry*2, retryMax)
	}
}

// fetch pulls one webhook and routes it. One at a time: the pull's context bounds only the wait
// for the webhook, never a webhook pulled and not yet routed.
func (r *Router) fetch(ctx context.Context) error {
	cons := *r.cons.Load()
	// Pull well within the pinned TTL, or the pin lapses between two pulls.
	expiry := min(fetchWait, r.cfg.PinnedTTL/2)
	fctx, cancel := context.WithTimeout(ctx, expiry)
	defer cancel()
	batch, err := cons.Fetch(1, jetstream.FetchHeartbeat(min(fetchHeartbeat, expiry/4)), jetstream.FetchContext(fctx),
		jetstream.FetchPriorityGroup(priorityGroup))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		if pin := msg.Headers().Get(pinHeader); pin != "" {
			r.pin.Store(&pin)
		}
		if ctx.Err() != nil {
			r.settle(msg, "nak", func() error { return msg.Nak() })
			continue
		}
		r.route(ctx, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) &&
		!errors.Is(err, jetstream.ErrPinIDMismatch) { // another replica routes now; the client pulls without the pin
		return err
	}
	return nil
}

// LetGo hands the routing over at once, for a replica that stops: if the server's pin is this
// router's, it unpins it, so that another replica routes without waiting for the pinned TTL. Call it
// after Run returned.
func (r *Router) LetGo(ctx context.Context) error {
	pin := r.pin.Load()
	cons := r.cons.Load()
	if pin == nil || cons == nil || r.js.Conn().IsClosed() {
		return nil
	}
	info, err := (*cons).Info(ctx)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if pinnedElsewhere(info, "") != *pin {
		return nil // not this router's (any more)
	}
	s, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := s.UnpinConsumer(ctx, r.cfg.Durable, priorityGroup); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("router: unpin: %w", err)
	}
	return nil
}

// route handles one webhook.
func (r *Router) route(ctx context.Context, msg jetstream.Msg) {
	_ = msg.InProgress() // its ack budget starts now, not when the batch was pulled
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Warn("webhook without delivery metadata; terminated", "error", err)
		_ = msg.Term()
		return
	}
	seq, attempt := meta.Sequence.Stream, meta.NumDelivered
	last := attempt >= uint64(r.cfg.MaxDeliver)
	vendor := strings.TrimPrefix(msg.Subject(), r.cfg.Prefix+".webhook.")
	log := r.log.With("stream_seq", seq, "vendor", vendor, "attempt", attempt)
	term := func(reason string) {
		r.settle(msg, "term", func() error { return msg.TermWithReason(reason) })
	}

	sessionID, sig, ok := r.cfg.Resolve(vendor, msg.Data())
	if !ok {
		log.Warn("webhook body not readable; terminated", "bytes", len(msg.Data()))
		term("unreadable webhook body")
		return
	}
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if id == "" {
		// Not stored through the intake: the stream sequence still names it for its redeliveries.
		id = fmt.Sprintf("%s-%d", r.stream, seq)
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	interactionID, err := r.cfg.Lookup(lctx, vendor, sessionID)
	cancel()
	switch {
	case ctx.Err() != nil:
		r.settle(msg, "nak", func() error { return msg.Nak() })
		return
	case errors.Is(err, ErrNoSession) && last:
		log.Info("webhook of a session no interaction holds; terminated", "session_id", sessionID, "type", sig.Type)
		term("webhook of a session no interaction holds")
		return
	case errors.Is(err, ErrNoSession):
		log.Debug("webhook of a session not known yet; retrying", "session_id", sessionID, "retry_in", r.cfg.RetryDelay)
		r.settle(msg, "nak", func() error { return msg.NakWithDelay(r.cfg.RetryDelay) })
		return
	case err != nil:
		r.transient(log, msg, last, "session lookup failed", err)
		return
	}
	if err := checkToken("interactionId", interactionID); err != nil {
		log.Error("the session's interaction id is not a subject token; webhook terminated", "session_id", sessionID, "error", err)
		term("interaction id not a subject token")
		return
	}

	sig.ID = id
	sig.InteractionID = interactionID
	sig.Source = vendor
	if sig.SessionID == "" {
		sig.SessionID = sessionID
	}
	sig.Raw = msg.Data()
	data, err := json.Marshal(sig)
	if err == nil && len(data) > DefaultMaxPayload {
		// The inbound consumer would refuse it: the record of the body goes, the signal stays.
		log.Warn("webhook body too large to ride in the signal; published without raw", "bytes", len(msg.Data()))
		sig.Raw = nil
		data, err = json.Marshal(sig)
	}
	if err != nil {
		log.Warn("webhook body not JSON; terminated", "error", err)
		term("webhook body not JSON")
		return
	}
	out := nats.NewMsg(SignalSubject(r.cfg.Prefix, interactionID, vendor))
	out.Data = data
	msgID := "signal." + vendor + "." + id
	out.Header.Set(jetstream.MsgIDHeader, msgID)
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	ack, err := r.js.PublishMsg(pctx, out)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			r.settle(msg, "nak", func() error { return msg.Nak() })
			return
		}
		r.transient(log, msg, last, "publishing the signal failed", err)
		return
	}
	log.Debug("webhook routed", "interaction", interactionID, "type", sig.Type, "msg_id", msgID, "duplicate", ack.Duplicate)
	if r.afterPublish != nil && r.afterPublish(msgID) {
		r.settle(msg, "nak", func() error { return msg.Nak() })
		return
	}
	r.settle(msg, "ack", func() error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
		defer cancel()
		return msg.DoubleAck(actx)
	})
}

// transient naks a webhook whose routing failed for a cause that may pass, and terminates it on
// its last delivery.
func (r *Router) transient(log *slog.Logger, msg jetstream.Msg, last bool, what string, err error) {
	if last {
		log.Error("webhook routing failed on its last delivery; terminated", "reason", what, "error", err)
		r.settle(msg, "term", func() error { return msg.TermWithReason(what) })
		return
	}
	log.Warn("webhook routing failed; retrying", "reason", what, "retry_in", r.cfg.RetryDelay, "error", err)
	r.settle(msg, "nak", func() error { return msg.NakWithDelay(r.cfg.RetryDelay) })
}

func (r *Router) settle(msg jetstream.Msg, verdict string, do func() error) {
	if err := do(); err != nil {
		r.log.Debug("settling a webhook failed", "verdict", verdict, "error", err)
	}
	if r.onSettle != nil {
		var seq uint64
		if meta, err := msg.Metadata(); err == nil {
			seq = meta.Sequence.Stream
		}
		r.onSettle(seq, verdict)
	}
}
