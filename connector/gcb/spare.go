package gcb

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// Spare clients: a join's handshake and first connect, done ahead of it.
//
// Most of a cold join goes before /service/session/join: the TCP connection, the websocket
// upgrade, the handshake and the first /meta/connect (on loopback, half of what a bare client's
// join takes). A Bayeux session that is handshaken and connected but has joined nothing is, to the
// server, an idle CometD client, kept while its connects come; any co-browse session of its node
// can be joined on it. So the connector keeps Config.SpareClients started clients per route (the
// node's URL, or the cluster URL with the node's stickiness cookie) that a join went to: the next
// join on that route takes one, waits for its marker (Trigger.Ready) and sends only the join
// call. A new spare is started behind it, after the join.
//
// Bounds and fallbacks:
//   - spares are made only for routes that joins went to, at most maxSpareRoutes of them, and
//     only after a join the node answered (not after one that found it unavailable);
//   - a route without a join for spareIdle has its spares disconnected;
//   - a spare whose connection is down (the node restarting, a re-handshake under way) is not
//     taken: the join makes its own client, as it would without spares;
//   - a re-join makes its own client: its window depends on its own handshake's advice;
//   - Close disconnects the spares and waits for those still starting.
//
// [UNKNOWN] Genesys does not document how its Co-browse Server treats a Bayeux client that joins
// no session. CometD servers keep any client whose connects arrive, which is what a spare does;
// genesys.spare_clients: 0 turns spares off.

const (
	maxSpareClients = 16                    // Config.SpareClients' bound
	maxSpareRoutes  = 64                    // routes with spares at once
	spareIdle       = 10 * time.Minute      // a route without a join this long loses its spares
	spareDelay      = 10 * time.Millisecond // from a join to the start of the spare that replaces it
)

// spares holds the started clients per route.
type spares struct {
	mu     sync.Mutex
	per    int // spares kept per route; 0: none
	idle   time.Duration
	routes map[routeKey]*spareRoute
	closed bool
	wg     sync.WaitGroup // refills due, spares starting, and idle ones being disconnected

	changed chan struct{} // closed (and forgotten) when the ready spares change; see readyOn
}

