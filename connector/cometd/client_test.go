package cometd_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

func TestPubSubDisconnect(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr, func(t *testing.T) {
			srv := &bayeuxtest.Server{Timeout: 300 * time.Millisecond, WebSocket: true, BrowserCookie: true}
			url := serve(t, srv)
			c, rec := newClient(t, url, tr, nil)
			start(t, c, rec)
			if got := c.Transport(); got != tr {
				t.Fatalf("transport %q, want %q", got, tr)
			}
			if err := c.Subscribe(ctxT(t), "/chat"); err != nil {
				t.Fatal(err)
			}
			reply, err := c.Publish(ctxT(t), "/chat", map[string]string{"text": "hi"})
			if err != nil || !reply.OK() {
				t.Fatalf("publish: %+v %v", reply, err)
			}
			m := rec.message()
			if m.Channel != "/chat" || string(m.Data) != `{"text":"hi"}` {
				t.Fatalf("delivery %+v", m)
			}
			if err := c.Disconnect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if e := rec.state(cometd.StateTerminated); e.Err != nil {
				t.Fatalf("terminated with %v", e.Err)
			}
			<-c.Done()
			if n := srv.Sessions(); n != 0 {
				t.Fatalf("%d sessions left on the server", n)
			}
			_ = json.RawMessage{}
		})
	}
}
