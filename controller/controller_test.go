package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// harness runs a Controller over the in-memory fakes. Every test runs inside a synctest bubble:
// time is fake, and synctest.Wait returns once every goroutine of the bubble is blocked, so a test
// observes the actor's settled state without sleeping.
type harness struct {
	t      *testing.T
	c      *Controller
	conn   *fakeConn
	store  *memStore
	pub    *recorder
	cancel context.CancelFunc
	done   chan struct{}
	seq    int
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	cfg := Config{
		Timers:     Timers{NoAgentJoin: 3 * time.Minute, Inactivity: 30 * time.Minute},
		StopWait:   5 * time.Second,
		RetryDelay: 10 * time.Second,
		IdleReap:   time.Minute,
		Sweep:      "@every 30s",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h := &harness{t: t, conn: newFakeConn(), store: newMemStore(), pub: newRecorder(), done: make(chan struct{})}
	c, err := New(cfg, []connector.Connector{h.conn}, h.store, h.pub)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.start()
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	go func() { _ = h.c.Run(ctx); close(h.done) }()
	h.t.Cleanup(h.stop)
}

// stop shuts the controller down as the daemon does: the sweep first, then the actors.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.c.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	if n, open := laneState(h); n != 0 || !open {
		h.t.Errorf("after the shutdown %d actors still owe a stop, the lane open and without a hold timer: %v", n, open)
	}
	h.cancel = nil
}

func (h *harness) send(in chat.Inbound) *delivery {
	d := newDelivery()
	in.Delivery = d
	h.c.Handle(context.Background(), in)
	synctest.Wait()
	return d
}

// restartInRejoin joins a session on iid, then restarts the controller with every re-join held
// until the returned channel is closed.
func (h *harness) restartInRejoin(iid, token string) chan struct{} {
	h.t.Helper()
	mustFate(h.t, h.start_(iid, token), "ack")
	gate := h.gateRejoins()
	h.restart()
	return gate
}

// gateRejoins holds every re-join from now until the returned channel is closed.
func (h *harness) gateRejoins() chan struct{} {
	gate := make(chan struct{})
	h.conn.mu.Lock()
	h.conn.rejoinGate = gate
	h.conn.mu.Unlock()
	return gate
}

func (h *harness) nextID() string { h.seq++; return "m" + strconv.Itoa(h.seq) }

func (h *harness) start_(iid, token string) *delivery {
	return h.send(chat.Inbound{InteractionID: iid, StartToken: token, Chat: &chat.Message{ID: h.nextID(), InteractionID: iid, From: chat.Sender{Role: chat.RoleCustomer}, Text: "{start:" + token + "}"}})
}

func (h *harness) chatLine(iid, text string) *delivery {
	return h.send(chat.Inbound{InteractionID: iid, Chat: &chat.Message{ID: h.nextID(), InteractionID: iid, From: chat.Sender{Role: chat.RoleCustomer}, Text: text}})
}

func (h *harness) event(iid string, typ chat.EventType, agent string) *delivery {
	ev := &chat.Event{ID: h.nextID(), InteractionID: iid, Type: typ, AgentID: agent}
	if typ == chat.EventTransferred {
		ev.AgentID, ev.ToAgentID = "", agent
	}
	return h.send(chat.Inbound{InteractionID: iid, Event: ev})
}

func fate(d *delivery) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fate
}

func mustFate(t *testing.T, d *delivery, want string) {
	t.Helper()
	if got := fate(d); got != want {
		t.Fatalf("delivery settled as %q, want %q", got, want)
	}
}

// kinds summarizes the published messages: "joined", "attach#1", "view:a1", ...
func kinds(msgs []any) []string {
	var out []string
	for _, m := range msgs {
		switch m := m.(type) {
		case attach.Update:
			out = append(out, "attach#"+strconv.FormatUint(m.Seq, 10))
		case attach.Lifecycle:
			s := string(m.Event)
			if m.Reason != "" {
				s += ":" + m.Reason
			}
			out = append(out, s)
		case attach.AgentView:
			out = append(out, "view:"+m.AgentID)
		case attach.Handoff:
			out = append(out, string(m.Kind)+":"+strings.TrimPrefix(m.Recipient(), "agent:"))
		}
	}
	return out
}

func updates(msgs []any) []attach.Update {
	var out []attach.Update
	for _, m := range msgs {
		if u, ok := m.(attach.Update); ok {
			out = append(out, u)
		}
	}
	return out
}

func wantKinds(t *testing.T, h *harness, want ...string) {
	t.Helper()
	if got := kinds(h.pub.all()); !slices.Equal(got, want) {
		t.Fatalf("published %v\nwant      %v", got, want)
	}
}

func TestSessionLifeFromStartToTransfer(t *testing.T) {
	for _, channel := range []bool{false, true} {
		name := "feed"
		if channel {
			name = "channel" // a session without Feed: its Events channel is read for the actor
		}
		t.Run(name, func(t *testing.T) { sessionLifeFromStartToTransfer(t, channel) })
	}
}

func sessionLifeFromStartToTransfer(t *testing.T, channel bool) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.channelEvents = channel
		mustFate(t, h.event("i1", chat.EventAssigned, "a1"), "ack")
		d := h.start_("i1", "123456789")
		mustFate(t, d, "ack")
		wantKinds(t, h, "joined", "attach#1", "view:a1")
		u := updates(h.pub.all())[0]
		if u.Data.Associated != "Yes" || u.Data.SessionsQuantity != 1 || u.Data.SessionID != "hist-1" || u.SessionID != "hist-1" {
			t.Fatalf("join attach: %+v", u)
		}
		if !slices.Equal(u.Changed, []string{attach.KeyAssociated, attach.KeySessionsQuantity, attach.KeySessionID}) {
			t.Fatalf("join changed: %v", u.Changed)
		}
		if st := h.store.get("i1"); st.Live == nil || string(st.Live.Handle.Data) != `{"userToken":"user-1"}` || st.Seq != 1 {
			t.Fatalf("saved state: %+v", st)
		}

		activation := time.Now()
		h.conn.session(0).activate(activation)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "view:a1", "activated", "attach#2")
		u = updates(h.pub.all())[1]
		if u.Data.StartTime != strconv.FormatInt(activation.UnixMilli(), 10) || !slices.Equal(u.Changed, []string{attach.KeyStartTime}) {
			t.Fatalf("activated attach: %+v", u)
		}

		time.Sleep(90 * time.Second)
		d = h.event("i1", chat.EventTransferred, "a2")
		mustFate(t, d, "ack")
		if h.conn.session(0).stops() != 1 {
			t.Fatal("the session was not stopped")
		}
		wantKinds(t, h, "joined", "attach#1", "view:a1", "activated", "attach#2", "deactivated:interaction_transferred", "attach#3")
		u = updates(h.pub.all())[2]
		if u.Data.Associated != "No" || u.Data.Duration == nil || *u.Data.Duration != 90 || u.Data.EndReason != "interaction_transferred" {
			t.Fatalf("end attach: %+v", u.Data)
		}
		if !slices.Equal(u.Changed, []string{attach.KeyAssociated, attach.KeyDuration, attach.KeyEndReason}) {
			t.Fatalf("end changed: %v", u.Changed)
		}
		if st := h.store.get("i1"); st.Live != nil || st.AgentID != "a2" || st.Seq != 3 {
			t.Fatalf("saved state after transfer: %+v", st)
		}
	})
}

func TestCloseWaitsForDeactivatedWithinBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.mu.Lock()
		h.conn.silentStop = true
		h.conn.mu.Unlock()
		before := time.Now()
		d := newDelivery()
		h.c.Handle(context.Background(), chat.Inbound{InteractionID: "i1", Delivery: d, Event: &chat.Event{ID: "close", InteractionID: "i1", Type: chat.EventClosed}})
		synctest.Wait()
		if f := fate(d); f != "" {
			t.Fatalf("closed event settled (%s) before the deactivated wait ended", f)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		mustFate(t, d, "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:interaction_closed", "attach#2")
		life := h.pub.all()[2].(attach.Lifecycle)
		if got := time.UnixMilli(life.DeactivationTime); got.Sub(before) != 5*time.Second {
			t.Fatalf("deactivation time %v, want the end of the stop wait", got.Sub(before))
		}
		if !h.store.get("i1").Closed {
			t.Fatal("interaction not marked closed")
		}
	})
}

func TestEachCloseEventStopsWithItsReason(t *testing.T) {
	for _, tc := range []struct {
		typ  chat.EventType
		want string
	}{
		{chat.EventTransferred, "interaction_transferred"},
		{chat.EventClosed, "interaction_closed"},
		{chat.EventTimeout, "interaction_timeout"},
	} {
		t.Run(string(tc.typ), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				mustFate(t, h.start_("i1", "123456789"), "ack")
				mustFate(t, h.event("i1", tc.typ, "a9"), "ack")
				wantKinds(t, h, "joined", "attach#1", "deactivated:"+tc.want, "attach#2")
			})
		})
	}
}

func TestNoAgentJoinTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		time.Sleep(3*time.Minute - time.Second)
		synctest.Wait()
		if h.conn.session(0).stops() != 0 {
			t.Fatal("stopped before the no-agent deadline")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "deactivated:no_agent_join", "attach#2")
	})
}

func TestActivatedSessionHasNoAgentDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.session(0).activate(time.Now())
		synctest.Wait()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if h.conn.session(0).stops() != 0 {
			t.Fatal("an active session was stopped by the no-agent timer")
		}
	})
}

func TestInactivityTimerIsResetByActivity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Timers = Timers{Inactivity: 10 * time.Minute} })
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.session(0).activate(time.Now())
		synctest.Wait()
		time.Sleep(6 * time.Minute)
		mustFate(t, h.chatLine("i1", "still there?"), "ack")
		time.Sleep(6 * time.Minute)
		synctest.Wait()
		if h.conn.session(0).stops() != 0 {
			t.Fatal("timed out although there was activity 6 minutes ago")
		}
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2", "deactivated:interaction_timeout", "attach#3")
	})
}

func TestRepeatedTokenIsANoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "joined", "attach#1")
		if len(h.conn.sessions) != 1 {
			t.Fatalf("joined %d times", len(h.conn.sessions))
		}
	})
}

func TestNewTokenReplacesTheLiveSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		first := time.Now()
		h.conn.session(0).activate(first)
		synctest.Wait()
		time.Sleep(time.Minute)
		mustFate(t, h.start_("i1", "222222222"), "ack")
		h.conn.session(1).activate(time.Now())
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2", "deactivated:replaced", "attach#3", "joined", "attach#4", "activated", "attach#5")
		ups := updates(h.pub.all())
		last := ups[len(ups)-1]
		if last.Data.SessionsQuantity != 2 || last.Data.SessionID != "hist-2" || last.Data.StartTime != strconv.FormatInt(first.UnixMilli(), 10) {
			t.Fatalf("after the second session: %+v", last.Data)
		}
		if len(last.Changed) != 0 {
			t.Fatalf("a second activation changed %v; CoBrowseStartTime must stay the first session's", last.Changed)
		}
		if *last.Data.Duration != 60 || last.Data.EndReason != "replaced" || last.Data.Associated != "Yes" {
			t.Fatalf("totals after replace: %+v", last.Data)
		}
	})
}

func TestParticipantExitAndServerLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		act := time.Now()
		h.conn.session(0).activate(act)
		synctest.Wait()
		h.conn.session(0).deactivate(act, act.Add(42*time.Second))
		synctest.Wait()
		mustFate(t, h.start_("i1", "222222222"), "ack")
		h.conn.session(1).emit(connector.Event{Kind: connector.EventLost, Err: connector.ErrLost})
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2", "deactivated:participant_exit", "attach#3",
			"joined", "attach#4", "deactivated:server_lost", "attach#5")
		last := updates(h.pub.all())[4]
		if *last.Data.Duration != 42 || last.Data.EndReason != "server_lost" {
			t.Fatalf("totals: %+v", last.Data)
		}
	})
}

func TestRejoinedHandleIsSaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		nh := h.conn.session(0).handle
		nh.Data = json.RawMessage(`{"userToken":"user-after-rehandshake"}`)
		h.conn.session(0).emit(connector.Event{Kind: connector.EventRejoined, Handle: nh})
		synctest.Wait()
		if got := string(h.store.get("i1").Live.Handle.Data); got != `{"userToken":"user-after-rehandshake"}` {
			t.Fatalf("saved user token %q", got)
		}
	})
}

func TestJoinUnavailableIsRetriedLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrUnavailable}
		d := h.start_("i1", "123456789")
		mustFate(t, d, "nak")
		if d.nakDelay != 10*time.Second {
			t.Fatalf("nak delay %v", d.nakDelay)
		}
		wantKinds(t, h)
		// The redelivery, now that the server is back, joins.
		delete(h.conn.joinErr, "123456789")
		d2 := newDelivery()
		d2.attempt = 2
		in := chat.Inbound{InteractionID: "i1", StartToken: "123456789", Delivery: d2, Chat: &chat.Message{ID: "m1", InteractionID: "i1", Text: "{start:123456789}"}}
		h.c.Handle(context.Background(), in)
		synctest.Wait()
		mustFate(t, d2, "ack")
		wantKinds(t, h, "joined", "attach#1")
	})
}

func TestJoinUnavailableOnLastDeliveryFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrUnavailable, Reason: "503"}
		d := newDelivery()
		d.attempt, d.last = 6, true
		h.c.Handle(context.Background(), chat.Inbound{InteractionID: "i1", StartToken: "123456789", Delivery: d, Chat: &chat.Message{ID: "m1", InteractionID: "i1"}})
		synctest.Wait()
		mustFate(t, d, "ack")
		wantKinds(t, h, "failed:join_failed")
	})
}

func TestJoinRefusedReportsTheServersReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrRefused, Reason: "403::agent busy"}
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "failed:join_failed")
		life := h.pub.all()[0].(attach.Lifecycle)
		if life.Detail != "403::agent busy" || life.SessionToken != "123456789" || life.MsgID == "" {
			t.Fatalf("failed event: %+v", life)
		}
		if st := h.store.get("i1"); st.Sessions != 0 || st.Live != nil {
			t.Fatalf("a failed join counted as a session: %+v", st)
		}
	})
}

func TestDuplicateDeliveryChangesNothingTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		in := func() (chat.Inbound, *delivery) {
			d := newDelivery()
			return chat.Inbound{InteractionID: "i1", StartToken: "123456789", Delivery: d, Chat: &chat.Message{ID: "same", InteractionID: "i1"}}, d
		}
		a, da := in()
		h.c.Handle(context.Background(), a)
		synctest.Wait()
		mustFate(t, da, "ack")
		h.conn.session(0).deactivate(time.Time{}, time.Now())
		synctest.Wait()
		b, db := in()
		h.c.Handle(context.Background(), b)
		synctest.Wait()
		mustFate(t, db, "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:participant_exit", "attach#2")
	})
}

func TestPublishFailureIsRetriedWithoutDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.pub.mu.Lock()
		h.pub.fail = 2 // the joined event fails, then its retry fails too
		h.pub.mu.Unlock()
		in := func(attempt int) (chat.Inbound, *delivery) {
			d := newDelivery()
			d.attempt = attempt
			return chat.Inbound{InteractionID: "i1", StartToken: "123456789", Delivery: d, Chat: &chat.Message{ID: "m1", InteractionID: "i1"}}, d
		}
		a, da := in(1)
		h.c.Handle(context.Background(), a)
		synctest.Wait()
		mustFate(t, da, "nak")
		wantKinds(t, h)
		// The actor's own retry timer publishes what is queued, in order.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1")
		b, db := in(2)
		h.c.Handle(context.Background(), b)
		synctest.Wait()
		mustFate(t, db, "ack")
		wantKinds(t, h, "joined", "attach#1")
		if len(h.conn.sessions) != 1 {
			t.Fatalf("joined %d times", len(h.conn.sessions))
		}
	})
}

// TestSaveFailureNaksAndKeepsEffects: the save after a join fails; the message is nak'd and the
// actor saves what the join did on its own retry.
func TestSaveFailureNaksAndKeepsEffects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.store.mu.Lock()
		h.store.skipSaves, h.store.failSaves = 1, 1 // the join's marker is saved; the outcome is not
		h.store.mu.Unlock()
		mustFate(t, h.start_("i1", "123456789"), "nak")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if st := h.store.get("i1"); st.Live == nil {
			t.Fatal("state not saved by the retry")
		}
	})
}

func TestInteractionsAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		mustFate(t, h.start_("i2", "222222222"), "ack")
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		if h.conn.session(1).stops() != 0 {
			t.Fatal("closing i1 stopped i2's session")
		}
		if st := h.store.get("i2"); st.Live == nil || st.Seq != 1 {
			t.Fatalf("i2 state: %+v", st)
		}
	})
}

func TestRecoverRejoinsOrEndsAsServerLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		mustFate(t, h.start_("i2", "222222222"), "ack")
		h.stop()
		if h.conn.session(0).stops() != 0 || !h.conn.session(0).closed {
			t.Fatal("shutdown must leave the session live and close its connection")
		}

		// A new controller over the same store and server, as after a restart.
		c2, err := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
		if err != nil {
			t.Fatal(err)
		}
		h.c = c2
		h.conn.mu.Lock()
		h.conn.rejoinErr = nil
		h.conn.mu.Unlock()
		if err := c2.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		synctest.Wait()
		if len(h.conn.sessions) != 4 {
			t.Fatalf("re-joined %d sessions, want 2", len(h.conn.sessions)-2)
		}
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		if st := h.store.get("i1"); st.Seq != 2 || st.Sessions != 1 || st.EndReason != "interaction_closed" {
			t.Fatalf("i1 after restart and close: %+v", st)
		}

		// Another restart where the server refuses the re-join: stopped through the handle.
		h.stop()
		c3, _ := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
		h.c = c3
		h.conn.mu.Lock()
		h.conn.rejoinErr = &connector.ServerError{Op: "join", Kind: connector.ErrRefused}
		h.conn.mu.Unlock()
		if err := c3.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		synctest.Wait()
		st := h.store.get("i2")
		if st.Live != nil || st.EndReason != "server_lost" || st.Associated != "No" {
			t.Fatalf("i2 after a refused re-join: %+v", st)
		}
		if len(h.conn.stopHandle) != 1 || h.conn.stopHandle[0].Token != "222222222" {
			t.Fatalf("stop through the handle: %+v", h.conn.stopHandle)
		}
	})
}

func TestStopOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.StopOnShutdown = true })
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.stop()
		wantKinds(t, h, "joined", "attach#1", "deactivated:shutdown", "attach#2")
	})
}

// TestRegistryIsBoundedAndReaped: the registry refuses an interaction while it is full of busy
// actors (a live session each); an idle actor is reaped after IdleReap.
func TestRegistryIsBoundedAndReaped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxInteractions = 1 })
		mustFate(t, h.start_("i1", "111111111"), "ack")
		mustFate(t, h.event("i2", chat.EventCreated, ""), "nak")
		if h.c.Len() != 1 {
			t.Fatalf("%d actors", h.c.Len())
		}

		h2 := newHarness(t, nil)
		mustFate(t, h2.event("i1", chat.EventCreated, ""), "ack")
		if h2.c.Len() != 1 {
			t.Fatalf("%d actors", h2.c.Len())
		}
		time.Sleep(90 * time.Second) // past IdleReap, and a sweep
		synctest.Wait()
		if h2.c.Len() != 0 {
			t.Fatalf("idle actor not reaped: %d actors", h2.c.Len())
		}
	})
}

// TestWaitingSessionCostsNoGoroutine: an actor whose session is only waiting has no goroutine
// working for it (a session that feeds its events needs none either); an event wakes it.
func TestWaitingSessionCostsNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		for i := range 10 {
			mustFate(t, h.start_("i"+strconv.Itoa(i), strconv.Itoa(100000000+i)), "ack")
		}
		synctest.Wait()
		if n := controllerGoroutines(); n > 0 {
			t.Fatalf("%d goroutines of the controller's for 10 waiting sessions", n)
		}
		h.conn.session(3).activate(time.Now())
		synctest.Wait()
		if got := len(h.pub.all()); got != 10*2+2 {
			t.Fatalf("%d messages published, want the 20 of the joins and the 2 of one activation", got)
		}
		if n := controllerGoroutines(); n > 0 {
			t.Fatalf("%d goroutines of the controller's after the activation", n)
		}
	})
}

// controllerGoroutines counts the goroutines that run the controller's code, Run's own excepted.
func controllerGoroutines() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "/controller.(*") && !strings.Contains(g, "controller.(*Controller).Run(") &&
			!strings.Contains(g, "controller.Test") {
			n++
		}
	}
	return n
}

// TestStartMessagePrefetches: a start message on an interaction whose state is not read yet lets
// the connector begin the join's first step meanwhile; a later one, the state in hand, does not.
func TestStartMessagePrefetches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.start_("i1", "987654321"), "ack")
		h.conn.mu.Lock()
		got := slices.Clone(h.conn.prefetched)
		h.conn.mu.Unlock()
		if !slices.Equal(got, []string{"123456789"}) {
			t.Fatalf("prefetched %v", got)
		}
	})
}

