package cometd_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

// TestCallResultInReply: remote-call style, the result is the publish reply's data.
func TestCallResultInReply(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				if m.Channel != "/service/echo" {
					return nil, false
				}
				r := bayeuxtest.OK(&m)
				r.Data = json.RawMessage(`{"echo":` + string(m.Data) + `}`)
				return []cometd.Message{r}, true
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			for i := range 3 {
				res, err := c.Call(ctxT(t), "/service/echo", i)
				if err != nil || string(res) != `{"echo":`+string(rune('0'+i))+`}` {
					t.Fatalf("call %d: %s %v", i, res, err)
				}
			}
		})
	}
}

// TestCallResultAsDelivery: the reply is successful:true without data, the result comes later
// as a delivery on the same channel with the call's id (on long-polling, through the connect).
func TestCallResultAsDelivery(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 2 * time.Second, WebSocket: true}
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				if m.Channel != "/service/join" {
					return nil, false
				}
				// An unrelated push with another id first, then the result.
				srv.Deliver(m.ClientID, cometd.Message{Channel: "/service/join", ID: "other", Data: json.RawMessage(`"not mine"`)})
				srv.Deliver(m.ClientID, cometd.Message{Channel: "/service/join", ID: m.ID, Data: json.RawMessage(`{"joined":true}`)})
				return []cometd.Message{bayeuxtest.OK(&m)}, true
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			res, err := c.Call(ctxT(t), "/service/join", map[string]string{"token": "123456789"})
			if err != nil || string(res) != `{"joined":true}` {
				t.Fatalf("call: %s %v", res, err)
			}
			if m := rec.message(); m.ID != "other" {
				t.Fatalf("delivery %+v, want the unrelated push", m)
			}
		})
	}
}

// TestCallDeliveryBeforeReply: cometd-nodejs-server writes queued messages before the replies
// in one body; the delivery still completes the call.
func TestCallDeliveryBeforeReply(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 2 * time.Second, WebSocket: true}
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				if m.Channel != "/service/join" {
					return nil, false
				}
				d := cometd.Message{Channel: m.Channel, ID: m.ID, Data: json.RawMessage(`"first"`)}
				return []cometd.Message{d, bayeuxtest.OK(&m)}, true
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			res, err := c.Call(ctxT(t), "/service/join", nil)
			if err != nil || string(res) != `"first"` {
				t.Fatalf("call: %s %v", res, err)
			}
		})
	}
}

// TestDeliveryWithIDIsNotAReply: faye pushes messages with the publisher's id; without
// `successful` such a message is a delivery for OnMessage even when its id and channel match a
// pending publish, whose reply is still the one with `successful`.
func TestDeliveryWithIDIsNotAReply(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				if m.Channel != "/chat" {
					return nil, false
				}
				echo := cometd.Message{Channel: "/chat", ID: m.ID, Data: m.Data}
				return []cometd.Message{echo, bayeuxtest.OK(&m)}, true
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			reply, err := c.Publish(ctxT(t), "/chat", "hello")
			if err != nil || !reply.OK() {
				t.Fatalf("publish: %+v %v", reply, err)
			}
			m := rec.message()
			if m.ID != reply.ID || m.IsReply() || string(m.Data) != `"hello"` {
				t.Fatalf("delivery %+v, reply %+v", m, reply)
			}
		})
	}
}

// TestFailedRepliesAreErrors: successful:false is a *Error parsed from "code:args:message", for
// publish, call and subscribe; a refused subscription is not remembered.
func TestFailedRepliesAreErrors(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
			srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
				switch m.Channel {
				case "/denied", "/service/denied":
					return []cometd.Message{bayeuxtest.Fail(&m, "403:"+m.Channel+",x:Publish denied", nil)}, true
				case "/meta/subscribe":
					if m.Subscription == "/secret" {
						return []cometd.Message{bayeuxtest.Fail(&m, "403:/secret:Subscription denied", nil)}, true
					}
				}
				return nil, false
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			reply, err := c.Publish(ctxT(t), "/denied", 1)
			var be *cometd.Error
			if !errors.As(err, &be) || be.Code != 403 || !slices.Equal(be.Args, []string{"/denied", "x"}) ||
				be.Message != "Publish denied" || be.Channel != "/denied" || reply.OK() || reply.Error == "" {
				t.Fatalf("publish: %+v %#v", reply, err)
			}
			if _, err := c.Call(ctxT(t), "/service/denied", 1); !errors.As(err, &be) || be.Code != 403 {
				t.Fatalf("call: %v", err)
			}
			if err := c.Subscribe(ctxT(t), "/secret"); !errors.As(err, &be) || be.Message != "Subscription denied" {
				t.Fatalf("subscribe: %v", err)
			}
			if subs := c.Subscriptions(); len(subs) != 0 {
				t.Fatalf("subscriptions %q", subs)
			}
		})
	}
}

