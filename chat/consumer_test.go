package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// wait bounds every wait in these tests; nothing sleeps.
const wait = 15 * time.Second

type env struct {
	s    *natstest.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	logs *logBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, nc: nc, js: js, logs: &logBuffer{}}
}

// connect opens a connection that reconnects quickly and for ever, as the daemon's would.
func connect(t *testing.T, s *natstest.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(t.Name()),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) consumer(t *testing.T, cfg Config) *Consumer {
	t.Helper()
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := NewConsumer(ctxFor(t), e.js, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

// running is a Run in progress.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, c *Consumer, h Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it; Run must return nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
}

// collect is a handler that passes every Inbound to a channel, acking it first when ack is set.
func collect(t *testing.T, ack bool) (Handler, chan Inbound) {
	ch := make(chan Inbound, 100)
	return HandlerFunc(func(ctx context.Context, in Inbound) {
		if ack {
			if err := in.Delivery.Ack(ctx); err != nil {
				t.Errorf("ack: %v", err)
			}
		}
		ch <- in
	}), ch
}

func recv(t *testing.T, ch <-chan Inbound) Inbound {
	t.Helper()
	select {
	case in := <-ch:
		return in
	case <-time.After(wait):
		t.Fatal("no inbound message")
		return Inbound{}
	}
}

func chatJSON(id, iid string, role Role, text string) []byte {
	b, _ := json.Marshal(Message{ID: id, InteractionID: iid, From: Sender{Role: role}, Text: text})
	return b
}

func eventJSON(id, iid string, typ EventType) []byte {
	b, _ := json.Marshal(Event{ID: id, InteractionID: iid, Type: typ})
	return b
}

func (e *env) publish(t *testing.T, subject string, data []byte) uint64 {
	t.Helper()
	ack, err := e.js.Publish(ctxFor(t), subject, data)
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

func (e *env) publishChat(t *testing.T, id, iid string, text string) uint64 {
	t.Helper()
	return e.publish(t, ChatSubject("cc", iid), chatJSON(id, iid, RoleCustomer, text))
}

func idOf(in Inbound) string {
	if in.Chat != nil {
		return in.Chat.ID
	}
	return in.Event.ID
}

// consumerInfo is the member's consumer on the group stream, as the server holds it (Run makes it).
func (e *env) consumerInfo(t *testing.T, c *Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := e.js.Consumer(ctxFor(t), GroupStreamName(c.StreamName(), c.Config().Group), c.Config().Member)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func (e *env) streamNames(t *testing.T) []string {
	t.Helper()
	var names []string
	l := e.js.StreamNames(ctxFor(t))
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// logBuffer collects JSON log lines.
type logBuffer struct{ logtest.Buffer }

func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func TestNewConsumerCreatesStreamAndConsumer(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	if got := c.StreamName(); got != "CC_INBOUND" {
		t.Fatalf("stream %q, want CC_INBOUND", got)
	}
	st, err := e.js.Stream(ctxFor(t), "CC_INBOUND")
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	if !slices.Equal(sc.Subjects, []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"}) || sc.Metadata[createdMarker] != "1" {
		t.Errorf("stream subjects %v, metadata %v", sc.Subjects, sc.Metadata)
	}
	if sc.Duplicates != 2*time.Minute || sc.Storage != jetstream.FileStorage {
		t.Errorf("stream duplicates %v, storage %v", sc.Duplicates, sc.Storage)
	}

	// The group: its membership (this member alone), its work-queue stream sourcing the inbound
	// stream by partition.
	gs, err := e.js.Stream(ctxFor(t), "CC_INBOUND-cobrowse")
	if err != nil {
		t.Fatal(err)
	}
	if gc := gs.CachedInfo().Config; gc.Retention != jetstream.WorkQueuePolicy || len(gc.Sources) != 1 || gc.Sources[0].Name != "CC_INBOUND" ||
		len(gc.Sources[0].SubjectTransforms) != 3 || gc.Sources[0].SubjectTransforms[0].Destination != "{{Partition(16,1)}}.cc.chat.{{Wildcard(1)}}.message" {
		t.Errorf("group stream %+v", gc)
	}
	kv, err := e.js.KeyValue(ctxFor(t), GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	if entry, err := kv.Get(ctxFor(t), "CC_INBOUND.cobrowse"); err != nil || !strings.Contains(string(entry.Value()), `"members":["main"]`) {
		t.Errorf("membership %v %v", entry, err)
	}

	// Run makes the member's consumer, pinned; the member of every partition reads the whole group
	// stream, without filter subjects (see consumerFilters).
	h, ch := collect(t, true)
	r := start(t, c, h)
	e.publishChat(t, "m0", "I0", "x")
	recv(t, ch)
	cc := e.consumerInfo(t, c).Config
	if cc.Name != "main" || cc.AckPolicy != jetstream.AckExplicitPolicy ||
		cc.DeliverPolicy != jetstream.DeliverAllPolicy || cc.MaxDeliver != 6 || cc.MaxAckPending != 20000 ||
		len(cc.FilterSubjects) != 0 || cc.FilterSubject != "" ||
		cc.PriorityPolicy != jetstream.PriorityPolicyPinned || cc.PinnedTTL != 10*time.Second ||
		!slices.Equal(cc.BackOff, DefaultBackoff()) || cc.DeliverSubject != "" {
		t.Errorf("consumer config %+v", cc)
	}
	// The server makes the first backoff value the ack wait.
	if cc.AckWait != time.Second {
		t.Errorf("server ack wait %v, want Backoff[0]", cc.AckWait)
	}
	r.stop(t)
	if err := c.LetGo(ctxFor(t)); err != nil {
		t.Fatal(err)
	}

	// Publishers that set Nats-Msg-Id are deduplicated.
	for range 2 {
		if _, err := e.js.Publish(ctxFor(t), ChatSubject("cc", "I1"), chatJSON("m1", "I1", RoleCustomer, "x"),
			jetstream.WithMsgID("I1.m1")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages after m0 and a duplicate publish, want 2", info.State.Msgs)
	}

	// Starting again uses the stream and the group it made, and makes the consumer again with
	// the new settings.
	c2 := e.consumer(t, Config{MaxDeliver: 8})
	if c2.StreamName() != "CC_INBOUND" || !slices.Equal(e.streamNames(t), []string{"CC_INBOUND", "CC_INBOUND-cobrowse", "KV_elastic-consumer-groups"}) {
		t.Errorf("second start: stream %q, streams %v", c2.StreamName(), e.streamNames(t))
	}
	h2, ch2 := collect(t, true)
	start(t, c2, h2)
	// The work queue still holds m1 (published twice above, stored once); then m2.
	e.publishChat(t, "m2", "I0", "y")
	for _, want := range []string{"m1", "m2"} {
		if in := recv(t, ch2); in.Chat.ID != want {
			t.Fatalf("second start handled %s, want %s", in.Chat.ID, want)
		}
	}
	if got := e.consumerInfo(t, c2).Config.MaxDeliver; got != 8 {
		t.Errorf("consumer not updated: max deliver %d", got)
	}
	if n := len(e.logs.records(t, "created the inbound stream")); n != 1 {
		t.Errorf("%d 'created' logs, want 1", n)
	}
}

func TestNewConsumerReusesExistingStream(t *testing.T) {
	for _, subjects := range [][]string{
		{"cc.>"},
		{"cc.*.*.*"},
		{"cc.interaction.*.event", "cc.chat.*.message", "cc.interaction.*.attach", "cc.signal.*.*"},
	} {
		t.Run(strings.Join(subjects, ","), func(t *testing.T) {
			e := newEnv(t)
			if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "PLATFORM", Subjects: subjects}); err != nil {
				t.Fatal(err)
			}
			c := e.consumer(t, Config{})
			if c.StreamName() != "PLATFORM" {
				t.Fatalf("stream %q, want PLATFORM", c.StreamName())
			}
			if got := e.streamNames(t); !slices.Equal(got, []string{"KV_elastic-consumer-groups", "PLATFORM", "PLATFORM-cobrowse"}) {
				t.Fatalf("streams %v: another inbound stream was made, or the group's is missing", got)
			}
			st, err := e.js.Stream(ctxFor(t), "PLATFORM")
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.Subjects; !slices.Equal(got, subjects) {
				t.Errorf("existing stream changed: subjects %v", got)
			}
			logs := e.logs.records(t, "using the existing inbound stream")
			if len(logs) != 1 || logs[0]["stream"] != "PLATFORM" || logs[0]["component"] != "chat" {
				t.Errorf("logs %v", logs)
			}

			h, ch := collect(t, true)
			start(t, c, h)
			e.publish(t, "cc.interaction.I1.attach", []byte(`{}`)) // in the stream, but not the consumer's
			e.publishChat(t, "m1", "I1", "hello")
			if in := recv(t, ch); in.Chat == nil || in.Chat.ID != "m1" {
				t.Fatalf("got %+v", in)
			}
		})
	}
}

func TestNewConsumerRejectsUnfitStreams(t *testing.T) {
	tests := []struct {
		name    string
		streams map[string][]string
		want    string
	}{
		{"split over two streams", map[string][]string{"CHAT": {"cc.chat.*.message"}, "EVENTS": {"cc.interaction.*.event"}},
			"captured by different streams"},
		{"only chat captured", map[string][]string{"CHAT": {"cc.chat.>"}},
			"no stream captures cc.interaction.*.event"},
		{"chat captured in part", map[string][]string{"ONE": {"cc.chat.I1.message", "cc.interaction.*.event"}},
			"stream ONE captures only part of cc.chat.*.message"},
		{"chat over several streams", map[string][]string{"A": {"cc.chat.a.message", "cc.interaction.*.event"}, "B": {"cc.chat.b.message"}},
			"cc.chat.*.message is split over streams A, B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var names []string
			for name, subjects := range tc.streams {
				if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			slices.Sort(names)
			_, err := NewConsumer(ctxFor(t), e.js, Config{Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewConsumer error %v, want %q", err, tc.want)
			}
			if got := e.streamNames(t); !slices.Equal(got, names) {
				t.Errorf("streams %v, want %v", got, names)
			}
		})
	}
}

func TestInPublishOrderAcrossChatAndEvents(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{FetchBatch: 3}) // several pulls
	type pub struct {
		subject string
		data    []byte
	}
	pubs := []pub{
		{EventSubject("cc", "I1"), eventJSON("e1", "I1", EventCreated)},
		{ChatSubject("cc", "I1"), chatJSON("m1", "I1", RoleCustomer, "hello")},
		{EventSubject("cc", "I2"), eventJSON("e2", "I2", EventCreated)},
		{EventSubject("cc", "I1"), eventJSON("e3", "I1", EventAssigned)},
		{ChatSubject("cc", "I1"), chatJSON("m2", "I1", RoleAgent, "{start:111111111}")},
		{ChatSubject("cc", "I1"), chatJSON("m3", "I1", RoleCustomer, " {start:012345678}\n")},
		{ChatSubject("cc", "I2"), chatJSON("m4", "I2", RoleBot, "<start:999999999>")},
		{EventSubject("cc", "I1"), eventJSON("e4", "I1", EventTransferred)},
		{ChatSubject("cc", "I1"), chatJSON("m5", "I1", RoleSystem, "bye")},
		{EventSubject("cc", "I1"), eventJSON("e5", "I1", EventClosed)},
	}
	// Publish before and while running: both must come in order.
	for _, p := range pubs[:5] {
		e.publish(t, p.subject, p.data)
	}
	h, ch := collect(t, true)
	start(t, c, h)
	for _, p := range pubs[5:] {
		e.publish(t, p.subject, p.data)
	}
	var ids, tokens []string
	for range pubs {
		in := recv(t, ch)
		ids = append(ids, idOf(in))
		tokens = append(tokens, in.StartToken)
		if in.InteractionID == "" || in.Delivery == nil || in.Delivery.Attempt() != 1 || in.Delivery.Last() {
			t.Errorf("inbound %+v", in)
		}
	}
	if want := []string{"e1", "m1", "e2", "e3", "m2", "m3", "m4", "e4", "m5", "e5"}; !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
	if want := []string{"", "", "", "", "", "012345678", "999999999", "", "", ""}; !slices.Equal(tokens, want) {
		t.Errorf("start tokens %q, want %q (an agent's start message does not trigger)", tokens, want)
	}
}

func TestMalformedIsTerminatedOnce(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	bad := []struct {
		subject string
		data    []byte
		reason  string
	}{
		{ChatSubject("cc", "I1"), []byte(`{"id":"m1","text":"` + secret), "invalid JSON"},
		{ChatSubject("cc", "I1"), chatJSON("m2", "I2", RoleCustomer, secret), "field interactionId: differs"},
		{ChatSubject("cc", "I1"), []byte(`{"id":"m3","interactionId":"I1","from":{"role":"admin"},"text":"` + secret + `"}`), "field from.role"},
		{ChatSubject("cc", "I1"), []byte(`{"id":"m4","interactionId":"I1","from":{"role":"customer"}}`), "field text: missing"},
		{EventSubject("cc", "I1"), []byte(`{"id":"e1","interactionId":"I1"}`), "field type: missing"},
		{EventSubject("cc", "I1"), []byte(`{"id":"e2","interactionId":"I1","type":"closed","at":"` + secret + `"}`), "field at"},
		{EventSubject("cc", "I1"), []byte(`{"id":"e3","interactionId":"I1","type":"assigned","agentId":"` + secret + `.*"}`), "field agentId: not a NATS subject token"},
		{EventSubject("cc", "I1"), []byte(`{"id":"e4","interactionId":"I1","type":"transferred","agentId":"a1","toAgentId":"` + secret + `\u00a0"}`), "field toAgentId: not a NATS subject token"},
	}
	var seqs []uint64
	for _, b := range bad {
		seqs = append(seqs, e.publish(t, b.subject, b.data))
	}
	goodSeq := e.publishChat(t, "good", "I1", "hello")

	h, ch := collect(t, true)
	start(t, c, h)
	if in := recv(t, ch); idOf(in) != "good" {
		t.Fatalf("first handled %q, want good", idOf(in))
	}
	_ = goodSeq
	info := e.consumerInfo(t, c)
	if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer after the good message: ack pending %d, pending %d, redelivered %d",
			info.NumAckPending, info.NumPending, info.NumRedelivered)
	}

	// The next good message is handled, and nothing else comes first: no malformed one comes back.
	e.publishChat(t, "good2", "I1", "again")
	if in := recv(t, ch); idOf(in) != "good2" {
		t.Fatalf("then handled %q, want good2", idOf(in))
	}

	logs := e.logs.records(t, "malformed inbound message terminated")
	if len(logs) != len(bad) {
		t.Fatalf("%d malformed logs, want %d (one each):\n%s", len(logs), len(bad), e.logs)
	}
	for i, rec := range logs {
		if rec["level"] != "WARN" || rec["component"] != "chat" || rec["subject"] != bad[i].subject ||
			rec["stream_seq"] != float64(seqs[i]) || rec["bytes"] != float64(len(bad[i].data)) ||
			!strings.Contains(fmt.Sprint(rec["reason"]), bad[i].reason) {
			t.Errorf("log %d: %v, want subject %s, seq %d, reason %q", i, rec, bad[i].subject, seqs[i], bad[i].reason)
		}
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("the logs hold message text:\n%s", e.logs)
	}
}

func TestOversizedIsTerminated(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	pad := func(size int) []byte {
		base := chatJSON("x", "I1", RoleCustomer, "")
		return chatJSON("x", "I1", RoleCustomer, strings.Repeat("a", size-len(base)))
	}
	big := pad(64*1024 + 1)
	bigSeq := e.publish(t, ChatSubject("cc", "I1"), big)
	limit := pad(64 * 1024)
	e.publish(t, ChatSubject("cc", "I1"), limit)

	h, ch := collect(t, true)
	start(t, c, h)
	in := recv(t, ch)
	if in.Chat == nil || len(in.Chat.Text) != 64*1024-len(chatJSON("x", "I1", RoleCustomer, "")) {
		t.Fatalf("got %+v, want the message at the limit", in)
	}
	info := e.consumerInfo(t, c)
	if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer: ack pending %d, pending %d, redelivered %d", info.NumAckPending, info.NumPending, info.NumRedelivered)
	}
	logs := e.logs.records(t, "malformed inbound message terminated")
	if len(logs) != 1 || logs[0]["stream_seq"] != float64(bigSeq) ||
		logs[0]["reason"] != "payload of 65537 bytes exceeds the limit of 65536" {
		t.Errorf("logs %v", logs)
	}
}

func TestUnknownEventTypeIsAckedAndIgnored(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	e.publish(t, EventSubject("cc", "I1"), eventJSON("e1", "I1", "sneezed"))
	goodSeq := e.publish(t, EventSubject("cc", "I1"), eventJSON("e2", "I1", EventClosed))
	h, ch := collect(t, true)
	start(t, c, h)
	if in := recv(t, ch); in.Event == nil || in.Event.ID != "e2" || in.Event.Type != EventClosed {
		t.Fatalf("got %+v, want e2", in)
	}
	info := e.consumerInfo(t, c)
	if info.AckFloor.Stream != goodSeq || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer: ack floor %d, ack pending %d, redelivered %d", info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
	}
	if logs := e.logs.records(t, "acked and ignored a message of unknown type"); len(logs) != 1 || logs[0]["level"] != "DEBUG" || logs[0]["type"] != "sneezed" {
		t.Errorf("logs %v", logs)
	}
	if n := len(e.logs.records(t, "malformed inbound message terminated")); n != 0 {
		t.Errorf("%d malformed logs", n)
	}
}

