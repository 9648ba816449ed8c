package gcb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// ErrNodeBusy is the cause of a new join that found no free join slot on its node in time (see
// Config.MaxConcurrentJoins). It comes wrapped in a *connector.ServerError of kind
// connector.ErrUnavailable, so the caller retries the join later.
var ErrNodeBusy = errors.New("gcb: node busy: too many joins in flight")

// node names the real Co-browse node a route reaches: the node's own URL under URL stickiness,
// and under cookie stickiness the cluster URL with the cookie's value, which is what names the
// node there (gcbtest and Genesys put the node's name in it). Circuit breakers, join slots and
// the websocket memory are kept per node, so that one dead node behind the load balancer does not
// stop the sessions of the others. The cookie value is a routing hint, not a credential.
func (r route) node() string {
	if r.Sticky == "" {
		return r.NodeURL
	}
	return r.NodeURL + "#" + StickyCookie + "=" + r.Sticky
}

// joinSlots bounds the new joins in flight per node. An entry lives while someone holds or waits
// for one of its slots, so the map holds only busy nodes.
type joinSlots struct {
	limit int
	mu    sync.Mutex
	nodes map[string]*slotSet
}

type slotSet struct {
	ch    chan struct{}
	users int // holders and waiters
}

func newJoinSlots(limit int) *joinSlots {
	return &joinSlots{limit: limit, nodes: make(map[string]*slotSet)}
}

// acquire takes one of node's join slots, waiting at most until ctx is done. The release
// function gives it back.
func (j *joinSlots) acquire(ctx context.Context, node string) (release func(), err error) {
	j.mu.Lock()
	s := j.nodes[node]
	if s == nil {
		s = &slotSet{ch: make(chan struct{}, j.limit)}
		j.nodes[node] = s
	}
	s.users++
	j.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
		return sync.OnceFunc(func() { <-s.ch; j.leave(node, s) }), nil
	case <-ctx.Done():
		j.leave(node, s)
		return nil, ctx.Err()
	}
}

func (j *joinSlots) leave(node string, s *slotSet) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s.users--
	if s.users == 0 && j.nodes[node] == s {
		delete(j.nodes, node)
	}
}

// wsMemory remembers, per node, that the node refused the websocket upgrade, for a while. The
// map holds only nodes that refused, and an entry is dropped when it is looked at after expiry.
type wsMemory struct {
	ttl time.Duration // <= 0: nothing is remembered
	mu  sync.Mutex
	m   map[string]time.Time // node -> until
}

func newWSMemory(ttl time.Duration) *wsMemory {
	return &wsMemory{ttl: ttl, m: make(map[string]time.Time)}
}

// refused reports whether node refused the websocket upgrade within the memory's time.
func (w *wsMemory) refused(node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.m[node]
	if ok && !time.Now().Before(until) {
		delete(w.m, node)
		return false
	}
	return ok
}

// remember records node's refusal; it reports whether the node was not remembered yet (so that
// the caller logs the news once per node and time-to-live).
func (w *wsMemory) remember(node string) bool {
	if w.ttl <= 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	until, known := w.m[node]
	w.m[node] = time.Now().Add(w.ttl)
	return !known || !time.Now().Before(until)
}

// transportsFor is the transport preference for a new client on node: the configured one, less
// websocket while the node is remembered to refuse it (when another transport is left).
func (c *Connector) transportsFor(node string) []string {
	if len(c.cfg.Transports) < 2 || c.cfg.Transports[0] != cometd.TransportWebSocket || !c.ws.refused(node) {
		return c.cfg.Transports
	}
	return c.cfg.Transports[1:]
}

// noteTransport remembers a node that refused the websocket upgrade to the session's client.
func (c *Connector) noteTransport(s *session) { c.noteRefusal(s.client, s.route().node(), s.log()) }

// noteRefusal remembers node when it refused the websocket upgrade to client; log names the node.
func (c *Connector) noteRefusal(client *cometd.Client, node string, log *slog.Logger) {
	if client.WebSocketRefused() && c.ws.remember(node) {
		log.Info("node refuses the websocket upgrade; its new sessions use long-polling for a while",
			"transport", client.Transport(), "websocket_refusal_ttl", c.cfg.WebSocketRefusalTTL)
	}
}

// rejoinWindow is how long a re-join that began at start may still be retried (Config.RejoinWindow).
// adv is the advice of the latest handshake with the session's node, if any.
func (c *Connector) rejoinWindow(adv *cometd.Advice) time.Duration {
	if c.cfg.RejoinWindow > 0 {
		return c.cfg.RejoinWindow
	}
	if adv == nil || adv.MaxInterval == nil || *adv.MaxInterval <= 0 {
		return DefaultRejoinWindow
	}
	w := 2 * time.Duration(*adv.MaxInterval) * time.Millisecond
	if adv.Timeout != nil && *adv.Timeout > 0 {
		w += time.Duration(*adv.Timeout) * time.Millisecond
	}
	return w
}

// retryDelay is the wait before the n-th retry (from 0) of a re-join: the CometD backoff step,
// doubled each time, at most maxRejoinDelay (or MaxBackoff when that is shorter).
func (c *Connector) retryDelay(n int) time.Duration {
	limit := min(c.cfg.MaxBackoff, maxRejoinDelay)
	d := c.cfg.BackoffIncrement
	for range n {
		if d >= limit {
			break
		}
		d *= 2
	}
	return max(min(d, limit), time.Millisecond)
}

// maxRejoinDelay caps the wait between two re-join attempts: the server frees the old
// Controller at a moment the daemon cannot know, and the session should be back soon after.
const maxRejoinDelay = 5 * time.Second

// retryable reports whether a failed re-join may be tried again within its window: anything but
// "the session is gone" (not found, not live) and a caller that gave up.
func retryable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, connector.ErrNotFound)
}

// waitRetry waits d, or until ctx is done (then it returns false).
func waitRetry(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// busyError is the error of a join that found no free slot on node.
func busyError(op, node string, limit int) error {
	return &connector.ServerError{Op: op, Node: node, Kind: connector.ErrUnavailable,
		Reason: fmt.Sprintf("%d joins in flight on this node", limit), Err: ErrNodeBusy}
}
