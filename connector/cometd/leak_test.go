package cometd_test

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) != "" {
		serveBenchServer() // the benchmark's server process
		return
	}
	goleak.VerifyTestMain(m)
}

// TestNoGoroutineLeaks: a client that started, re-handshook and stopped (by Disconnect or by
// Close) leaves no goroutine behind, on either transport.
func TestNoGoroutineLeaks(t *testing.T) {
	srv := &bayeuxtest.Server{Timeout: 200 * time.Millisecond, WebSocket: true, BrowserCookie: true}
	url := serve(t, srv)
	for _, tr := range bothTransports {
		for _, stop := range []string{"disconnect", "close"} {
			t.Run(tr+"/"+stop, func(t *testing.T) {
				defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
				c, rec := newClient(t, url, tr, nil) // a transport of its own, closed with the client
				start(t, c, rec)
				if err := c.Subscribe(ctxT(t), "/a"); err != nil {
					t.Fatal(err)
				}
				srv.Expire(c.ClientID())
				rec.state(cometd.StateDisconnected)
				rec.state(cometd.StateReestablished)
				srv.Publish("/a", 1)
				rec.message()
				if stop == "disconnect" {
					if err := c.Disconnect(ctxT(t)); err != nil {
						t.Fatal(err)
					}
				} else {
					c.Close()
				}
				rec.state(cometd.StateTerminated)
			})
		}
	}
}