// TestQuietChatLinesNeedNoState: a chat line that starts nothing, for an interaction without an
// actor, is acked at once: no actor, no read of the state. One for an interaction with a live
// session still reaches its actor, which notes the activity (the inactivity deadline moves).
func TestQuietChatLinesNeedNoState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Timers.Inactivity = time.Minute })
		for i := range 20 {
			mustFate(t, h.chatLine("q"+strconv.Itoa(i), "hello"), "ack")
		}
		if n := h.c.Len(); n != 0 {
			t.Fatalf("%d actors for quiet chat lines", n)
		}
		if n := h.store.loads(); n != 0 {
			t.Fatalf("state read %d times for quiet chat lines", n)
		}
		wantKinds(t, h)

		mustFate(t, h.start_("i1", "111111111"), "ack")
		time.Sleep(50 * time.Second)
		mustFate(t, h.chatLine("i1", "still here"), "ack")
		time.Sleep(50 * time.Second) // 100 s after the start, 50 s after the chat line
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1")
		time.Sleep(15 * time.Second)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "deactivated:interaction_timeout", "attach#2")
	})
}

// TestBurstOfInteractionsIsNotRefused: more interactions at once than the registry's bound, each
// with an event that starts nothing: the idle actors leave while the registry is crowded, so
// every message is taken and acked, none is refused or reported as failed.
func TestBurstOfInteractionsIsNotRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxInteractions = 8 })
		var ds []*delivery
		for i := range 40 {
			ds = append(ds, h.event("i"+strconv.Itoa(i), chat.EventCreated, ""))
		}
		for _, d := range ds {
			mustFate(t, d, "ack")
		}
		wantKinds(t, h)
		if n := h.c.Len(); n > 8 {
			t.Fatalf("%d actors over the bound", n)
		}
	})
}

func TestClosedInteractionIgnoresLaterStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h)
	})
}

// A daemon that stops after publishing part of a step and before saving must not reuse the
// step's seq for another message when it comes back: the stream would drop that message as a
// duplicate. The state is saved with the step's messages first, and a restart publishes them.
func TestOutboxSurvivesAStopMidPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.pub.mu.Lock()
		h.pub.failOn = func(m any) bool { u, ok := m.(attach.Update); return ok && u.Seq == 2 }
		h.pub.mu.Unlock()
		h.conn.session(0).activate(time.Now())
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated")
		h.stop() // attach#2 still fails: it stays in the saved outbox
		if st := h.store.get("i1"); len(st.Outbox) != 2 || st.Seq != 2 {
			t.Fatalf("saved state: seq %d, outbox %d", st.Seq, len(st.Outbox))
		}

		h.pub.mu.Lock()
		h.pub.failOn = nil
		h.pub.mu.Unlock()
		h.conn.mu.Lock()
		h.conn.rejoinErr = &connector.ServerError{Op: "join", Kind: connector.ErrRefused}
		h.conn.mu.Unlock()
		c2, err := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
		if err != nil {
			t.Fatal(err)
		}
		h.c = c2
		if err := c2.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2", "deactivated:server_lost", "attach#3")
		if st := h.store.get("i1"); len(st.Outbox) != 0 || st.Seq != 3 || st.Live != nil {
			t.Fatalf("state after recovery: %+v", st)
		}
	})
}

func TestRefusedOutboundMessageDoesNotBlockTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.c.pub = refusingViews{h.pub}
		mustFate(t, h.event("i1", chat.EventAssigned, "a1"), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:interaction_closed", "attach#2")
		if st := h.store.get("i1"); len(st.Outbox) != 0 {
			t.Fatalf("outbox left: %+v", st.Outbox)
		}
	})
}

// refusingViews refuses agent views the way the attach package refuses a message that breaks the
// contract.
type refusingViews struct{ *recorder }

func (r refusingViews) Handoff(ctx context.Context, h attach.Handoff) error {
	return fmt.Errorf("agent view: %w", attach.ErrInvalid)
}

// TestLostCompareAndSetLetsGo: an actor whose save loses its compare-and-set (another replica
// wrote the interaction's state) writes nothing over it: it leaves its session's connection without
// stopping the session and lets go; a fresh actor (the replica still owns the interaction) reads
// the stored state, re-joins the session and goes on from there.
func TestLostCompareAndSetLetsGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		// Another replica takes the interaction over and writes its state.
		h.store.write("i1", func(st *State) { st.AgentID = "agent-of-the-owner" })
		h.conn.mu.Lock()
		h.conn.rejoinUsers = []connector.Participant{{ID: "2", Role: connector.RoleAgent}}
		h.conn.mu.Unlock()
		h.conn.session(0).activate(time.Now())
		synctest.Wait()
		old := h.conn.session(0)
		if !old.isClosed() || old.stops() != 0 {
			t.Fatalf("the actor that lost did not leave its session without stopping it: closed %v, stops %d", old.isClosed(), old.stops())
		}
		if st := h.store.get("i1"); st.AgentID != "agent-of-the-owner" || st.Seq != 2 {
			t.Fatalf("state after letting go: %+v", st)
		}
		// The fresh actor read the stored state and re-joined; the agent its re-join found counts.
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2")
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		st := h.store.get("i1")
		if st.Seq != 3 || st.Live != nil || st.EndReason != "interaction_closed" || st.AgentID != "agent-of-the-owner" {
			t.Fatalf("state after the close: %+v", st)
		}
	})
}

// TestLostCompareAndSetHandsTheMessageBack: the inbound message whose step lost the
// compare-and-set is nak'd for immediate redelivery (never terminated), and the replica that does
// not own the interaction any more starts no fresh actor for it.
func TestLostCompareAndSetHandsTheMessageBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		owns := true
		h := newHarness(t, func(c *Config) { c.Owns = func(string) bool { return owns } })
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.store.write("i1", func(st *State) { st.AgentID = "agent-of-the-owner" })
		owns = false
		d := h.event("i1", chat.EventAssigned, "a2")
		mustFate(t, d, "nak")
		if d.nakDelay != 0 {
			t.Fatalf("nak delay %v, want an immediate redelivery", d.nakDelay)
		}
		if h.c.Len() != 0 {
			t.Fatalf("%d actors: the replica kept acting for an interaction it does not own", h.c.Len())
		}
		if st := h.store.get("i1"); st.AgentID != "agent-of-the-owner" {
			t.Fatalf("the owner's state was overwritten: %+v", st)
		}
	})
}

// TestStopThatFailsEveryRouteIsRetriedWithinSeconds: a stop that no route could send (an open
// breaker, a node away) is retried by the actor's own timer after StopRetry, not at the next sweep.
func TestStopThatFailsEveryRouteIsRetriedWithinSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.mu.Lock()
		h.conn.stopErr = &connector.ServerError{Op: "stop", Kind: connector.ErrUnavailable}
		h.conn.mu.Unlock()
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:interaction_closed", "attach#2")
		if st := h.store.get("i1"); len(st.PendingStops) != 1 {
			t.Fatalf("pending stops: %+v", st.PendingStops)
		}
		time.Sleep(2 * time.Second) // the first retry (StopRetry) fails too
		synctest.Wait()
		h.conn.mu.Lock()
		h.conn.stopErr = nil
		h.conn.mu.Unlock()
		time.Sleep(4 * time.Second) // the second, after the doubled delay, goes through
		synctest.Wait()
		if st := h.store.get("i1"); len(st.PendingStops) != 0 {
			t.Fatalf("pending stop not cleared 6s after the close: %+v", st.PendingStops)
		}
		if len(h.conn.stopHandle) != 1 {
			t.Fatalf("stopped through the handle %d times", len(h.conn.stopHandle))
		}
	})
}

