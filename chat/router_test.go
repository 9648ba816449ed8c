package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// routerEnv runs a Router over a real NATS server, with a fake vendor (bodies
// {"session":"S","type":"T"}) and a session index in memory.
type routerEnv struct {
	*env
	mu       sync.Mutex
	sessions map[string]string // session id -> interaction id
	lookups  int
	verdicts chan string
}

func newRouterEnv(t *testing.T) *routerEnv {
	t.Helper()
	e := &routerEnv{env: newEnv(t), sessions: map[string]string{}, verdicts: make(chan string, 100)}
	// The inbound stream the signals land in.
	if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{
		Name: "CC_INBOUND", Subjects: []string{"cc.signal.*.*"}, Duplicates: DuplicateWindow,
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

func fakeResolve(vendor string, body []byte) (string, Signal, bool) {
	var w struct {
		Session string `json:"session"`
		Type    string `json:"type"`
	}
	if vendor != "zoom" || json.Unmarshal(body, &w) != nil || w.Session == "" {
		return "", Signal{}, false
	}
	return w.Session, Signal{Type: SignalType(w.Type), At: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, true
}

func (e *routerEnv) lookup(ctx context.Context, vendor, sessionID string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lookups++
	id, ok := e.sessions[vendor+"/"+sessionID]
	if !ok {
		return "", fmt.Errorf("fake index: %w", ErrNoSession)
	}
	return id, nil
}

func (e *routerEnv) hold(sessionID, interactionID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sessions["zoom/"+sessionID] = interactionID
}

func (e *routerEnv) lookupCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lookups
}

func (e *routerEnv) router(t *testing.T, cfg RouterConfig) *Router {
	t.Helper()
	cfg.Resolve = fakeResolve
	cfg.Lookup = e.lookup
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := NewRouter(ctxFor(t), e.js, cfg)
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	r.onSettle = func(_ uint64, verdict string) { e.verdicts <- verdict }
	return r
}

// run starts r.Run; the cleanup cancels it and checks it returned nil.
func runRouter(t *testing.T, r *Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
}

func (e *routerEnv) webhook(t *testing.T, id, body string) {
	t.Helper()
	m := nats.NewMsg(WebhookSubject("", "zoom"))
	m.Data = []byte(body)
	if id != "" {
		m.Header.Set(jetstream.MsgIDHeader, id)
	}
	if _, err := e.js.PublishMsg(ctxFor(t), m); err != nil {
		t.Fatal(err)
	}
}

func (e *routerEnv) expect(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-e.verdicts:
			if got != w {
				t.Fatalf("verdict %d: %s, want %s", i, got, w)
			}
		case <-time.After(wait):
			t.Fatalf("verdict %d (%s) not given; logs:\n%s", i, w, e.logs.String())
		}
	}
}

func (e *routerEnv) signals(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := ctxFor(t)
	s, err := e.js.Stream(ctx, "CC_INBOUND")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestRouterCreatesTheStreamWhenMissing(t *testing.T) {
	e := newRouterEnv(t)
	r := e.router(t, RouterConfig{})
	if r.StreamName() != DefaultWebhookStream {
		t.Fatalf("stream %q", r.StreamName())
	}
	ctx := ctxFor(t)
	s, err := e.js.Stream(ctx, DefaultWebhookStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != "cc.webhook.*" || cfg.MaxAge != DefaultWebhookMaxAge ||
		cfg.Metadata[createdMarker] != "1" || cfg.Duplicates != DuplicateWindow {
		t.Fatalf("stream config: %+v", cfg)
	}
	c, err := e.js.Consumer(ctx, DefaultWebhookStream, DefaultRouterDurable)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxDeliver != DefaultRouterMaxDeliver || cc.FilterSubject != "cc.webhook.*" {
		t.Fatalf("consumer config: %+v", cc)
	}
	// A second router (a restart) uses the stream as it is.
	if r2 := e.router(t, RouterConfig{}); r2.StreamName() != DefaultWebhookStream {
		t.Fatalf("second router's stream %q", r2.StreamName())
	}
}

func TestRouterUsesAnExistingStream(t *testing.T) {
	e := newRouterEnv(t)
	if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "OPS_HOOKS", Subjects: []string{"cc.webhook.>"}}); err != nil {
		t.Fatal(err)
	}
	r := e.router(t, RouterConfig{Stream: "UNUSED"})
	if r.StreamName() != "OPS_HOOKS" {
		t.Fatalf("stream %q", r.StreamName())
	}
	if _, err := e.js.Stream(ctxFor(t), "UNUSED"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a stream was created beside the operator's: %v", err)
	}
}

