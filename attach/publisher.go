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
	DefaultStream = "CC_COBROWSE"

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
	Prefix   string // subject prefix; default "cc"
	Stream   string // name of the stream created when none captures the subjects; default "CC_COBROWSE"
	Replicas int    // replicas of a created stream; default 1
	// DuplicateWindow of a created stream; default DefaultDuplicateWindow (see there for why).
	// An existing stream keeps its own; a shorter one is logged as a warning.
	DuplicateWindow time.Duration
	PublishTimeout  time.Duration // per publish, waiting for the PubAck; default 5s
	MaxAge          time.Duration // age limit of a created stream (at least DuplicateWindow); 0: no limit
	Logger          *slog.Logger  // default: discard
	// Now stamps a message whose At is zero; default time.Now.
	Now func() time.Time
}

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
	if strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return fmt.Errorf("attach: config: stream name %q holds a character NATS forbids in stream names", c.Stream)
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
	// The stream that captures each kind of subject, set as the expected stream of every publish
	// (Nats-Expected-Stream): a message never lands silently in a stream the publisher did not
	// check, whose dedupe window it does not know.
	updateStream, lifecycleStream, agentStream string
}

// New returns a Publisher after making sure a stream captures the outbound subjects: when none
// captures any of them, it creates cfg.Stream with all three; when streams capture all of them,
// they are used as they are; anything in between is a configuration error.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("attach: nil JetStream")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Publisher{js: js, cfg: cfg, log: cfg.Logger.With("component", "attach")}
	if err := p.ensureStream(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Streams returns the names of the streams that store the updates, the lifecycle events and the
// agent views (the same name three times, usually).
func (p *Publisher) Streams() (update, lifecycle, agentView string) {
	return p.updateStream, p.lifecycleStream, p.agentStream
}

// ensureStream finds, for each outbound subject pattern, a stream whose subjects cover it
// entirely, and creates cfg.Stream when no stream touches any of them.
func (p *Publisher) ensureStream(ctx context.Context) error {
	subjects := streamSubjects(p.cfg.Prefix)
	var owners [3]string
	var overlaps []string // "<stream> (<its subject>) overlaps <pattern> without covering it"
	checked := map[string]bool{}
	for i, pattern := range subjects {
		lister := p.js.StreamNames(ctx, jetstream.WithStreamListSubject(pattern))
		var names []string
		for name := range lister.Name() {
			names = append(names, name)
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("attach: look up the stream capturing %s: %w", pattern, err)
		}
		for _, name := range names {
			s, err := p.js.Stream(ctx, name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				continue // deleted since the listing
			}
			if err != nil {
				return fmt.Errorf("attach: stream %s: %w", name, err)
			}
			cfg := s.CachedInfo().Config
			streamSubjs := cfg.Subjects
			if len(streamSubjs) == 0 {
				streamSubjs = []string{cfg.Name}
			}
			if covered(pattern, streamSubjs) {
				owners[i] = name
				if !checked[name] {
					checked[name] = true
					p.checkExisting(cfg)
				}
				break
			}
			overlaps = append(overlaps, fmt.Sprintf("stream %s (%s) overlaps %s without capturing all of it",
				name, strings.Join(streamSubjs, ", "), pattern))
		}
	}

	found := 0
	for _, o := range owners {
		if o != "" {
			found++
		}
	}
	switch {
	case found == len(subjects):
		p.updateStream, p.lifecycleStream, p.agentStream = owners[0], owners[1], owners[2]
		p.log.Info("using existing streams for the outbound subjects",
			"update_stream", owners[0], "lifecycle_stream", owners[1], "agent_stream", owners[2])
		return nil
	case found == 0 && len(overlaps) == 0:
		return p.createStream(ctx, subjects)
	}
	var problems []string
	for i, pattern := range subjects {
		if owners[i] == "" {
			problems = append(problems, pattern+" is captured by no stream")
		} else {
			problems = append(problems, pattern+" is captured by stream "+owners[i])
		}
	}
	problems = append(problems, overlaps...)
	return fmt.Errorf("attach: the outbound subjects are only partly captured by existing streams; "+
		"capture all of them or none (then %s is created): %s", p.cfg.Stream, strings.Join(problems, "; "))
}

// checkExisting warns about an existing stream's settings that weaken the contract; the stream
// is used as it is all the same.
func (p *Publisher) checkExisting(cfg jetstream.StreamConfig) {
	if cfg.Duplicates < p.cfg.DuplicateWindow {
		p.log.Warn("existing stream deduplicates over a shorter window than configured: a re-publish after it is stored twice",
			"stream", cfg.Name, "duplicate_window", cfg.Duplicates, "configured", p.cfg.DuplicateWindow)
	}
	if cfg.NoAck {
		p.log.Warn("existing stream does not acknowledge publishes: every publish will time out", "stream", cfg.Name)
	}
}

func (p *Publisher) createStream(ctx context.Context, subjects [3]string) error {
	sc := jetstream.StreamConfig{
		Name:        p.cfg.Stream,
		Description: "cobrowse-connector outbound: attached-data updates, co-browse lifecycle events, agent views",
		Subjects:    subjects[:],
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    p.cfg.Replicas,
		Duplicates:  p.cfg.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
		MaxAge:      p.cfg.MaxAge,
	}
	if _, err := p.js.CreateStream(ctx, sc); err != nil {
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("attach: create stream %s for %s: a stream of that name exists and captures other subjects: %w",
				sc.Name, strings.Join(sc.Subjects, ", "), err)
		}
		return fmt.Errorf("attach: create stream %s for %s: %w", sc.Name, strings.Join(sc.Subjects, ", "), err)
	}
	p.updateStream, p.lifecycleStream, p.agentStream = sc.Name, sc.Name, sc.Name
	p.log.Info("created stream for the outbound subjects", "stream", sc.Name,
		"subjects", sc.Subjects, "duplicate_window", sc.Duplicates, "replicas", sc.Replicas)
	return nil
}