func TestMessageNotTakenOnItsLastDeliveryIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxInteractions = 1 })
		mustFate(t, h.start_("i1", "111111111"), "ack") // a busy actor fills the registry
		d := newDelivery()
		d.attempt, d.last = 6, true
		h.c.Handle(context.Background(), chat.Inbound{InteractionID: "i2", Delivery: d, Event: &chat.Event{ID: "x", InteractionID: "i2", Type: chat.EventCreated}})
		synctest.Wait()
		mustFate(t, d, "term")
		wantKinds(t, h, "joined", "attach#1", "failed:processing_failed")
	})
}

func TestActivationDuringAStopIsPublished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.mu.Lock()
		h.conn.activateOnStop = true
		h.conn.mu.Unlock()
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2", "deactivated:interaction_closed", "attach#3")
		if u := updates(h.pub.all())[2]; u.Data.StartTime == "" {
			t.Fatalf("start time missing: %+v", u.Data)
		}
	})
}

func TestRecoveryStopThatFailsIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.stop()
		h.conn.mu.Lock()
		h.conn.rejoinErr = &connector.ServerError{Op: "join", Kind: connector.ErrUnavailable}
		h.conn.stopErr = &connector.ServerError{Op: "stop", Kind: connector.ErrUnavailable}
		h.conn.mu.Unlock()
		c2, _ := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
		h.c = c2
		if err := c2.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		synctest.Wait()
		if st := h.store.get("i1"); st.Live != nil || st.EndReason != "server_lost" || len(st.PendingStops) != 1 {
			t.Fatalf("after a failed recovery: %+v", st)
		}
		h.conn.mu.Lock()
		h.conn.stopErr = nil
		h.conn.mu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if st := h.store.get("i1"); len(st.PendingStops) != 0 || len(h.conn.stopHandle) != 1 {
			t.Fatalf("pending stop after the sweep: %+v, %d handle stops", st.PendingStops, len(h.conn.stopHandle))
		}
	})
}

// restart shuts the controller down and starts a new one over the same store and server, as a
// daemon restart does, and recovers the live sessions.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	c, err := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
	if err != nil {
		h.t.Fatal(err)
	}
	h.c = c
	if err := c.Recover(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.start()
	synctest.Wait()
}

// TestRejoinInFlightDoesNotHoldTheInteraction: after a restart the server holds the old
// Controller and the re-join waits; meanwhile the interaction closes: the close is handled at once,
// the re-join is given up and the session is stopped through its handle, ending as
// interaction_closed (not server_lost).
func TestRejoinInFlightDoesNotHoldTheInteraction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.restartInRejoin("i1", "111111111") // never opened
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		st := h.store.get("i1")
		if st.Live != nil || st.EndReason != "interaction_closed" {
			t.Fatalf("after a close during the re-join: %+v", st)
		}
		if len(h.conn.stopHandle) != 1 || h.conn.stopHandle[0].InteractionID != "i1" {
			t.Fatalf("stops through the handle: %+v", h.conn.stopHandle)
		}
		wantKinds(t, h, "joined", "attach#1", "deactivated:interaction_closed", "attach#2")
	})
}

// TestRejoinAfterRestartWaitsForTheServer: the re-join that the server refuses for a while is
// the vendor's to retry; the session is neither stopped nor ended meanwhile, and goes on when the
// re-join succeeds (same seq line, no server_lost).
func TestRejoinAfterRestartWaitsForTheServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		gate := h.restartInRejoin("i1", "111111111")
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if st := h.store.get("i1"); st.Live == nil || len(h.conn.stopHandle) != 0 {
			t.Fatalf("session ended or stopped while its re-join waits: %+v", st)
		}
		close(gate)
		synctest.Wait()
		h.conn.session(1).activate(time.Now())
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2")
	})
}

// TestMarkerSavedBeforeTheJoin: a join whose marker cannot be saved is not tried (the message
// comes back), so that no Controller of the daemon's can be in a session the state does not know of.
// The connector saves time by calling Trigger.Ready at its last step; one that wrongly joins
// without calling it has its session left at once.
func TestMarkerSavedBeforeTheJoin(t *testing.T) {
	for _, ignores := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoresReady=%v", ignores), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				h.conn.ignoreReady = ignores
				h.store.mu.Lock()
				h.store.failSaves = 1
				h.store.mu.Unlock()
				mustFate(t, h.start_("i1", "123456789"), "nak")
				switch n := len(h.conn.sessions); {
				case !ignores && n != 0:
					t.Fatalf("joined %d times without the marker saved", n)
				case ignores && (n != 1 || !h.conn.session(0).isClosed()):
					t.Fatalf("a join made without the marker was not left (%d sessions)", n)
				}
			})
		})
	}
}

// TestRefusedAfterAJoinThatNeverFinished: a daemon stopped between the server's taking its join
// and the saved outcome; the join marker is in the state. The next attempt's refusal (its own
// Controller is still there) is retried, not reported as join_failed, and the join succeeds once
// the server let the old Controller go. A refusal without the marker is final.
func TestRefusedAfterAJoinThatNeverFinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.store.write("i1", func(s *State) { s.Joining = &Joining{Token: "123456789", At: time.Now()} })
		h.conn.mu.Lock()
		h.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrRefused, Reason: "controller already joined"}
		h.conn.mu.Unlock()
		mustFate(t, h.start_("i1", "123456789"), "nak")
		wantKinds(t, h)
		if st := h.store.get("i1"); st.Joining == nil {
			t.Fatal("the marker went with a refusal that may be the old Controller's")
		}
		h.conn.mu.Lock()
		delete(h.conn.joinErr, "123456789")
		h.conn.mu.Unlock()
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "joined", "attach#1")
		if st := h.store.get("i1"); st.Joining != nil || st.Live == nil {
			t.Fatalf("after the join: %+v", st)
		}

		h2 := newHarness(t, nil)
		h2.conn.mu.Lock()
		h2.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrRefused, Reason: "controller already joined"}
		h2.conn.mu.Unlock()
		mustFate(t, h2.start_("i2", "123456789"), "ack")
		wantKinds(t, h2, "failed:join_failed")
	})
}

