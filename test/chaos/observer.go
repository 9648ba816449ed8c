package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
)

// observer reads every message of the outbound stream, from its first, as a reporting pipeline
// would: through an ordered consumer that survives the NATS restart (it recreates its server-side
// consumer after the last stream sequence it delivered). Messages are indexed by interaction; a
// stream sequence seen twice (a redelivery to the observer) is counted once, so what is counted is
// what the stream STORES.
type observer struct {
	mu      sync.Mutex
	seen    map[uint64]time.Time // stream sequence -> its stored time, for every message delivered
	maxSeq  uint64
	byIID   map[string]*observed
	changed chan struct{} // closed and replaced at each new message
	odd     []string      // messages the observer could not place
	errs    int           // consume errors (reconnects and resets show up here)
	lastErr string
}

// event is a lifecycle event and when the stream stored it.
type event struct {
	attach.Lifecycle
	stored time.Time
}

// update is an attach and when the stream stored it.
type update struct {
	attach.Update
	stored time.Time
}

// observed is what the outbound stream holds for one interaction.
type observed struct {
	attaches map[uint64][][]byte // seq -> the distinct payloads stored with that seq
	updates  []update            // in stream order, one per stored message
	events   []event             // in stream order
	sessions map[string]bool     // every non-empty session id seen
}

func newObserver() *observer {
	return &observer{seen: make(map[uint64]time.Time), byIID: make(map[string]*observed), changed: make(chan struct{})}
}

func (o *observer) interaction(iid string) *observed {
	x := o.byIID[iid]
	if x == nil {
		x = &observed{attaches: make(map[uint64][][]byte), sessions: make(map[string]bool)}
		o.byIID[iid] = x
	}
	return x
}

// start consumes the stream until ctx is done; opts tune the pulls.
func (o *observer) start(ctx context.Context, js jetstream.JetStream, stream string, opts ...jetstream.PullConsumeOpt) (stop func(), err error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	opts = append(opts, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		o.mu.Lock()
		o.errs++
		o.lastErr = err.Error()
		o.mu.Unlock()
	}))
	cc, err := cons.Consume(o.handle, opts...)
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}

func (o *observer) handle(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	seq := md.Sequence.Stream
	o.mu.Lock()
	defer o.mu.Unlock()
	if at, ok := o.seen[seq]; ok {
		if at.Equal(md.Timestamp) {
			return // delivered again: stored once
		}
		// The same sequence with another message: the stream lost its tail in the NATS kill and
		// numbered new messages over it. Not the daemon's doing; said, and the message is kept.
		o.odd = append(o.odd, fmt.Sprintf("FINDING: stream seq %d reused (stored %v, then %v): NATS lost PubAck'd messages", seq, at, md.Timestamp))
	}
	o.seen[seq] = md.Timestamp
	o.maxSeq = max(o.maxSeq, seq)
	o.place(m.Subject(), m.Data(), md.Timestamp)
	close(o.changed)
	o.changed = make(chan struct{})
}

// place files one stored message under its interaction.
func (o *observer) place(subject string, data []byte, stored time.Time) {
	tok := strings.Split(subject, ".")
	switch {
	case len(tok) == 4 && tok[1] == "interaction" && tok[3] == "attach":
		var u attach.Update
		if err := json.Unmarshal(data, &u); err != nil || u.InteractionID != tok[2] {
			o.odd = append(o.odd, fmt.Sprintf("%s: %s", subject, data))
			return
		}
		x := o.interaction(u.InteractionID)
		x.updates = append(x.updates, update{Update: u, stored: stored})
		known := false
		for _, p := range x.attaches[u.Seq] {
			known = known || bytes.Equal(p, data)
		}
		if !known {
			x.attaches[u.Seq] = append(x.attaches[u.Seq], bytes.Clone(data))
		}
		for _, id := range []string{u.SessionID, u.Data.SessionID} {
			if id != "" {
				x.sessions[id] = true
			}
		}
	case len(tok) == 4 && tok[1] == "cobrowse":
		var l attach.Lifecycle
		if err := json.Unmarshal(data, &l); err != nil || l.InteractionID != tok[2] || string(l.Event) != tok[3] {
			o.odd = append(o.odd, fmt.Sprintf("%s: %s", subject, data))
			return
		}
		x := o.interaction(l.InteractionID)
		x.events = append(x.events, event{Lifecycle: l, stored: stored})
		if l.SessionID != "" {
			x.sessions[l.SessionID] = true
		}
	default: // page messages live in CC_HANDOFF: one here is odd too
		o.odd = append(o.odd, fmt.Sprintf("%s: %s", subject, data))
	}
}

