package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Inbound is one decoded, valid inbound message with its delivery. Exactly one of Chat and Event
// is set.
type Inbound struct {
	InteractionID string
	Chat          *Message
	Event         *Event
	// Signal is set for a message on <prefix>.signal.<interactionId>.<source>.
	Signal *Signal
	// StartToken is set when Chat has the form of a start message (StartCandidate) and comes
	// from a role in Config.TriggerRoles; whether it names a session is the vendor's call.
	StartToken string
	Delivery   Delivery
}

// Handler receives inbound messages in stream order. It may block: that is the backpressure, the
// consumer pulls no more than Config.FetchBatch messages ahead of it.
type Handler interface {
	Handle(ctx context.Context, in Inbound)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, in Inbound)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, in Inbound) { f(ctx, in) }

// Fetch tuning. A pull request lives fetchWait; the server sends idle heartbeats every
// fetchHeartbeat, and a pull that misses two of them (a lost server, a reconnect) is abandoned
// and pulled again.
const (
	fetchWait      = 5 * time.Second
	fetchHeartbeat = time.Second
	retryMin       = 50 * time.Millisecond
	retryMax       = 2 * time.Second
)

// Consumer reads the inbound stream as one member of the daemon's partitioned consumer group
// (group.go): each replica reads the partitions of the interactions it owns.
type Consumer struct {
	js       jetstream.JetStream
	cfg      Config
	log      *slog.Logger
	triggers map[Role]bool
	chatSubj string
	evSubj   string
	sigSubj  string
	running  atomic.Bool
	met      *meters    // nil: no metrics
	health   pullHealth // what the pull loop does, for PullStatus
	// ackTimeout bounds a double ack whose context has no deadline (the JetStream context's
	// default timeout, as nats.go's own DoubleAck does).
	ackTimeout time.Duration

	// onKeepAlive, when set before Run, is called after each in-progress ack the keeper sends.
	onKeepAlive func(seq uint64)

	owned  atomic.Pointer[parts] // the partitions this instance acts for; nil: none
	pinned atomic.Bool           // this instance is its member's active one
	pin    pinCell               // the pin id the server last handed this instance

	mu     sync.Mutex
	stream string
	kv     jetstream.KeyValue
	legacy *source // the previous release's durable, drained at the first start of this one
}

// pinHeader carries, on a message of a pinned consumer, the pin id of the instance it goes to.
const pinHeader = "Nats-Pin-Id"

// pinCell holds a pin id that one goroutine sets and others read.
type pinCell struct{ p atomic.Pointer[string] }

func (c *pinCell) set(pin string) { c.p.Store(&pin) }

// get is the pin id set last; "" when none.
func (c *pinCell) get() string {
	if p := c.p.Load(); p != nil {
		return *p
	}
	return ""
}

// consumerParams are the consumer's settings as the server holds them.
type consumerParams struct {
	ackWait    time.Duration
	backoff    []time.Duration
	maxDeliver int
}

// NewConsumer ensures the inbound stream and the consumer group. The stream is looked up by the
// inbound subjects: an existing stream that captures them is used as it is, whatever its name;
// when no stream captures any, the stream Config.Stream is created. Any other layout (the subjects
// split over streams, or captured only in part) is an error. The group (its membership and its
// work-queue stream) is created when missing, and refused when it does not fit the configuration.
// When the previous release's durable consumer (Config.Durable) is still there, the group waits
// until Run has drained it.
func NewConsumer(ctx context.Context, js jetstream.JetStream, cfg Config) (*Consumer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		js:       js,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "chat"),
		triggers: make(map[Role]bool),
		chatSubj: cfg.Prefix + ".chat.*.message",
		evSubj:   cfg.Prefix + ".interaction.*.event",
		sigSubj:  cfg.Prefix + ".signal.*.*",
		met:      newMeters(cfg.Metrics),
	}
	if c.ackTimeout = js.Options().DefaultTimeout; c.ackTimeout <= 0 {
		c.ackTimeout = 5 * time.Second
	}
	for _, r := range cfg.TriggerRoles {
		c.triggers[r] = true
	}
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// StreamName is the name of the inbound stream.
func (c *Consumer) StreamName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream
}

