// Package controller is the daemon's brain: one actor per interaction, the co-browse session state
// machine, its timers and sweeps, the close policy and the ownership of every live session.
//
// It speaks neither HTTP nor CometD (a connector.Connector does) nor decodes NATS messages (the
// chat package hands it chat.Inbound values). It declares the two small ports it needs, a Store
// for the per-interaction state and a Publisher for what it attaches, and the daemon plugs the
// NATS implementations in.
package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Store keeps the per-interaction state. Save is a compare-and-set on the revision Load returned
// (0: no state yet), so that two daemons never overwrite each other silently.
type Store interface {
	Load(ctx context.Context, interactionID string) (State, uint64, error)
	Save(ctx context.Context, s State, rev uint64) (uint64, error)
	// Live returns every saved state that has a live session.
	Live(ctx context.Context) ([]Saved, error)
	// IndexSession records that the interaction holds the vendor's session sessionID (see
	// index.go); writing it again is harmless.
	IndexSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error
	// LookupSession returns the interaction IndexSession recorded for the session, or an error
	// wrapping ErrNoSession.
	LookupSession(ctx context.Context, vendor connector.Vendor, sessionID string) (interactionID string, err error)
}

// ErrConflict is a Save whose revision no longer matches the store's.
var ErrConflict = errors.New("state revision conflict")

// Saved is a state with its revision in the store.
type Saved struct {
	State State
	Rev   uint64
}

// Publisher publishes what the controller decided, durably.
type Publisher interface {
	Update(ctx context.Context, u attach.Update) error
	Lifecycle(ctx context.Context, e attach.Lifecycle) error
	Handoff(ctx context.Context, h attach.Handoff) error
	// AgentView publishes an agent view an outbox saved by the previous release still holds.
	AgentView(ctx context.Context, v attach.AgentView) error
}

// Config is the controller's policy.
type Config struct {
	Timers         Timers
	StopWait       time.Duration // how long a close waits for the deactivated notification, once the stop call returned (default 5s)
	StopTimeout    time.Duration // bound on one stop call, its REST fallback included (default 20s)
	JoinTimeout    time.Duration // bound on one join (default 20s)
	PublishTimeout time.Duration // bound on one publish (default 5s)
	RetryDelay     time.Duration // delayed nak when the server is unavailable, and the retry of a failed save (default 10s)
	StopRetry      time.Duration // first retry of a stop that failed by every route, doubled up to 30s (default 2s)
	// EndWait bounds the wait for the vendor's word that a session ended, for a vendor whose
	// sessions end in the pages (end requests) and whose events come as signals (default 30s).
	EndWait         time.Duration
	MaxInteractions int           // bound on live actors (default 20000)
	IdleReap        time.Duration // an actor with no live session is reaped after this long idle (default 1m)
	Sweep           string        // cron spec of the sweep that catches what timers missed (default "@every 30s")
	StopOnShutdown  bool          // stop live sessions (reason shutdown) instead of leaving them for the next start to re-join
	// Owns reports whether this replica owns the interaction now (its partition is this
	// replica's). Nil: every interaction. An actor that lost its state to another writer is
	// replaced by a fresh one only on an interaction this replica owns.
	Owns func(interactionID string) bool
	// DefaultVendor serves an interaction whose created or assigned event names no
	// cobrowseVendor. Empty: the vendor of the only connector given to New.
	DefaultVendor connector.Vendor
	Logger        *slog.Logger
	// Metrics, when set, count the joins, the live sessions and the ends by vendor (see Metrics).
	// Nil: none.
	Metrics *Metrics
}