// TestJoinPublishesWhatItsMarkerReserved: the join marker, saved before the join call, reserves
// the join's attach seq, so the joined event and the attach go out as soon as the call succeeds and
// the state is saved after them. A daemon that stops in between joins again when the start message
// comes back and publishes the same ids, which the stream drops: no seq goes to another message.
func TestJoinPublishesWhatItsMarkerReserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		var atAttach State
		h.pub.mu.Lock()
		h.pub.failOn = func(m any) bool {
			if u, ok := m.(attach.Update); ok && u.Seq == 1 {
				atAttach = h.store.get("i1")
			}
			return false
		}
		h.pub.mu.Unlock()
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "joined", "attach#1")
		if j := atAttach.Joining; j == nil || j.Seq != 1 || atAttach.Seq != 1 || atAttach.Live != nil {
			t.Fatalf("the state saved when the attach went out: %+v", atAttach)
		}
		if st := h.store.get("i1"); st.Joining != nil || st.Live == nil || st.Seq != 1 {
			t.Fatalf("the state after the join: %+v", st)
		}

		// The daemon stops after the publishes and before the save.
		h2 := newHarness(t, nil)
		h2.store.skipSaves, h2.store.failSaves = 1, 1000 // the marker is saved, nothing after it
		start := func() *delivery {
			return h2.send(chat.Inbound{InteractionID: "i2", StartToken: "222222222", Chat: &chat.Message{ID: "m-start",
				InteractionID: "i2", From: chat.Sender{Role: chat.RoleCustomer}, Text: "{start:222222222}"}})
		}
		mustFate(t, start(), "nak")
		wantKinds(t, h2, "joined", "attach#1")
		h2.stop()
		if st := h2.store.get("i2"); st.Joining == nil || st.Joining.Seq != 1 || st.Seq != 1 || st.Live != nil {
			t.Fatalf("the state the stopped daemon left: %+v", st)
		}
		h2.store.mu.Lock()
		h2.store.failSaves = 0
		h2.store.mu.Unlock()
		h2.restart()
		mustFate(t, start(), "ack") // the redelivery
		var seqs []uint64
		for _, m := range h2.pub.all() {
			if u, ok := m.(attach.Update); ok {
				seqs = append(seqs, u.Seq)
			}
		}
		if !slices.Equal(seqs, []uint64{1}) {
			t.Fatalf("attach seqs published %v, want [1]: the second join's attach is the first's copy", seqs)
		}
		if st := h2.store.get("i2"); st.Joining != nil || st.Live == nil || st.Seq != 1 {
			t.Fatalf("the state after the second join: %+v", st)
		}
		mustFate(t, h2.event("i2", chat.EventClosed, ""), "ack")
		if st := h2.store.get("i2"); st.Seq != 2 {
			t.Fatalf("the next attach has seq %d, want 2", st.Seq)
		}
	})
}

// TestJoinThatMayHaveBeenPublishedIsRedoneFirst: after a stop between a join's publishes and its
// save, the interaction's next message may come before the start message's redelivery (a close).
// The join is redone first, so that the close ends the session the readers saw; a join that fails
// for good puts the attached data back under the next seq.
func TestJoinThatMayHaveBeenPublishedIsRedoneFirst(t *testing.T) {
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprintf("session gone %v", gone), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				h.store.skipSaves, h.store.failSaves = 1, 1000 // the marker is saved, nothing after it
				mustFate(t, h.start_("i1", "222222222"), "nak")
				wantKinds(t, h, "joined", "attach#1")
				h.stop()
				h.store.mu.Lock()
				h.store.failSaves = 0
				h.store.mu.Unlock()
				if gone {
					h.conn.mu.Lock()
					h.conn.joinErr["222222222"] = &connector.ServerError{Op: "join", Kind: connector.ErrNotFound}
					h.conn.mu.Unlock()
				}
				h.restart()
				mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
				st := h.store.get("i1")
				if gone {
					wantKinds(t, h, "joined", "attach#1", "failed:join_failed", "attach#2")
					u := h.pub.all()[3].(attach.Update)
					if u.Data.Associated != "" || u.Data.SessionsQuantity != 0 {
						t.Fatalf("the attached data put back: %+v", u.Data)
					}
				} else {
					wantKinds(t, h, "joined", "attach#1", "joined", "deactivated:interaction_closed", "attach#2")
				}
				if st.Joining != nil || st.Live != nil || !st.Closed || st.Seq != 2 {
					t.Fatalf("the state after the close: %+v", st)
				}
			})
		})
	}
}

// TestFailedJoinGivesItsSeqBack: a join that fails for good used no seq, so the next session's
// attach is seq 1, without a gap.
func TestFailedJoinGivesItsSeqBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.mu.Lock()
		h.conn.joinErr["111111111"] = &connector.ServerError{Op: "join", Kind: connector.ErrNotFound}
		h.conn.mu.Unlock()
		mustFate(t, h.start_("i1", "111111111"), "ack")
		mustFate(t, h.start_("i1", "222222222"), "ack")
		wantKinds(t, h, "failed:join_failed", "joined", "attach#1")
	})
}

// TestAgentAssignedDuringTheRejoinGetsTheView: an agent assigned while the session is being
// re-joined (after a restart, or on the replica that took the interaction over) gets the agent view
// once the session is held again, not never.
func TestAgentAssignedDuringTheRejoinGetsTheView(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		gate := h.restartInRejoin("i1", "111111111")
		synctest.Wait()
		mustFate(t, h.event("i1", chat.EventAssigned, "a2"), "ack")
		wantKinds(t, h, "joined", "attach#1")
		close(gate)
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "view:a2")
		if st := h.store.get("i1"); st.Live == nil || st.Live.ViewOwed {
			t.Fatalf("state after the view went out: %+v", st.Live)
		}
	})
}

// TestRehandshakeReportsAnAgentWhoJoinedMeanwhile: the activated notification went to the expired
// Bayeux session; the re-join reply lists the agent: activated and CoBrowseStartTime follow.
func TestRehandshakeReportsAnAgentWhoJoinedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		s := h.conn.session(0)
		s.mu.Lock()
		s.users = []connector.Participant{{ID: "1", Role: connector.RoleCustomer}, {ID: "2", Role: connector.RoleAgent}}
		s.mu.Unlock()
		s.emit(connector.Event{Kind: connector.EventRejoined, Handle: s.handle})
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2")
		if u := updates(h.pub.all())[1]; u.Data.StartTime == "" {
			t.Fatalf("no CoBrowseStartTime: %+v", u.Data)
		}
	})
}

// TestRejoinOfASessionEndedMeanwhile: the session ended at the server while the daemon was down
// (not live): it ends as participant_exit, not server_lost.
func TestRejoinOfASessionEndedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.conn.mu.Lock()
		h.conn.rejoinErr = &connector.ServerError{Op: "rejoin", Kind: connector.ErrNotLive, Reason: "session ended"}
		h.conn.mu.Unlock()
		h.restart()
		wantKinds(t, h, "joined", "attach#1", "deactivated:participant_exit", "attach#2")
	})
}

// TestLostSessionNotStoppedIsStopped: a session lost with its best-effort stop failed is stopped
// through its handle by the actor, within seconds.
func TestLostSessionNotStoppedIsStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.conn.mu.Lock()
		h.conn.stopErr = &connector.ServerError{Op: "stop", Kind: connector.ErrUnavailable}
		h.conn.mu.Unlock()
		h.conn.session(0).emit(connector.Event{Kind: connector.EventLost, Err: connector.ErrLost})
		synctest.Wait()
		wantKinds(t, h, "joined", "attach#1", "deactivated:server_lost", "attach#2")
		h.conn.mu.Lock()
		h.conn.stopErr = nil
		h.conn.mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if st := h.store.get("i1"); len(st.PendingStops) != 0 || len(h.conn.stopHandle) != 1 {
			t.Fatalf("pending stops %+v, handle stops %d", st.PendingStops, len(h.conn.stopHandle))
		}
	})
}