// Config is the configuration in use, defaults filled in.
func (c *Consumer) Config() Config {
	cfg := c.cfg
	cfg.Backoff = slices.Clone(cfg.Backoff)
	cfg.TriggerRoles = slices.Clone(cfg.TriggerRoles)
	return cfg
}

// ensure finds or creates the inbound stream, finds the previous release's durable, and ensures
// the group unless that durable must be drained first.
func (c *Consumer) ensure(ctx context.Context) error {
	stream, err := c.ensureStream(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.stream = stream
	c.mu.Unlock()
	switch cons, err := c.js.Consumer(ctx, stream, c.cfg.Durable); {
	case err == nil:
		info := cons.CachedInfo()
		c.legacy = &source{cons: cons, next: nextSubject(c.js, cons),
			params: consumerParams{ackWait: info.Config.AckWait, backoff: info.Config.BackOff, maxDeliver: info.Config.MaxDeliver}}
		c.log.Info("the previous release's durable consumer is still there: it is drained before the consumer group is used",
			"consumer", c.cfg.Durable, "pending", info.NumPending, "ack_pending", info.NumAckPending)
		// The group is made once the durable is drained; an existing one is checked now.
		if _, err := c.js.KeyValue(ctx, GroupBucket); err == nil {
			return c.ensureGroupIfPresent(ctx)
		}
		return nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return c.ensureGroup(ctx, 0)
	default:
		return fmt.Errorf("chat: look up consumer %s on stream %s: %w", c.cfg.Durable, stream, err)
	}
}

// ensureGroupIfPresent checks a group that exists already (while the durable waits to be drained).
func (c *Consumer) ensureGroupIfPresent(ctx context.Context) error {
	kv, err := c.js.KeyValue(ctx, GroupBucket)
	if err != nil {
		return fmt.Errorf("chat: consumer group bucket %s: %w", GroupBucket, err)
	}
	if _, err := kv.Get(ctx, GroupKey(c.StreamName(), c.cfg.Group)); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return c.ensureGroup(ctx, 0)
}

// subjects are the inbound subject patterns, in the order of the contract.
func (c *Consumer) subjects() []string { return []string{c.chatSubj, c.evSubj, c.sigSubj} }

// streamDescription marks the inbound stream the daemon creates (an older release wrote the same
// description and no metadata); createdMarker is the metadata key this release adds.
const (
	streamDescription = "contact-center chat messages and interaction events"
	createdMarker     = "cobrowse-connector.created"
)

// ensureStream returns the stream that captures the inbound subjects, creating it when no stream
// captures any of them. A stream the daemon created that lacks a subject of this release (the
// signals) is updated to capture it; a stream the operator manages is refused with the subject it
// lacks.
func (c *Consumer) ensureStream(ctx context.Context) (string, error) {
	name, missing, found, err := c.findStream(ctx)
	if err != nil {
		return "", err
	}
	if found && len(missing) > 0 {
		if err := c.addSubjects(ctx, name, missing); err != nil {
			return "", err
		}
	}
	if found {
		c.log.Info("using the existing inbound stream", "stream", name, "subjects", c.subjects())
		return name, nil
	}
	_, err = c.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: streamDescription,
		Subjects:    c.subjects(),
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Duplicates:  DuplicateWindow,
		MaxAge:      c.cfg.MaxAge,
		Replicas:    c.cfg.Replicas,
		Metadata:    map[string]string{createdMarker: "1"},
	})
	if err != nil {
		// Another instance may have created it meanwhile: look again before giving up.
		if name, missing, found, ferr := c.findStream(ctx); ferr == nil && found && len(missing) == 0 {
			c.log.Info("using the existing inbound stream", "stream", name)
			return name, nil
		}
		return "", fmt.Errorf("chat: create stream %s: %w", c.cfg.Stream, err)
	}
	c.log.Info("created the inbound stream", "stream", c.cfg.Stream, "subjects", c.subjects())
	return c.cfg.Stream, nil
}