// waitFor waits until cond, called under the observer's lock, holds; false when ctx ends
// first. It wakes on every stored message, never on a timer.
func (o *observer) waitFor(ctx context.Context, cond func() bool) bool {
	for {
		o.mu.Lock()
		ok := cond()
		ch := o.changed
		o.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// joinAttached: an attach whose data names the session (the daemon joined it as Controller).
func (x *observed) joinAttached(historyID string) bool {
	if x == nil {
		return false
	}
	for _, u := range x.updates {
		if u.Data.SessionID == historyID && u.Data.Associated == "Yes" {
			return true
		}
	}
	return false
}

// finalAttached: the attach that ends the session (CoBrowseAssociated=No for it).
func (x *observed) finalAttached(historyID string) bool {
	if x == nil {
		return false
	}
	for _, u := range x.updates {
		if u.Data.SessionID == historyID && u.Data.Associated == "No" {
			return true
		}
	}
	return false
}

func (x *observed) failed() []event {
	if x == nil {
		return nil
	}
	var out []event
	for _, l := range x.events {
		if l.Event == attach.Failed {
			out = append(out, l)
		}
	}
	return out
}

func (x *observed) deactivated(historyID string) []event {
	if x == nil {
		return nil
	}
	var out []event
	for _, l := range x.events {
		if l.Event == attach.Deactivated && l.SessionID == historyID {
			out = append(out, l)
		}
	}
	return out
}

// settled: the interaction's session is over as far as NATS tells (its final attach), or its
// work failed for good (a failed event).
func (x *observed) settled(historyID string) bool {
	return x.finalAttached(historyID) || len(x.failed()) > 0
}

// settledAt is when the stream stored what settled the interaction (see settled): the earliest
// of its final attach and its failed events; zero while neither is stored.
func (x *observed) settledAt(historyID string) time.Time {
	var at time.Time
	if x == nil {
		return at
	}
	earlier := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	for _, u := range x.updates {
		if u.Data.SessionID == historyID && u.Data.Associated == "No" {
			earlier(u.stored)
		}
	}
	for _, l := range x.failed() {
		earlier(l.stored)
	}
	return at
}

// waitComplete waits until the observer has every message the stream holds now, so that the
// counts are made on the whole stream and not on what one consumer happened to see.
func (o *observer) waitComplete(ctx context.Context, js jetstream.JetStream, stream string, bound time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	info, err := streamInfo(wctx, js, stream)
	if err != nil {
		return fmt.Errorf("outbound stream info: %w", err)
	}
	st := info.State
	if !o.waitFor(wctx, func() bool { return o.maxSeq >= st.LastSeq }) {
		o.mu.Lock()
		defer o.mu.Unlock()
		return fmt.Errorf("the observer saw up to stream seq %d of %d within %v (last consume error: %s)", o.maxSeq, st.LastSeq, bound, o.lastErr)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := uint64(0)
	for seq := range o.seen {
		if seq >= st.FirstSeq && seq <= st.LastSeq {
			n++
		}
	}
	if n != st.Msgs {
		return fmt.Errorf("the observer holds %d of the %d messages the stream stores (seq %d..%d)", n, st.Msgs, st.FirstSeq, st.LastSeq)
	}
	return nil
}

// streamInfo asks for the stream's info until it gets it or ctx ends. On a cluster a stream whose
// leader was on a node just killed answers nothing until the others elect a new one: each try
// is bounded, and the next one follows a short pause.
func streamInfo(ctx context.Context, js jetstream.JetStream, stream string) (*jetstream.StreamInfo, error) {
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(ictx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ictx)
		}
		cancel()
		if err == nil {
			return info, nil
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last try: %w)", ctx.Err(), err)
		}
	}
}
