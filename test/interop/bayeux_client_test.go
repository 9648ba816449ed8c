package interop

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/test/nodepeer"
)

// bayeuxWait bounds every wait in these tests; nothing waits for it unless something is broken.
const bayeuxWait = 10 * time.Second

type bayeuxRecorder struct {
	t      *testing.T
	states chan cometd.StateEvent
	msgs   chan cometd.Message
}

func newBayeuxClient(t *testing.T, opts cometd.Options) (*cometd.Client, *bayeuxRecorder) {
	t.Helper()
	rec := &bayeuxRecorder{t: t, states: make(chan cometd.StateEvent, 64), msgs: make(chan cometd.Message, 256)}
	opts.OnState = func(e cometd.StateEvent) { rec.states <- e }
	opts.OnMessage = func(m cometd.Message) { rec.msgs <- m }
	if opts.MaxNetworkDelay == 0 {
		opts.MaxNetworkDelay = 3 * time.Second
	}
	opts.BackoffIncrement = 50 * time.Millisecond
	opts.MaxBackoff = 200 * time.Millisecond
	c, err := cometd.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), bayeuxWait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rec.state(cometd.StateConnected)
	return c, rec
}

func (r *bayeuxRecorder) state(kind cometd.StateKind) cometd.StateEvent {
	r.t.Helper()
	select {
	case e := <-r.states:
		if e.Kind != kind {
			r.t.Fatalf("state %v (err %v), want %v", e.Kind, e.Err, kind)
		}
		return e
	case <-time.After(bayeuxWait):
		r.t.Fatalf("no %v state within %v", kind, bayeuxWait)
	}
	return cometd.StateEvent{}
}

// message waits for a delivery on channel, passing over others.
func (r *bayeuxRecorder) message(channel string) cometd.Message {
	r.t.Helper()
	timer := time.NewTimer(bayeuxWait)
	defer timer.Stop()
	for {
		select {
		case m := <-r.msgs:
			if m.Channel == channel {
				return m
			}
			r.t.Logf("passed over a delivery on %s", m.Channel)
		case <-timer.C:
			r.t.Fatalf("no delivery on %s within %v", channel, bayeuxWait)
		}
	}
}

func bayeuxCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), bayeuxWait)
	t.Cleanup(cancel)
	return ctx
}