// addSubjects adds the missing subject patterns to the inbound stream, when the daemon created it.
func (c *Consumer) addSubjects(ctx context.Context, name string, missing []string) error {
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("chat: stream %s: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Metadata[createdMarker] == "" && cfg.Description != streamDescription {
		return fmt.Errorf("chat: stream %s captures the chat and the events but not %s, and it is not a stream the daemon created: "+
			"add %s to its subjects (one stream keeps an interaction's order)", name, strings.Join(missing, ", "), strings.Join(missing, ", "))
	}
	cfg.Subjects = append(cfg.Subjects, missing...)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[createdMarker] = "1"
	if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("chat: add %s to stream %s: %w", strings.Join(missing, ", "), name, err)
	}
	c.log.Info("added subjects to the inbound stream", "stream", name, "subjects", missing)
	return nil
}

// findStream looks up, by subject, the streams whose subjects overlap the inbound subjects. It
// returns the one stream that captures them, with the patterns it does not capture at all (a
// subject this release added), or an error when they are spread over streams or captured only in
// part.
func (c *Consumer) findStream(ctx context.Context) (name string, missing []string, found bool, err error) {
	patterns := c.subjects()
	owners := make([][]*jetstream.StreamInfo, len(patterns))
	seen := false
	for i, p := range patterns {
		if owners[i], err = streamsCapturing(ctx, c.js, p); err != nil {
			return "", nil, false, fmt.Errorf("chat: %w", err)
		}
		seen = seen || len(owners[i]) > 0
	}
	if !seen {
		return "", nil, false, nil
	}
	var problems []string
	for i, p := range patterns {
		switch {
		case len(owners[i]) == 0:
			if i < 2 { // chat and events: from the first release on
				problems = append(problems, fmt.Sprintf("no stream captures %s", p))
			} else {
				missing = append(missing, p)
			}
		default:
			if why := ownerProblem(p, owners[i]); why != "" {
				problems = append(problems, why)
			}
		}
	}
	if len(problems) == 0 {
		first := owners[0][0].Config.Name
		for i := 1; i < len(patterns); i++ {
			if len(owners[i]) == 1 && owners[i][0].Config.Name != first {
				problems = append(problems, fmt.Sprintf("%s and %s are captured by different streams (%s, %s): they must share one stream to keep their order",
					patterns[0], patterns[i], first, owners[i][0].Config.Name))
			}
		}
	}
	if len(problems) == 0 {
		problems = append(problems, orderProblems(owners[0][0].Config)...)
	}
	if len(problems) > 0 {
		return "", nil, false, fmt.Errorf("chat: existing streams do not fit the inbound subjects: %s", strings.Join(problems, "; "))
	}
	return owners[0][0].Config.Name, missing, true, nil
}

// orderProblems lists what, in an existing inbound stream's settings, would lose an interaction's
// messages before the daemon reads them, or keep it from reading them in order: a per-subject limit
// (an interaction's older unread messages dropped for its newer ones), a sealed stream (nothing can
// be stored), a mirror (the platform cannot publish into it).
func orderProblems(cfg jetstream.StreamConfig) []string {
	var out []string
	if cfg.MaxMsgsPerSubject > 0 {
		out = append(out, fmt.Sprintf("stream %s keeps %d messages per subject: an interaction's older unread messages would be dropped (set max_msgs_per_subject to -1)",
			cfg.Name, cfg.MaxMsgsPerSubject))
	}
	if cfg.Sealed {
		out = append(out, fmt.Sprintf("stream %s is sealed: nothing can be stored in it", cfg.Name))
	}
	if cfg.Mirror != nil {
		out = append(out, fmt.Sprintf("stream %s is a mirror: the platform cannot publish into it", cfg.Name))
	}
	return out
}

// streamsCapturing lists the streams whose subjects overlap pattern.
func streamsCapturing(ctx context.Context, js jetstream.JetStream, pattern string) ([]*jetstream.StreamInfo, error) {
	var infos []*jetstream.StreamInfo
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(pattern))
	for info := range l.Info() {
		infos = append(infos, info)
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("look up the stream of %s: %w", pattern, err)
	}
	return infos, nil
}

// ownerProblem says why the streams found for pattern (at least one) are not one stream that
// captures all of it; "" when they are.
func ownerProblem(pattern string, infos []*jetstream.StreamInfo) string {
	switch {
	case len(infos) > 1:
		return fmt.Sprintf("%s is split over streams %s", pattern, streamNames(infos))
	case !capturesAll(infos[0].Config.Subjects, pattern):
		return fmt.Sprintf("stream %s captures only part of %s", infos[0].Config.Name, pattern)
	}
	return ""
}