func (h *harness) signal(iid, source string, typ chat.SignalType) *delivery {
	return h.send(chat.Inbound{InteractionID: iid, Signal: &chat.Signal{ID: h.nextID(), InteractionID: iid, Source: source, Type: typ}})
}

func (h *harness) eventWith(iid string, ev chat.Event) *delivery {
	ev.ID, ev.InteractionID = h.nextID(), iid
	return h.send(chat.Inbound{InteractionID: iid, Event: &ev})
}

// TestStartMessageNotInTheVendorsForm: {start:X} whose X is not a token of the interaction's
// vendor (a PIN of letters on a Genesys interaction) starts nothing.
func TestStartMessageNotInTheVendorsForm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "AB12CD"), "ack")
		mustFate(t, h.start_("i1", "1234567890"), "ack")
		wantKinds(t, h)
		if len(h.conn.sessions) != 0 {
			t.Fatalf("%d joins", len(h.conn.sessions))
		}
	})
}

// TestRequestOnGenesysIsUnsupported: a cobrowse_requested event asks the vendor to create the
// session; Genesys cannot, and the request fails as unsupported. A request while a session is
// live is a no-op.
func TestRequestOnGenesysIsUnsupported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinErr[""] = &connector.ServerError{Op: "join", Kind: connector.ErrUnsupported, Reason: "cannot create"}
		mustFate(t, h.eventWith("i1", chat.Event{Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot}}), "ack")
		wantKinds(t, h, "failed:unsupported")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.eventWith("i1", chat.Event{Type: chat.EventCobrowseRequested}), "ack")
		wantKinds(t, h, "failed:unsupported", "joined", "attach#1")
	})
}

// TestVendorIsFixedAtTheFirstDecision: cobrowseVendor on created chooses the interaction's
// vendor; one not enabled fails the start as vendor_unavailable; a later different value is
// ignored, and the state keeps the vendor.
func TestVendorIsFixedAtTheFirstDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.eventWith("i1", chat.Event{Type: chat.EventCreated, AgentID: "a1", Vendor: "zoom"}), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.eventWith("i1", chat.Event{Type: chat.EventAssigned, AgentID: "a2", Vendor: "genesys"}), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "failed:vendor_unavailable", "failed:vendor_unavailable")
		if st := h.store.get("i1"); st.Vendor != "zoom" {
			t.Fatalf("saved vendor %q", st.Vendor)
		}
		// Another interaction without cobrowseVendor gets the default vendor.
		mustFate(t, h.eventWith("i2", chat.Event{Type: chat.EventCreated, AgentID: "a3"}), "ack")
		mustFate(t, h.start_("i2", "123456789"), "ack")
		if got := kinds(h.pub.all()); len(got) != 5 || got[2] != "joined" {
			t.Fatalf("default vendor: %v", got)
		}
	})
}

// TestOperatorStop: an operator's stop signal ends the live session as operator_stop; other
// signals change nothing on a Genesys session (its events come over CometD).
func TestOperatorStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.signal("i1", chat.SourceAgent, chat.SignalUserLeft), "ack")
		mustFate(t, h.signal("i1", chat.SourceOperator, chat.SignalStop), "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:operator_stop", "attach#2")
		if h.conn.session(0).stops() != 1 {
			t.Fatal("the session was not stopped at the server")
		}
		mustFate(t, h.signal("i1", chat.SourceOperator, chat.SignalStop), "ack") // nothing live: nothing to do
		wantKinds(t, h, "joined", "attach#1", "deactivated:operator_stop", "attach#2")
	})
}

// TestSignalDuringTheRejoinWaitsForIt: after a restart, a signal that comes while the live
// session is being re-joined waits for the re-join's outcome, and a close behind it waits with it:
// the session's events are applied in their order (the signal's ending of the session first),
// not dropped for want of a session.
func TestSignalDuringTheRejoinWaitsForIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		gate := h.restartInRejoin("i1", "123456789")
		synctest.Wait()
		sig := h.signal("i1", chat.SourceZoom, chat.SignalSessionEnded)
		closed := h.event("i1", chat.EventClosed, "")
		mustFate(t, sig, "")
		mustFate(t, closed, "")
		wantKinds(t, h, "joined", "attach#1")
		close(gate)
		synctest.Wait()
		mustFate(t, sig, "ack")
		mustFate(t, closed, "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:participant_exit", "attach#2")

		// An operator's stop does not wait for the re-join: it stops the session through its handle.
		mustFate(t, h.start_("i2", "223456789"), "ack")
		h.gateRejoins() // never opened
		h.restart()
		synctest.Wait()
		mustFate(t, h.signal("i2", chat.SourceOperator, chat.SignalStop), "ack")
		if st := h.store.get("i2"); st.Live != nil || st.EndReason != "operator_stop" {
			t.Fatalf("after an operator's stop during the re-join: %+v", st)
		}
	})
}

// TestSignalsReachTheLiveSession: a signal about the interaction goes to its live session, and
// the events the vendor makes of it take the path of the session's own events: here a
// session_ended report ends the session as participant_exit, with its final attach.
func TestSignalsReachTheLiveSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.signal("i1", chat.SourceCustomer, chat.SignalUserLeft), "ack")
		wantKinds(t, h, "joined", "attach#1")
		mustFate(t, h.signal("i1", chat.SourceZoom, chat.SignalSessionEnded), "ack")
		wantKinds(t, h, "joined", "attach#1", "deactivated:participant_exit", "attach#2")
	})
}

// TestStopThatEndsInThePages: for a vendor whose sessions end in the pages and whose events come as
// signals, a close asks both pages to end the session and is settled at once; the final attach
// follows the vendor's word (a session_ended signal), with the close's reason. Without that word,
// the end wait ends it.
func TestStopThatEndsInThePages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.EndWait = 30 * time.Second })
		h.conn.signalsOnly = true
		mustFate(t, h.event("i1", chat.EventCreated, "a1"), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		wantKinds(t, h, "joined", "attach#1", "view:a1", "end:customer", "end:a1")
		if st := h.store.get("i1"); st.Live == nil || st.Live.Phase != PhaseStopping || st.Live.StopBy.IsZero() {
			t.Fatalf("state while waiting for the vendor: %+v", st.Live)
		}
		mustFate(t, h.signal("i1", chat.SourceZoom, chat.SignalSessionEnded), "ack")
		wantKinds(t, h, "joined", "attach#1", "view:a1", "end:customer", "end:a1", "deactivated:interaction_closed", "attach#2")

		// Without the vendor's word: the end wait ends it.
		mustFate(t, h.event("i2", chat.EventCreated, "a2"), "ack")
		mustFate(t, h.start_("i2", "223456789"), "ack")
		mustFate(t, h.event("i2", chat.EventTimeout, ""), "ack")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if st := h.store.get("i2"); st.Live != nil || st.EndReason != "interaction_timeout" {
			t.Fatalf("after the end wait: %+v", st)
		}
	})
}

