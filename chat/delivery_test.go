package chat

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg records the acks sent for it; fail makes the next one fail.
type fakeMsg struct {
	jetstream.Msg
	sent []string
	fail error
}

func (m *fakeMsg) record(kind string) error {
	if err := m.fail; err != nil {
		m.fail = nil
		return err
	}
	m.sent = append(m.sent, kind)
	return nil
}

func (m *fakeMsg) DoubleAck(context.Context) error { return m.record("ack") }
func (m *fakeMsg) Nak() error                      { return m.record("nak") }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	return m.record("nak " + d.String())
}
func (m *fakeMsg) InProgress() error             { return m.record("wip") }
func (m *fakeMsg) Term() error                   { return m.record("term") }
func (m *fakeMsg) TermWithReason(r string) error { return m.record("term " + r) }

func (l *leases) holds(d *delivery) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.held, d)
}

func TestDeliverySettlesOnce(t *testing.T) {
	keeper := newLeases(time.Minute, slog.New(slog.DiscardHandler), nil)
	m := &fakeMsg{}
	d := &delivery{msg: m, deadline: time.Second, ackWait: time.Second, keeper: keeper}

	m.fail = errors.New("timeout")
	if err := d.Ack(t.Context()); err == nil {
		t.Fatal("ack: want the send error")
	}
	if !keeper.holds(d) {
		t.Error("a failed ack did not hand the delivery back to the keeper")
	}
	d.keep() // handed over again while held: still held once
	keeper.mu.Lock()
	n := len(keeper.held)
	keeper.mu.Unlock()
	if n != 1 {
		t.Errorf("the keeper holds %d entries of one delivery", n)
	}
	if err := d.Ack(t.Context()); err != nil {
		t.Fatalf("retried ack: %v", err)
	}
	for _, settle := range []func() error{
		func() error { return d.Ack(t.Context()) },
		func() error { return d.Nak(0) },
		func() error { return d.Term("x") },
		d.InProgress,
	} {
		if err := settle(); !errors.Is(err, ErrSettled) {
			t.Errorf("after ack: %v, want ErrSettled", err)
		}
	}
	if got := m.sent; len(got) != 1 || got[0] != "ack" {
		t.Errorf("sent %v", got)
	}

	m2 := &fakeMsg{}
	d2 := &delivery{msg: m2, deadline: 5 * time.Second, ackWait: time.Second}
	d2.Nak(3 * time.Second) // second rung: the server would add 4s
	d3 := &delivery{msg: m2, deadline: 5 * time.Second, ackWait: time.Second}
	d3.Nak(0)
	d4 := &delivery{msg: m2}
	d4.Term("")
	d5 := &delivery{msg: m2}
	d5.Term("bad")
	if want := []string{"nak 1ns", "nak", "term", "term bad"}; !slices.Equal(m2.sent, want) {
		t.Errorf("sent %v, want %v", m2.sent, want)
	}
}

func TestKeeper(t *testing.T) {
	const budget = 10 * time.Second
	var sent []uint64
	keeper := newLeases(budget, slog.New(slog.DiscardHandler), func(seq uint64) { sent = append(sent, seq) })
	t0 := time.Now()
	m := &fakeMsg{}
	d := &delivery{msg: m, seq: 7, deadline: 4 * time.Second, touched: t0, keeper: keeper}
	d.keep()

	keeper.tick(t0.Add(500 * time.Millisecond)) // not due: a quarter of the deadline is 1s
	if len(sent) != 0 {
		t.Fatalf("kept alive too soon: %v", sent)
	}
	// Waiting for the handler, it is kept alive for as long as it waits.
	for i := 1; i <= 30; i++ {
		keeper.tick(t0.Add(time.Duration(i) * time.Second))
	}
	if len(sent) != 30 || !keeper.holds(d) {
		t.Fatalf("keep-alives while queued: %d, held %v", len(sent), keeper.holds(d))
	}

	// Handed over, it is kept alive for the budget, then let go.
	d.handedOver = t0.Add(30 * time.Second)
	keeper.tick(t0.Add(39 * time.Second))
	if len(sent) != 31 || !keeper.holds(d) {
		t.Fatalf("within the budget: %d keep-alives, held %v", len(sent), keeper.holds(d))
	}
	keeper.tick(t0.Add(40 * time.Second))
	if len(sent) != 31 || keeper.holds(d) || !d.lapsed {
		t.Fatalf("after the budget: %d keep-alives, held %v, lapsed %v", len(sent), keeper.holds(d), d.lapsed)
	}

	// The handler's InProgress takes it back, with a fresh budget.
	if err := d.InProgress(); err != nil {
		t.Fatal(err)
	}
	if !keeper.holds(d) || d.lapsed {
		t.Fatal("InProgress did not take the lapsed delivery back")
	}
	now := time.Now()
	keeper.tick(now.Add(budget / 2))
	if len(sent) != 32 {
		t.Fatalf("after InProgress: %d keep-alives", len(sent))
	}

	// Settled, it is dropped.
	if err := d.Term("x"); err != nil {
		t.Fatal(err)
	}
	keeper.tick(now.Add(budget / 2))
	if keeper.holds(d) || len(sent) != 32 {
		t.Fatalf("settled: held %v, %d keep-alives", keeper.holds(d), len(sent))
	}
}