// DefaultConfig is the zero Config with every default filled in: what each zero field means.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.StopWait, 5*time.Second)
	def(&c.StopTimeout, 20*time.Second)
	def(&c.JoinTimeout, 20*time.Second)
	def(&c.PublishTimeout, 5*time.Second)
	def(&c.RetryDelay, 10*time.Second)
	def(&c.StopRetry, 2*time.Second)
	def(&c.EndWait, 30*time.Second)
	def(&c.IdleReap, time.Minute)
	if c.MaxInteractions <= 0 {
		c.MaxInteractions = 20000
	}
	if c.Sweep == "" {
		c.Sweep = "@every 30s"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Controller routes inbound messages to one actor per interaction and owns the actors.
type Controller struct {
	cfg    Config
	conns  map[connector.Vendor]connector.Connector // the enabled vendors
	store  Store
	pub    Publisher
	vendor connector.Vendor // the default vendor
	log    *slog.Logger
	met    *meters // nil: no metrics
	sched  cron.Schedule

	// ctx is the actors' context: cancelled only when shutdown runs out of time.
	ctx    context.Context
	cancel context.CancelFunc

	// lane orders a burst of closes: stops first (lane.go).
	lane stopLane

	mu      sync.Mutex
	actors  map[string]*actor
	closing bool
	wg      sync.WaitGroup
}

// New builds a controller. It starts nothing: Recover and Run do.
func New(cfg Config, conns []connector.Connector, store Store, pub Publisher) (*Controller, error) {
	cfg = cfg.withDefaults()
	sched, err := cron.ParseStandard(cfg.Sweep)
	if err != nil {
		return nil, fmt.Errorf("controller: sweep %q: %w", cfg.Sweep, err)
	}
	enabled := make(map[connector.Vendor]connector.Connector, len(conns))
	for _, c := range conns {
		enabled[c.Vendor()] = c
	}
	if cfg.DefaultVendor == "" && len(conns) == 1 {
		cfg.DefaultVendor = conns[0].Vendor()
	}
	if _, ok := enabled[cfg.DefaultVendor]; !ok {
		return nil, fmt.Errorf("controller: the default vendor %q is not among the enabled vendors", cfg.DefaultVendor)
	}
	indexed := make(map[connector.Vendor]bool)
	for v, c := range enabled {
		if _, ok := c.(connector.Indexed); ok {
			indexed[v] = true
		}
	}
	vendors := make([]connector.Vendor, 0, len(enabled))
	for v := range enabled {
		vendors = append(vendors, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Controller{
		met: newMeters(cfg.Metrics, vendors),
		cfg: cfg,
		// every live state saved of a vendor that needs it is indexed by its session
		store:  newIndexingStore(store, cfg.DefaultVendor, indexed, cfg.Logger.With("component", "controller")),
		pub:    pub,
		conns:  enabled,
		vendor: cfg.DefaultVendor,
		log:    cfg.Logger.With("component", "controller"),
		sched:  sched,
		ctx:    ctx,
		cancel: cancel,
		actors: make(map[string]*actor),
	}, nil
}

// Recover starts an actor for every interaction saved with a live session; each re-joins its
// session, or stops it through the saved handle and ends it as server_lost. Call it before the
// inbound consumer starts, so that redelivered messages find their sessions.
func (c *Controller) Recover(ctx context.Context) error {
	saved, err := c.store.Live(ctx)
	if err != nil {
		return fmt.Errorf("controller: list live sessions: %w", err)
	}
	n := 0
	for i := range saved {
		s := saved[i]
		if !c.owns(s.State.InteractionID) {
			continue
		}
		n++
		c.mu.Lock()
		if _, ok := c.actors[s.State.InteractionID]; ok || c.closing {
			c.mu.Unlock()
			continue
		}
		a := newActor(c, s.State.InteractionID)
		c.actors[a.id] = a
		a.recover(&s)
		c.mu.Unlock()
	}
	if n > 0 {
		c.log.Info("recovering live sessions", "count", n)
	}
	return nil
}

// owns reports whether this replica acts for the interaction (Config.Owns; nil: every one).
func (c *Controller) owns(id string) bool { return c.cfg.Owns == nil || c.cfg.Owns(id) }

// Acquire takes up the live sessions of the interactions this replica owns now and holds no actor
// for: the inbound consumer calls it when its partitions grow (chat.Assignee), before it hands
// over any message of them.
func (c *Controller) Acquire(ctx context.Context) error { return c.Recover(ctx) }

// Release lets go of every interaction this replica no longer owns: each of their actors finishes
// its step, hands its queued messages back to NATS, saves its state and leaves its live session
// without stopping it (the new owner takes it up). It returns once they are gone, or when ctx is
// done (an actor still in a slow call lets go when the call returns; a save it makes after the
// new owner's loses its compare-and-set and changes nothing).
func (c *Controller) Release(ctx context.Context) {
	if c.cfg.Owns == nil {
		return
	}
	c.mu.Lock()
	var gone []*actor
	for id, a := range c.actors {
		if !a.handingOff && !c.cfg.Owns(id) {
			a.handingOff = true
			a.kick(workHandoff)
			gone = append(gone, a)
		}
	}
	c.mu.Unlock()
	for i, a := range gone {
		select {
		case <-a.exited:
		case <-ctx.Done():
			c.log.Warn("interactions not let go of in time; they let go when their calls return", "released", i, "remaining", len(gone)-i)
			return
		}
	}
	if len(gone) > 0 {
		c.log.Info("let go of the interactions of partitions moved away", "count", len(gone))
	}
}

// Handle routes an inbound message to its interaction's actor, starting one if needed. It never
// blocks on a busy interaction: each actor queues what it is handed, and the consumer's
// max_ack_pending bounds what is in flight altogether.
func (c *Controller) Handle(ctx context.Context, in chat.Inbound) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		c.notTaken(ctx, in, errClosing)
		return
	}
	a, ok := c.actors[in.InteractionID]
	if !ok && quiet(in) {
		c.mu.Unlock()
		if err := in.Delivery.AckNoWait(); err != nil {
			c.log.Warn("ack", "interaction", in.InteractionID, "error", err)
		}
		return
	}
	if !ok {
		if len(c.actors) >= c.cfg.MaxInteractions {
			c.mu.Unlock()
			c.notTaken(ctx, in, errFull)
			return
		}
		a = newActor(c, in.InteractionID)
		c.actors[a.id] = a
		if in.Chat != nil && in.StartToken != "" {
			c.prefetch(in.StartToken)
		}
	}
	a.enqueue(in)
	c.mu.Unlock()
}

// quiet reports a chat line that cannot change anything for an interaction without an actor: it
// starts nothing, and what the actor would do with it (note the activity, for the inactivity
// deadline of a live session) matters only to an interaction with a live session, which always
// has an actor here (Recover and Acquire start one for every live session this replica owns,
// before its messages come; an actor with a session stays until the session is over). So it is
// acked at once, without reading the interaction's state, and without waiting for the server's
// word: a lost ack brings it back, and it is handled the same way again. This is what keeps the
// ordinary chat traffic of a contact center cheap (docs/scaling.md).
func quiet(in chat.Inbound) bool {
	return in.Chat != nil && in.StartToken == "" && in.Delivery != nil
}

var (
	errClosing = errors.New("controller is shutting down")
	errFull    = errors.New("too many live interactions")
)

// notTaken settles a message no actor took: redelivered later, or, on its last delivery,
// reported as failed and terminated, never dropped silently.
func (c *Controller) notTaken(ctx context.Context, in chat.Inbound, why error) {
	if !in.Delivery.Last() {
		c.log.Warn("inbound message not taken; redelivering later", "interaction", in.InteractionID, "error", why)
		_ = in.Delivery.Nak(c.cfg.RetryDelay)
		return
	}
	c.giveUp(ctx, in, why)
}

// giveUp reports an inbound message that failed on its last delivery with a failed lifecycle
// event (best effort) and terminates it.
func (c *Controller) giveUp(ctx context.Context, in chat.Inbound, why error) {
	c.log.Error("inbound message failed on its last delivery", "interaction", in.InteractionID, "attempt", in.Delivery.Attempt(), "error", why)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PublishTimeout)
	defer cancel()
	err := c.pub.Lifecycle(pctx, attach.Lifecycle{
		Event:         attach.Failed,
		InteractionID: in.InteractionID,
		Vendor:        string(c.vendor),
		Reason:        ReasonProcessingFailed,
		Detail:        why.Error(),
		At:            time.Now(),
		MsgID:         in.InteractionID + ".failed." + inboundKey(in),
	})
	if err != nil {
		c.log.Error("failed event not published", "interaction", in.InteractionID, "error", err)
	}
	if err := in.Delivery.Term("failed after the last delivery: " + why.Error()); err != nil {
		c.log.Warn("term", "error", err)
	}
}

