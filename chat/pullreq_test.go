package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeNext answers the pull requests on subject with script: each request's body is sent to
// reqs, and script writes the answer to the request's inbox.
func fakeNext(t *testing.T, e *env, subject string, script func(inbox string, req nextRequest)) <-chan nextRequest {
	t.Helper()
	reqs := make(chan nextRequest, 8)
	sub, err := e.nc.Subscribe(subject, func(m *nats.Msg) {
		var req nextRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Errorf("pull request body %q: %v", m.Data, err)
			return
		}
		reqs <- req
		script(m.Reply, req)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return reqs
}

// status sends a status message as the server does: headers only, no payload.
func status(t *testing.T, nc *nats.Conn, inbox, code, description string) {
	t.Helper()
	m := nats.NewMsg(inbox)
	m.Header.Set("Status", code)
	if description != "" {
		m.Header.Set("Description", description)
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Error(err)
	}
}

// userMsg sends message n as a pulled message: a payload, a reply subject, and a pin. (The server
// drops a client's message with a $JS.ACK reply subject: that one is the server's own to send.)
func userMsg(t *testing.T, nc *nats.Conn, inbox string, n int, pin string) {
	t.Helper()
	m := nats.NewMsg(inbox)
	m.Reply = fmt.Sprintf("fake.ack.%d", n)
	m.Data = fmt.Appendf(nil, `{"n":%d}`, n)
	if pin != "" {
		m.Header.Set(pinHeader, pin)
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Error(err)
	}
}

// TestPullRequestWire runs pullRequest against a scripted server: what it asks for, and how it
// reads every way a request ends.
func TestPullRequestWire(t *testing.T) {
	e := newEnv(t)
	c := &Consumer{js: e.js}
	c.pin.set("pin-1")
	const subject = "$JS.API.CONSUMER.MSG.NEXT.S.C"
	src := &source{next: subject, grouped: true}
	pull := func(n int, expiry, hb time.Duration) (int, []string, error) {
		var seen []string
		got, err := c.pullRequest(ctxFor(t), src, n, expiry, hb, func(m *nats.Msg) {
			seen = append(seen, string(m.Data)+" "+m.Header.Get(pinHeader))
		})
		return got, seen, err
	}
	cases := []struct {
		name   string
		script func(nc *nats.Conn, inbox string)
		n      int
		hb     time.Duration
		want   int
		seen   []string // the messages taken, with their pins (when set)
		err    error    // errors.Is
		errHas string   // or the error's text
	}{
		{name: "full batch", n: 2, script: func(nc *nats.Conn, inbox string) {
			userMsg(t, nc, inbox, 1, "pin-1")
			userMsg(t, nc, inbox, 2, "pin-1")
		}, want: 2, seen: []string{`{"n":1} pin-1`, `{"n":2} pin-1`}},
		{name: "expired (408) after a message", n: 5, script: func(nc *nats.Conn, inbox string) {
			userMsg(t, nc, inbox, 1, "")
			status(t, nc, inbox, "408", "Request Timeout")
		}, want: 1},
		{name: "no messages (404)", n: 5, script: func(nc *nats.Conn, inbox string) {
			status(t, nc, inbox, "404", "No Messages")
		}},
		{name: "heartbeats missed", n: 1, hb: 20 * time.Millisecond, script: func(*nats.Conn, string) {}, err: jetstream.ErrNoHeartbeat},
		{name: "pin mismatch (423)", n: 5, script: func(nc *nats.Conn, inbox string) {
			status(t, nc, inbox, "423", "Nats-Pin-Id mismatch")
		}, err: jetstream.ErrPinIDMismatch},
		{name: "consumer deleted (409)", n: 5, script: func(nc *nats.Conn, inbox string) {
			status(t, nc, inbox, "409", "Consumer Deleted")
		}, err: jetstream.ErrConsumerDeleted},
		{name: "leadership change (409)", n: 5, script: func(nc *nats.Conn, inbox string) {
			status(t, nc, inbox, "409", "Leadership Change")
		}, err: jetstream.ErrConsumerLeadershipChanged},
		{name: "batch completed (409)", n: 5, script: func(nc *nats.Conn, inbox string) {
			userMsg(t, nc, inbox, 1, "")
			status(t, nc, inbox, "409", "Batch Completed")
		}, want: 1},
		{name: "another conflict (409)", n: 5, script: func(nc *nats.Conn, inbox string) {
			status(t, nc, inbox, "409", "Exceeded MaxWaiting")
		}, errHas: "409 Exceeded MaxWaiting"},
		{name: "lost request (no word at all)", n: 5, script: func(*nats.Conn, string) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src.next = subject
			reqs := fakeNext(t, e, subject, func(inbox string, _ nextRequest) { tc.script(e.nc, inbox) })
			got, seen, err := pull(tc.n, 200*time.Millisecond, tc.hb)
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("error %v, want %v", err, tc.err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("error %v, want one saying %q", err, tc.errHas)
			case tc.err == nil && tc.errHas == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			}
			if got != tc.want || len(seen) != tc.want || tc.seen != nil && !slices.Equal(seen, tc.seen) {
				t.Fatalf("got %d messages (%q), want %d %q", got, seen, tc.want, tc.seen)
			}
			req := <-reqs
			if req.Batch != tc.n || req.Group != priorityGroup || req.PinID != "pin-1" || req.Heartbeat != tc.hb ||
				req.Expires <= 0 || req.Expires >= 200*time.Millisecond {
				t.Fatalf("request %+v: want batch %d, group %s, pin pin-1, heartbeat %v, expires under the client's 200ms", req, tc.n, priorityGroup, tc.hb)
			}
		})
	}
	t.Run("no responders", func(t *testing.T) {
		src.next = "$JS.API.CONSUMER.MSG.NEXT.S.nobody"
		if _, _, err := pull(5, 200*time.Millisecond, 0); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("error %v, want no responders", err)
		}
	})
}

