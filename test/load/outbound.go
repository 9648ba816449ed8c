package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// watcher follows what the daemon publishes for reporting, as a platform would: the attach
// updates (<prefix>.interaction.*.attach) and the lifecycle events (<prefix>.cobrowse.*.*), on
// plain subscriptions (the lowest-latency way to see them; the stream stores them as well). Each
// message is stamped on arrival, before anything else is done with it. The subscriptions have no
// pending limit, so none is dropped.
type watcher struct {
	subs []*nats.Subscription

	mu      sync.Mutex
	byIID   map[string]*outcome
	joined  []string // interactions in the order their join attach came
	counts  outcomeCounts
	odd     []string // messages the watcher could not read
	changed chan struct{}
}

// outcome is what the outbound subjects said about one interaction: when each first arrived.
type outcome struct {
	joinedAt    time.Time // the first attach with CoBrowseAssociated=Yes and a CoBrowseSessionId
	sessionID   string
	activatedAt time.Time // the activated lifecycle event
	endedAt     time.Time // the first attach with CoBrowseAssociated=No
	endReason   string
	failedAt    time.Time // a failed lifecycle event
	failReason  string
	failDetail  string
}

type outcomeCounts struct {
	joined, activated, ended, failed int
}

// attachMsg and lifecycleMsg are the fields of the contract (docs/nats-contract.md) the harness
// reads.
type attachMsg struct {
	InteractionID string `json:"interactionId"`
	Seq           uint64 `json:"seq"`
	Data          struct {
		Associated string `json:"CoBrowseAssociated"`
		SessionID  string `json:"CoBrowseSessionId"`
		EndReason  string `json:"CoBrowseEndReason"`
	} `json:"data"`
}

type lifecycleMsg struct {
	Event         string `json:"event"`
	InteractionID string `json:"interactionId"`
	SessionID     string `json:"sessionId"`
	Reason        string `json:"reason"`
	Detail        string `json:"detail"`
}

func watch(nc *nats.Conn) (*watcher, error) {
	w := &watcher{byIID: make(map[string]*outcome), changed: make(chan struct{})}
	for _, s := range []struct {
		subject string
		fn      nats.MsgHandler
	}{
		{prefix + ".interaction.*.attach", w.onAttach},
		{prefix + ".cobrowse.*.*", w.onLifecycle},
	} {
		sub, err := nc.Subscribe(s.subject, s.fn)
		if err != nil {
			w.stop()
			return nil, err
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			w.stop()
			return nil, err
		}
		w.subs = append(w.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

// stop ends the subscriptions (their handlers run on the connection's goroutine, which stops with
// the connection).
func (w *watcher) stop() {
	for _, s := range w.subs {
		_ = s.Unsubscribe()
	}
}

func (w *watcher) get(iid string) *outcome {
	o := w.byIID[iid]
	if o == nil {
		o = &outcome{}
		w.byIID[iid] = o
	}
	return o
}

func (w *watcher) broadcast() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watcher) onAttach(m *nats.Msg) {
	at := time.Now()
	var a attachMsg
	err := json.Unmarshal(m.Data, &a)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || a.InteractionID == "" || !strings.Contains(m.Subject, "."+a.InteractionID+".") {
		w.odd = append(w.odd, fmt.Sprintf("%s: %.200s", m.Subject, m.Data))
		return
	}
	o := w.get(a.InteractionID)
	switch {
	case a.Data.Associated == "Yes" && a.Data.SessionID != "" && o.joinedAt.IsZero():
		o.joinedAt, o.sessionID = at, a.Data.SessionID
		w.joined = append(w.joined, a.InteractionID)
		w.counts.joined++
	case a.Data.Associated == "No" && o.endedAt.IsZero():
		o.endedAt, o.endReason = at, a.Data.EndReason
		w.counts.ended++
	default:
		return
	}
	w.broadcast()
}

func (w *watcher) onLifecycle(m *nats.Msg) {
	at := time.Now()
	var l lifecycleMsg
	err := json.Unmarshal(m.Data, &l)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || l.InteractionID == "" {
		w.odd = append(w.odd, fmt.Sprintf("%s: %.200s", m.Subject, m.Data))
		return
	}
	o := w.get(l.InteractionID)
	switch {
	case l.Event == "activated" && o.activatedAt.IsZero():
		o.activatedAt = at
		w.counts.activated++
	case l.Event == "failed" && o.failedAt.IsZero():
		o.failedAt, o.failReason, o.failDetail = at, l.Reason, l.Detail
		w.counts.failed++
	default:
		return
	}
	w.broadcast()
}

// outcome returns a copy of what was seen for iid.
func (w *watcher) outcome(iid string) outcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.byIID[iid]; o != nil {
		return *o
	}
	return outcome{}
}

func (w *watcher) snapshot() outcomeCounts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts
}

// joinedSince returns the interactions whose join attach came after the first n, and the new n.
func (w *watcher) joinedSince(n int) ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.joined[n:]...), len(w.joined)
}

// oddMessages are the outbound messages the watcher could not read.
func (w *watcher) oddMessages() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.odd...)
}

// await waits until cond (called under the watcher's lock, after each message) holds, within
// bound. A daemon that exits on its own ends the wait (checked at each message and every second).
func (w *watcher) await(ctx context.Context, e *env, bound time.Duration, what string, cond func(c outcomeCounts, get func(string) *outcome) bool) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	get := func(iid string) *outcome {
		if o := w.byIID[iid]; o != nil {
			return o
		}
		return &outcome{}
	}
	for {
		w.mu.Lock()
		ok := cond(w.counts, get)
		ch := w.changed
		w.mu.Unlock()
		if ok {
			return nil
		}
		if err := e.checkDaemons(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-t.C:
			c := w.snapshot()
			return fmt.Errorf("%s: not within %v (seen: %d joined, %d activated, %d ended, %d failed)", what, bound, c.joined, c.activated, c.ended, c.failed)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// oneDaemon makes a measurement's world (name) with one daemon on transport consuming and a
// watcher of what it publishes. The caller closes e (on an error too, when e is not nil) and stops w.
func (h *harness) oneDaemon(ctx context.Context, name, transport string) (e *env, d *daemon, w *watcher, err error) {
	if e, err = h.newEnv(ctx, name, h.opt.gcbNodes); err != nil {
		return nil, nil, nil, err
	}
	e.transport = transport
	fail := func(err error) (*env, *daemon, *watcher, error) { return nil, nil, nil, errors.Join(err, e.close()) }
	if d, err = e.addDaemon(""); err != nil {
		return fail(err)
	}
	if err = d.start(); err != nil {
		return fail(err)
	}
	if err = d.waitConsuming(ctx); err != nil {
		return fail(err)
	}
	if w, err = watch(e.nc); err != nil {
		return fail(err)
	}
	return e, d, w, nil
}