// remove takes the actor out of the registry if nothing is queued for it. The actor stops only
// when remove says so; Handle queues under the same lock, so nothing can be queued to an actor
// that left.
func (c *Controller) remove(a *actor) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.queued() > 0 {
		return false
	}
	if c.actors[a.id] == a {
		delete(c.actors, a.id)
	}
	return true
}

// crowded reports whether the registry is three quarters full: idle actors leave at once then.
func (c *Controller) crowded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.actors)*4 >= c.cfg.MaxInteractions*3
}

// release takes an actor that lets go of its interaction out of the registry, and returns the
// messages still queued for it (under the registry's lock, so that no new one reaches it).
func (c *Controller) release(a *actor) []chat.Inbound {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.actors[a.id] == a {
		delete(c.actors, a.id)
	}
	var out []chat.Inbound
	for {
		in, ok := a.next()
		if !ok {
			return out
		}
		out = append(out, in)
	}
}

// reown starts a fresh actor for an interaction an actor let go of, when this replica still owns
// it (Config.Owns) and the stored state has a live session: the fresh actor reads the state as it
// is now and re-joins the session, as recovery does. Without a live session the next inbound
// message starts one, as usual.
func (c *Controller) reown(id string) {
	if !c.owns(id) {
		return
	}
	lctx, cancel := context.WithTimeout(c.ctx, c.cfg.PublishTimeout)
	st, rev, err := c.store.Load(lctx, id)
	cancel()
	if err != nil {
		c.log.Warn("reading the state of an interaction let go of failed; its next message takes it up", "interaction", id, "error", err)
		return
	}
	if st.Live == nil {
		return
	}
	st.InteractionID = id
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.actors[id]; ok || c.closing {
		return
	}
	a := newActor(c, id)
	c.actors[id] = a
	a.recover(&Saved{State: st, Rev: rev})
}

