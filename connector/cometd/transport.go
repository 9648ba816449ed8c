package cometd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// transport carries Bayeux message arrays for one session.
type transport interface {
	name() string
	// send delivers one JSON array. Long-polling performs the whole round trip and dispatches
	// the reply body before it returns; websocket only writes the frame (its reader dispatches).
	send(ctx context.Context, body []byte, scope []*pending) error
	// async reports whether replies arrive after send returns (websocket).
	async() bool
	// dead is closed when the transport can carry nothing more (nil channel: never).
	dead() <-chan struct{}
	err() error
	close()
}

// NewSharedTransport returns an *http.Transport for Options.RoundTripper, to share between many
// sessions to the same servers: a clone of http.DefaultTransport (proxy, dial and TLS settings)
// that keeps up to sessionsPerHost idle connections per host (each long-polling session parks
// one connection in its /meta/connect and reuses pooled ones for its other requests) and uses
// 2 KiB read and 1 KiB write buffers instead of 4 KiB each (Bayeux messages are small; larger
// bodies are read through). Close it with CloseIdleConnections when all clients are closed.
func NewSharedTransport(sessionsPerHost int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no overall limit
	t.MaxIdleConnsPerHost = max(sessionsPerHost, 2)
	t.ReadBufferSize = 2 << 10
	t.WriteBufferSize = 1 << 10
	return t
}

// open makes a transport by name, dialing the websocket if needed.
func (c *Client) open(ctx context.Context, name string) (transport, error) {
	if name == TransportWebSocket {
		return c.dialWS(ctx)
	}
	return &longPolling{c: c}, nil
}

// longPolling POSTs JSON arrays; each request's reply body is dispatched when it arrives.
type longPolling struct{ c *Client }

func (*longPolling) name() string          { return TransportLongPolling }
func (*longPolling) async() bool           { return false }
func (*longPolling) dead() <-chan struct{} { return nil }
func (*longPolling) err() error            { return nil }
func (*longPolling) close()                {}

func (lp *longPolling) send(ctx context.Context, body []byte, scope []*pending) error {
	msgs, err := lp.c.post(ctx, body)
	if err != nil {
		return err
	}
	lp.c.dispatch(msgs, scope)
	return nil
}

// post sends body and decodes the reply. The per-session http.Client adds the jar's cookies.
func (c *Client) post(ctx context.Context, body []byte) ([]Message, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	// A fresh header map per request: the client adds the jar's cookies to it.
	h := make(http.Header, len(c.opts.Header)+1)
	for k, v := range c.opts.Header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json;charset=UTF-8")
	req.Header = h
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, &HTTPError{StatusCode: resp.StatusCode}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxMessageSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > c.opts.MaxMessageSize {
		return nil, fmt.Errorf("cometd: reply larger than %d bytes", c.opts.MaxMessageSize)
	}
	return DecodeMessages(b)
}

// wsTransport is one websocket connection and its reader goroutine.
type wsTransport struct {
	c      *Client
	conn   *websocket.Conn
	deadCh chan struct{}
	once   sync.Once
	cause  error
}

// dialWS upgrades to a websocket with the session's http.Client (so the jar's cookies go on the
// upgrade) and the extra headers, and starts the reader.
func (c *Client) dialWS(ctx context.Context) (*wsTransport, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.MaxNetworkDelay)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPClient:      c.http,
		HTTPHeader:      c.opts.Header,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			c.wsRefused.Store(true)
			return nil, errors.Join(&HTTPError{StatusCode: resp.StatusCode}, err)
		}
		return nil, err
	}
	conn.SetReadLimit(c.opts.MaxMessageSize)
	w := &wsTransport{c: c, conn: conn, deadCh: make(chan struct{})}
	if !c.goNet(w.read) {
		conn.CloseNow()
		return nil, ErrClosed
	}
	return w, nil
}

func (*wsTransport) name() string            { return TransportWebSocket }
func (*wsTransport) async() bool             { return true }
func (w *wsTransport) dead() <-chan struct{} { return w.deadCh }

func (w *wsTransport) err() error {
	select {
	case <-w.deadCh:
		return fmt.Errorf("cometd: websocket closed: %w", w.cause)
	default:
		return nil
	}
}

func (w *wsTransport) send(ctx context.Context, body []byte, _ []*pending) error {
	select {
	case <-w.deadCh:
		return w.err()
	default:
	}
	return w.conn.Write(ctx, websocket.MessageText, body)
}

func (w *wsTransport) close() {
	w.fail(errClosedLocally)
	w.conn.CloseNow()
}

var errClosedLocally = errors.New("closed by the client")

func (w *wsTransport) fail(err error) {
	w.once.Do(func() {
		w.cause = err
		close(w.deadCh)
	})
}

// read is the connection's only reader. It reads with a context that is never done (no
// per-read timer); closing the connection ends it.
func (w *wsTransport) read() {
	for {
		_, b, err := w.conn.Read(context.Background())
		if err != nil {
			w.fail(err)
			w.conn.CloseNow()
			w.c.transportDied(w)
			return
		}
		msgs, err := DecodeMessages(b)
		if err != nil {
			w.c.log.Warn("undecodable websocket frame dropped", "error", err, "bytes", len(b))
			continue
		}
		w.c.dispatch(msgs, nil)
	}
}
