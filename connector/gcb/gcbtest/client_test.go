package gcbtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A minimal raw Bayeux client for the tests: JSON over long-polling or websocket, written
// here so that the server is not tested only against code that shares its assumptions.

type msg = map[string]any

const (
	lp = "long-polling"
	ws = "websocket"
)

type client struct {
	t         testing.TB
	transport string
	url       string // the CometD URL
	jar       http.CookieJar
	hc        *http.Client

	mu         sync.Mutex
	nextID     int
	clientID   string
	wsConn     *websocket.Conn
	pending    map[string]chan msg // websocket: replies by id
	connecting bool

	deliveries chan msg // messages that are not replies to our requests
	connects   chan msg // every /meta/connect reply the connect loop got

	stop context.CancelFunc
	done chan struct{} // closed by close: goroutines stop handing messages over
	wg   sync.WaitGroup
}

// push hands m over on ch unless the client is closing.
func (c *client) push(ch chan msg, m msg) {
	select {
	case ch <- m:
	case <-c.done:
	}
}

// newClient makes a client for cometdURL; sticky, if not "", is sent as the gcbSessionServer
// cookie on every request (and the websocket upgrade).
func newClient(t testing.TB, transport, cometdURL, sticky string) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	if sticky != "" {
		u, _ := url.Parse(cometdURL)
		jar.SetCookies(u, []*http.Cookie{{Name: "gcbSessionServer", Value: sticky, Path: "/"}})
	}
	c := &client{
		t:          t,
		transport:  transport,
		url:        cometdURL,
		jar:        jar,
		hc:         &http.Client{Jar: jar, Transport: &http.Transport{}},
		pending:    make(map[string]chan msg),
		deliveries: make(chan msg, 64),
		connects:   make(chan msg, 64),
		done:       make(chan struct{}),
		stop:       func() {},
	}
	t.Cleanup(c.close)
	return c
}

func (c *client) close() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	c.stop()
	c.mu.Lock()
	conn := c.wsConn
	c.mu.Unlock()
	if conn != nil {
		conn.CloseNow()
	}
	c.wg.Wait()
	c.hc.CloseIdleConnections()
}

func (c *client) id() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	return fmt.Sprint(c.nextID)
}

// post sends one long-polling request and returns the reply array.
func (c *client) post(ctx context.Context, body any) ([]msg, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var out []msg
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%w: %s", err, raw)
	}
	return out, nil
}

// dialWS opens the websocket and starts its reader.
func (c *client) dialWS(ctx context.Context) error {
	u := "ws" + strings.TrimPrefix(c.url, "http")
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.hc})
	if err != nil {
		return err
	}
	conn.SetReadLimit(1 << 20)
	c.mu.Lock()
	c.wsConn = conn
	c.mu.Unlock()
	c.wg.Go(func() { c.readWS(conn) })
	return nil
}

func (c *client) readWS(conn *websocket.Conn) {
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			return
		}
		var msgs []msg
		if err := json.Unmarshal(data, &msgs); err != nil {
			c.t.Errorf("websocket frame: %v: %s", err, data)
			return
		}
		for _, m := range msgs {
			c.route(m)
		}
	}
}

// route hands a websocket message to whoever waits for it.
func (c *client) route(m msg) {
	ch, _ := m["channel"].(string)
	if ch == "/meta/connect" {
		c.mu.Lock()
		loop := c.connecting
		c.mu.Unlock()
		if loop {
			c.push(c.connects, m)
			if m["successful"] == true {
				_ = c.wsSend(context.Background(), c.connectMsg(-1))
			}
			return
		}
	}
	if id, ok := m["id"].(string); ok {
		c.mu.Lock()
		w := c.pending[id]
		c.mu.Unlock()
		if w != nil {
			c.push(w, m)
			return
		}
	}
	c.push(c.deliveries, m)
}

func (c *client) wsSend(ctx context.Context, msgs ...msg) error {
	c.mu.Lock()
	conn := c.wsConn
	c.mu.Unlock()
	b, _ := json.Marshal(msgs)
	return conn.Write(ctx, websocket.MessageText, b)
}

// request sends msgs in one batch and returns every reply carrying one of their ids; over
// websocket it waits until each message has its reply without data (the acknowledgement).
func (c *client) request(ctx context.Context, msgs ...msg) ([]msg, error) {
	if c.transport == lp {
		return c.post(ctx, msgs)
	}
	type waiter struct {
		id string
		ch chan msg
	}
	var ws []waiter
	c.mu.Lock()
	for _, m := range msgs {
		id := m["id"].(string)
		w := waiter{id, make(chan msg, 4)}
		c.pending[id] = w.ch
		ws = append(ws, w)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		for _, w := range ws {
			delete(c.pending, w.id)
		}
		c.mu.Unlock()
	}()
	if err := c.wsSend(ctx, msgs...); err != nil {
		return nil, err
	}
	var out []msg
	for _, w := range ws {
		for done := false; !done; {
			select {
			case m := <-w.ch:
				out = append(out, m)
				_, hasData := m["data"]
				done = !hasData || strings.HasPrefix(m["channel"].(string), "/meta/")
			case <-ctx.Done():
				return out, ctx.Err()
			}
		}
	}
	return out, nil
}