func TestNakWithDelayRedelivers(t *testing.T) {
	e := newEnv(t)
	// The second nak falls on the ladder's second rung, which the server would add to its delay.
	c := e.consumer(t, Config{Backoff: []time.Duration{time.Second, 1100 * time.Millisecond}})
	const delay = 100 * time.Millisecond
	ch := make(chan Inbound, 10)
	var nakAt []time.Time
	start(t, c, HandlerFunc(func(ctx context.Context, in Inbound) {
		if in.Delivery.Attempt() <= 2 {
			nakAt = append(nakAt, time.Now())
			if err := in.Delivery.Nak(delay); err != nil {
				t.Errorf("nak: %v", err)
			}
			if err := in.Delivery.Ack(ctx); !errors.Is(err, ErrSettled) {
				t.Errorf("ack after nak: %v, want ErrSettled", err)
			}
		} else if err := in.Delivery.Ack(ctx); err != nil {
			t.Errorf("ack: %v", err)
		}
		ch <- in
	}))
	seq := e.publishChat(t, "m1", "I1", "hello")
	for attempt := 1; attempt <= 3; attempt++ {
		in := recv(t, ch)
		if in.Delivery.Attempt() != attempt || in.Chat.ID != "m1" || in.Delivery.StreamSeq() != seq || in.Delivery.Last() {
			t.Fatalf("delivery %d: attempt %d, id %s, seq %d, last %v", attempt, in.Delivery.Attempt(), in.Chat.ID,
				in.Delivery.StreamSeq(), in.Delivery.Last())
		}
		if attempt > 1 {
			if elapsed := time.Since(nakAt[attempt-2]); elapsed < delay {
				t.Errorf("attempt %d came %v after the nak, before its delay %v", attempt, elapsed, delay)
			}
		}
	}
}