// covered reports whether every subject matching pattern is captured by one of the stream's
// subjects (a subset match: "cc.>" and "cc.*.*.attach" cover "cc.interaction.*.attach").
func covered(pattern string, streamSubjects []string) bool {
	pt := strings.Split(pattern, ".")
	for _, s := range streamSubjects {
		if subsetOf(pt, strings.Split(s, ".")) {
			return true
		}
	}
	return false
}

func subsetOf(pattern, filter []string) bool {
	for i, f := range filter {
		if f == ">" {
			return len(pattern) > i // '>' needs at least one more token
		}
		if i >= len(pattern) {
			return false
		}
		switch t := pattern[i]; {
		case t == ">":
			return false // the pattern goes on where the filter stops matching
		case f == "*":
			// matches any single token, '*' included
		case t == "*" || t != f:
			return false
		}
	}
	return len(pattern) == len(filter)
}

// Update publishes an attached-data update on <prefix>.interaction.<interactionId>.attach with
// the id "<interactionId>.attach.<seq>".
func (p *Publisher) Update(ctx context.Context, u Update) error {
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
	return p.publish(ctx, p.updateStream, UpdateSubject(p.cfg.Prefix, u.InteractionID), UpdateMsgID(u.InteractionID, u.Seq), body)
}

// Lifecycle publishes a lifecycle event on <prefix>.cobrowse.<interactionId>.<event> with the id
// "<interactionId>.<sessionId>.<event>", or e.MsgID when set. The session token is masked here.
func (p *Publisher) Lifecycle(ctx context.Context, e Lifecycle) error {
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
	return p.publish(ctx, p.lifecycleStream, LifecycleSubject(p.cfg.Prefix, e.InteractionID, e.Event), e.msgID(), body)
}

// AgentView publishes an agent view on <prefix>.agent.<agentId>.cobrowse with the id
// "<interactionId>.<sessionId>.agent.<agentId>".
func (p *Publisher) AgentView(ctx context.Context, v AgentView) error {
	if err := v.validate(); err != nil {
		return err
	}
	if v.At.IsZero() {
		v.At = p.cfg.Now()
	}
	body, err := v.MarshalJSON()
	if err != nil {
		return err
	}
	return p.publish(ctx, p.agentStream, AgentSubject(p.cfg.Prefix, v.AgentID), AgentViewMsgID(v.InteractionID, v.SessionID, v.AgentID), body)
}

// publish sends one message with its dedupe id and waits for the PubAck. A PubAck that says
// Duplicate is success: the stream already holds the message.
func (p *Publisher) publish(ctx context.Context, stream, subject, msgID string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	msg.Header.Set(jetstream.ExpectedStreamHeader, stream)
	ack, err := p.js.PublishMsg(ctx, msg)
	if err != nil {
		return &PublishError{Subject: subject, MsgID: msgID, Transient: transient(err), Err: err}
	}
	if ack.Duplicate {
		p.log.Debug("publish deduplicated: the stream already holds it", "subject", subject, "msg_id", msgID,
			"stream", ack.Stream, "seq", ack.Sequence)
		return nil
	}
	p.log.Debug("published", "subject", subject, "msg_id", msgID, "stream", ack.Stream, "seq", ack.Sequence)
	return nil
}

// transient tells a cause that may go away by itself from a rejection of the message.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrStaleConnection):
		return true
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		// 503: JetStream or the stream's leader is not available right now, or out of resources.
		return apiErr.Code == 503
	}
	return false
}
