package chat

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/pcgroups"
)

// assignees records, in order, what a consumer hands its handler: messages, releases and
// acquisitions, each with the partitions the consumer owned at that moment.
type assignee struct {
	c    *Consumer
	mu   sync.Mutex
	log  []string
	msgs chan Inbound
	acq  chan struct{}
	rel  chan struct{}
}

func newAssignee() *assignee {
	return &assignee{msgs: make(chan Inbound, 1000), acq: make(chan struct{}, 100), rel: make(chan struct{}, 100)}
}

func (a *assignee) note(s string) {
	a.mu.Lock()
	a.log = append(a.log, s)
	a.mu.Unlock()
}

func (a *assignee) events() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.log)
}

func (a *assignee) Handle(ctx context.Context, in Inbound) {
	a.note("msg " + idOf(in))
	_ = in.Delivery.Ack(ctx)
	a.msgs <- in
}

func (a *assignee) Release(context.Context) {
	a.note("release " + fmt.Sprint(a.c.owned.Load()))
	a.rel <- struct{}{}
}

func (a *assignee) Acquire(context.Context) error {
	a.note("acquire " + fmt.Sprint(a.c.owned.Load()))
	a.acq <- struct{}{}
	return nil
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s within %v", what, wait)
		panic("unreachable")
	}
}

func (e *env) member(t *testing.T, name string) (*Consumer, *assignee) {
	t.Helper()
	return e.memberWith(t, Config{Member: name})
}

func (e *env) memberWith(t *testing.T, cfg Config) (*Consumer, *assignee) {
	t.Helper()
	c := e.consumer(t, cfg)
	a := newAssignee()
	a.c = c
	return c, a
}

// TestPartitionIsTheServers: Partition computes the partition the server's subject transform puts
// each interaction in, so that ownership can be answered for any interaction id.
func TestPartitionIsTheServers(t *testing.T) {
	e := newEnv(t)
	e.consumer(t, Config{})
	ids := []string{"I1", "", "interaction-0001", "ä-ö", "x"}
	for i := range 200 {
		ids = append(ids, "int-"+strconv.Itoa(i*7919))
	}
	for i, id := range ids {
		if id == "" {
			continue
		}
		e.publishChat(t, "m"+strconv.Itoa(i), id, "x")
	}
	gs, err := e.js.Stream(ctxFor(t), "CC_INBOUND-cobrowse")
	if err != nil {
		t.Fatal(err)
	}
	// No member reads the work queue here: a plain consumer sees what the sourcing wrote.
	cons, err := gs.CreateConsumer(ctxFor(t), jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(ids)-1; n++ {
		msg, err := cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatalf("group stream message %d: %v", n, err)
		}
		head, rest, _ := strings.Cut(msg.Subject(), ".")
		id := strings.Split(rest, ".")[2]
		if head != strconv.Itoa(Partition(id, 16)) {
			t.Errorf("interaction %q: server partition %s, Partition %d", id, head, Partition(id, 16))
		}
	}
}