// TestBatchIsOneRequest: Batch sends its messages in one POST or one frame and returns the
// replies in order.
func TestBatchIsOneRequest(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
			bodies := newLog[[]string]()
			srv.OnBody = func(c *bayeuxtest.Call) {
				var chans []string
				for _, m := range c.Body {
					if m.Channel != "/meta/connect" {
						chans = append(chans, m.Channel)
					}
				}
				if len(chans) > 0 && chans[0] != "/meta/handshake" {
					bodies.add(chans)
				}
			}
			c, rec := newClient(t, serve(t, srv), tr, nil)
			start(t, c, rec)
			replies, err := c.Batch(ctxT(t),
				cometd.Message{Channel: "/meta/subscribe", Subscription: "/a"},
				cometd.Message{Channel: "/service/x", Data: json.RawMessage(`1`)},
				cometd.Message{Channel: "/b", Data: json.RawMessage(`2`)},
			)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"/meta/subscribe", "/service/x", "/b"}
			for i, r := range replies {
				if r.Channel != want[i] || !r.OK() {
					t.Fatalf("reply %d: %+v", i, r)
				}
			}
			if got := bodies.next(t); !slices.Equal(got, want) {
				t.Fatalf("server saw a body with %q, want all of %q", got, want)
			}
			if subs := c.Subscriptions(); !slices.Equal(subs, []string{"/a"}) {
				t.Fatalf("subscriptions %q", subs)
			}
			if _, err := c.Batch(ctxT(t), cometd.Message{Channel: "/meta/connect"}); !errors.Is(err, cometd.ErrReservedInBatch) {
				t.Fatalf("batching a connect: %v", err)
			}
		})
	}
}

// singleObjects rewrites one-message reply arrays as a bare object, which servers may send.
type singleObjects struct{ h http.Handler }

func (s singleObjects) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	body := rec.Body.Bytes()
	var msgs []json.RawMessage
	if json.Unmarshal(body, &msgs) == nil && len(msgs) == 1 {
		body = msgs[0]
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// TestSingleObjectReplies: a reply body that is one JSON object, not an array, works.
func TestSingleObjectReplies(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 100 * time.Millisecond, BrowserCookie: true}
	c, rec := newClient(t, serveHandler(t, srv, singleObjects{srv}), cometd.TransportLongPolling, nil)
	start(t, c, rec)
	if err := c.Subscribe(ctxT(t), "/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctxT(t), "/b", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// bodyChannels records the channels of each request body (or frame) srv receives.
func bodyChannels(srv *bayeuxtest.Server) *log[[]string] {
	bodies := newLog[[]string]()
	srv.OnBody = func(c *bayeuxtest.Call) {
		var chans []string
		for _, m := range c.Body {
			chans = append(chans, m.Channel)
		}
		if len(chans) > 0 { // not the websocket's upgrade
			bodies.add(chans)
		}
	}
	return bodies
}

// TestStartCallRidesWithTheFirstConnect: StartCall sends the call in the request (long-polling)
// or frame (websocket) of the first connect, after the ready function returned, and returns its
// result; the client then runs as after Start. A result that comes as a delivery (successful:true
// without data) is waited for as Call waits for it.
func TestStartCallRidesWithTheFirstConnect(t *testing.T) {
	for _, tr := range bothTransports {
		for _, asDelivery := range []bool{false, true} {
			name := tr + "/in-reply"
			if asDelivery {
				name = tr + "/as-delivery"
			}
			t.Run(name, func(t *testing.T) {
				srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
				bodies := bodyChannels(srv)
				srv.Hook = func(_ *bayeuxtest.Call, m cometd.Message) ([]cometd.Message, bool) {
					if m.Channel != "/service/join" {
						return nil, false
					}
					r := bayeuxtest.OK(&m)
					if asDelivery {
						srv.Deliver(m.ClientID, cometd.Message{Channel: "/service/join", ID: m.ID, Data: json.RawMessage(`{"joined":` + string(m.Data) + `}`)})
					} else {
						r.Data = json.RawMessage(`{"joined":` + string(m.Data) + `}`)
					}
					return []cometd.Message{r}, true
				}
				c, rec := newClient(t, serve(t, srv), tr, nil)
				readyAt := -1
				res, err := c.StartCall(ctxT(t), "/service/join", 7, func(context.Context) error {
					readyAt = len(bodies.all())
					return nil
				})
				if err != nil || string(res) != `{"joined":7}` {
					t.Fatalf("StartCall: %s %v", res, err)
				}
				rec.state(cometd.StateConnected)
				if got := bodies.next(t); !slices.Equal(got, []string{"/meta/handshake"}) {
					t.Fatalf("first body %q, want the handshake alone", got)
				}
				if readyAt != 1 {
					t.Fatalf("ready was called after %d bodies, want 1 (the handshake)", readyAt)
				}
				if got := bodies.next(t); !slices.Equal(got, []string{"/meta/connect", "/service/join"}) {
					t.Fatalf("second body %q, want the first connect with the call", got)
				}
				// The session runs on: another call, and a second StartCall is refused.
				if res, err := c.Call(ctxT(t), "/service/join", 8); err != nil || string(res) != `{"joined":8}` {
					t.Fatalf("call after StartCall: %s %v", res, err)
				}
				if _, err := c.StartCall(ctxT(t), "/service/join", 9, nil); !errors.Is(err, cometd.ErrStarted) {
					t.Fatalf("second StartCall: %v, want ErrStarted", err)
				}
			})
		}
	}
}

// TestStartCallReadyRefuses: an error of the ready function fails StartCall with it and closes
// the client; neither the connect nor the call is sent.
func TestStartCallReadyRefuses(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true}
			bodies := bodyChannels(srv)
			c, rec := newClient(t, serve(t, srv), tr, nil)
			refused := errors.New("not yet")
			if _, err := c.StartCall(ctxT(t), "/service/join", 1, func(context.Context) error { return refused }); !errors.Is(err, refused) {
				t.Fatalf("StartCall: %v, want the ready function's error", err)
			}
			select {
			case <-c.Done():
			case <-time.After(wait):
				t.Fatal("the client still runs after a refused StartCall")
			}
			rec.noState()
			if got := bodies.all(); len(got) != 1 || !slices.Equal(got[0], []string{"/meta/handshake"}) {
				t.Fatalf("server saw %q, want the handshake alone", got)
			}
		})
	}
}