func TestRouterRoutesInOrder(t *testing.T) {
	e := newRouterEnv(t)
	e.hold("S1", "i1")
	e.hold("S2/+=", "i2")
	r := e.router(t, RouterConfig{})
	bodies := []struct{ id, body string }{
		{"w1", `{"session":"S1","type":"user_joined"}`},
		{"w2", `{"session":"S2/+=","type":"session_started"}`},
		{"w3", `{"session":"S1","type":"session_ended"}`},
	}
	for _, b := range bodies {
		e.webhook(t, b.id, b.body)
	}
	runRouter(t, r)
	e.expect(t, "ack", "ack", "ack")
	got := e.signals(t)
	if len(got) != 3 {
		t.Fatalf("%d signals, want 3", len(got))
	}
	want := []struct{ subject, iid, typ, session string }{
		{"cc.signal.i1.zoom", "i1", "user_joined", "S1"},
		{"cc.signal.i2.zoom", "i2", "session_started", "S2/+="},
		{"cc.signal.i1.zoom", "i1", "session_ended", "S1"},
	}
	for i, m := range got {
		w := want[i]
		if m.Subject != w.subject || m.Header.Get(jetstream.MsgIDHeader) != "signal.zoom."+bodies[i].id {
			t.Fatalf("signal %d: subject %s, msg id %q", i, m.Subject, m.Header.Get(jetstream.MsgIDHeader))
		}
		// The inbound consumer reads it as the signal it is.
		sig, err := decodeSignal(w.iid, "zoom", m.Data)
		if err != nil {
			t.Fatalf("signal %d does not decode: %v (%s)", i, err, m.Data)
		}
		if sig.ID != bodies[i].id || sig.InteractionID != w.iid || sig.Source != "zoom" || string(sig.Type) != w.typ ||
			sig.SessionID != w.session || string(sig.Raw) != bodies[i].body || sig.At.IsZero() {
			t.Fatalf("signal %d: %+v", i, sig)
		}
	}
}