func TestNakDelay(t *testing.T) {
	const s = time.Second
	tests := []struct{ delay, ackWait, deadline, want time.Duration }{
		{3 * s, 30 * s, 30 * s, 3 * s}, // no backoff
		{3 * s, 1 * s, 1 * s, 3 * s},   // first rung
		{3 * s, 1 * s, 2 * s, 2 * s},   // later rung: the server adds 1s
		{3 * s, 1 * s, 15 * s, time.Nanosecond},
	}
	for _, tc := range tests {
		if got := nakDelay(tc.delay, tc.ackWait, tc.deadline); got != tc.want {
			t.Errorf("nakDelay(%v, %v, %v) = %v, want %v", tc.delay, tc.ackWait, tc.deadline, got, tc.want)
		}
	}
}

func TestLastOnMaxDeliver(t *testing.T) {
	e := newEnv(t)
	// Deliveries left unsettled lapse after AckWait and come back after the backoff.
	c := e.consumer(t, Config{MaxDeliver: 3, AckWait: 100 * time.Millisecond, Backoff: []time.Duration{500 * time.Millisecond}})
	ch := make(chan Inbound, 10)
	start(t, c, HandlerFunc(func(ctx context.Context, in Inbound) {
		switch {
		case in.Chat.ID != "m1":
			in.Delivery.Ack(ctx)
		case in.Delivery.Attempt() == 1:
			in.Delivery.Nak(0)
		case in.Delivery.Attempt() == 2:
			// Leave it unsettled: it is redelivered when it lapses.
		case in.Delivery.Last():
			in.Delivery.Term("failed for good")
		}
		ch <- in
	}))
	e.publishChat(t, "m1", "I1", "hello")
	var attempts []int
	var last []bool
	for range 3 {
		in := recv(t, ch)
		attempts = append(attempts, in.Delivery.Attempt())
		last = append(last, in.Delivery.Last())
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) || !slices.Equal(last, []bool{false, false, true}) {
		t.Errorf("attempts %v, last %v; want [1 2 3], [false false true]", attempts, last)
	}
	// Nothing more of m1: the next message is the next thing handled.
	e.publishChat(t, "m2", "I1", "next")
	if in := recv(t, ch); idOf(in) != "m2" {
		t.Errorf("then got %s attempt %d, want m2", idOf(in), in.Delivery.Attempt())
	}
	if info := e.consumerInfo(t, c); info.NumAckPending != 0 {
		t.Errorf("ack pending %d", info.NumAckPending)
	}
	if logs := e.logs.records(t, "delivery not settled within the ack wait: the server will redeliver it"); len(logs) != 1 {
		t.Errorf("lapse logs %v", logs)
	}
}