// SessionCount is a number of live sessions of one vendor in one phase.
type SessionCount struct {
	Vendor connector.Vendor `json:"vendor"`
	Phase  Phase            `json:"phase"`
	Count  int              `json:"count"`
}

// LiveSessions counts the live sessions this replica acts for, by vendor and phase, as their
// states were last saved (or read, for a session being re-joined), ordered by vendor and phase.
// It reads no store: the actors publish what they hold.
func (c *Controller) LiveSessions() []SessionCount {
	type vp struct {
		v connector.Vendor
		p Phase
	}
	n := make(map[vp]int)
	c.mu.Lock()
	for _, a := range c.actors {
		if s := a.shown.Load(); s != nil {
			n[vp{s.Vendor, s.Phase}]++
		}
	}
	c.mu.Unlock()
	out := make([]SessionCount, 0, len(n))
	for k, count := range n {
		out = append(out, SessionCount{Vendor: k.v, Phase: k.p, Count: count})
	}
	slices.SortFunc(out, func(a, b SessionCount) int {
		return cmp.Or(cmp.Compare(a.Vendor, b.Vendor), cmp.Compare(a.Phase, b.Phase))
	})
	return out
}

// Len returns the number of live actors.
func (c *Controller) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.actors)
}

// Run runs the periodic sweep on robfig/cron until ctx is done, and returns once no sweep is
// running. Shutdown then stops the actors.
func (c *Controller) Run(ctx context.Context) error {
	cr := cron.New(cron.WithLocation(time.UTC))
	cr.Schedule(c.sched, cron.FuncJob(c.sweep))
	cr.Start()
	<-ctx.Done()
	<-cr.Stop().Done()
	return nil
}

// sweep nudges every actor to check its deadlines against the clock and to reap itself if idle.
func (c *Controller) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixNano()
	for _, a := range c.actors {
		// A live session that only waits has its deadline on a timer and nothing else due:
		// nudging each of thousands of them would start as many goroutines for nothing. One whose
		// deadline passed by the wall clock is nudged all the same: the clock may have jumped
		// ahead of the timer, which counts on the monotonic clock.
		if q := a.quietUntil.Load(); q == 0 || now >= q {
			a.kick(workPoke)
		}
	}
}

// Shutdown stops the actors: each finishes what it was handed, saves its state and leaves its live
// session for the next start to re-join (or stops it with reason shutdown, if configured). It
// waits until ctx is done, then cancels the actors' calls and waits for them to return.
func (c *Controller) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.closing = true
	n := len(c.actors)
	for _, a := range c.actors {
		a.kick(workQuit)
	}
	c.mu.Unlock()
	c.log.Info("draining interactions", "count", n)
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	defer c.lane.close() // after the actors: none waits on it any more
	select {
	case <-done:
		c.cancel()
		return nil
	case <-ctx.Done():
		c.cancel() // the actors' calls end now; they save what they can and stop
		<-done
		return fmt.Errorf("controller: shutdown bound reached: %w", ctx.Err())
	}
}