// TestInProgressLeavesTheTimerToTheKeeper: a handler's InProgress gives a fresh budget; it tells
// the server only when the redelivery timer is due for a reset (a quarter of the deadline since
// it was last reset), or when the delivery has no keeper to reset it.
func TestInProgressLeavesTheTimerToTheKeeper(t *testing.T) {
	keeper := newLeases(10*time.Second, slog.New(slog.DiscardHandler), nil)
	m := &fakeMsg{}
	handed := time.Now().Add(-5 * time.Second)
	d := &delivery{msg: m, deadline: 4 * time.Second, touched: time.Now(), handedOver: handed, keeper: keeper}
	d.keep()
	if err := d.InProgress(); err != nil {
		t.Fatal(err)
	}
	if len(m.sent) != 0 {
		t.Fatalf("sent %v right after the timer was reset", m.sent)
	}
	if !d.handedOver.After(handed) {
		t.Fatal("InProgress did not renew the budget")
	}
	d.touched = time.Now().Add(-time.Second) // a quarter of the deadline ago: due
	if err := d.InProgress(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.sent, []string{"wip"}) || time.Since(d.touched) > time.Second {
		t.Fatalf("sent %v, touched %v ago: want the timer reset", m.sent, time.Since(d.touched))
	}

	alone := &fakeMsg{}
	d2 := &delivery{msg: alone, deadline: 4 * time.Second, touched: time.Now()}
	if err := d2.InProgress(); err != nil || !slices.Equal(alone.sent, []string{"wip"}) {
		t.Fatalf("without a keeper: sent %v (%v), want the timer reset", alone.sent, err)
	}
}

// lineMsg is a fakeMsg that carries a chat line.
type lineMsg struct {
	fakeMsg
	data []byte
}

func (m *lineMsg) Data() []byte { return m.data }

// TestDirectHandOverOnlyWithNothingAhead: the pull loop hands a message over itself only when the
// serve loop would do nothing else first: nothing queued, nothing being handled, no pin that the
// control step has not taken, the pull loop not stopped. Otherwise the message is queued, behind
// what is ahead of it.
func TestDirectHandOverOnlyWithNothingAhead(t *testing.T) {
	var got []string
	h := HandlerFunc(func(_ context.Context, in Inbound) { got = append(got, in.Chat.ID) })
	c := &Consumer{cfg: Config{Prefix: "cc", MaxPayload: 1 << 20}, triggers: map[Role]bool{RoleCustomer: true}}
	m := &member{c: c, h: h, q: newQueue()}
	m.pin.set("pin-1")
	msg := func(id, pin string) *delivery {
		return &delivery{msg: &lineMsg{data: chatJSON(id, "I1", RoleCustomer, "hello")}, subject: "cc.chat.I1.message", pin: pin}
	}
	ctx := t.Context()
	pctx, stop := context.WithCancel(ctx)

	steps := []struct {
		name   string
		d      *delivery
		before func()
		direct bool
	}{
		{"idle, the pin control took", msg("m1", "pin-1"), nil, true},
		{"idle, no pin (the previous release's durable)", msg("m2", ""), nil, true},
		{"a pin control has not taken", msg("m3", "pin-2"), nil, false},
		{"something queued", msg("m4", "pin-1"), nil, false},
		{"the serve loop handles an item", msg("m5", "pin-1"), func() { m.q.drain(); m.q.push(msg("x", "pin-1")); m.q.tryPop() }, false},
		{"served, nothing ahead", msg("m6", "pin-1"), func() { m.q.drain(); m.q.served() }, true},
		{"the pull loop stopped", msg("m7", "pin-1"), stop, false},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		if ok := m.direct(ctx, pctx, s.d); ok != s.direct {
			t.Errorf("%s: handed over directly %v, want %v", s.name, ok, s.direct)
		} else if !ok {
			m.q.push(s.d)
		}
	}
	if want := []string{"m1", "m2", "m6"}; !slices.Equal(got, want) {
		t.Errorf("handed over %v, want %v", got, want)
	}
}
