package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/pcgroups"
)

// Assignee is a Handler told when the interactions it may act for change: the consumer's member
// gained or lost partitions, or an instance of the same member name took over. Consumer.Owns
// answers for the new assignment when either is called.
type Assignee interface {
	// Release lets go of every interaction Owns no longer answers for, without stopping their
	// sessions, and returns once they are let go (or ctx is done). The consumer calls it before its
	// consumer stops covering the partitions lost, so that their next owner (which can read them
	// only after that) finds their state as this replica left it.
	Release(ctx context.Context)
	// Acquire takes up the live sessions of the interactions Owns now answers for, that the handler
	// does not hold yet (from the stored state). The consumer calls it after its consumer covers
	// the partitions gained and before it hands over any message of them.
	Acquire(ctx context.Context) error
}

// source is what the pull loop reads: the member's consumer on the group stream or, while the
// first start of this release drains it, the previous release's durable on the inbound stream.
type source struct {
	cons    jetstream.Consumer
	next    string // the subject of its pull requests
	params  consumerParams
	grouped bool // the group stream: subjects carry the partition, pulls name the priority group
}

// member is the consumer's side of the group: the partitions the membership assigns it, its
// consumer and whether this instance is the one the server hands messages to. Only Run's
// goroutine touches it, but for pin, which the pull loop reads too.
type member struct {
	c      *Consumer
	h      Handler
	as     Assignee // nil when h is not one
	q      *queue
	keeper *leases

	src     *source
	parts   parts
	filters []string
	// active: this instance acts for the member's partitions (it holds, or may take, the pin);
	// a standby instance of the same member name pulls but acts for nothing.
	active bool
	// pin is the pin id the server last handed this instance (control took it; "": none): a
	// message with this pin, or none, needs no control step.
	pin pinCell

	pullCancel context.CancelFunc
	pullDone   chan struct{}
	fatal      func(error)

	notMember bool // logged that the membership gives this member nothing
}

// Owns reports whether this replica acts for the interaction now: its partition is one of this
// member's and this instance is the member's active one.
func (c *Consumer) Owns(interactionID string) bool {
	p := c.owned.Load()
	return p != nil && p.has(Partition(interactionID, c.cfg.Partitions))
}

func (c *Consumer) setOwned(p parts) {
	if p == nil {
		c.owned.Store(nil)
		return
	}
	c.owned.Store(&p)
}

// Partitions lists the partitions this instance acts for now (none while it is a standby, or
// before its first assignment), in order.
func (c *Consumer) Partitions() []int {
	p := c.owned.Load()
	if p == nil {
		return []int{}
	}
	return append([]int{}, p.list()...)
}

// Member is this replica's member name in the consumer group.
func (c *Consumer) Member() string { return c.cfg.Member }

// LetGo hands the member's partitions over at once, for a replica that stops: the server unpins
// this instance, so that another instance of the same member name (or this member restarted)
// takes them without waiting for the pinned TTL. Call it after Run returned and the handler let go
// of its interactions.
func (c *Consumer) LetGo(ctx context.Context) error {
	if !c.pinned.Load() || c.js.Conn().IsClosed() {
		return nil
	}
	s, err := c.js.Stream(ctx, GroupStreamName(c.StreamName(), c.cfg.Group))
	if err != nil {
		return fmt.Errorf("chat: unpin member %s: %w", c.cfg.Member, err)
	}
	if err := s.UnpinConsumer(ctx, c.cfg.Member, priorityGroup); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("chat: unpin member %s: %w", c.cfg.Member, err)
	}
	c.pinned.Store(false)
	c.log.Info("let go of the member's partitions", "member", c.cfg.Member)
	return nil
}

// startPull starts the pull loop on m.src.
func (m *member) startPull(ctx context.Context) {
	pctx, cancel := context.WithCancel(ctx)
	m.pullCancel, m.pullDone = cancel, make(chan struct{})
	m.c.health.set(PullPulling)
	src, done := m.src, m.pullDone
	direct := func(d *delivery) bool { return m.direct(ctx, pctx, d) }
	go func() {
		defer close(done)
		if err := m.c.pull(pctx, m.q, m.keeper, src, m.recreate, direct); err != nil {
			m.fatal(err)
		}
	}()
}