// TestPulledAcksOnTheWire checks each settle of a pulled message against a real server: the body
// it sends to the reply subject, and that the server takes it.
func TestPulledAcksOnTheWire(t *testing.T) {
	e := newEnv(t)
	ctx := ctxFor(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := e.js.Publish(ctx, fmt.Sprintf("s.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	acks := make(chan string, 16)
	sub, err := e.nc.Subscribe("$JS.ACK.S.C.>", func(m *nats.Msg) { acks <- string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	c := &Consumer{js: e.js, ackTimeout: wait}
	src := &source{next: nextSubject(e.js, cons)}
	var msgs []*pulled
	if _, err := c.pullRequest(ctx, src, 6, time.Second, 0, func(m *nats.Msg) {
		p := newPulled(m, e.nc, wait)
		msgs = append(msgs, &p)
	}); err != nil || len(msgs) != 6 {
		t.Fatalf("pulled %d messages, error %v; want 6", len(msgs), err)
	}
	settles := []struct {
		do   func(*pulled) error
		body string
	}{
		{func(p *pulled) error { return p.InProgress() }, "+WPI"},
		{func(p *pulled) error { return p.Ack() }, "+ACK"},
		{func(p *pulled) error { return p.DoubleAck(ctx) }, "+ACK"},
		{func(p *pulled) error { return p.Nak() }, "-NAK"},
		{func(p *pulled) error { return p.NakWithDelay(time.Hour) }, `-NAK {"delay": 3600000000000}`},
		{func(p *pulled) error { return p.TermWithReason("malformed: no id") }, "+TERM malformed: no id"},
	}
	for i, s := range settles {
		if err := s.do(msgs[i]); err != nil {
			t.Fatalf("settle %d (%s): %v", i, s.body, err)
		}
		select {
		case got := <-acks:
			if got != s.body {
				t.Fatalf("settle %d sent %q, want %q", i, got, s.body)
			}
		case <-time.After(wait):
			t.Fatalf("settle %d (%s) not seen", i, s.body)
		}
	}
	// The server took them: the two acked and the terminated one are done; the in-progress one
	// and the two naked ones are still pending (one redelivered at once, one in an hour). Acks are
	// applied after the server read them: the wait is bounded, on the server's word.
	deadline := time.Now().Add(wait)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack pending %d, want 3", info.NumAckPending)
		}
	}
}

// TestPullRequestHeartbeats pulls from a real consumer with nothing to deliver: the server's idle
// heartbeats keep the request alive for four times the bound of two missed ones, and it ends when
// the server expires it.
func TestPullRequestHeartbeats(t *testing.T) {
	e := newEnv(t)
	ctx := ctxFor(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	c := &Consumer{js: e.js}
	src := &source{next: nextSubject(e.js, cons)}
	const hb = 25 * time.Millisecond
	start := time.Now()
	got, err := c.pullRequest(ctx, src, 1, 8*2*hb, hb, func(*nats.Msg) {})
	if err != nil || got != 0 {
		t.Fatalf("pulled %d messages, error %v; want none, no error", got, err)
	}
	if took := time.Since(start); took < 4*2*hb {
		t.Fatalf("the request ended after %v, before its expiry (%v): the heartbeats were not seen through", took, 8*2*hb)
	}
}

// TestNakLeftHandsBackWhatWasNotTaken: what a pull request brought and the pull loop did not hand
// over goes back to the server at once (a nak on its reply subject); a status message is dropped.
func TestNakLeftHandsBackWhatWasNotTaken(t *testing.T) {
	e := newEnv(t)
	acks := make(chan string, 8)
	sub, err := e.nc.Subscribe("fake.ack.>", func(m *nats.Msg) { acks <- m.Subject + " " + string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	ch := make(chan *nats.Msg, 4)
	st := nats.NewMsg("inbox")
	st.Header.Set("Status", "408")
	ch <- &nats.Msg{Subject: "inbox", Reply: "fake.ack.1", Data: []byte(`{"n":1}`)}
	ch <- st
	ch <- &nats.Msg{Subject: "inbox", Reply: "fake.ack.2", Data: []byte(`{"n":2}`)}
	nakLeft(e.nc, ch)
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		select {
		case a := <-acks:
			got = append(got, a)
		case <-time.After(wait):
			t.Fatalf("naks seen %v, want 2", got)
		}
	}
	slices.Sort(got)
	if want := []string{"fake.ack.1 -NAK", "fake.ack.2 -NAK"}; !slices.Equal(got, want) {
		t.Errorf("naks %v, want %v", got, want)
	}
	if len(ch) != 0 {
		t.Errorf("%d left in the channel", len(ch))
	}
	select {
	case a := <-acks:
		t.Errorf("also sent %q", a)
	default:
	}
}