// TestStartOfASessionNotBoundToTheInteraction: a vendor that finds the session named by the start
// message bound to someone else (a Zoom PIN of another customer) refuses it: failed, pin_not_bound.
func TestStartOfASessionNotBoundToTheInteraction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinErr["123456789"] = &connector.ServerError{Op: "join", Kind: connector.ErrNotBound, Reason: "the PIN's session has another customer"}
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "failed:pin_not_bound")
	})
}

// TestAgentPresentAtTheJoin: an agent the join reply already lists is reported as activated right
// after the join (the server's activation went out before the daemon was there to hear it).
func TestAgentPresentAtTheJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.joinUsers = []connector.Participant{{ID: "1", Role: connector.RoleCustomer}, {ID: "2", Role: connector.RoleAgent}}
		mustFate(t, h.start_("i1", "123456789"), "ack")
		wantKinds(t, h, "joined", "attach#1", "activated", "attach#2")
	})
}

// TestStopThroughTheHandleAsksThePages: a session of a vendor whose sessions end in the browsers,
// stopped through its handle (its re-join after a restart failed), gets its end requests too.
func TestStopThroughTheHandleAsksThePages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.conn.signalsOnly = true
		mustFate(t, h.event("i1", chat.EventCreated, "a1"), "ack")
		mustFate(t, h.start_("i1", "123456789"), "ack")
		h.conn.mu.Lock()
		h.conn.rejoinErr = &connector.ServerError{Op: "rejoin", Kind: connector.ErrNotFound}
		h.conn.mu.Unlock()
		h.restart()
		wantKinds(t, h, "joined", "attach#1", "view:a1", "end:customer", "end:a1", "deactivated:server_lost", "attach#2")
	})
}

// requested makes the harness's vendor create sessions whose events come as signals (Zoom's Bring
// Your Own PIN), and asks for co-browse on iid with agent a1.
func (h *harness) requested(iid string) *fakeSession {
	h.t.Helper()
	h.conn.creates, h.conn.signalsOnly = true, true
	mustFate(h.t, h.event(iid, chat.EventCreated, "a1"), "ack")
	mustFate(h.t, h.eventWith(iid, chat.Event{Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot}}), "ack")
	return h.conn.session(len(h.conn.sessions) - 1)
}

// TestRequestCreatesASessionThePageStarts: a request on a vendor that creates sessions gives the
// customer's page its start message and nothing else; the session counts (joined, the attach, the
// agent's view) only when the vendor says the page started it, with the id it then has.
func TestRequestCreatesASessionThePageStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		s := h.requested("i1")
		wantKinds(t, h, "start:customer")
		st := h.store.get("i1")
		if st.Live == nil || st.Live.Phase != PhaseStarting || st.Sessions != 0 || st.Associated == "Yes" {
			t.Fatalf("state while the page has not started the session: %+v", st)
		}
		if p := h.pub.all()[0].(attach.Handoff); p.SessionID != "pending-1" || p.PIN == "" || p.Token == "" {
			t.Fatalf("start page message %+v", p)
		}
		// A second request while the first is pending is a no-op.
		mustFate(t, h.eventWith("i1", chat.Event{Type: chat.EventCobrowseRequested}), "ack")
		s.start("zoom-session-1")
		synctest.Wait()
		wantKinds(t, h, "start:customer", "joined", "attach#1", "view:a1")
		st = h.store.get("i1")
		if st.Live == nil || st.Live.Phase != PhaseJoined || st.Sessions != 1 || st.SessionID != "zoom-session-1" {
			t.Fatalf("state after the start: %+v", st)
		}
		if iid, err := h.c.LookupSession(context.Background(), connector.Genesys, "zoom-session-1"); err != nil || iid != "i1" {
			t.Fatalf("the started session is not indexed: %q %v", iid, err)
		}
		mustFate(t, h.signal("i1", chat.SourceZoom, chat.SignalSessionEnded), "ack")
		wantKinds(t, h, "start:customer", "joined", "attach#1", "view:a1", "deactivated:participant_exit", "attach#2")
	})
}

// TestCreatedSessionNeverStarted: a created session the page does not start within the vendor's
// bound (EventLost while starting) fails as join_failed: no deactivated event, no attach; the
// page is asked to end whatever it may have started.
func TestCreatedSessionNeverStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		s := h.requested("i1")
		s.emit(connector.Event{Kind: connector.EventLost, Err: &connector.ServerError{Op: "start", Kind: connector.ErrNotFound, Reason: "not started in time"}})
		synctest.Wait()
		wantKinds(t, h, "start:customer", "end:customer", "end:a1", "failed:join_failed")
		if st := h.store.get("i1"); st.Live != nil || st.Sessions != 0 || st.Ended != 0 {
			t.Fatalf("state %+v", st)
		}
	})
}

// TestCloseWhileStarting: the interaction closes before the page started the created session:
// the wait ends (Stop), the page is asked to end it, and the request fails as join_failed.
func TestCloseWhileStarting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		s := h.requested("i1")
		mustFate(t, h.event("i1", chat.EventClosed, ""), "ack")
		wantKinds(t, h, "start:customer", "end:customer", "end:a1", "failed:join_failed")
		if s.stops() != 1 {
			t.Fatal("the pending session's wait was not stopped")
		}
		if st := h.store.get("i1"); st.Live != nil || !st.Closed {
			t.Fatalf("state %+v", st)
		}
	})
}

// TestRestartWhileStarting: a daemon restarted while a created session is pending waits for the
// page again (no second start message), and the start then counts as usual.
func TestRestartWhileStarting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.requested("i1")
		h.restart()
		s := h.conn.session(len(h.conn.sessions) - 1)
		if !s.Pending() {
			t.Fatal("the re-join did not give a pending session")
		}
		if st := h.store.get("i1"); st.Live == nil || st.Live.Phase != PhaseStarting {
			t.Fatalf("state after the restart: %+v", st.Live)
		}
		s.start("zoom-session-1")
		synctest.Wait()
		wantKinds(t, h, "start:customer", "joined", "attach#1", "view:a1")
	})
}

// TestSweepLeavesQuietSessionsAlone: the sweep does not nudge an actor whose live session only
// waits with its deadline on a timer, unless that deadline passed by the wall clock (a clock that
// jumped ahead of the timer).
func TestSweepLeavesQuietSessionsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.c.mu.Lock()
		a := h.c.actors["i1"]
		h.c.mu.Unlock()
		if a.quietUntil.Load() == 0 {
			t.Fatal("a joined session waiting for its agent is not noted quiet")
		}
		kicked := func() bool {
			a.qmu.Lock()
			defer a.qmu.Unlock()
			return a.running || a.pending != 0
		}
		h.c.sweep()
		if kicked() {
			t.Fatal("the sweep nudged a quiet actor")
		}
		synctest.Wait()
		a.quietUntil.Store(time.Now().Add(-time.Second).UnixNano()) // the wall clock passed its deadline
		h.c.sweep()
		if !kicked() {
			t.Fatal("the sweep left an actor whose deadline passed")
		}
		synctest.Wait()
	})
}