// The keeper holds deliveries that wait for the handler, or that the handler works on, longer
// than the server's ack deadline: none is redelivered.
func TestSlowHandlerKeepsItsDeliveries(t *testing.T) {
	e := newEnv(t)
	const deadline = 300 * time.Millisecond
	c := e.consumer(t, Config{Backoff: []time.Duration{deadline}})
	var mu sync.Mutex
	sent := map[uint64]int{}
	kept := make(chan struct{}, 1)
	c.onKeepAlive = func(seq uint64) {
		mu.Lock()
		sent[seq]++
		mu.Unlock()
		signal(kept)
	}
	keptAll := func(seqs []uint64, n int) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seqs {
			if sent[s] < n {
				return false
			}
		}
		return true
	}

	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, e.publishChat(t, fmt.Sprintf("m%d", i+1), "I1", "x"))
	}
	release := make(chan struct{})
	ch := make(chan Inbound, 10)
	start(t, c, HandlerFunc(func(ctx context.Context, in Inbound) {
		if in.Chat.ID == "m1" {
			<-release
		}
		in.Delivery.Ack(ctx)
		ch <- in
	}))
	// Twelve keep-alives, at least a quarter of the deadline apart, span three deadlines.
	timeout := time.After(wait)
	for !keptAll(seqs, 12) {
		select {
		case <-kept:
		case <-timeout:
			t.Fatalf("keep-alives %v", sent)
		}
	}
	close(release)
	var ids []string
	for range 3 {
		in := recv(t, ch)
		ids = append(ids, fmt.Sprintf("%s/%d", idOf(in), in.Delivery.Attempt()))
	}
	if want := []string{"m1/1", "m2/1", "m3/1"}; !slices.Equal(ids, want) {
		t.Errorf("handled %v, want %v", ids, want)
	}
	if info := e.consumerInfo(t, c); info.NumRedelivered != 0 || info.NumAckPending != 0 {
		t.Errorf("redelivered %d, ack pending %d", info.NumRedelivered, info.NumAckPending)
	}
}