func (c *client) handshake(ctx context.Context) (msg, error) {
	if c.transport == ws {
		c.mu.Lock()
		open := c.wsConn != nil
		c.mu.Unlock()
		if !open {
			if err := c.dialWS(ctx); err != nil {
				return nil, err
			}
		}
	}
	replies, err := c.request(ctx, msg{
		"channel": "/meta/handshake", "id": c.id(), "version": "1.0",
		"supportedConnectionTypes": []string{c.transport},
	})
	if err != nil {
		return nil, err
	}
	if len(replies) != 1 || replies[0]["successful"] != true {
		return nil, fmt.Errorf("handshake: %v", replies)
	}
	c.mu.Lock()
	c.clientID, _ = replies[0]["clientId"].(string)
	c.mu.Unlock()
	return replies[0], nil
}

func (c *client) connectMsg(timeout int) msg {
	m := msg{"channel": "/meta/connect", "id": c.id(), "clientId": c.ID(), "connectionType": c.transport}
	if timeout >= 0 {
		m["advice"] = msg{"timeout": timeout}
	}
	return m
}

func (c *client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// start handshakes, sends the first connect (timeout 0) and starts the connect loop, which
// reports every connect reply on c.connects and every other pushed message on c.deliveries;
// it stops after an unsuccessful connect.
func (c *client) start(ctx context.Context) {
	c.t.Helper()
	if _, err := c.handshake(ctx); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	first, err := c.request(ctx, c.connectMsg(0))
	if err != nil || len(first) == 0 || first[len(first)-1]["successful"] != true {
		c.t.Fatalf("first connect: %v %v", first, err)
	}
	c.loop()
}

// loop runs the connect loop.
func (c *client) loop() {
	if c.transport == ws {
		c.mu.Lock()
		c.connecting = true
		c.mu.Unlock()
		if err := c.wsSend(context.Background(), c.connectMsg(-1)); err != nil {
			c.t.Errorf("connect: %v", err)
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := c.stop
	c.stop = func() { cancel(); stop() }
	c.wg.Go(func() {
		for {
			replies, err := c.post(ctx, []msg{c.connectMsg(-1)})
			if err != nil {
				if ctx.Err() == nil {
					c.push(c.connects, msg{"channel": "/meta/connect", "successful": false, "transportError": err.Error()})
				}
				return
			}
			ok := true
			for _, m := range replies {
				if m["channel"] == "/meta/connect" {
					c.push(c.connects, m)
					ok = m["successful"] == true
				} else {
					c.push(c.deliveries, m)
				}
			}
			if !ok {
				return
			}
		}
	})
}

// publish sends a publish and returns the result (the reply that carries data, if any) and
// the acknowledgement.
func (c *client) publish(ctx context.Context, channel string, data any) (result, ack msg, err error) {
	id := c.id()
	replies, err := c.request(ctx, msg{"channel": channel, "id": id, "clientId": c.ID(), "data": data})
	if err != nil {
		return nil, nil, err
	}
	for _, m := range replies {
		if m["id"] != id {
			continue
		}
		if _, ok := m["data"]; ok && result == nil {
			result = m
		} else {
			ack = m
		}
	}
	if ack == nil {
		return result, nil, errors.New("no acknowledgement")
	}
	return result, ack, nil
}

// join joins as role and returns the join result's data; it fails the test on refusal.
func (c *client) join(ctx context.Context, token string, role int, name string) msg {
	c.t.Helper()
	res, ack, err := c.publish(ctx, "/service/session/join", msg{"sessionToken": token, "role": role, "name": name})
	if err != nil {
		c.t.Fatalf("join: %v", err)
	}
	if res == nil || res["successful"] != true || ack["successful"] != true {
		c.t.Fatalf("join refused: result %v ack %v", res, ack)
	}
	return res["data"].(msg)
}

// refused publishes and returns the error string of a refusal; it fails the test otherwise.
func (c *client) refused(ctx context.Context, channel string, data any) string {
	c.t.Helper()
	res, ack, err := c.publish(ctx, channel, data)
	if err != nil {
		c.t.Fatalf("%s: %v", channel, err)
	}
	if ack["successful"] != false || res == nil || res["successful"] != false {
		c.t.Fatalf("%s: not refused: result %v ack %v", channel, res, ack)
	}
	if res["error"] != ack["error"] {
		t := c.t
		t.Errorf("%s: result error %v, ack error %v", channel, res["error"], ack["error"])
	}
	e, _ := ack["error"].(string)
	return e
}

// next waits for the next delivery on channel (others are passed over).
func (c *client) next(channel string, timeout time.Duration) msg {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-c.deliveries:
			if m["channel"] == channel {
				return m
			}
			c.t.Logf("passing over %v", m)
		case <-deadline:
			c.t.Fatalf("no %s within %v", channel, timeout)
			return nil
		}
	}
}

// failedConnect waits for an unsuccessful connect reply, passing over successful ones.
func (c *client) failedConnect(timeout time.Duration) msg {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-c.connects:
			if m["successful"] != true {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no failed connect within %v", timeout)
			return nil
		}
	}
}