// A webhook routed twice (a daemon stopped between the PubAck and the ack, then the redelivery)
// is stored once as a signal; a webhook the intake stored twice is dropped by the webhook stream.
func TestRouterDuplicateStoredOnce(t *testing.T) {
	e := newRouterEnv(t)
	e.hold("S1", "i1")
	r := e.router(t, RouterConfig{})
	var mu sync.Mutex
	var published []string
	r.afterPublish = func(msgID string) bool {
		mu.Lock()
		defer mu.Unlock()
		published = append(published, msgID)
		return len(published) == 1 // the first publish: stop before the ack
	}
	e.webhook(t, "w1", `{"session":"S1","type":"user_joined"}`)
	e.webhook(t, "w1", `{"session":"S1","type":"user_joined"}`) // Zoom sent it again within the window
	e.webhook(t, "", `{"session":"S1","type":"session_ended"}`) // no msg id: named by its stream sequence
	runRouter(t, r)
	e.expect(t, "nak", "ack", "ack")
	// A nak'd webhook may be overtaken by the next one: compare without order.
	got := e.signals(t)
	var ids []string
	for _, m := range got {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	slices.Sort(ids)
	if want := []string{"signal.zoom.CC_WEBHOOK-2", "signal.zoom.w1"}; !slices.Equal(ids, want) {
		t.Fatalf("signals %v, want %v", ids, want)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(published)
	if want := []string{"signal.zoom.CC_WEBHOOK-2", "signal.zoom.w1", "signal.zoom.w1"}; !slices.Equal(published, want) {
		t.Fatalf("published %v, want %v", published, want)
	}
}

func TestRouterUnknownSessionRetriedThenTerminated(t *testing.T) {
	e := newRouterEnv(t)
	r := e.router(t, RouterConfig{MaxDeliver: 3, RetryDelay: 10 * time.Millisecond})
	e.webhook(t, "w1", `{"session":"nobody","type":"session_started"}`)
	runRouter(t, r)
	e.expect(t, "nak", "nak", "term")
	if n := e.lookupCount(); n != 3 {
		t.Fatalf("%d lookups, want 3", n)
	}
	if recs := e.logs.records(t, "webhook of a session no interaction holds; terminated"); len(recs) != 1 {
		t.Fatalf("logged %d times, want once", len(recs))
	}
	if got := e.signals(t); len(got) != 0 {
		t.Fatalf("%d signals published", len(got))
	}

	// A session the daemon joins while its webhook waits: routed on a later delivery.
	e.webhook(t, "w2", `{"session":"late","type":"user_joined"}`)
	e.expect(t, "nak")
	e.hold("late", "i9")
	e.expect(t, "ack")
	if got := e.signals(t); len(got) != 1 || got[0].Subject != "cc.signal.i9.zoom" {
		t.Fatalf("signals: %d", len(got))
	}
}

func TestRouterUnreadableBodyTerminated(t *testing.T) {
	e := newRouterEnv(t)
	e.hold("S1", "i1")
	r := e.router(t, RouterConfig{})
	e.webhook(t, "w1", `not json`)
	e.webhook(t, "w2", `{"session":"S1","type":"user_joined"}`)
	runRouter(t, r)
	e.expect(t, "term", "ack")
	if n := e.lookupCount(); n != 1 {
		t.Fatalf("%d lookups, want 1 (the readable one)", n)
	}
	if recs := e.logs.records(t, "webhook body not readable; terminated"); len(recs) != 1 {
		t.Fatalf("logged %d times, want once", len(recs))
	}
	if got := e.signals(t); len(got) != 1 {
		t.Fatalf("%d signals, want 1", len(got))
	}
}

// A lookup that fails (the bucket unreachable) is retried, not dropped.
func TestRouterTransientLookupRetried(t *testing.T) {
	e := newRouterEnv(t)
	var mu sync.Mutex
	fails := 1
	r := e.router(t, RouterConfig{RetryDelay: 10 * time.Millisecond})
	r.cfg.Lookup = func(ctx context.Context, vendor, sessionID string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return "", errors.New("bucket unreachable")
		}
		return "i1", nil
	}
	e.webhook(t, "w1", `{"session":"S1","type":"user_joined"}`)
	runRouter(t, r)
	e.expect(t, "nak", "ack")
	if got := e.signals(t); len(got) != 1 {
		t.Fatalf("%d signals, want 1", len(got))
	}
}

func TestRouterConfigRequiresResolveAndLookup(t *testing.T) {
	if _, err := (RouterConfig{}).withDefaults(); err == nil {
		t.Fatal("no error without Resolve and Lookup")
	}
}

// Run ends with an error when the connection is closed for good, and leaves nothing running.
func TestRouterRunEndsWhenTheConnectionCloses(t *testing.T) {
	e := newRouterEnv(t)
	r := e.router(t, RouterConfig{})
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	e.nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("Run returned %v, want ErrConnectionClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after the connection closed")
	}
}

// TestRoutersOneAtATime: of two routers (two replicas), the pinned one routes every webhook, so a
// session's webhooks keep their order; once it stops and lets go, the other routes.
func TestRoutersOneAtATime(t *testing.T) {
	e := newRouterEnv(t)
	e.hold("s1", "I1")
	first := e.router(t, RouterConfig{})
	firstCtx, stopFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(firstCtx) }()
	e.webhook(t, "w0", `{"session":"s1","type":"user_joined"}`)
	e.expect(t, "ack") // the first router holds the pin now

	second := e.router(t, RouterConfig{})
	var secondSettled atomic.Int32
	second.onSettle = func(uint64, string) { secondSettled.Add(1); e.verdicts <- "second" }
	runRouter(t, second)
	for i := range 5 {
		e.webhook(t, fmt.Sprintf("w%d", i+1), `{"session":"s1","type":"user_joined"}`)
		e.expect(t, "ack")
	}
	if n := secondSettled.Load(); n != 0 {
		t.Fatalf("the standby router settled %d webhooks", n)
	}

	stopFirst()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := first.LetGo(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, "w9", `{"session":"s1","type":"session_ended"}`)
	e.expect(t, "second")
}
