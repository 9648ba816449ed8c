package attach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultPrefix = "cc"
	// DefaultStream stores what reporting reads: the attached-data updates and the lifecycle events.
	DefaultStream = "CC_COBROWSE"
	// DefaultHandoffStream stores the page messages (handoffs), which may carry credentials.
	DefaultHandoffStream = "CC_HANDOFF"

	// DefaultDuplicateWindow is how long the stream remembers a Nats-Msg-Id. Every id this package
	// publishes is unique for good (seq never restarts; sessionId is the server's history id), so a
	// long window never swallows a legitimate message; a short one lets a re-publish through. The
	// re-publishes to catch are (1) the redelivery of the inbound message that caused them, which
	// the inbound consumer may retry with backoff for minutes to hours, and (2) a daemon that
	// stopped after the PubAck but before saving state and acking, and is restarted, possibly the
	// next morning. 24 hours covers both with margin (NATS's own default, 2 minutes, covers
	// neither). The cost is server memory: one entry per id held for the window, on the order of
	// 100 bytes, so about 100 MB for a million outbound messages a day. Beyond the window a
	// consumer can still deduplicate by (interactionId, seq) and by the message id itself.
	DefaultDuplicateWindow = 24 * time.Hour

	// DefaultHandoffMaxAge is the age limit of the page stream the daemon creates. A page message
	// is read within seconds by the page waiting for it; the credentials in it (a session token in
	// a URL, JWTs, PINs, connection parameters) should not stay on the server's disks much longer.
	// Fifteen minutes still serves a page that reconnects or is opened a little late.
	DefaultHandoffMaxAge = 15 * time.Minute

	DefaultPublishTimeout = 5 * time.Second
)

// ErrTransient is wrapped by a publish error whose cause may go away by itself: a time-out, no
// responders (no stream leader yet, a stream being recreated), a connection being re-established,
// a JetStream that answers "unavailable" (503), a cancelled context. Retrying the same message
// later is safe: the stream deduplicates it by its id.
var ErrTransient = errors.New("attach: transient publish failure")

// PublishError is a failed publish. It wraps ErrTransient when the cause is transient, and the
// cause itself (a *jetstream.APIError for a message the stream rejected).
type PublishError struct {
	Subject   string
	MsgID     string
	Transient bool
	Err       error
}

func (e *PublishError) Error() string {
	kind := "rejected"
	if e.Transient {
		kind = "transient"
	}
	return fmt.Sprintf("attach: publish %s (msg id %s): %s: %v", e.Subject, e.MsgID, kind, e.Err)
}

// Unwrap returns ErrTransient when the error is transient, and the cause.
func (e *PublishError) Unwrap() []error {
	if e.Transient {
		return []error{ErrTransient, e.Err}
	}
	return []error{e.Err}
}

// Config configures a Publisher. Zero fields take the defaults.
type Config struct {
	Prefix string // subject prefix; default "cc"
	// Stream is the name of the reporting stream created when none captures the attached-data
	// updates and the lifecycle events; default "CC_COBROWSE".
	Stream   string
	Replicas int // replicas of a created stream (either one); default 1
	// DuplicateWindow of a created reporting stream; default DefaultDuplicateWindow (see there
	// for why). An existing stream keeps its own; a shorter one is logged as a warning.
	DuplicateWindow time.Duration
	PublishTimeout  time.Duration // per publish, waiting for the PubAck; default 5s
	MaxAge          time.Duration // age limit of a created reporting stream (at least DuplicateWindow); 0: no limit

	// HandoffStream is the name of the page stream created when none captures the page subjects
	// (<prefix>.agent.*.cobrowse, <prefix>.customer.*.cobrowse); default "CC_HANDOFF". It must
	// differ from Stream: the page messages may carry credentials and are kept apart.
	HandoffStream string
	// HandoffMaxAge is the age limit of a created page stream; default DefaultHandoffMaxAge. There
	// is no "no limit" here: credentials are not kept for good.
	HandoffMaxAge time.Duration
	// HandoffDuplicateWindow of a created page stream; default and upper bound HandoffMaxAge (a
	// message is gone from the stream by then anyway, and NATS refuses a longer window).
	HandoffDuplicateWindow time.Duration

	Logger *slog.Logger // default: discard
	// Now stamps a message whose At is zero; default time.Now.
	Now func() time.Time
	// PublishLatency, when set, observes in seconds how long publishing took, by kind: single (one
	// message, until its PubAck) or batch (a Batch, from its first send until Wait has every
	// PubAck). Called once per kind in New. Nil: not measured.
	PublishLatency func(kind string) Observer
}

