package cometd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// transport carries Bayeux message arrays for one session.
type transport interface {
	name() string
	// send delivers one JSON array. Long-polling performs the whole round trip and dispatches
	// the reply body before it returns; websocket only writes the frame (its reader dispatches).
	send(ctx context.Context, body []byte, scope []*pending) error
	// async reports whether replies arrive after send returns (websocket).
	async() bool
	// isDead reports whether the transport can carry nothing more (it tells the requests waiting
	// on it through Client.transportGone).
	isDead() bool
	err() error
	close()
}

// open makes a transport by name, dialing the websocket if needed.
func (c *Client) open(ctx context.Context, name string) (transport, error) {
	if name == TransportWebSocket {
		return c.dialWS(ctx)
	}
	if c.hc != nil {
		return &httpPolling{c: c}, nil
	}
	return &longPolling{c: c}, nil
}

// defaultDialer dials when Options.Dial is nil (shared by every client). Every dial has a
// context with a deadline.
var defaultDialer = &net.Dialer{}

// dial opens a connection to the server, TLS for https. raw is the TCP connection under it.
func (c *Client) dial(ctx context.Context) (conn, raw net.Conn, err error) {
	d := c.opts.Dial
	if d == nil {
		d = defaultDialer.DialContext
	}
	raw, err = d(ctx, "tcp", c.addr)
	if err != nil {
		return nil, nil, err
	}
	if !c.secure {
		return raw, raw, nil
	}
	tc := tls.Client(raw, tlsConfigFor(c.opts.TLSConfig, c.serverName))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, err
	}
	return tc, raw, nil
}

// tlsConfigs shares one *tls.Config per base config and server name between every client (a
// tls.Conn keeps its config for its whole life: one per connection would cost each session).
var tlsConfigs sync.Map // tlsKey -> *tls.Config

type tlsKey struct {
	base *tls.Config
	name string
}

var systemRoots = &tls.Config{}

// tlsConfigFor returns base (nil: system roots) for serverName, speaking HTTP/1.1 only.
func tlsConfigFor(base *tls.Config, serverName string) *tls.Config {
	if base == nil {
		base = systemRoots
	}
	k := tlsKey{base, serverName}
	if v, ok := tlsConfigs.Load(k); ok {
		return v.(*tls.Config)
	}
	cfg := base.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	cfg.NextProtos = []string{"http/1.1"}
	v, _ := tlsConfigs.LoadOrStore(k, cfg)
	return v.(*tls.Config)
}

// aLongTimeAgo is a deadline in the past: it interrupts the I/O in progress.
var aLongTimeAgo = time.Unix(1, 0)

// setDeadline bounds the I/O on conn by ctx's deadline (now+def when it has none), and makes
// ctx's cancellation interrupt it. stop reports whether the cancellation left conn untouched.
func setDeadline(ctx context.Context, conn net.Conn, def time.Duration) (stop func() bool) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(def)
	}
	return setDeadlineAt(ctx, conn, d)
}

// setDeadlineAt bounds the I/O on conn by d, and by ctx (nil: nothing to cancel).
func setDeadlineAt(ctx context.Context, conn net.Conn, d time.Time) (stop func() bool) {
	conn.SetDeadline(d)
	if ctx == nil || ctx.Done() == nil {
		return stopNothing
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
}

func stopNothing() bool { return true }

// ctxErrOf is ctx.Err(), nil for a nil ctx.
func ctxErrOf(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}

// setWriteDeadline is setDeadline for writes only.
func setWriteDeadline(ctx context.Context, conn net.Conn, def time.Duration) (stop func() bool) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(def)
	}
	conn.SetWriteDeadline(d)
	if ctx.Done() == nil {
		return stopNothing
	}
	return context.AfterFunc(ctx, func() { conn.SetWriteDeadline(aLongTimeAgo) })
}

// ioErr reports ctx's error for I/O that ctx cut short, and a deadline as DeadlineExceeded.
func ioErr(ctx context.Context, err error) error {
	if err := ctxErrOf(ctx); err != nil {
		return err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// deep runs fn on a short-lived goroutine and waits for it. The goroutines a session keeps
// (the websocket reader, the long-polling connect loop) call it for what needs a deep stack
// (JSON, dispatch, logging), so that their own stacks stay at the minimum while they wait: a
// goroutine's stack, once grown, is only shrunk by the garbage collector, and fn's stack goes
// back to the runtime's pool when fn returns.
func deep(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}