// direct hands d to the handler on the pull loop's goroutine, when nothing is ahead of it (the
// queue is empty and the serve loop handles nothing) and it needs no control step (it carries no
// pin, or the one control already took): what the serve loop would do with it, without passing
// it from one goroutine to the other. It reports whether it did; else the caller queues d.
//
// Why: the hop from the pull loop to the serve loop was a goroutine wake-up per message in the
// common case, an idle serve loop; handing over on the pull loop drained the load harness's
// ingestion backlog about 11 % faster (docs/scaling.md). Order holds: the pull loop is the only
// producer, so while it hands d over nothing new is queued, and the serve loop, idle, takes
// nothing; stopPull waits for the pull loop, so nothing is handed over after it returns (a
// membership change, Run's end). ctx is Run's, the serve loop's; pctx the pull loop's.
func (m *member) direct(ctx, pctx context.Context, d *delivery) bool {
	if pctx.Err() != nil || (d.pin != "" && d.pin != m.pin.get()) || !m.q.idle() {
		return false
	}
	m.c.dispatch(ctx, d, m.h)
	return true
}

// stopPull stops the pull loop and hands the deliveries it queued back to the server.
func (m *member) stopPull() {
	if m.pullCancel != nil {
		m.pullCancel()
		<-m.pullDone
		m.pullCancel, m.pullDone = nil, nil
		m.c.health.set(PullStarting)
	}
	m.nakQueued()
}

func (m *member) nakQueued() {
	for _, d := range m.q.drain() {
		if d.msg == nil {
			continue
		}
		if err := d.Nak(0); err != nil {
			m.c.log.Debug("nak failed", "stream_seq", d.seq, "error", err)
		}
	}
}

// recreate is the pull loop's answer to a consumer the server lost (deleted for inactivity, or
// with its stream): the same consumer again.
func (m *member) recreate(ctx context.Context, src *source) (*source, error) {
	if !src.grouped {
		return src, nil // the durable being drained is never made again
	}
	return m.c.createMember(ctx, consumerFilters(m.parts, m.filters))
}

// createMember creates the member's consumer with filters; an existing consumer of the member with
// the same configuration is taken as it is.
func (c *Consumer) createMember(ctx context.Context, filters []string) (*source, error) {
	cfg := c.memberConsumerConfig(filters)
	cons, err := c.js.CreateConsumer(ctx, GroupStreamName(c.StreamName(), c.cfg.Group), cfg)
	if err != nil {
		return nil, err
	}
	p := consumerParams{ackWait: cfg.AckWait, backoff: cfg.BackOff, maxDeliver: cfg.MaxDeliver}
	if info := cons.CachedInfo(); info != nil {
		p = consumerParams{ackWait: info.Config.AckWait, backoff: info.Config.BackOff, maxDeliver: info.Config.MaxDeliver}
	}
	return &source{cons: cons, next: nextSubject(c.js, cons), params: p, grouped: true}, nil
}

// notUnique is the server's refusal of a work-queue consumer whose filters overlap another's:
// the partitions' previous owner has not let go of them yet.
func notUnique(err error) bool {
	var aerr *jetstream.APIError
	return errors.As(err, &aerr) && aerr.ErrorCode == 10100 // JSConsumerWQConsumerNotUniqueErr
}

