package gcb

import (
	"context"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Prefetch and Trigger.Ready: the two ways a join overlaps the controller's own round trips.
//
// A start message usually comes on an interaction whose state the controller has not read yet:
// Prefetch begins Get Session (read-only at the server) while it reads, and the Join that follows
// takes the route it found. The controller saves its join marker while Join finds the node,
// handshakes and connects; Join waits for that save (Trigger.Ready) only right before
// /service/session/join, the call that makes the daemon a member.

var (
	_ connector.Prefetcher  = (*Connector)(nil)
	_ connector.ReadyCaller = (*Connector)(nil)
)

// prefetchTTL is how long a prefetched route waits for its Join; maxPrefetches bounds how many
// wait at once (a burst of start messages beyond it just joins without).
const (
	prefetchTTL   = 5 * time.Second
	maxPrefetches = 1024
)

// prefetches holds the Get Session calls begun ahead of their joins, by token.
type prefetches struct {
	mu sync.Mutex
	m  map[string]*prefetch
	wg sync.WaitGroup // the Get Session calls in flight; Close waits for them
}

type prefetch struct {
	at   time.Time
	done chan struct{} // closed when r and err are set
	r    route
	err  error
}

// CallsReady: Join calls Trigger.Ready right before /service/session/join.
func (c *Connector) CallsReady() {}

// Prefetch begins Get Session for token, for a Join of the same token within prefetchTTL.
func (c *Connector) Prefetch(token string) {
	if !validToken(token) {
		return
	}
	p := &prefetch{at: time.Now(), done: make(chan struct{})}
	c.pre.mu.Lock()
	if c.life.Err() != nil { // closed
		c.pre.mu.Unlock()
		return
	}
	for t, q := range c.pre.m { // the unused ones go (a burst leaves few behind)
		if time.Since(q.at) >= prefetchTTL {
			delete(c.pre.m, t)
		}
	}
	if _, dup := c.pre.m[token]; dup || len(c.pre.m) >= maxPrefetches {
		c.pre.mu.Unlock()
		return
	}
	if c.pre.m == nil {
		c.pre.m = make(map[string]*prefetch)
	}
	c.pre.m[token] = p
	c.pre.wg.Add(1)
	c.pre.mu.Unlock()
	go func() {
		defer c.pre.wg.Done()
		ctx, cancel := context.WithTimeout(c.life, c.cfg.JoinTimeout/2)
		defer cancel()
		p.r, p.err = c.locate(ctx, c.log.With("token", connector.MaskToken(token)), token)
		close(p.done)
	}()
}

// prefetched takes the route a Prefetch of token found, if one began within prefetchTTL and
// succeeded; ok false otherwise (Join then calls Get Session itself).
func (c *Connector) prefetched(ctx context.Context, token string) (route, bool) {
	c.pre.mu.Lock()
	p := c.pre.m[token]
	delete(c.pre.m, token)
	c.pre.mu.Unlock()
	if p == nil || time.Since(p.at) >= prefetchTTL {
		return route{}, false
	}
	select {
	case <-p.done:
		return p.r, p.err == nil
	case <-ctx.Done():
		return route{}, false
	}
}