// DefaultConfig is the zero Config with every default filled in: what each zero field means.
func DefaultConfig() Config {
	var c Config
	_ = c.setDefaults() // the zero Config is valid
	return c
}

// Observer takes one observation; a prometheus.Histogram is one.
type Observer interface{ Observe(float64) }

// PublishKinds are the kinds Config.PublishLatency is called with.
var PublishKinds = [...]string{"single", "batch"}

type noObserver struct{}

func (noObserver) Observe(float64) {}

func (c *Config) setDefaults() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	for _, tok := range strings.Split(c.Prefix, ".") {
		if err := checkToken("prefix token", tok); err != nil {
			return fmt.Errorf("attach: config: prefix %q: %w", c.Prefix, err)
		}
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.HandoffStream == "" {
		c.HandoffStream = DefaultHandoffStream
	}
	for _, name := range []string{c.Stream, c.HandoffStream} {
		if strings.ContainsAny(name, ".*> \t\r\n/\\") {
			return fmt.Errorf("attach: config: stream name %q holds a character NATS forbids in stream names", name)
		}
	}
	if c.Stream == c.HandoffStream {
		return fmt.Errorf("attach: config: the page stream and the reporting stream are both named %q: "+
			"the page messages may carry credentials and are kept apart", c.Stream)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("attach: config: replicas %d is not between 1 and 5", c.Replicas)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow < 0 {
		return fmt.Errorf("attach: config: duplicate window %s is negative", c.DuplicateWindow)
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("attach: config: max age %s is negative", c.MaxAge)
	}
	if c.HandoffMaxAge < 0 {
		return fmt.Errorf("attach: config: page stream max age %s is negative", c.HandoffMaxAge)
	}
	if c.HandoffMaxAge == 0 {
		c.HandoffMaxAge = DefaultHandoffMaxAge
	}
	if c.HandoffDuplicateWindow < 0 {
		return fmt.Errorf("attach: config: page stream duplicate window %s is negative", c.HandoffDuplicateWindow)
	}
	if c.HandoffDuplicateWindow == 0 {
		c.HandoffDuplicateWindow = c.HandoffMaxAge
	}
	if c.HandoffDuplicateWindow > c.HandoffMaxAge {
		return fmt.Errorf("attach: config: page stream duplicate window %s is longer than its max age %s",
			c.HandoffDuplicateWindow, c.HandoffMaxAge)
	}
	if c.PublishTimeout < 0 {
		return fmt.Errorf("attach: config: publish timeout %s is negative", c.PublishTimeout)
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Publisher publishes the outbound messages durably. It is safe for concurrent use.
type Publisher struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
	// singleTime and batchTime observe the publish latency (Config.PublishLatency).
	singleTime, batchTime Observer
	// The stream that captures each kind of subject, set as the expected stream of every publish
	// (Nats-Expected-Stream): a message never lands silently in a stream the publisher did not
	// check, whose dedupe window it does not know.
	updateStream, lifecycleStream, agentStream, customerStream string
}

// New returns a Publisher after making sure streams capture the outbound subjects, two sets of
// them kept apart: what reporting reads (updates, lifecycle events) and the page messages (which
// may carry credentials). For each set, when no stream captures any of its subjects, it creates
// one (cfg.Stream, cfg.HandoffStream); when streams capture all of them, they are used as they
// are; anything in between is a configuration error. A stream the daemon created that still
// holds the page subjects beside the reporting ones (the previous release's) is updated to drop
// them first; an operator's such stream is refused. See ensureStreams.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("attach: nil JetStream")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Publisher{js: js, cfg: cfg, log: cfg.Logger.With("component", "attach"), singleTime: noObserver{}, batchTime: noObserver{}}
	if f := cfg.PublishLatency; f != nil {
		p.singleTime, p.batchTime = f(PublishKinds[0]), f(PublishKinds[1])
	}
	if err := p.ensureStreams(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Streams returns the names of the streams that store the updates, the lifecycle events and the
// agent's page messages (usually CC_COBROWSE twice, then CC_HANDOFF).
func (p *Publisher) Streams() (update, lifecycle, agentView string) {
	return p.updateStream, p.lifecycleStream, p.agentStream
}

// HandoffStreams returns the names of the streams that store the page messages to agents and to
// customers (usually CC_HANDOFF twice).
func (p *Publisher) HandoffStreams() (agent, customer string) {
	return p.agentStream, p.customerStream
}

// Update publishes an attached-data update on <prefix>.interaction.<interactionId>.attach with
// the id "<interactionId>.attach.<seq>".
func (p *Publisher) Update(ctx context.Context, u Update) error {
	return p.update(ctx, u, p.publish)
}

// sender sends one encoded message into stream.
type sender func(ctx context.Context, stream, subject, msgID string, body []byte) error

func (p *Publisher) update(ctx context.Context, u Update, send sender) error {
	if err := u.validate(); err != nil {
		return err
	}
	if u.At.IsZero() {
		u.At = p.cfg.Now()
	}
	body, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return send(ctx, p.updateStream, UpdateSubject(p.cfg.Prefix, u.InteractionID), UpdateMsgID(u.InteractionID, u.Seq), body)
}

// Lifecycle publishes a lifecycle event on <prefix>.cobrowse.<interactionId>.<event> with the id
// "<interactionId>.<sessionId>.<event>", or e.MsgID when set. The session token is masked here.
func (p *Publisher) Lifecycle(ctx context.Context, e Lifecycle) error {
	return p.lifecycle(ctx, e, p.publish)
}

func (p *Publisher) lifecycle(ctx context.Context, e Lifecycle, send sender) error {
	if err := e.validate(); err != nil {
		return err
	}
	if e.At.IsZero() {
		e.At = p.cfg.Now()
	}
	body, err := e.MarshalJSON()
	if err != nil {
		return err
	}
	return send(ctx, p.lifecycleStream, LifecycleSubject(p.cfg.Prefix, e.InteractionID, e.Event), e.msgID(), body)
}

// Handoff publishes a page message on <prefix>.agent.<agentId>.cobrowse (to an agent) or
// <prefix>.customer.<interactionId>.cobrowse (to the customer), with the id
// "<interactionId>.<sessionId>.<kind>.<recipient>" (Handoff.MsgID), into the page stream.
func (p *Publisher) Handoff(ctx context.Context, h Handoff) error {
	return p.handoff(ctx, h, p.publish)
}

func (p *Publisher) handoff(ctx context.Context, h Handoff, send sender) error {
	if err := h.validate(); err != nil {
		return err
	}
	if h.At.IsZero() {
		h.At = p.cfg.Now()
	}
	body, err := h.MarshalJSON()
	if err != nil {
		return err
	}
	stream := p.agentStream
	if h.ToCustomer {
		stream = p.customerStream
	}
	return send(ctx, stream, h.Subject(p.cfg.Prefix), h.MsgID(), body)
}

// AgentView publishes an agent view: the Genesys view Handoff to the agent (see AgentView).
//
// Deprecated: use Handoff.
func (p *Publisher) AgentView(ctx context.Context, v AgentView) error {
	return p.Handoff(ctx, v.Handoff())
}

// publish sends one message with its dedupe id and waits for the PubAck. A PubAck that says
// Duplicate is success: the stream already holds the message.
func (p *Publisher) publish(ctx context.Context, stream, subject, msgID string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	begun := time.Now()
	ack, err := p.js.PublishMsg(ctx, outMsg(stream, subject, msgID, body))
	p.singleTime.Observe(time.Since(begun).Seconds())
	if err != nil {
		return &PublishError{Subject: subject, MsgID: msgID, Transient: transient(err), Err: err}
	}
	p.acked(subject, msgID, ack)
	return nil
}

// outMsg is an outbound message with its dedupe id and the stream it must land in.
func outMsg(stream, subject, msgID string, body []byte) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	msg.Header.Set(jetstream.ExpectedStreamHeader, stream)
	return msg
}

// acked logs a PubAck.
func (p *Publisher) acked(subject, msgID string, ack *jetstream.PubAck) {
	if ack.Duplicate {
		p.log.Debug("publish deduplicated: the stream already holds it", "subject", subject, "msg_id", msgID,
			"stream", ack.Stream, "stream_seq", ack.Sequence)
		return
	}
	p.log.Debug("published", "subject", subject, "msg_id", msgID, "stream", ack.Stream, "stream_seq", ack.Sequence)
}

// Batch returns a Batch: messages sent through it go out one behind the other without waiting for
// each one's PubAck; Wait collects them.
func (p *Publisher) Batch() *Batch { return &Batch{p: p} }

// Batch publishes several messages in one round trip: each is validated, encoded and sent at once,
// in order on the publisher's connection (the server stores them in that order), and Wait takes
// their PubAcks. A step of the controller that publishes a joined event and an attach, or an end
// and its final attach, so waits for one round trip instead of one per message. Not safe for
// concurrent use.
type Batch struct {
	p     *Publisher
	sent  []batched
	err   error     // a message that could not be sent: nothing after it is
	begun time.Time // the first send, for the batch's latency
}

type batched struct {
	subject, msgID string
	ack            jetstream.PubAckFuture
	err            error // refused before sending (invalid)
}

// Update sends an attached-data update (see Publisher.Update); its outcome comes from Wait.
func (b *Batch) Update(ctx context.Context, u Update) error { return b.add(b.p.update(ctx, u, b.send)) }

// Lifecycle sends a lifecycle event (see Publisher.Lifecycle); its outcome comes from Wait.
func (b *Batch) Lifecycle(ctx context.Context, e Lifecycle) error {
	return b.add(b.p.lifecycle(ctx, e, b.send))
}

// Handoff sends a page message (see Publisher.Handoff); its outcome comes from Wait.
func (b *Batch) Handoff(ctx context.Context, h Handoff) error {
	return b.add(b.p.handoff(ctx, h, b.send))
}

// AgentView sends an agent view (see Publisher.AgentView); its outcome comes from Wait.
func (b *Batch) AgentView(ctx context.Context, v AgentView) error { return b.Handoff(ctx, v.Handoff()) }

// add records a message refused before it was sent (an invalid one): Wait reports it in its place.
func (b *Batch) add(err error) error {
	if err != nil && b.err == nil {
		b.sent = append(b.sent, batched{err: err})
		b.err = err
	}
	return nil
}

func (b *Batch) send(_ context.Context, stream, subject, msgID string, body []byte) error {
	if b.err != nil {
		return nil // nothing goes out behind a message that did not
	}
	if b.begun.IsZero() {
		b.begun = time.Now()
	}
	// With more PubAcks outstanding than the client allows (jetstream.WithPublishAsyncMaxPending,
	// 4,000 by default: a burst of closes reaches it), a send waits for room up to the publish
	// time-out, not nats.go's 200 ms, and then fails as transient: the actor retries.
	ack, err := b.p.js.PublishMsgAsync(outMsg(stream, subject, msgID, body), jetstream.WithStallWait(b.p.cfg.PublishTimeout))
	if err != nil {
		b.sent = append(b.sent, batched{err: &PublishError{Subject: subject, MsgID: msgID, Transient: transient(err), Err: err}})
		b.err = err
		return nil
	}
	b.sent = append(b.sent, batched{subject: subject, msgID: msgID, ack: ack})
	return nil
}

// Wait takes the PubAcks in order and returns how many messages, from the first, the streams
// hold, and why the next one failed (nil when all did). A message after a failed one may be
// stored too: sending it again is harmless (its dedupe id), but it then precedes the failed one.
// The wait for each is bounded by ctx and the publish time-out.
func (b *Batch) Wait(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, b.p.cfg.PublishTimeout)
	defer cancel()
	if !b.begun.IsZero() {
		defer func() { b.p.batchTime.Observe(time.Since(b.begun).Seconds()) }()
	}
	for i, m := range b.sent {
		if m.err != nil {
			return i, m.err
		}
		select {
		case ack := <-m.ack.Ok():
			b.p.acked(m.subject, m.msgID, ack)
		case err := <-m.ack.Err():
			return i, &PublishError{Subject: m.subject, MsgID: m.msgID, Transient: transient(err), Err: err}
		case <-ctx.Done():
			return i, &PublishError{Subject: m.subject, MsgID: m.msgID, Transient: true, Err: ctx.Err()}
		}
	}
	return len(b.sent), nil
}

// transient tells a cause that may go away by itself from a rejection of the message.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrStaleConnection),
		// Too many PubAcks outstanding on this client: they come in by themselves.
		errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return true
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		// 503: JetStream or the stream's leader is not available right now, or out of resources.
		return apiErr.Code == 503
	}
	return false
}
