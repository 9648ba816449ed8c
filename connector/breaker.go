package connector

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrBreakerOpen is the cause carried by a call that a node's circuit breaker rejected without
// sending it. Such an error also wraps ErrUnavailable, so the caller retries later.
var ErrBreakerOpen = errors.New("circuit breaker open")

// BreakerState is the state of one node's circuit breaker.
type BreakerState string

// The breaker states.
const (
	BreakerClosed   BreakerState = "closed"    // calls go through
	BreakerOpen     BreakerState = "open"      // calls are rejected with ErrBreakerOpen
	BreakerHalfOpen BreakerState = "half-open" // a few probe calls go through
)

// BreakerSettings configure the per-node circuit breakers. A zero field takes its default.
type BreakerSettings struct {
	// FailuresToTrip is how many consecutive unavailability failures (errors wrapping
	// ErrUnavailable) open a node's breaker. Default 5.
	FailuresToTrip uint32
	// OpenFor is how long an open breaker rejects calls before it lets probe calls through
	// (half-open). Default 30s.
	OpenFor time.Duration
	// HalfOpenMaxRequests is how many calls a half-open breaker lets through; if they all
	// succeed it closes, one failure opens it again. Default 1.
	HalfOpenMaxRequests uint32
	// MaxNodes bounds how many nodes have a breaker. When a new node would exceed it, the least
	// recently used breaker (a closed one if there is any) is forgotten. Default 256.
	MaxNodes int
	// Logger receives state changes. Default: discard.
	Logger *slog.Logger
}

// DefaultBreakerSettings are the zero BreakerSettings with every default filled in: what each
// zero field means.
func DefaultBreakerSettings() BreakerSettings { return BreakerSettings{}.withDefaults() }

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.FailuresToTrip == 0 {
		s.FailuresToTrip = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 30 * time.Second
	}
	if s.HalfOpenMaxRequests == 0 {
		s.HalfOpenMaxRequests = 1
	}
	if s.MaxNodes <= 0 {
		s.MaxNodes = 256
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s
}

// Breakers holds one circuit breaker per co-browse node, keyed by the node's base URL, created on
// first use. Only failures that wrap ErrUnavailable count against a node: a refusal or a
// not-found is an answer from a healthy server. A caller's own cancellation (context.Canceled)
// counts neither way.
//
// A nil *Breakers lets every call through. Breakers is safe for concurrent use.
type Breakers struct {
	settings BreakerSettings
	log      *slog.Logger

	mu    sync.Mutex
	nodes map[string]*nodeBreaker
	tick  uint64 // use counter, for least-recently-used eviction
}

type nodeBreaker struct {
	cb   *gobreaker.CircuitBreaker[any]
	used uint64
}

// NewBreakers returns an empty set of per-node breakers.
func NewBreakers(s BreakerSettings) *Breakers {
	s = s.withDefaults()
	return &Breakers{
		settings: s,
		log:      s.Logger.With("component", "breaker"),
		nodes:    make(map[string]*nodeBreaker),
	}
}

// Do runs fn through node's breaker. If the breaker is open (or half-open and already probing) fn
// is not run and the error is a *ServerError for op on node wrapping ErrUnavailable and
// ErrBreakerOpen. Otherwise fn's own error is returned unchanged.
func (b *Breakers) Do(node, op string, fn func() error) error {
	_, err := Execute(b, node, op, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// Execute is Do for a function with a result.
func Execute[T any](b *Breakers, node, op string, fn func() (T, error)) (T, error) {
	if b == nil {
		return fn()
	}
	cb := b.get(node)
	var out T
	_, err := cb.Execute(func() (any, error) {
		v, err := fn()
		out = v
		return nil, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		var zero T
		reason := "circuit breaker open"
		if errors.Is(err, gobreaker.ErrTooManyRequests) {
			reason = "circuit breaker half-open, probe in flight"
		}
		return zero, &ServerError{Op: op, Node: node, Reason: reason, Kind: ErrUnavailable, Err: ErrBreakerOpen}
	}
	return out, err
}

// State returns node's breaker state; a node without a breaker is closed.
func (b *Breakers) State(node string) BreakerState {
	if b == nil {
		return BreakerClosed
	}
	b.mu.Lock()
	nb, ok := b.nodes[node]
	b.mu.Unlock()
	if !ok {
		return BreakerClosed
	}
	return stateOf(nb.cb.State())
}

// States returns the state of every node's breaker, by node: what is known of the nodes' health
// without calling them.
func (b *Breakers) States() map[string]BreakerState {
	out := make(map[string]BreakerState)
	for _, n := range b.Nodes() {
		out[n.Node] = n.State
	}
	return out
}

// Len returns how many nodes have a breaker.
func (b *Breakers) Len() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.nodes)
}

// NodeBreaker is one node's breaker as Nodes reports it.
type NodeBreaker struct {
	Node  string
	State BreakerState
	// ConsecutiveFailures counts the calls through the breaker that failed in a row since the last
	// one that succeeded (0: the last call succeeded).
	ConsecutiveFailures uint32
}

// Nodes reports every node that has a breaker, sorted by node, for metrics and health reports.
func (b *Breakers) Nodes() []NodeBreaker {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	cbs := make([]*gobreaker.CircuitBreaker[any], 0, len(b.nodes))
	for _, nb := range b.nodes {
		cbs = append(cbs, nb.cb)
	}
	b.mu.Unlock()
	// Each breaker is read under its own lock, not the set's: a call in flight is not held up.
	out := make([]NodeBreaker, len(cbs))
	for i, cb := range cbs {
		out[i] = NodeBreaker{Node: cb.Name(), State: stateOf(cb.State()), ConsecutiveFailures: cb.Counts().ConsecutiveFailures}
	}
	slices.SortFunc(out, func(x, y NodeBreaker) int { return strings.Compare(x.Node, y.Node) })
	return out
}

func stateOf(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

func (b *Breakers) get(node string) *gobreaker.CircuitBreaker[any] {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tick++
	if nb, ok := b.nodes[node]; ok {
		nb.used = b.tick
		return nb.cb
	}
	if len(b.nodes) >= b.settings.MaxNodes {
		b.evictLocked()
	}
	trip := b.settings.FailuresToTrip
	cb := gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        node,
		MaxRequests: b.settings.HalfOpenMaxRequests,
		Timeout:     b.settings.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trip },
		IsSuccessful: func(err error) bool {
			return err == nil || !errors.Is(err, ErrUnavailable)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			lvl := slog.LevelInfo
			if to == gobreaker.StateOpen {
				lvl = slog.LevelWarn
			}
			b.log.Log(context.Background(), lvl, "circuit breaker state changed",
				"node", name, "from_state", stateOf(from), "state", stateOf(to))
		},
	})
	b.nodes[node] = &nodeBreaker{cb: cb, used: b.tick}
	return cb
}

// evictLocked forgets the least recently used breaker, preferring a closed one so that an open
// breaker (a node known to be down) is kept as long as possible.
func (b *Breakers) evictLocked() {
	var victim string
	var victimUsed uint64
	victimClosed := false
	for node, nb := range b.nodes {
		closed := nb.cb.State() == gobreaker.StateClosed
		better := victim == "" ||
			(closed && !victimClosed) ||
			(closed == victimClosed && nb.used < victimUsed)
		if better {
			victim, victimUsed, victimClosed = node, nb.used, closed
		}
	}
	delete(b.nodes, victim)
}
