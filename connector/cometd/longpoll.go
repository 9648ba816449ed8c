package cometd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// longPolling POSTs JSON arrays over keep-alive connections of the client's own: one carries the
// held /meta/connect, the other every other request, each reused from one request to the next.
// The goroutine that sends a request reads its reply: there is no read or write loop, and while
// a request waits for its reply it holds no buffer (see lpRequest).
type longPolling struct {
	c      *Client
	mu     sync.Mutex
	idle   [2]*httpConn // by slot
	busy   []*httpConn  // in use, closed by close
	closed bool
}

// wireBufs holds the buffers long-polling requests are written from, taken back once the request
// is written. 10,000 sessions on long-polling renew their connects a few hundred times a second: a
// fresh buffer for each request was a fifth of the bytes a renewal allocated
// (BenchmarkConnectRenewal). A connect's body is not pooled: it is kept while the connect is held
// (for a request sent again), and a pooled buffer, larger than the body, would be kept with it.
var wireBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledBuf bounds the buffers kept for reuse: a rare large request does not stay pinned.
const maxPooledBuf = 16 << 10

func getWireBuf() *[]byte { return wireBufs.Get().(*[]byte) }

// putWireBuf gives b back, holding buf (b's contents, possibly grown past it), for reuse.
func putWireBuf(b *[]byte, buf []byte) {
	if cap(buf) > maxPooledBuf {
		return
	}
	*b = buf[:0]
	wireBufs.Put(b)
}

// Slots of the kept connections.
const (
	slotConnect = 0
	slotOther   = 1
)

// idleTimeout is how long the connection for requests other than /meta/connect is kept idle.
// Such requests come in bursts (the handshake, then the Genesys join right behind it; much
// later the stop), so a short keep is enough to reuse it within a burst; then it is closed, by a
// timer that exists only while the connection is idle. Servers close theirs sooner or later
// anyway (Jetty after 30 s, Node after 5 s); closing ours frees the file descriptor of a session
// that only waits: a burst of 10,000 joins would otherwise hold two descriptors per session for
// as long as the keep, twice what a 20,000-file limit allows.
const idleTimeout = 2 * time.Second

// freshIdle: a kept connection idle for less than this is reused without the peek (see get).
const freshIdle = 100 * time.Millisecond

// httpConn is one keep-alive connection.
type httpConn struct {
	nc     net.Conn
	raw    net.Conn    // the TCP connection (nc itself unless TLS)
	idleAt int64       // unix nanoseconds
	timer  *time.Timer // closes it once idle for idleTimeout (the "other" slot only)
	first  [1]byte
}

func (*longPolling) name() string { return TransportLongPolling }
func (*longPolling) async() bool  { return false }
func (*longPolling) isDead() bool { return false }
func (*longPolling) err() error   { return nil }

// close closes every connection, interrupting the requests in flight.
func (lp *longPolling) close() {
	lp.mu.Lock()
	lp.closed = true
	conns := append(lp.busy, lp.idle[0], lp.idle[1])
	lp.busy, lp.idle = nil, [2]*httpConn{}
	lp.mu.Unlock()
	for _, hc := range conns {
		if hc != nil {
			hc.nc.Close()
		}
	}
}

func (lp *longPolling) send(ctx context.Context, body []byte, scope []*pending) error {
	slot := slotOther
	if len(scope) == 1 && scope[0].channel == "/meta/connect" {
		slot = slotConnect
	}
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(lp.c.opts.MaxNetworkDelay)
	}
	r, err := lp.roundTrip(ctx, d, body, slot)
	if err != nil {
		return err
	}
	msgs, err := DecodeMessages(r.body)
	if err != nil {
		return err
	}
	lp.c.dispatch(msgs, scope)
	return nil
}

// roundTrip POSTs body on the slot's connection and returns the 2xx reply.
func (lp *longPolling) roundTrip(ctx context.Context, deadline time.Time, body []byte, slot int) (*reply, error) {
	q, err := lp.start(ctx, deadline, body, slot)
	for err == nil {
		q.await()
		var r *reply
		if r, err = q.finish(); err == nil || !errors.Is(err, errSendAgain) {
			return r, err
		}
		q, err = lp.start(ctx, deadline, body, slot)
	}
	return nil, err
}