// apply moves the member to the membership cfg: it stops pulling, lets go of the partitions lost,
// makes its consumer cover the partitions it has now (waiting for their previous owner to let go
// of them), takes up the live sessions of the partitions gained, and pulls again.
func (m *member) apply(ctx context.Context, cfg pcgroups.ElasticConsumerGroupConfig) error {
	c := m.c
	if int(cfg.MaxMembers) != c.cfg.Partitions {
		c.log.Error("the consumer group's partition count changed under the daemon: keeping the current assignment (restart the replicas once the group is right)",
			"group", c.cfg.Group, "partition_count", cfg.MaxMembers, "configured", c.cfg.Partitions)
		return nil
	}
	want, filters := memberParts(cfg, c.cfg.Member)
	if m.src != nil && want.equal(m.parts) && slices.Equal(filters, m.filters) {
		return nil
	}
	m.stopPull()
	had := m.parts
	if m.active && !had.intersect(want).equal(had) {
		c.setOwned(had.intersect(want))
		m.release(ctx)
	}
	if m.src != nil && m.active {
		// Recreated, not updated: partitions gained may hold messages behind the consumer's
		// position. Only the active instance deletes (a standby waits for it).
		if err := c.js.DeleteConsumer(ctx, GroupStreamName(c.StreamName(), c.cfg.Group), c.cfg.Member); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			c.log.Warn("deleting the member's consumer failed", "member", c.cfg.Member, "error", err)
		}
	}
	first := m.src == nil && !m.active
	m.src, m.parts, m.filters = nil, want, filters
	if len(filters) == 0 {
		m.active = false
		c.setOwned(nil)
		c.pinned.Store(false)
		c.health.set(PullIdle)
		if !m.notMember {
			m.notMember = true
			c.log.Warn("this member has no partitions: it consumes nothing until an operator adds it (cobrowse-connector cluster add)",
				"member", c.cfg.Member, "group", c.cfg.Group, "members", cfg.Members)
		}
		return nil
	}
	m.notMember = false
	src, err := m.create(ctx)
	if err != nil {
		return err
	}
	m.src = src
	if first || !m.active {
		m.active = m.alone(ctx)
	}
	if m.active {
		c.setOwned(want)
		c.pinned.Store(true)
		if err := m.acquire(ctx); err != nil {
			return err
		}
		c.log.Info("consuming the member's partitions", "member", c.cfg.Member, "partitions", want.list())
	} else {
		c.log.Info("another instance of this member is active: standing by", "member", c.cfg.Member)
	}
	m.startPull(ctx)
	return nil
}

// create makes the member's consumer, retrying until the server takes it: while the partitions'
// previous owner still covers them, and while another instance of this member holds a consumer of
// the same name with other filters.
func (m *member) create(ctx context.Context) (*source, error) {
	c := m.c
	wait := retryMin
	logged := false
	for {
		src, err := c.createMember(ctx, consumerFilters(m.parts, m.filters))
		if err == nil {
			if logged {
				c.log.Info("the partitions' previous owner let go of them", "member", c.cfg.Member)
			}
			return src, nil
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, jetstream.ErrConsumerExists):
			// The member's consumer with other filters: an earlier run's, or that of another
			// instance of this member that has not moved yet. It is replaced once nobody uses it.
			if m.consumerIdle(ctx) {
				_ = c.js.DeleteConsumer(ctx, GroupStreamName(c.StreamName(), c.cfg.Group), c.cfg.Member)
				continue
			}
		case notUnique(err):
			if m.clearRemoved(ctx) {
				continue
			}
			if !logged {
				logged = true
				c.log.Info("waiting for the partitions' previous owner to let go of them", "member", c.cfg.Member)
			}
		default:
			if !logged {
				logged = true
				c.log.Warn("creating the member's consumer failed; retrying", "member", c.cfg.Member, "error", err)
			}
		}
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(wait*2, retryMax)
	}
}

// clearRemoved deletes the consumers of members the membership no longer has and that nobody uses
// (a member removed after it died): their filters would keep the partitions from their new owners
// until the server's inactivity threshold. It reports whether it deleted one.
func (m *member) clearRemoved(ctx context.Context) bool {
	c := m.c
	cfg, err := pcgroups.GetElasticConsumerGroupConfig(ctx, c.js, c.StreamName(), c.cfg.Group)
	if err != nil {
		return false
	}
	stream := GroupStreamName(c.StreamName(), c.cfg.Group)
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	deleted := false
	infos := s.ListConsumers(ctx)
	for info := range infos.Info() {
		if cfg.IsInMembership(info.Name) || !idleInfo(info, "") {
			continue
		}
		if err := c.js.DeleteConsumer(ctx, stream, info.Name); err == nil {
			deleted = true
			c.log.Info("deleted the consumer of a removed member that is gone", "consumer", info.Name)
		}
	}
	return deleted
}

// consumerIdle reports whether the member's consumer has no client: no pull request waiting and
// no instance pinned but this one.
func (m *member) consumerIdle(ctx context.Context) bool {
	cons, err := m.c.js.Consumer(ctx, GroupStreamName(m.c.StreamName(), m.c.cfg.Group), m.c.cfg.Member)
	if err != nil {
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	}
	return idleInfo(cons.CachedInfo(), m.pin.get())
}