// notifyLocked tells readyOn's callers that the ready spares changed.
func (p *spares) notifyLocked() {
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// readyOn returns how many spares of r are ready with their connection up, and a channel closed
// at the next change.
func (p *spares) readyOn(r route) (int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	n := 0
	if sr := p.routes[keyOf(r)]; sr != nil {
		for _, sp := range sr.ready {
			sp.mu.Lock()
			if !sp.down {
				n++
			}
			sp.mu.Unlock()
		}
	}
	return n, p.changed
}

// routeKey is a route without its Why.
type routeKey struct{ node, sticky string }

func keyOf(r route) routeKey { return routeKey{r.NodeURL, r.Sticky} }

// spareRoute is one route's spares.
type spareRoute struct {
	r        route
	ready    []*spare // started, not taken
	starting int      // starts in flight
	used     time.Time
	timer    *time.Timer // the idle check
}

// spare is one started client. Its callbacks go nowhere until a join takes it; from then on they
// go to the session, in order, as if the session had made the client itself.
type spare struct {
	c      *Connector
	key    routeKey
	node   string
	client *cometd.Client

	mu   sync.Mutex
	s    *session // the session that took it; nil while spare
	down bool     // the connection is down (or the client stopped) while spare
}

// takeSpare hands a spare client of r to s, or returns nil when r has none that is up.
func (c *Connector) takeSpare(r route, s *session) *cometd.Client {
	p := &c.spares
	if p.per <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sr := p.routes[keyOf(r)]
	if sr == nil {
		return nil
	}
	sr.used = time.Now()
	for i, sp := range sr.ready {
		if sp.hand(s) {
			sr.ready = slices.Delete(sr.ready, i, i+1)
			p.notifyLocked()
			return sp.client
		}
	}
	return nil
}

// refillSoon refills r's spares after spareDelay: a spare started at once would compete for the
// machine with the join's own last steps (its attach and its save), which the caller does next.
// The pending refill counts in the pool's wait group, so Close waits for it (refill does nothing
// once Close began).
func (c *Connector) refillSoon(r route) {
	p := &c.spares
	if p.per <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	time.AfterFunc(spareDelay, func() {
		defer p.wg.Done()
		c.refill(r)
	})
}

// refill starts spares on r until it has Config.SpareClients, ready or starting.
func (c *Connector) refill(r route) {
	p := &c.spares
	if p.per <= 0 {
		return
	}
	k := keyOf(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	sr := p.routes[k]
	if sr == nil {
		if len(p.routes) >= maxSpareRoutes {
			return
		}
		if p.routes == nil {
			p.routes = make(map[routeKey]*spareRoute)
		}
		sr = &spareRoute{r: route{NodeURL: r.NodeURL, Sticky: r.Sticky}}
		sr.timer = time.AfterFunc(p.idle, func() { c.idleCheck(k) })
		p.routes[k] = sr
	}
	sr.used = time.Now()
	for n := len(sr.ready) + sr.starting; n < p.per; n++ {
		sr.starting++
		p.wg.Add(1)
		go c.startSpare(sr)
	}
}

// startSpare starts one spare on sr's route and adds it there; a spare that is no longer wanted
// when it is up (Close, or the route went idle meanwhile) is disconnected.
func (c *Connector) startSpare(sr *spareRoute) {
	p := &c.spares
	defer p.wg.Done()
	sp := &spare{c: c, key: keyOf(sr.r), node: sr.r.node()}
	client, err := cometd.New(c.clientOptions(sr.r, sp.onMessage, sp.onState,
		slog.New(spareHandler{Handler: c.cfg.Logger.Handler(), sp: sp})))
	if err == nil {
		sp.client = client
		ctx, cancel := context.WithTimeout(c.life, c.cfg.JoinTimeout)
		err = client.Start(ctx) // a failed Start closes the client
		cancel()
		c.noteRefusal(client, sp.node, c.log.With("node", sp.node))
	}
	p.mu.Lock()
	sr.starting--
	keep := err == nil && !p.closed && p.routes[sp.key] == sr
	if keep {
		sr.ready = append(sr.ready, sp)
		p.notifyLocked()
	}
	p.mu.Unlock()
	switch {
	case err != nil:
		c.log.Debug("starting a spare client failed", "node", sp.node, "error", err)
	case !keep:
		sp.retire(c.cfg.DisconnectTimeout)
	default:
		c.log.Debug("spare client ready", "node", sp.node, "transport", client.Transport())
	}
}

// idleCheck disconnects the spares of a route that no join used for the idle time.
func (c *Connector) idleCheck(k routeKey) {
	p := &c.spares
	p.mu.Lock()
	sr := p.routes[k]
	if p.closed || sr == nil {
		p.mu.Unlock()
		return
	}
	if left := p.idle - time.Since(sr.used); left > 0 {
		sr.timer.Reset(left)
		p.mu.Unlock()
		return
	}
	delete(p.routes, k)
	idle := sr.ready
	sr.ready = nil
	p.notifyLocked()
	p.wg.Add(len(idle))
	p.mu.Unlock()
	if len(idle) > 0 {
		c.log.Debug("disconnecting idle spare clients", "node", sr.r.node(), "spares", len(idle))
	}
	for _, sp := range idle {
		go func() {
			defer p.wg.Done()
			sp.retire(c.cfg.DisconnectTimeout)
		}()
	}
}

// drop forgets a spare whose client stopped by itself (its node said reconnect none).
func (c *Connector) drop(sp *spare) {
	p := &c.spares
	p.mu.Lock()
	defer p.mu.Unlock()
	if sr := p.routes[sp.key]; sr != nil {
		if i := slices.Index(sr.ready, sp); i >= 0 {
			sr.ready = slices.Delete(sr.ready, i, i+1)
			p.notifyLocked()
		}
	}
}

// closeSpares disconnects every spare, in parallel, and waits for those still starting (the
// connector's life is over by then, so their starts end at once).
func (c *Connector) closeSpares() {
	p := &c.spares
	p.mu.Lock()
	p.closed = true
	var all []*spare
	for _, sr := range p.routes {
		sr.timer.Stop()
		all = append(all, sr.ready...)
		sr.ready = nil
	}
	p.routes = nil
	p.notifyLocked()
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, sp := range all {
		wg.Go(func() { sp.retire(c.cfg.DisconnectTimeout) })
	}
	wg.Wait()
	p.wg.Wait()
}

// hand gives the spare to s unless it is down or taken.
func (sp *spare) hand(s *session) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.down || sp.s != nil {
		return false
	}
	sp.s = s
	return true
}

func (sp *spare) session() *session {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.s
}

// retire sends /meta/disconnect, bounded by d, and closes the client.
func (sp *spare) retire(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := sp.client.Disconnect(ctx); err != nil {
		sp.c.log.Debug("disconnecting a spare client failed", "node", sp.node, "error", err)
	}
	_ = sp.client.Close()
}

// The client's callbacks, one at a time and in order: to the session once taken.

func (sp *spare) onMessage(m cometd.Message) {
	if s := sp.session(); s != nil {
		s.onMessage(m)
	}
	// A spare subscribes to nothing and joined nothing: nothing is delivered to it.
}

func (sp *spare) onState(e cometd.StateEvent) {
	sp.mu.Lock()
	s := sp.s
	was := sp.down
	if s == nil {
		// A re-handshake's new Bayeux session is as good a spare as the first one.
		sp.down = e.Kind != cometd.StateConnected && e.Kind != cometd.StateReestablished
	}
	flipped := sp.down != was
	sp.mu.Unlock()
	switch {
	case s != nil:
		s.onState(e)
	case e.Kind == cometd.StateTerminated:
		sp.c.drop(sp)
	case flipped:
		p := &sp.c.spares
		p.mu.Lock()
		p.notifyLocked()
		p.mu.Unlock()
	}
}

// spareHandler logs a spare client's lines with its node and spare=true, and, once a session has
// taken it, as that session's (see sessionHandler).
type spareHandler struct {
	slog.Handler
	sp *spare
}

func (h spareHandler) Handle(ctx context.Context, r slog.Record) error {
	if s := h.sp.session(); s != nil {
		return sessionHandler{Handler: h.Handler, s: s}.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(slog.String("node", h.sp.node), slog.Bool("spare", true))
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h spareHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return spareHandler{Handler: h.Handler.WithAttrs(as), sp: h.sp}
}

func (h spareHandler) WithGroup(name string) slog.Handler {
	return spareHandler{Handler: h.Handler.WithGroup(name), sp: h.sp}
}