// TestDurableAcrossRuns: a member that stopped without handing its partitions over (a crash) gets
// them back once the pinned TTL lapsed, and reads on where it stopped.
func TestDurableAcrossRuns(t *testing.T) {
	e := newEnv(t)
	h, ch := collect(t, true)
	c := e.consumer(t, Config{PinnedTTL: 2 * time.Second})
	r := start(t, c, h)
	e.publishChat(t, "m1", "I1", "one")
	if in := recv(t, ch); idOf(in) != "m1" {
		t.Fatalf("got %s", idOf(in))
	}
	r.stop(t)

	e.publishChat(t, "m2", "I1", "published while no consumer runs")
	c2 := e.consumer(t, Config{PinnedTTL: 2 * time.Second})
	start(t, c2, h)
	if in := recv(t, ch); idOf(in) != "m2" || in.Delivery.Attempt() != 1 {
		t.Fatalf("got %s attempt %d, want m2 attempt 1", idOf(in), in.Delivery.Attempt())
	}
}

func TestRunStopsPromptlyWithoutLeaks(t *testing.T) {
	e := newEnv(t)
	// A short backoff: a message in flight when Run stops comes back soon.
	c := e.consumer(t, Config{FetchBatch: 4, Backoff: []time.Duration{time.Second}})
	// The server's goroutines (the group stream's sourcing, the consumer's) are the server's.
	ignore := goleak.IgnoreCurrent()
	serverOwn := []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*stream).processAllSourceMsgs"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).loopAndGatherMsgs"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundAcks"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundNextMsgReqs"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumerFileStore).flushLoop"),
	}

	held := make(chan Inbound, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, HandlerFunc(func(ctx context.Context, in Inbound) {
			held <- in
			<-ctx.Done() // a handler that blocks until shutdown
		}))
	}()
	for i := range 3 {
		e.publishChat(t, fmt.Sprintf("m%d", i+1), "I1", "x")
	}
	in := recv(t, held)
	if idOf(in) != "m1" {
		t.Fatalf("handler got %s first", idOf(in))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
	// The delivery the handler holds is still valid after Run returned.
	if err := in.Delivery.Ack(ctxFor(t)); err != nil {
		t.Fatalf("ack after Run returned: %v", err)
	}
	goleak.VerifyNone(t, append(serverOwn, ignore)...)

	// The messages not handed over come back to the next Run: those pulled ahead of the handler
	// were nak'd on the way out, any still in flight lapse on the server. JetStream does not keep
	// the order of redeliveries.
	h, ch := collect(t, true)
	start(t, c, h)
	var got []string
	for range 2 {
		got = append(got, idOf(recv(t, ch)))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("next Run got %v, want m2 and m3", got)
	}
}