// expireSession asks the node peer to drop a session as its own expiry would.
func expireSession(t *testing.T, bayeuxURL, clientID string) {
	t.Helper()
	u, err := url.Parse(bayeuxURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/admin/expire"
	u.RawQuery = url.Values{"clientId": {clientID}}.Encode()
	req, _ := http.NewRequestWithContext(bayeuxCtx(t), http.MethodPost, u.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("expire %s: HTTP %d", clientID, resp.StatusCode)
	}
}

func publishAndReceive(t *testing.T, c *cometd.Client, rec *bayeuxRecorder, channel, text string) {
	t.Helper()
	reply, err := c.Publish(bayeuxCtx(t), channel, map[string]string{"text": text})
	if err != nil || !reply.OK() {
		t.Fatalf("publish on %s: %+v %v", channel, reply, err)
	}
	m := rec.message(channel)
	var got struct{ Text string }
	if err := json.Unmarshal(m.Data, &got); err != nil || got.Text != text {
		t.Fatalf("delivery %s, want text %q (%v)", m.Data, text, err)
	}
}

// TestBayeuxCometDNodeServer runs the client against cometd-nodejs-server 1.2.1: websocket refused
// (fallback to long-polling), BAYEUX_BROWSER cookie sessions, pub/sub between two clients, both
// remote-call styles, a server-side expiry and the re-handshake that follows, disconnect.
func TestBayeuxCometDNodeServer(t *testing.T) {
	peer := nodepeer.Start(t, "cometd_server.mjs", "--timeout", "1000")
	base := peer.Expect(t, "LISTENING ", 30*time.Second)

	// Default transports: websocket first. This server answers the upgrade with 400.
	c, rec := newBayeuxClient(t, cometd.Options{URL: base})
	if got := c.Transport(); got != cometd.TransportLongPolling {
		t.Fatalf("transport %q, want long-polling after the refused upgrade", got)
	}
	if status := peer.Expect(t, "UPGRADE ", bayeuxWait); status != "400" {
		t.Fatalf("upgrade answered %s, want 400", status)
	}
	first := c.ClientID()
	peer.Expect(t, "HANDSHAKE "+first, bayeuxWait)

	if err := c.Subscribe(bayeuxCtx(t), "/chat"); err != nil {
		t.Fatal(err)
	}
	peer.Expect(t, "SUBSCRIBE "+first+" /chat", bayeuxWait)
	publishAndReceive(t, c, rec, "/chat", "hello")

	// A second session (its own cookie jar) receives what the first publishes.
	other, otherRec := newBayeuxClient(t, cometd.Options{URL: base, Transports: []string{cometd.TransportLongPolling}})
	if err := other.Subscribe(bayeuxCtx(t), "/chat"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(bayeuxCtx(t), "/chat", map[string]string{"text": "to both"}); err != nil {
		t.Fatal(err)
	}
	otherRec.message("/chat")
	rec.message("/chat")
	if err := other.Disconnect(bayeuxCtx(t)); err != nil {
		t.Fatal(err)
	}

	// Remote calls: the result in the publish reply, and as a separate delivery with the call's id.
	res, err := c.Call(bayeuxCtx(t), "/service/echo", map[string]int{"n": 1})
	if err != nil || string(res) != `{"echo":{"n":1}}` {
		t.Fatalf("echo call: %s %v", res, err)
	}
	res, err = c.Call(bayeuxCtx(t), "/service/deliver", map[string]int{"n": 2})
	if err != nil || string(res) != `{"delivered":{"n":2}}` {
		t.Fatalf("deliver call: %s %v", res, err)
	}

	// Expiry: the held connect fails, the next one is refused (402), the client re-handshakes.
	expireSession(t, base, first)
	peer.Expect(t, "REMOVED "+first+" true", bayeuxWait)
	// Its sweeper answers the held connect with HTTP 500 (then 402 to the next one).
	var he *cometd.HTTPError
	if err := rec.state(cometd.StateDisconnected).Err; !errors.As(err, &he) || he.StatusCode != http.StatusInternalServerError {
		t.Fatalf("disconnected with %v, want HTTP 500", err)
	}
	e := rec.state(cometd.StateReestablished)
	if e.ClientID == "" || e.ClientID == first || e.ClientID != c.ClientID() {
		t.Fatalf("reestablished as %q (client %q), first session %q", e.ClientID, c.ClientID(), first)
	}
	peer.Expect(t, "SUBSCRIBE "+e.ClientID+" /chat", bayeuxWait)
	publishAndReceive(t, c, rec, "/chat", "after expiry")

	if err := c.Disconnect(bayeuxCtx(t)); err != nil {
		t.Fatal(err)
	}
	if e := rec.state(cometd.StateTerminated); e.Err != nil {
		t.Fatalf("terminated with %v", e.Err)
	}
	peer.Expect(t, "REMOVED "+e.ClientID+" false", bayeuxWait)
}

// TestBayeuxCometDNodeServerStartCall: a call sent beside the first /meta/connect (StartCall, as
// the Genesys connector joins) is answered with that connect's reply, and the session runs on.
func TestBayeuxCometDNodeServerStartCall(t *testing.T) {
	peer := nodepeer.Start(t, "cometd_server.mjs", "--timeout", "1000")
	base := peer.Expect(t, "LISTENING ", 30*time.Second)
	rec := &bayeuxRecorder{t: t, states: make(chan cometd.StateEvent, 64), msgs: make(chan cometd.Message, 256)}
	c, err := cometd.New(cometd.Options{URL: base, Transports: []string{cometd.TransportLongPolling}, MaxNetworkDelay: 3 * time.Second,
		OnState: func(e cometd.StateEvent) { rec.states <- e }, OnMessage: func(m cometd.Message) { rec.msgs <- m }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	began := time.Now()
	res, err := c.StartCall(bayeuxCtx(t), "/service/echo", map[string]int{"n": 0}, nil)
	if err != nil || string(res) != `{"echo":{"n":0}}` {
		t.Fatalf("StartCall: %s %v", res, err)
	}
	// The server holds a connect for 1 s: an answer well within it was not held with one.
	if took := time.Since(began); took >= time.Second {
		t.Fatalf("StartCall took %v: the call's reply was held with a connect", took)
	}
	rec.state(cometd.StateConnected)
	peer.Expect(t, "HANDSHAKE "+c.ClientID(), bayeuxWait)
	if res, err := c.Call(bayeuxCtx(t), "/service/echo", map[string]int{"n": 1}); err != nil || string(res) != `{"echo":{"n":1}}` {
		t.Fatalf("call after StartCall: %s %v", res, err)
	}
	if err := c.Disconnect(bayeuxCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestBayeuxFaye runs the client against faye 1.4.3 on each transport: pub/sub, a client
// destroyed by the engine (401 Unknown client) and the re-handshake that follows, disconnect.
// On websocket the server confirms the upgrade (with our Origin and seeded cookie) and that
// connects arrive as connectionType websocket.
func TestBayeuxFaye(t *testing.T) {
	for _, tr := range []string{cometd.TransportLongPolling, cometd.TransportWebSocket} {
		t.Run(tr, func(t *testing.T) {
			peer := nodepeer.Start(t, "faye_server.cjs", "--timeout", "1")
			base := peer.Expect(t, "LISTENING ", 30*time.Second)
			u, _ := url.Parse(base)
			c, rec := newBayeuxClient(t, cometd.Options{
				URL:        base,
				Transports: []string{tr},
				Header:     http.Header{"Origin": {"http://agent.example"}},
				Cookies:    []*http.Cookie{{Name: "gcbSessionServer", Value: "node-1", Path: "/"}},
			})
			if got := c.Transport(); got != tr {
				t.Fatalf("transport %q, want %q", got, tr)
			}
			if tr == cometd.TransportWebSocket {
				up := peer.Expect(t, "UPGRADE ", bayeuxWait)
				if !strings.Contains(up, "origin=http://agent.example") || !strings.Contains(up, "gcbSessionServer") {
					t.Fatalf("upgrade carried %q", up)
				}
			}
			first := c.ClientID()
			peer.Expect(t, "CONNECT "+first+" "+tr, bayeuxWait)

			if err := c.Subscribe(bayeuxCtx(t), "/chat"); err != nil {
				t.Fatal(err)
			}
			publishAndReceive(t, c, rec, "/chat", "hello "+u.Host)

			expireSession(t, base, first)
			// Long-polling: the next connect gets "401:<clientId>:Unknown client". Websocket: faye
			// closes the connection first; the 401 comes on the next one.
			err := rec.state(cometd.StateDisconnected).Err
			var be *cometd.Error
			if tr == cometd.TransportLongPolling && (!errors.As(err, &be) || be.Code != 401 || len(be.Args) != 1 || be.Args[0] != first) {
				t.Fatalf("disconnected with %v, want 401:%s:Unknown client", err, first)
			}
			t.Logf("disconnected: %v", err)
			e := rec.state(cometd.StateReestablished)
			if e.ClientID == "" || e.ClientID == first {
				t.Fatalf("reestablished as %q, first session %q", e.ClientID, first)
			}
			peer.Expect(t, "SUBSCRIBE "+e.ClientID+" /chat", bayeuxWait)
			peer.Expect(t, "CONNECT "+e.ClientID+" "+tr, bayeuxWait)
			if got := c.Transport(); got != tr {
				t.Fatalf("transport after re-handshake %q, want %q", got, tr)
			}
			publishAndReceive(t, c, rec, "/chat", "after expiry")

			if err := c.Disconnect(bayeuxCtx(t)); err != nil {
				t.Fatal(err)
			}
			if e := rec.state(cometd.StateTerminated); e.Err != nil {
				t.Fatalf("terminated with %v", e.Err)
			}
		})
	}
}