// TestMembersSplitThePartitions: two members read disjoint partitions that cover all of them; each
// message reaches the member that owns its interaction, and only that one.
func TestMembersSplitThePartitions(t *testing.T) {
	e := newEnv(t)
	a, ha := e.member(t, "a")
	if _, err := pcgroups.AddMembers(ctxFor(t), e.js, "CC_INBOUND", "cobrowse", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	b, hb := e.member(t, "b")
	start(t, a, ha)
	start(t, b, hb)
	waitFor(t, ha.acq, "acquire by a")
	waitFor(t, hb.acq, "acquire by b")
	for p := range 16 {
		if pa, pb := a.owned.Load().has(p), b.owned.Load().has(p); pa == pb {
			t.Errorf("partition %d: a owns %v, b owns %v", p, pa, pb)
		}
	}
	// Each reads its 8 partitions' three subjects.
	if fa, fb := e.consumerInfo(t, a).Config.FilterSubjects, e.consumerInfo(t, b).Config.FilterSubjects; len(fa) != 24 || len(fb) != 24 || fa[0] != "0.cc.chat.*.message" {
		t.Errorf("filters: a %v, b %v", fa, fb)
	}
	for i := range 40 {
		e.publishChat(t, "m"+strconv.Itoa(i), "I"+strconv.Itoa(i), "x")
	}
	got := map[string]string{}
	for range 40 {
		select {
		case in := <-ha.msgs:
			got[in.InteractionID] = "a"
		case in := <-hb.msgs:
			got[in.InteractionID] = "b"
		case <-time.After(wait):
			t.Fatalf("%d of 40 messages handled", len(got))
		}
	}
	for id, who := range got {
		if owner := map[bool]string{true: "a", false: "b"}[a.Owns(id)]; owner != who || a.Owns(id) == b.Owns(id) {
			t.Errorf("%s handled by %s; a owns it: %v, b owns it: %v", id, who, a.Owns(id), b.Owns(id))
		}
	}
}

// TestMembershipChangeMovesPartitions: a member added takes its share only after the member that
// had it let go of it (release, then the new owner's acquire); removed again, its partitions
// return, and messages follow their partitions throughout.
func TestMembershipChangeMovesPartitions(t *testing.T) {
	e := newEnv(t)
	a, ha := e.member(t, "a")
	start(t, a, ha)
	waitFor(t, ha.acq, "acquire by a")
	if got := len(a.owned.Load().list()); got != 16 {
		t.Fatalf("a alone owns %d partitions", got)
	}

	b, hb := e.member(t, "b")
	start(t, b, hb)
	if _, err := pcgroups.AddMembers(ctxFor(t), e.js, "CC_INBOUND", "cobrowse", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hb.acq, "acquire by b")
	if evs := ha.events(); len(evs) < 2 || !strings.HasPrefix(evs[1], "release") {
		t.Fatalf("a's events %v: want a release after the first acquire", evs)
	}
	if got := len(a.owned.Load().list()) + len(b.owned.Load().list()); got != 16 || len(b.owned.Load().list()) == 0 {
		t.Fatalf("a owns %v, b owns %v", a.owned.Load().list(), b.owned.Load().list())
	}
	moved := ""
	for i := 0; moved == ""; i++ {
		if id := "I" + strconv.Itoa(i); b.Owns(id) {
			moved = id
		}
	}
	e.publishChat(t, "to-b", moved, "x")
	if in := waitFor(t, hb.msgs, "message at b"); in.InteractionID != moved {
		t.Fatalf("b got %s", in.InteractionID)
	}

	const noParts = "this member has no partitions: it consumes nothing until an operator adds it (cobrowse-connector cluster add)"
	before := len(e.logs.records(t, noParts)) // b may have logged it once, if it started before it was added
	if _, err := pcgroups.DeleteMembers(ctxFor(t), e.js, "CC_INBOUND", "cobrowse", []string{"b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hb.rel, "release by b")
	// a takes the partitions back once b let go of them.
	for len(a.owned.Load().list()) != 16 {
		waitFor(t, ha.acq, "acquire by a")
	}
	if b.Owns(moved) {
		t.Fatal("b still owns a partition after it was removed")
	}
	e.publishChat(t, "back-to-a", moved, "y")
	if in := waitFor(t, ha.msgs, "message at a"); idOf(in) != "back-to-a" {
		t.Fatalf("a got %s", idOf(in))
	}
	if !e.logs.WaitCount(`"msg":"`+noParts+`"`, before+1, wait, nil) {
		t.Errorf("b did not say it has no partitions once removed: %v", e.logs.records(t, noParts))
	}
}

// TestStandbyInstanceTakesOver: a second instance of a member name stands by (it acts for
// nothing); when the active one stops and hands over, the standby takes the member's interactions
// up before it handles their next message.
func TestStandbyInstanceTakesOver(t *testing.T) {
	e := newEnv(t)
	// A short pinned TTL (yet long against a busy machine's pauses): the second instance waits
	// that long for the first one's pin to lapse before it stands by.
	c1, h1 := e.memberWith(t, Config{Member: "main", PinnedTTL: 5 * time.Second})
	r1 := start(t, c1, h1)
	waitFor(t, h1.acq, "acquire by the first instance")
	e.publishChat(t, "m1", "I1", "x")
	waitFor(t, h1.msgs, "m1")

	c2, h2 := e.memberWith(t, Config{Member: "main", PinnedTTL: 5 * time.Second})
	start(t, c2, h2)
	if !e.logs.WaitFor("another instance of this member is active: standing by", wait, nil) {
		t.Fatal("the second instance did not stand by")
	}
	if c2.Owns("I1") || len(h2.events()) > 0 {
		t.Fatalf("the standby acts: owns I1 %v, events %v", c2.Owns("I1"), h2.events())
	}

	r1.stop(t)
	if err := c1.LetGo(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	e.publishChat(t, "m2", "I1", "after the hand-over")
	if in := waitFor(t, h2.msgs, "m2 at the standby"); idOf(in) != "m2" {
		t.Fatalf("standby got %s", idOf(in))
	}
	if evs := h2.events(); len(evs) != 2 || !strings.HasPrefix(evs[0], "acquire") || evs[1] != "msg m2" {
		t.Fatalf("standby's events %v: want acquire, then m2", evs)
	}
	if !c2.Owns("I1") {
		t.Fatal("the instance that took over does not own I1")
	}
}

// TestDrainsThePreviousDurable: the first start of this release finds the previous release's
// durable with a message it never handled: it handles that message once, then the group carries on
// from after the durable's ack floor (what the durable acked is not handled again), and the
// durable is gone.
func TestDrainsThePreviousDurable(t *testing.T) {
	e := newEnv(t)
	if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "CC_INBOUND", Description: streamDescription,
		Subjects: []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"}}); err != nil {
		t.Fatal(err)
	}
	// The previous release's durable, as it made it.
	old, err := e.js.CreateOrUpdateConsumer(ctxFor(t), "CC_INBOUND", jetstream.ConsumerConfig{
		Durable: DefaultDurable, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 6, BackOff: DefaultBackoff(), MaxAckPending: 20000,
		FilterSubjects: []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.publishChat(t, "handled-before", "I1", "the previous release handled this")
	msg, err := old.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.DoubleAck(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	e.publishChat(t, "pending", "I2", "published while the previous release stopped")

	c, h := e.member(t, "main")
	if _, err := e.js.Stream(ctxFor(t), "CC_INBOUND-cobrowse"); err == nil {
		t.Fatal("the group's stream was made before the durable was drained")
	}
	start(t, c, h)
	if in := waitFor(t, h.msgs, "the pending message"); idOf(in) != "pending" {
		t.Fatalf("first handled %s, want pending", idOf(in))
	}
	if !e.logs.WaitFor("drained the previous release's durable consumer: the consumer group takes over", wait, nil) {
		t.Fatal("the durable was not drained")
	}
	e.publishChat(t, "after", "I3", "published after the upgrade")
	if in := waitFor(t, h.msgs, "the message after the upgrade"); idOf(in) != "after" {
		t.Fatalf("then handled %s, want after (nothing twice)", idOf(in))
	}
	if _, err := e.js.Consumer(ctxFor(t), "CC_INBOUND", DefaultDurable); err == nil {
		t.Error("the drained durable is still there")
	}
	gs, err := e.js.Stream(ctxFor(t), "CC_INBOUND-cobrowse")
	if err != nil {
		t.Fatal(err)
	}
	if src := gs.CachedInfo().Config.Sources[0]; src.OptStartSeq != 3 {
		t.Errorf("the group sources from seq %d, want 3 (after the durable's ack floor)", src.OptStartSeq)
	}
	if evs := h.events(); !strings.HasPrefix(evs[0], "acquire") {
		t.Errorf("events %v: the drain takes up every live session first", evs)
	}
	select {
	case in := <-h.msgs:
		t.Errorf("handled %s more", idOf(in))
	default:
	}
}

// TestRefusesAGroupThatDoesNotFit: a group made with another partition count is refused at start
// with the reason.
func TestRefusesAGroupThatDoesNotFit(t *testing.T) {
	e := newEnv(t)
	e.consumer(t, Config{})
	_, err := NewConsumer(ctxFor(t), e.js, Config{Partitions: 8})
	if err == nil || !strings.Contains(err.Error(), "created with 16 partitions, cluster.partitions is 8") {
		t.Fatalf("NewConsumer with another partition count: %v", err)
	}
}

// FuzzMembership: any membership value (written by operators' tools) is read without a panic, and
// gives a member only partitions that exist.
func FuzzMembership(f *testing.F) {
	f.Add([]byte(`{"max_members":16,"partitioning_filters":[{"filter":"cc.chat.*.message","partitioning_wildcards":[1]}],"members":["a","b"]}`))
	f.Add([]byte(`{"max_members":4,"member_mappings":[{"member":"a","partitions":[0,1,9,-1]}]}`))
	f.Add([]byte(`{"max_members":3,"members":["a","a","b","c","d"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := decodeGroupConfig(b)
		if err != nil {
			return
		}
		p, _ := memberParts(cfg, "a")
		for _, i := range p.list() {
			if i < 0 || i >= int(cfg.MaxMembers) {
				t.Fatalf("partition %d of %d", i, cfg.MaxMembers)
			}
		}
	})
}

// TestRefusesAGroupStreamThatBreaksOwnership: a stream in the group stream's place that is not a
// work queue sourcing the inbound stream by partition is refused at start with the reason.
func TestRefusesAGroupStreamThatBreaksOwnership(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  jetstream.StreamConfig
		want string
	}{
		{"limits", jetstream.StreamConfig{Subjects: []string{"other.>"}}, "is not a work queue"},
		{"no source", jetstream.StreamConfig{Retention: jetstream.WorkQueuePolicy, Subjects: []string{"other.>"}}, "does not source the inbound stream CC_INBOUND alone"},
		{"unpartitioned", jetstream.StreamConfig{Retention: jetstream.WorkQueuePolicy, Sources: []*jetstream.StreamSource{{Name: "CC_INBOUND"}}}, "does not partition the inbound subjects as the group does"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if _, err := e.js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: "CC_INBOUND", Subjects: []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"}}); err != nil {
				t.Fatal(err)
			}
			tc.cfg.Name = "CC_INBOUND-cobrowse"
			if _, err := e.js.CreateStream(ctxFor(t), tc.cfg); err != nil {
				t.Fatal(err)
			}
			_, err := NewConsumer(ctxFor(t), e.js, Config{})
			if err == nil || !strings.Contains(err.Error(), "stream CC_INBOUND-cobrowse "+tc.want+": it cannot carry the consumer group cobrowse") {
				t.Fatalf("NewConsumer: %v", err)
			}
		})
	}
}