// lpRequest is one POST on a kept connection: start writes it, await waits for the first byte
// of its reply (a small stack, no buffer), finish reads the rest.
type lpRequest struct {
	lp     *longPolling
	ctx    context.Context
	hc     *httpConn
	slot   int
	reused bool
	again  bool // may be sent again on a new connection (see finish)
	stop   func() bool
	n      int
	err    error
}

// errSendAgain says that the request failed on a reused connection before any byte of its reply
// came: the server closed the idle connection as it was reused. The request is sent once more on
// a new connection.
var errSendAgain = errors.New("cometd: kept connection closed by the server")

// start takes the slot's connection (dialing one if needed) and writes the request, bounded by
// deadline: deadlines on the connection, and ctx's cancellation cuts them short (no goroutine
// per request). A nil ctx has nothing to cancel but closing the transport.
func (lp *longPolling) start(ctx context.Context, deadline time.Time, body []byte, slot int) (*lpRequest, error) {
	c := lp.c
	buf := getWireBuf()
	req := appendPost(*buf, c.uri, c.host, c.opts.Header, c.jar.header(c.path, time.Now()), body)
	defer func() { putWireBuf(buf, req) }() // written (or failed) by then: the kernel has the bytes
	for attempt := 0; ; attempt++ {
		hc, reused, err := lp.get(ctx, deadline, slot)
		if err != nil {
			return nil, err
		}
		q := &lpRequest{lp: lp, ctx: ctx, hc: hc, slot: slot, reused: reused, again: reused && attempt == 0}
		q.stop = setDeadlineAt(ctx, hc.nc, deadline)
		if _, err := hc.nc.Write(req); err != nil {
			q.stop()
			lp.drop(hc)
			if q.again && ctxErrOf(ctx) == nil {
				continue
			}
			return nil, ioErr(ctx, err)
		}
		return q, nil
	}
}

// await waits for the first byte of the reply (or a failure).
func (q *lpRequest) await() { q.n, q.err = q.hc.nc.Read(q.hc.first[:]) }

// finish reads the rest of the reply, keeps the connection for the next request when it can,
// stores the cookies, and returns a 2xx reply (else *HTTPError). errSendAgain: start again.
func (q *lpRequest) finish() (*reply, error) {
	lp, hc, c := q.lp, q.hc, q.lp.c
	r, err := func() (*reply, error) {
		if q.n == 0 {
			err := q.err
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, err
		}
		br := newWireReader(hc.nc, hc.first[:q.n])
		defer br.release()
		r, err := readReply(br, c.opts.MaxMessageSize, false)
		if err == nil && len(br.buffered()) > 0 {
			r.keepAlive = false // bytes past the reply: the connection is not trusted again
		}
		return r, err
	}()
	reusable := q.stop() && err == nil && r.keepAlive
	if err != nil {
		lp.drop(hc)
		if q.again && q.n == 0 && ctxErrOf(q.ctx) == nil && !isTimeout(err) && !lp.isClosed() {
			c.log.Debug("kept connection closed by the server; sending again", "error", err)
			return nil, errSendAgain
		}
		return nil, ioErr(q.ctx, err)
	}
	now := time.Now()
	for _, sc := range r.setCookies {
		c.jar.setCookie(sc, c.path, now)
	}
	if reusable {
		lp.put(hc, q.slot)
	} else {
		lp.drop(hc)
	}
	if r.status < 200 || r.status > 299 {
		return nil, &HTTPError{StatusCode: r.status}
	}
	return r, nil
}

