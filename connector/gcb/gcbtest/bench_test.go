package gcbtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/coder/websocket"
)

// lean is a minimal Controller for the load measurements: one shared HTTP client, the
// BAYEUX_BROWSER cookie handled by hand, nothing kept per session on the client side.
type lean struct {
	hc      *http.Client
	url     string
	browser string
}

func (l *lean) post(msgs ...msg) ([]msg, error) {
	b, _ := json.Marshal(msgs)
	req, _ := http.NewRequest(http.MethodPost, l.url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if l.browser != "" {
		req.Header.Set("Cookie", "BAYEUX_BROWSER="+l.browser)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "BAYEUX_BROWSER" {
			l.browser = ck.Value
		}
	}
	raw, _ := io.ReadAll(resp.Body)
	var out []msg
	return out, json.Unmarshal(raw, &out)
}

// controller handshakes, connects once and joins s as Controller, over long-polling.
func (l *lean) controller(s *gcbtest.Session) (clientID string, err error) {
	hs, err := l.post(msg{"channel": "/meta/handshake", "id": "1", "version": "1.0", "supportedConnectionTypes": []string{lp}})
	if err != nil {
		return "", err
	}
	id, _ := hs[0]["clientId"].(string)
	replies, err := l.post(
		msg{"channel": "/meta/connect", "id": "2", "clientId": id, "connectionType": lp, "advice": msg{"timeout": 0}},
		msg{"channel": "/service/session/join", "id": "3", "clientId": id, "data": msg{"sessionToken": s.Token(), "role": 3}},
	)
	if err != nil {
		return "", err
	}
	for _, m := range replies {
		if m["id"] == "3" && m["successful"] != true {
			return "", fmt.Errorf("join: %v", m)
		}
	}
	return id, nil
}

type usage struct {
	heap, stack uint64
	goroutines  int
}

func measure() usage {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func report(b *testing.B, before, after usage, n int) {
	b.ReportMetric(float64(int64(after.heap)-int64(before.heap))/float64(n), "heapB/session")
	b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/float64(n), "stackB/session")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/session")
}

// BenchmarkLiveSessionMemory reports what 1,000 live sessions, each with a Controller joined
// over CometD, cost the server: heap and goroutine stack bytes, and goroutines, per session.
//
//   - idle: the Controllers are between connects (no request outstanding), through the
//     in-process transport; this is the server's own state per session.
//   - websocket-held: each Controller holds a /meta/connect on its own websocket; the figure
//     includes the connection on both ends (client and server are in this process) and the
//     server's reader goroutine.
func BenchmarkLiveSessionMemory(b *testing.B) {
	const n = 1000
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			c := gcbtest.NewCluster(gcbtest.Options{ConnectTimeout: time.Hour, MaxInterval: time.Hour})
			l := &lean{hc: &http.Client{Transport: c.Transport()}, url: c.Nodes()[0].CometDURL()}
			before := measure()
			for range n {
				s, err := c.CreateSession(0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := l.controller(s); err != nil {
					b.Fatal(err)
				}
			}
			after := measure()
			report(b, before, after, n)
			if got := c.LiveSessions(); got != n {
				b.Fatalf("%d live sessions", got)
			}
			c.Close()
		}
	})
	b.Run("websocket-held", func(b *testing.B) {
		for b.Loop() {
			c := gcbtest.NewCluster(gcbtest.Options{ConnectTimeout: time.Hour, MaxInterval: time.Hour})
			ctx := context.Background()
			u := "ws" + strings.TrimPrefix(c.Nodes()[0].CometDURL(), "http")
			conns := make([]*websocket.Conn, 0, n)
			before := measure()
			for range n {
				s, err := c.CreateSession(0)
				if err != nil {
					b.Fatal(err)
				}
				conn, _, err := websocket.Dial(ctx, u, nil)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
				write := func(msgs ...msg) []msg {
					raw, _ := json.Marshal(msgs)
					if err := conn.Write(ctx, websocket.MessageText, raw); err != nil {
						b.Fatal(err)
					}
					_, data, err := conn.Read(ctx)
					if err != nil {
						b.Fatal(err)
					}
					var out []msg
					_ = json.Unmarshal(data, &out)
					return out
				}
				id := write(msg{"channel": "/meta/handshake", "id": "1", "version": "1.0", "supportedConnectionTypes": []string{ws}})[0]["clientId"]
				write(msg{"channel": "/meta/connect", "id": "2", "clientId": id, "connectionType": ws, "advice": msg{"timeout": 0}},
					msg{"channel": "/service/session/join", "id": "3", "clientId": id, "data": msg{"sessionToken": s.Token(), "role": 3}})
				raw, _ := json.Marshal([]msg{{"channel": "/meta/connect", "id": "4", "clientId": id, "connectionType": ws}})
				if err := conn.Write(ctx, websocket.MessageText, raw); err != nil { // held for an hour
					b.Fatal(err)
				}
			}
			after := measure()
			report(b, before, after, n)
			for _, conn := range conns {
				conn.CloseNow()
			}
			c.Close()
		}
	})
}