func streamNames(infos []*jetstream.StreamInfo) string {
	names := make([]string, len(infos))
	for i, info := range infos {
		names[i] = info.Config.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// capturesAll reports whether the stream subjects together capture every subject matching
// pattern. It checks each stream subject alone, which is exact for the inbound patterns (one
// wildcard token): a union of several literal subjects never covers a '*'.
func capturesAll(streamSubjects []string, pattern string) bool {
	for _, s := range streamSubjects {
		if subjectCovers(s, pattern) {
			return true
		}
	}
	return false
}

// subjectCovers reports whether every subject matching pattern also matches filter.
func subjectCovers(filter, pattern string) bool {
	f := strings.Split(filter, ".")
	p := strings.Split(pattern, ".")
	for i, ft := range f {
		if ft == ">" {
			return len(p) > i
		}
		if i >= len(p) || p[i] == ">" {
			return false
		}
		if ft != "*" && ft != p[i] {
			return false
		}
	}
	return len(f) == len(p)
}

// Run reads the member's partitions and hands the valid messages to h in stream order until ctx is
// done. It returns nil on cancellation, and an error only when it cannot go on (the NATS connection
// is closed for good). It survives NATS reconnects and server restarts. Run must not be called
// concurrently with itself.
//
// It follows the group's membership: when this member's partitions change, or when another
// instance of the member takes over or hands over, it tells h, when h is an Assignee, before any
// message that depends on it (see Assignee). On the first start of this release it first drains
// the previous release's durable consumer, as the member of every partition.
//
// Malformed messages are terminated and logged once at warn; events of an unknown type are acked
// and dropped. Deliveries pulled ahead of h, and those h holds unsettled, are kept alive with
// in-progress acks (see Config.AckWait). On return, messages pulled but not yet handed to h are
// nak'd for prompt redelivery; deliveries h holds stay valid but are no longer kept alive.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("chat: Run is already running")
	}
	defer c.running.Store(false)
	c.health.set(PullStarting)
	defer c.health.set(PullStopped)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nc := c.js.Conn()
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if nc.IsClosed() {
		return fmt.Errorf("chat: %w", nats.ErrConnectionClosed)
	}

	var fatalMu sync.Mutex
	var fatal error
	fail := func(err error) {
		fatalMu.Lock()
		if fatal == nil {
			fatal = err
		}
		fatalMu.Unlock()
		cancel()
	}
	m := &member{c: c, h: h, q: newQueue(), keeper: newLeases(c.cfg.AckWait, c.log, c.onKeepAlive), fatal: fail}
	m.as, _ = h.(Assignee)
	var wg sync.WaitGroup
	wg.Go(func() { m.keeper.run(ctx, c.keeperPeriod()) })
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-closed:
			fail(fmt.Errorf("chat: pull from %s: %w", c.StreamName(), nats.ErrConnectionClosed))
		}
	})

	err := c.drainLegacy(ctx, m)
	if err == nil {
		err = c.runMember(ctx, m, &wg)
	}
	cancel()
	m.stopPull()
	wg.Wait()
	if fatal != nil {
		return fatal // the caller logs it: an error is logged once, where it is handled
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	c.log.Info("inbound consumer stopped")
	return nil
}