func (lp *longPolling) isClosed() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return lp.closed
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// get takes the slot's idle connection, or dials a new one (bounded by deadline, and by ctx or
// the client's life).
func (lp *longPolling) get(ctx context.Context, deadline time.Time, slot int) (hc *httpConn, reused bool, err error) {
	lp.mu.Lock()
	if lp.closed {
		lp.mu.Unlock()
		return nil, false, ErrClosed
	}
	hc = lp.idle[slot]
	lp.idle[slot] = nil
	if hc != nil {
		lp.busy = append(lp.busy, hc)
		if hc.timer != nil {
			hc.timer.Stop()
			hc.timer = nil
		}
	}
	lp.mu.Unlock()
	if hc != nil {
		// A connection whose reply was just read (the held connect's, sent again at once) is
		// reused without asking the kernel whether the server closed it: a server closes a kept
		// connection after seconds of idleness, not right after a reply, and a request that fails
		// on a reused connection before any byte of its reply is sent once more anyway. The peek
		// is a system call per request that a waiting session would pay every connect period.
		if time.Now().UnixNano()-hc.idleAt < int64(freshIdle) || !peerClosed(hc.raw, hc.raw != hc.nc) {
			return hc, true, nil
		}
		lp.drop(hc)
	}
	if ctx == nil {
		ctx = lp.c.lifeCtx()
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	nc, raw, err := lp.c.dial(dctx)
	cancel()
	if err != nil {
		return nil, false, err
	}
	hc = &httpConn{nc: nc, raw: raw}
	lp.mu.Lock()
	if lp.closed {
		lp.mu.Unlock()
		nc.Close()
		return nil, false, ErrClosed
	}
	lp.busy = append(lp.busy, hc)
	lp.mu.Unlock()
	return hc, false, nil
}

// put keeps hc idle in its slot (or closes it when the slot is taken).
func (lp *longPolling) put(hc *httpConn, slot int) {
	lp.mu.Lock()
	lp.unbusyLocked(hc)
	if lp.closed || lp.idle[slot] != nil {
		lp.mu.Unlock()
		hc.nc.Close()
		return
	}
	lp.idle[slot] = hc
	hc.idleAt = time.Now().UnixNano()
	if slot == slotOther {
		hc.timer = time.AfterFunc(idleTimeout, func() { lp.closeIdle(hc) })
	}
	lp.mu.Unlock()
}

// closeIdle closes hc if it is still the idle "other" connection (its timer fired).
func (lp *longPolling) closeIdle(hc *httpConn) {
	lp.mu.Lock()
	if lp.idle[slotOther] != hc {
		lp.mu.Unlock()
		return
	}
	lp.idle[slotOther] = nil
	hc.timer = nil
	lp.mu.Unlock()
	hc.nc.Close()
}

// drop closes hc and forgets it.
func (lp *longPolling) drop(hc *httpConn) {
	lp.mu.Lock()
	lp.unbusyLocked(hc)
	lp.mu.Unlock()
	hc.nc.Close()
}

func (lp *longPolling) unbusyLocked(hc *httpConn) {
	for i, b := range lp.busy {
		if b == hc {
			lp.busy = append(lp.busy[:i], lp.busy[i+1:]...)
			break
		}
	}
	if len(lp.busy) == 0 {
		lp.busy = nil
	}
}

// httpPolling is long-polling through net/http, when Options.RoundTripper is set: each request
// goes through the RoundTripper (an HTTP proxy, a test transport), with the client's own jar.
type httpPolling struct{ c *Client }

func (*httpPolling) name() string { return TransportLongPolling }
func (*httpPolling) async() bool  { return false }
func (*httpPolling) isDead() bool { return false }
func (*httpPolling) err() error   { return nil }
func (*httpPolling) close()       {}

func (hp *httpPolling) send(ctx context.Context, body []byte, scope []*pending) error {
	c := hp.c
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	// A fresh header map per request: the client adds the jar's cookies to it.
	h := make(http.Header, len(c.opts.Header)+1)
	for k, v := range c.opts.Header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json;charset=UTF-8")
	req.Header = h
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return &HTTPError{StatusCode: resp.StatusCode}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxMessageSize+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > c.opts.MaxMessageSize {
		return fmt.Errorf("%w (%d bytes)", errReplyTooBig, c.opts.MaxMessageSize)
	}
	msgs, err := DecodeMessages(b)
	if err != nil {
		return err
	}
	c.dispatch(msgs, scope)
	return nil
}