func TestRunTwiceAtOnceFails(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	h, ch := collect(t, true)
	start(t, c, h)
	e.publishChat(t, "m1", "I1", "x")
	recv(t, ch) // Run is running
	if err := c.Run(t.Context(), h); err == nil {
		t.Fatal("a second concurrent Run returned nil")
	}
}

func TestRunFailsWhenTheConnectionCloses(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	h, ch := collect(t, true)
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context(), h) }()
	e.publishChat(t, "m1", "I1", "x")
	recv(t, ch)
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

func TestSurvivesServerRestart(t *testing.T) {
	e := newEnv(t)
	reconnected := make(chan struct{}, 1)
	e.nc.SetReconnectHandler(func(*nats.Conn) { signal(reconnected) })
	c := e.consumer(t, Config{})
	h, ch := collect(t, true)
	r := start(t, c, h)
	e.publishChat(t, "m1", "I1", "before")
	if in := recv(t, ch); idOf(in) != "m1" {
		t.Fatalf("got %s", idOf(in))
	}

	e.s = e.s.Restart(t)
	select {
	case <-reconnected:
	case <-time.After(wait):
		t.Fatal("no reconnect")
	}
	// JetStream may take a moment to answer after the restart: publish until it acks.
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if _, err = e.js.Publish(ctxFor(t), ChatSubject("cc", "I1"), chatJSON("m2", "I1", RoleCustomer, "after"),
			jetstream.WithMsgID("m2"), jetstream.WithRetryAttempts(50)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	if in := recv(t, ch); idOf(in) != "m2" || in.Delivery.Attempt() != 1 {
		t.Fatalf("got %s attempt %d, want m2", idOf(in), in.Delivery.Attempt())
	}
	select {
	case err := <-r.done:
		t.Fatalf("Run returned %v across the restart", err)
	default:
	}
}

func TestRecreatesADeletedConsumer(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	h, ch := collect(t, true)
	start(t, c, h)
	e.publishChat(t, "m1", "I1", "x")
	recv(t, ch)
	if err := e.js.DeleteConsumer(ctxFor(t), GroupStreamName(c.StreamName(), c.Config().Group), c.Config().Member); err != nil {
		t.Fatal(err)
	}
	e.publishChat(t, "m2", "I1", "y")
	// The consumer is made again as configured: the work queue holds what is not acked yet.
	if in := recv(t, ch); idOf(in) != "m2" {
		t.Errorf("after the consumer was deleted: %s, want m2", idOf(in))
	}
	if logs := e.logs.records(t, "made the consumer again"); len(logs) != 1 {
		t.Errorf("logs %v", logs)
	}
}

// TestStreamOfThePreviousReleaseGainsTheSignals: the inbound stream an older release created
// (chat and events, its description, no metadata) is updated to capture the signals too; an
// operator's stream without them is refused, naming the subject it lacks.
func TestStreamOfThePreviousReleaseGainsTheSignals(t *testing.T) {
	e := newEnv(t)
	old := jetstream.StreamConfig{Name: "CC_INBOUND", Description: streamDescription,
		Subjects: []string{"cc.chat.*.message", "cc.interaction.*.event"}}
	if _, err := e.js.CreateStream(ctxFor(t), old); err != nil {
		t.Fatal(err)
	}
	seq := e.publish(t, ChatSubject("cc", "I1"), chatJSON("m1", "I1", RoleCustomer, "before the upgrade"))
	c := e.consumer(t, Config{})
	st, err := e.js.Stream(ctxFor(t), c.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	if !slices.Equal(sc.Subjects, []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"}) || sc.Metadata[createdMarker] != "1" {
		t.Fatalf("stream after the upgrade: subjects %v, metadata %v", sc.Subjects, sc.Metadata)
	}
	if st.CachedInfo().State.LastSeq != seq {
		t.Fatalf("the upgrade lost messages: last seq %d, want %d", st.CachedInfo().State.LastSeq, seq)
	}

	e2 := newEnv(t)
	if _, err := e2.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "PLATFORM",
		Subjects: []string{"cc.chat.*.message", "cc.interaction.*.event"}}); err != nil {
		t.Fatal(err)
	}
	_, err = NewConsumer(ctxFor(t), e2.js, Config{})
	if err == nil || !strings.Contains(err.Error(), "PLATFORM") || !strings.Contains(err.Error(), "cc.signal.*.*") {
		t.Fatalf("operator's stream without the signals: %v", err)
	}
}