// runMember follows the membership and hands over what the member's consumer delivers.
func (c *Consumer) runMember(ctx context.Context, m *member, wg *sync.WaitGroup) error {
	updates := make(chan []byte)
	wg.Go(func() { c.watchGroup(ctx, updates) })
	c.log.Info("consuming inbound messages", "stream", c.StreamName(), "group", c.cfg.Group, "member", c.cfg.Member)
	err := serve(ctx, c, m, updates, func(v []byte) (bool, error) { return false, m.onMembership(ctx, v) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serve hands the queued items over, in order, until ctx is done, and calls on for each value
// of wake between two items, until on says it is done or fails.
func serve[T any](ctx context.Context, c *Consumer, m *member, wake <-chan T, on func(T) (bool, error)) error {
	for {
		if d := m.q.tryPop(); d != nil {
			err := c.handle(ctx, m, d)
			m.q.served()
			if err != nil {
				return err
			}
			continue
		}
		select {
		case <-m.q.added:
		case v := <-wake:
			if done, err := on(v); done || err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle hands one queued item over: a message, or what the pull loop learnt about the pin.
func (c *Consumer) handle(ctx context.Context, m *member, d *delivery) error {
	if err := ctx.Err(); err != nil {
		m.q.pushFront(d)
		return err
	}
	if err := m.control(ctx, d); err != nil {
		if d.msg != nil {
			m.q.pushFront(d)
		}
		return err
	}
	if d.msg != nil {
		c.dispatch(ctx, d, m.h)
	}
	return nil
}

// drainLegacy reads the previous release's durable consumer, when there is one, until it has
// nothing pending and what it handed over is settled; then it makes the group sourcing the inbound
// stream from after the durable's ack floor, and deletes the durable. What the durable delivered
// but never settled is sourced again, and its redelivery is idempotent.
func (c *Consumer) drainLegacy(ctx context.Context, m *member) error {
	if c.legacy == nil {
		return nil
	}
	c.log.Info("draining the previous release's durable consumer", "consumer", c.cfg.Durable)
	m.active = true
	m.parts = allParts(c.cfg.Partitions)
	c.setOwned(m.parts)
	if err := m.acquire(ctx); err != nil {
		return err
	}
	m.src = c.legacy
	m.startPull(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var settleBy time.Time // set once nothing is pending: the bound on what is still being handled
	return serve(ctx, c, m, tick.C, func(time.Time) (bool, error) {
		info, err := c.legacy.cons.Info(ctx)
		if err != nil {
			c.log.Debug("reading the durable being drained failed", "error", err)
			return false, nil
		}
		if info.NumPending > 0 || m.q.len() > 0 {
			return false, nil
		}
		if settleBy.IsZero() {
			settleBy = time.Now().Add(c.cfg.AckWait)
		}
		if info.NumAckPending > 0 && time.Now().Before(settleBy) {
			return false, nil
		}
		m.stopPull()
		m.src = nil
		floor := info.AckFloor.Stream
		if err := c.ensureGroup(ctx, floor+1); err != nil {
			return true, err
		}
		if err := c.js.DeleteConsumer(ctx, c.StreamName(), c.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.log.Warn("deleting the drained durable consumer failed; delete it by hand", "consumer", c.cfg.Durable, "error", err)
		}
		c.legacy = nil
		c.log.Info("drained the previous release's durable consumer: the consumer group takes over",
			"consumer", c.cfg.Durable, "ack_floor", floor, "ack_pending", info.NumAckPending)
		return true, nil
	})
}

// keeperPeriod is a quarter of the shortest ack deadline the server may apply: a delivery is
// touched a quarter to a half of its deadline after the last touch.
func (c *Consumer) keeperPeriod() time.Duration {
	shortest := c.cfg.AckWait
	for _, b := range c.cfg.Backoff {
		if shortest <= 0 || b < shortest {
			shortest = b
		}
	}
	return max(shortest/4, time.Millisecond)
}

// pull fetches batches from src until ctx is done, handing each message over through direct or
// queueing it in q (fetch). A consumer the server lost is made again with recreate.
func (c *Consumer) pull(ctx context.Context, q *queue, keeper *leases, src *source, recreate func(context.Context, *source) (*source, error), direct func(*delivery) bool) error {
	retry := retryMin
	failing := 0
	refill := max(c.cfg.FetchBatch/2, 1)
	for {
		queued, ok := q.waitBelow(ctx, refill)
		if !ok {
			return nil
		}
		n, err := c.fetch(ctx, src, c.cfg.FetchBatch-queued, q, keeper, direct)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			c.health.ok(time.Now())
			if failing > 0 {
				c.log.Info("pulling inbound messages again", "failures", failing)
			}
			failing, retry = 0, retryMin
			if n == 0 && src.grouped {
				c.checkPin(ctx, src, q)
			}
			continue
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			// The server does not know this instance's pin (any more): another instance took
			// it, or the pin went with a consumer leader that changed. The client pulls without
			// it now; checkPin tells which.
			c.pin.set("")
			continue
		case errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("chat: pull from %s: %w", c.StreamName(), err)
		}
		failing++
		c.health.failed(err, failing)
		if failing == 1 {
			c.log.Warn("pulling inbound messages failed; retrying", "error", err)
		} else {
			c.log.Debug("pulling inbound messages failed; retrying", "error", err, "failures", failing)
		}
		if consumerGone(err) {
			if s, rerr := recreate(ctx, src); rerr != nil {
				c.log.Debug("making the consumer again failed", "error", rerr)
			} else {
				src = s
				c.log.Info("made the consumer again", "stream", c.StreamName())
			}
		}
		if !sleep(ctx, retry) {
			return nil
		}
		retry = min(retry*2, retryMax)
	}
}

// checkPin asks the server, after a pull that brought nothing, whether another instance of this
// member holds the pin: two instances that both found the member free at the same time learn here
// which one the server chose.
func (c *Consumer) checkPin(ctx context.Context, src *source, q *queue) {
	if !c.pinned.Load() {
		return
	}
	info, err := src.cons.Info(ctx)
	if err != nil {
		return
	}
	if other := pinnedElsewhere(info, c.pin.get()); other != "" {
		q.push(&delivery{pinLost: true})
	}
}

// sleep waits d, or until ctx is done; it reports whether the wait ran its course.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, nats.ErrNoResponders)
}

// fetch runs one pull request for up to n messages, handing each over as it arrives: at once
// through direct when it takes it, else queued for the serve loop. It returns how many came, and
// nil when the request ended normally (full, or expired).
func (c *Consumer) fetch(ctx context.Context, src *source, n int, q *queue, keeper *leases, direct func(*delivery) bool) (int, error) {
	expiry, hb := fetchWait, fetchHeartbeat
	if src.grouped {
		// The server keeps the pin while requests come within the pinned TTL: each request
		// expires well before it.
		expiry = min(expiry, c.cfg.PinnedTTL/2)
		hb = min(hb, expiry/4) // the request's expiry (a little less than this) holds >= 2 heartbeats
	}
	lastPin := c.pin.get()
	return c.pullRequest(ctx, src, n, expiry, hb, func(m *nats.Msg) {
		d := c.newDelivery(m, src.params)
		if src.grouped {
			d.subject = stripPartition(m.Subject)
			if pin := m.Header.Get(pinHeader); pin != "" {
				d.pin = pin
				if pin != lastPin {
					c.pin.set(pin)
					lastPin = pin
				}
			}
		}
		d.keeper = keeper
		d.keep()
		if !direct(d) {
			q.push(d)
		}
	})
}

func (c *Consumer) newDelivery(m *nats.Msg, p consumerParams) *delivery {
	d := &delivery{subject: m.Subject, attempt: 1, touched: time.Now()}
	d.pulled = newPulled(m, c.js.Conn(), c.ackTimeout)
	d.msg = &d.pulled
	if delivered, seq, ok := ackCounts(m.Reply); ok {
		d.seq, d.attempt = seq, int(delivered)
	} else if meta, err := m.Metadata(); err == nil {
		d.seq = meta.Sequence.Stream
		d.attempt = int(meta.NumDelivered)
	}
	d.last = p.maxDeliver > 0 && d.attempt >= p.maxDeliver
	d.deadline = deadlineFor(p.ackWait, p.backoff, d.attempt)
	d.ackWait = p.ackWait
	return d
}

// ackCounts reads the delivery count and the stream sequence from a JetStream message's reply
// subject, without the allocations of Msg.Metadata (which parses every field): every pulled message
// needs these two. The subject is $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>,
// or, from newer servers, $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>...
// with 11 tokens or more (the layout nats.go's own parser reads). ok is false for anything else,
// and the caller asks Msg.Metadata.
func ackCounts(reply string) (delivered, streamSeq uint64, ok bool) {
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(reply, prefix) {
		return 0, 0, false
	}
	var tok [8]string // the tokens after the prefix, up to <pending> of a v2 subject
	n, rest := 0, reply[len(prefix):]
	for {
		t, after, found := strings.Cut(rest, ".")
		if n < len(tok) {
			tok[n] = t
		}
		n++
		if !found {
			break
		}
		rest = after
	}
	var d, q string
	switch total := n + 2; {
	case total == 9:
		d, q = tok[2], tok[3]
	case total >= 11:
		d, q = tok[4], tok[5]
	default:
		return 0, 0, false
	}
	var err1, err2 error
	delivered, err1 = strconv.ParseUint(d, 10, 64) // digits only, no sign; no allocation but for an error
	streamSeq, err2 = strconv.ParseUint(q, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return delivered, streamSeq, true
}

// dispatch decodes d and hands it to h, or settles it here when it is malformed or ignored.
func (c *Consumer) dispatch(ctx context.Context, d *delivery, h Handler) {
	// From here the delivery's time is bounded by the budget, also when a settle below fails.
	d.handOver()
	in, err := c.decode(d.subject, d.msg.Data())
	if err != nil {
		terr := d.Term("malformed: " + err.Error())
		if c.met != nil {
			k, _, _ := parseSubject(c.cfg.Prefix, d.subject)
			if d.attempt > 1 {
				c.met.kind(k).redelivered.Inc()
			}
			if terr == nil {
				c.met.malformed(k)
			}
		}
		attrs := []any{"subject", d.subject, "stream_seq", d.seq, "reason", err.Error(), "bytes", len(d.msg.Data())}
		if terr != nil {
			attrs = append(attrs, "term_error", terr)
		}
		c.log.Warn("malformed inbound message terminated", attrs...)
		return
	}
	counts := c.met.kind(in.kind()) // nil without metrics
	if counts != nil && d.attempt > 1 {
		counts.redelivered.Inc()
	}
	if typ, unknown := unknownType(in); unknown {
		aerr := d.Ack(ctx)
		if counts != nil && aerr == nil {
			counts.settled[outcomeIgnored].Inc()
		}
		if len(typ) > 64 {
			typ = typ[:64] + "..."
		}
		c.log.Debug("acked and ignored a message of unknown type", "subject", d.subject, "stream_seq", d.seq,
			"type", typ, "ack_error", aerr)
		return
	}
	d.counts = counts // from here its settle is counted, whoever settles it
	in.Delivery = d
	h.Handle(ctx, in)
}

// kind is the subject kind of a decoded message.
func (in *Inbound) kind() subjectKind {
	switch {
	case in.Chat != nil:
		return subjectChat
	case in.Event != nil:
		return subjectEvent
	case in.Signal != nil:
		return subjectSignal
	}
	return subjectNone
}

// decode turns a subject and payload into an Inbound (without its Delivery).
func (c *Consumer) decode(subject string, data []byte) (Inbound, error) {
	if len(data) > c.cfg.MaxPayload {
		return Inbound{}, malformed("payload of %d bytes exceeds the limit of %d", len(data), c.cfg.MaxPayload)
	}
	kind, token, source := parseSubject(c.cfg.Prefix, subject)
	in := Inbound{InteractionID: token}
	switch kind {
	case subjectChat:
		m, ok := fastChat(token, data)
		if !ok {
			var err error
			if m, err = decodeChat(token, data); err != nil {
				return Inbound{}, err
			}
		}
		in.Chat = m
		if c.triggers[m.From.Role] {
			// A copy of its own: the token is kept in the interaction's state for the session's
			// life, and the text it is cut from shares the whole message's bytes (newScanner).
			if token, ok := StartCandidate(m.Text); ok {
				in.StartToken = strings.Clone(token)
			}
		}
	case subjectEvent:
		e, ok := fastEvent(token, data)
		if !ok {
			var err error
			if e, err = decodeEvent(token, data); err != nil {
				return Inbound{}, err
			}
		}
		in.Event = e
	case subjectSignal:
		g, err := decodeSignal(token, source, data)
		if err != nil {
			return Inbound{}, err
		}
		in.Signal = g
	default:
		return Inbound{}, malformed("subject matches neither inbound pattern")
	}
	return in, nil
}

// unknownType reports an event or a signal of a type the daemon does not act on (valid on the
// wire, acked and ignored, so that the platform can add types before the daemon knows them).
func unknownType(in Inbound) (string, bool) {
	switch {
	case in.Event != nil && !in.Event.Type.Known():
		return string(in.Event.Type), true
	case in.Signal != nil && !in.Signal.Type.Known():
		return string(in.Signal.Type), true
	}
	return "", false
}