func idleInfo(info *jetstream.ConsumerInfo, ours string) bool {
	if info == nil || info.NumWaiting > 0 {
		return false
	}
	return pinnedElsewhere(info, ours) == ""
}

// pinnedElsewhere is the pin id of an instance other than ours that the consumer is pinned to;
// "" when none.
func pinnedElsewhere(info *jetstream.ConsumerInfo, ours string) string {
	for _, g := range info.PriorityGroups {
		if g.Group == priorityGroup && g.PinnedClientID != "" && g.PinnedClientID != ours {
			return g.PinnedClientID
		}
	}
	return ""
}

// alone decides, at start, whether this instance is its member's only one: an instance that is
// alive keeps its pin, a dead one's lapses within the pinned TTL. Until then this instance waits;
// if the pin does not lapse, it stands by. (Two instances that both start before any message
// pinned either find out after their first pulls: see checkPin.)
func (m *member) alone(ctx context.Context) bool {
	deadline := time.Now().Add(m.c.cfg.PinnedTTL + time.Second)
	for {
		info, err := m.src.cons.Info(ctx)
		if err == nil && pinnedElsewhere(info, m.pin.get()) == "" {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return false
		}
	}
}

func (m *member) release(ctx context.Context) {
	if m.as == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, m.c.cfg.AckWait)
	defer cancel()
	m.as.Release(rctx)
}

func (m *member) acquire(ctx context.Context) error {
	if m.as == nil {
		return nil
	}
	return m.as.Acquire(ctx)
}

// control handles what the pull loop learnt about the pin, in stream order with the messages: a
// standby instance handed a message now holds the pin and takes the member's interactions up
// before the message; an active instance that another took the pin from lets go of them.
func (m *member) control(ctx context.Context, d *delivery) error {
	c := m.c
	switch {
	case d.pinLost:
		m.pin.set("")
		if m.active {
			m.active = false
			c.pinned.Store(false)
			c.log.Warn("another instance of this member holds its partitions now: letting go of its interactions", "member", c.cfg.Member)
			c.setOwned(nil)
			m.release(ctx)
		}
	case d.pin != "" && d.pin != m.pin.get():
		m.pin.set(d.pin)
		if !m.active {
			m.active = true
			c.pinned.Store(true)
			c.log.Info("this instance holds the member's partitions now: taking up their interactions", "member", c.cfg.Member, "partitions", m.parts.list())
			c.setOwned(m.parts)
			return m.acquire(ctx)
		}
	}
	return nil
}

// watchGroup follows the group's membership and sends each value on out, until ctx is done. A
// lost watch is made again.
func (c *Consumer) watchGroup(ctx context.Context, out chan<- []byte) {
	key := GroupKey(c.StreamName(), c.cfg.Group)
	wait := retryMin
	for ctx.Err() == nil {
		c.mu.Lock()
		kv := c.kv
		c.mu.Unlock()
		w, err := kv.Watch(ctx, key)
		if err != nil {
			c.log.Debug("watching the consumer group failed; retrying", "error", err)
		} else {
			wait = retryMin
			c.forwardGroup(ctx, w, out)
			_ = w.Stop()
		}
		sleep(ctx, wait)
		wait = min(wait*2, retryMax)
	}
}

// forwardGroup sends the watch's values on out until the watch ends or ctx is done.
func (c *Consumer) forwardGroup(ctx context.Context, w jetstream.KeyWatcher, out chan<- []byte) {
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case u, ok := <-w.Updates():
			if !ok {
				return
			}
			if e = u; e == nil {
				continue // the initial values are in
			}
		}
		v := e.Value()
		if e.Operation() != jetstream.KeyValuePut {
			v = nil
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return
		}
	}
}

// onMembership applies a membership value (nil: the group was deleted).
func (m *member) onMembership(ctx context.Context, v []byte) error {
	if v == nil {
		m.c.log.Error("the consumer group was deleted: consuming nothing (restart the replicas to make it again)", "group", m.c.cfg.Group)
		return m.apply(ctx, pcgroups.ElasticConsumerGroupConfig{MaxMembers: uint(m.c.cfg.Partitions)})
	}
	cfg, err := decodeGroupConfig(v)
	if err != nil {
		m.c.log.Error("ignoring a membership change that cannot be read", "group", m.c.cfg.Group, "error", err)
		return nil
	}
	return m.apply(ctx, cfg)
}