// TestSignalsAndNewEventFields: a signal reaches the handler decoded, in order with the chat and
// the events; cobrowse_requested and cobrowseVendor are decoded; a signal whose subject names an
// unknown source is malformed; an unknown signal type is acked and ignored.
func TestSignalsAndNewEventFields(t *testing.T) {
	e := newEnv(t)
	c := e.consumer(t, Config{})
	e.publish(t, EventSubject("cc", "I1"), []byte(`{"id":"e1","interactionId":"I1","type":"created","agentId":"a1","cobrowseVendor":"zoom"}`))
	e.publish(t, EventSubject("cc", "I1"), []byte(`{"id":"e2","interactionId":"I1","type":"cobrowse_requested","requestedBy":{"role":"bot","id":"b1"}}`))
	e.publish(t, SignalSubject("cc", "I1", "operator"), []byte(`{"id":"s1","interactionId":"I1","source":"operator","type":"stop"}`))
	e.publish(t, SignalSubject("cc", "I1", "nobody"), []byte(`{"id":"s2","interactionId":"I1","source":"nobody","type":"stop"}`))
	e.publish(t, SignalSubject("cc", "I1", "zoom"), []byte(`{"id":"s3","interactionId":"I1","source":"zoom","type":"sneezed"}`))
	e.publish(t, SignalSubject("cc", "I1", "zoom"), []byte(`{"id":"s4","interactionId":"I1","source":"zoom","type":"user_joined","role":"agent","sessionId":"z-1","raw":{"event":"cobrowse.session_user_joined"}}`))
	h, ch := collect(t, true)
	start(t, c, h)
	if in := recv(t, ch); in.Event == nil || in.Event.Vendor != "zoom" || in.Event.AgentID != "a1" {
		t.Fatalf("created: %+v", in.Event)
	}
	if in := recv(t, ch); in.Event == nil || in.Event.Type != EventCobrowseRequested || in.Event.RequestedBy == nil || in.Event.RequestedBy.Role != RoleBot {
		t.Fatalf("cobrowse_requested: %+v", in.Event)
	}
	if in := recv(t, ch); in.Signal == nil || in.Signal.Source != SourceOperator || in.Signal.Type != SignalStop {
		t.Fatalf("operator stop: %+v", in)
	}
	in := recv(t, ch)
	if in.Signal == nil || in.Signal.ID != "s4" || in.Signal.Role != RoleAgent || in.Signal.SessionID != "z-1" || string(in.Signal.Raw) != `{"event":"cobrowse.session_user_joined"}` {
		t.Fatalf("zoom signal: %+v", in.Signal)
	}
	if n := len(e.logs.records(t, "malformed inbound message terminated")); n != 1 {
		t.Errorf("%d malformed logs, want 1 (the unknown source)", n)
	}
	if n := len(e.logs.records(t, "acked and ignored a message of unknown type")); n != 1 {
		t.Errorf("%d unknown-type logs, want 1", n)
	}
}

// TestNewConsumerRejectsAStreamThatLosesMessages: an operator's inbound stream that keeps only a few
// messages per subject (an interaction's unread messages dropped) is refused, with the reason.
func TestNewConsumerRejectsAStreamThatLosesMessages(t *testing.T) {
	e := newEnv(t)
	if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "OPS", MaxMsgsPerSubject: 10,
		Subjects: []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"}}); err != nil {
		t.Fatal(err)
	}
	_, err := NewConsumer(ctxFor(t), e.js, Config{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "keeps 10 messages per subject") {
		t.Fatalf("NewConsumer error %v, want the per-subject limit refused", err)
	}
}
