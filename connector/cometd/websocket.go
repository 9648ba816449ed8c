package cometd

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	randv2 "math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// A small RFC 6455 client: the upgrade over a connection of our own, client frames masked, text,
// binary and continuation frames, ping answered with pong, the close handshake, no extensions.

// Frame opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close codes we send or check.
const (
	closeNormal        = 1000
	closeProtocolError = 1002
	closeNoStatus      = 1005
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// wsCloseWait bounds the wait for the server's close frame after ours (the close handshake).
const wsCloseWait = time.Second

// wsGUID is the RFC 6455 key suffix.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsCloseError is a websocket closed with a close frame (remote), or a protocol error found in
// the server's frames (local: we close with code).
type wsCloseError struct {
	code   int
	reason string
	remote bool
}

func (e *wsCloseError) Error() string {
	who := "protocol error"
	if e.remote {
		who = "closed by the server"
	}
	s := "websocket " + who + ": " + strconv.Itoa(e.code)
	if e.reason != "" {
		s += " " + e.reason
	}
	return s
}

func protocolError(reason string) error {
	return &wsCloseError{code: closeProtocolError, reason: reason}
}

// frameReader reads the server's frames straight from the connection: a fixed buffer for frame
// headers, payload buffers only while a frame is read (small ones from bufPool: recycle).
type frameReader struct {
	src   io.Reader
	left  []byte  // bytes that came with the upgrade reply, read first
	ahead *[]byte // from bufPool while next runs: bytes read ahead, left points into it
	hdr   [8]byte
	have  int // header bytes already in hdr (see wait)
	max   int64
	msg   []byte // a fragmented data message being assembled
	msgOp byte
	inMsg bool
}

func (f *frameReader) read(p []byte) error {
	for len(p) > 0 {
		if len(f.left) > 0 {
			n := copy(p, f.left)
			f.left, p = f.left[n:], p[n:]
			continue
		}
		if len(p) >= readBufSize/2 { // a large payload: straight into it
			_, err := io.ReadFull(f.src, p)
			return err
		}
		if f.ahead == nil { // header and payload in one read, into a buffer held while next runs
			f.ahead = bufPool.Get().(*[]byte)
		}
		n, err := f.src.Read(*f.ahead)
		if n > 0 {
			f.left = (*f.ahead)[:n]
			continue
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	return nil
}

// release gives back the read-ahead buffer, keeping (copied) the bytes read past the frame.
func (f *frameReader) release() {
	if f.ahead == nil {
		return
	}
	if len(f.left) > 0 {
		f.left = append([]byte(nil), f.left...)
	} else {
		f.left = nil
	}
	bufPool.Put(f.ahead)
	f.ahead = nil
}

// payload returns a buffer of n bytes; small ones come from bufPool.
func payload(n int64) []byte {
	if n <= readBufSize {
		bp := bufPool.Get().(*[]byte)
		return (*bp)[:n]
	}
	return make([]byte, n)
}

// recycle returns a buffer that payload may have taken from bufPool.
func recycle(b []byte) {
	if cap(b) == readBufSize {
		b = b[:readBufSize]
		bufPool.Put(&b)
	}
}

// wait waits for the first byte of the next frame, with a small stack and no buffer.
func (f *frameReader) wait() error {
	if len(f.left) > 0 || f.have > 0 {
		return nil
	}
	n, err := f.src.Read(f.hdr[:1])
	if n == 1 {
		f.have = 1
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// next reads frames until it has a whole data message (opText, opBinary) or a control frame
// (opClose, opPing, opPong) and returns it. A protocol violation is a local *wsCloseError.
func (f *frameReader) next() (byte, []byte, error) {
	defer f.release()
	for {
		if err := f.read(f.hdr[f.have:2]); err != nil {
			return 0, nil, err
		}
		f.have = 0
		b0, b1 := f.hdr[0], f.hdr[1]
		fin, op := b0&0x80 != 0, b0&0x0f
		if b0&0x70 != 0 {
			return 0, nil, protocolError("reserved bits set")
		}
		if b1&0x80 != 0 {
			return 0, nil, protocolError("masked server frame")
		}
		n := int64(b1 & 0x7f)
		switch n {
		case 126:
			if err := f.read(f.hdr[:2]); err != nil {
				return 0, nil, err
			}
			n = int64(binary.BigEndian.Uint16(f.hdr[:2]))
		case 127:
			if err := f.read(f.hdr[:8]); err != nil {
				return 0, nil, err
			}
			u := binary.BigEndian.Uint64(f.hdr[:8])
			if u>>63 != 0 {
				return 0, nil, protocolError("frame length out of range")
			}
			n = int64(u)
		}
		if op >= 0x8 { // control frame
			if !fin || n > 125 {
				return 0, nil, protocolError("fragmented or long control frame")
			}
			if op != opClose && op != opPing && op != opPong {
				return 0, nil, protocolError("unknown opcode " + strconv.Itoa(int(op)))
			}
			p := make([]byte, n)
			if err := f.read(p); err != nil {
				return 0, nil, err
			}
			return op, p, nil
		}
		switch op {
		case opText, opBinary:
			if f.inMsg {
				return 0, nil, protocolError("new message inside a fragmented one")
			}
		case opContinuation:
			if !f.inMsg {
				return 0, nil, protocolError("continuation without a message")
			}
		default:
			return 0, nil, protocolError("unknown opcode " + strconv.Itoa(int(op)))
		}
		if int64(len(f.msg))+n > f.max {
			f.msg, f.inMsg = nil, false
			return 0, nil, &wsCloseError{code: closeTooBig, reason: "message larger than " + strconv.FormatInt(f.max, 10) + " bytes"}
		}
		if fin && !f.inMsg { // a whole message in one frame: the usual case
			p := payload(n)
			if err := f.read(p); err != nil {
				recycle(p)
				return 0, nil, err
			}
			if op == opText && !utf8.Valid(p) {
				recycle(p)
				return 0, nil, &wsCloseError{code: closeInvalidData, reason: "text message is not UTF-8"}
			}
			return op, p, nil
		}
		if !f.inMsg {
			f.msgOp, f.inMsg = op, true
		}
		at := len(f.msg)
		f.msg = append(f.msg, make([]byte, n)...)
		if err := f.read(f.msg[at:]); err != nil {
			f.msg, f.inMsg = nil, false
			return 0, nil, err
		}
		if fin {
			m, mop := f.msg, f.msgOp
			f.msg, f.inMsg = nil, false
			if mop == opText && !utf8.Valid(m) {
				return 0, nil, &wsCloseError{code: closeInvalidData, reason: "text message is not UTF-8"}
			}
			return mop, m, nil
		}
	}
}

// parseClose reads a close frame's payload; a malformed one is a protocol error.
func parseClose(p []byte) (code int, reason string, err error) {
	switch {
	case len(p) == 0:
		return closeNoStatus, "", nil
	case len(p) == 1:
		return 0, "", protocolError("close frame of one byte")
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", protocolError("invalid close code " + strconv.Itoa(code))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &wsCloseError{code: closeInvalidData, reason: "close reason is not UTF-8"}
	}
	return code, string(p[2:]), nil
}

func validCloseCode(c int) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}

// appendFrame appends one masked client frame (FIN set) of op and p.
func appendFrame(dst []byte, op byte, p []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], randv2.Uint32())
	dst = append(dst, key[:]...)
	at := len(dst)
	dst = append(dst, p...)
	for i := range p {
		dst[at+i] ^= key[i&3]
	}
	return dst
}

// wsKey returns a fresh Sec-WebSocket-Key and the Sec-WebSocket-Accept it calls for.
func wsKey() (key, accept string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	key = base64.StdEncoding.EncodeToString(b[:])
	return key, acceptFor(key)
}

// acceptFor is the Sec-WebSocket-Accept that answers key.
func acceptFor(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsTransport is one websocket connection and its reader goroutine, the connection's only
// goroutine: writes happen on the caller's goroutine under wmu.
type wsTransport struct {
	c     *Client
	conn  net.Conn
	fr    frameReader
	dead  atomic.Bool
	cause error // set before dead

	wmu       sync.Mutex
	closeSent bool // guarded by wmu
}

// errUpgrade is a 101 reply that does not complete a websocket upgrade.
var errUpgrade = errors.New("cometd: bad websocket upgrade reply")

// dialWS dials, upgrades (with Options.Header and the jar's cookies) and starts the reader. A
// reply other than 101 is *HTTPError.
func (c *Client) dialWS(ctx context.Context) (*wsTransport, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.MaxNetworkDelay)
	defer cancel()
	nc, _, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	stop := setDeadline(ctx, nc, c.opts.MaxNetworkDelay)
	left, err := c.upgrade(ctx, nc)
	if !stop() && err == nil { // cancelled just as the upgrade succeeded: the deadline is spoilt
		err = ioErr(ctx, context.Canceled)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	w := &wsTransport{c: c, conn: nc}
	w.fr = frameReader{src: nc, left: left, max: c.opts.MaxMessageSize}
	if !c.goNet(w.read) {
		nc.Close()
		return nil, ErrClosed
	}
	return w, nil
}

// upgrade sends the upgrade request on nc and checks the reply; it returns the bytes read past it.
func (c *Client) upgrade(ctx context.Context, nc net.Conn) ([]byte, error) {
	key, accept := wsKey()
	now := time.Now()
	req := appendHead(make([]byte, 0, 512), "GET", c.uri, c.host, c.opts.Header, c.jar.header(c.path, now))
	req = append(req, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = append(req, key...)
	req = append(req, "\r\n\r\n"...)
	if _, err := nc.Write(req); err != nil {
		return nil, ioErr(ctx, err)
	}
	br := newWireReader(nc, nil)
	defer br.release()
	r, err := readReply(br, 0, true)
	if err != nil {
		return nil, ioErr(ctx, err)
	}
	for _, sc := range r.setCookies {
		c.jar.setCookie(sc, c.path, now)
	}
	if r.status != 101 {
		c.wsRefused.Store(true)
		return nil, &HTTPError{StatusCode: r.status}
	}
	switch {
	case !hasToken([]byte(r.upgrade), "websocket"):
		return nil, fmt.Errorf("%w: Upgrade %q", errUpgrade, r.upgrade)
	case !hasToken([]byte(r.connection), "upgrade"):
		return nil, fmt.Errorf("%w: Connection %q", errUpgrade, r.connection)
	case r.accept != accept:
		return nil, fmt.Errorf("%w: Sec-WebSocket-Accept %q, want %q", errUpgrade, r.accept, accept)
	case r.extensions != "" || r.protocol != "":
		return nil, fmt.Errorf("%w: extensions %q or subprotocol %q not asked for", errUpgrade, r.extensions, r.protocol)
	}
	var left []byte
	if b := br.buffered(); len(b) > 0 {
		left = append([]byte(nil), b...)
	}
	return left, nil
}

func (*wsTransport) name() string   { return TransportWebSocket }
func (*wsTransport) async() bool    { return true }
func (w *wsTransport) isDead() bool { return w.dead.Load() }

func (w *wsTransport) err() error {
	if !w.dead.Load() {
		return nil
	}
	return fmt.Errorf("cometd: websocket closed: %w", w.cause)
}

func (w *wsTransport) send(ctx context.Context, body []byte, _ []*pending) error {
	if w.dead.Load() {
		return w.err()
	}
	return w.write(ctx, opText, body)
}

// write sends one frame under wmu, bounded by ctx and MaxNetworkDelay. A failed write breaks the
// connection (a frame may be half written).
func (w *wsTransport) write(ctx context.Context, op byte, p []byte) error {
	w.wmu.Lock()
	if w.closeSent {
		w.wmu.Unlock()
		return errWSClosing
	}
	err := w.writeLocked(ctx, op, p)
	w.wmu.Unlock()
	if err != nil {
		w.fail(err)
		w.conn.Close()
	}
	return err
}

func (w *wsTransport) writeLocked(ctx context.Context, op byte, p []byte) error {
	var frame []byte
	var bp *[]byte
	if len(p)+14 <= readBufSize {
		bp = bufPool.Get().(*[]byte)
		frame = appendFrame((*bp)[:0], op, p)
	} else {
		frame = appendFrame(make([]byte, 0, len(p)+14), op, p)
	}
	stop := setWriteDeadline(ctx, w.conn, w.c.opts.MaxNetworkDelay)
	_, err := w.conn.Write(frame)
	stop()
	if bp != nil {
		*bp = frame[:readBufSize]
		bufPool.Put(bp)
	}
	if op == opClose {
		w.closeSent = true
	}
	if err != nil {
		return ioErr(ctx, err)
	}
	return nil
}

// writeClose sends a close frame with code unless one was sent; it reports whether it was sent.
// It does not wait for a write in progress (that one may be stuck): then nothing is sent.
func (w *wsTransport) writeClose(code int) bool {
	if !w.wmu.TryLock() {
		return false
	}
	defer w.wmu.Unlock()
	if w.closeSent {
		return false
	}
	var p []byte
	if code != closeNoStatus {
		p = binary.BigEndian.AppendUint16(nil, uint16(code))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wsCloseWait)
	defer cancel()
	if w.writeLocked(ctx, opClose, p) != nil {
		return false
	}
	w.conn.SetReadDeadline(time.Now().Add(wsCloseWait)) // for the server's close frame
	return true
}

// setReadDeadline sets the reader's deadline (a heartbeat's), unless the close handshake began:
// its own deadline stays.
func (w *wsTransport) setReadDeadline(d time.Time) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if !w.closeSent {
		w.conn.SetReadDeadline(d)
	}
}

// close starts the close handshake: our close frame, then the reader waits (at most
// wsCloseWait) for the server's before it closes the connection. A connection that cannot take
// the frame is closed at once.
func (w *wsTransport) close() {
	w.fail(errClosedLocally)
	if !w.writeClose(closeNormal) {
		w.conn.Close()
	}
}

var (
	errClosedLocally = errors.New("closed by the client")
	errWSClosing     = errors.New("cometd: websocket closing")
)

// fail marks the transport dead (once) and tells the requests waiting for replies on it.
func (w *wsTransport) fail(err error) {
	w.wmu.Lock() // also orders cause before dead
	first := !w.dead.Load()
	if first {
		w.cause = err
		w.dead.Store(true)
	}
	w.wmu.Unlock()
	if first {
		w.c.transportGone(w)
	}
}

func (w *wsTransport) closing() bool { return w.dead.Load() }

// read is the connection's only goroutine. It keeps a small stack: it waits for the first byte of
// a frame in a small frame of its own, then reads and handles the frame on a short-lived
// goroutine (see deep).
func (w *wsTransport) read() {
	var err error
	for err == nil {
		err = w.fr.wait()
		switch {
		case err == nil:
			deep(func() { err = w.frame() })
		case errors.Is(err, os.ErrDeadlineExceeded) && !w.closing():
			err = nil // the heartbeat's deadline: see Client.heartbeatDue
			deep(func() { w.c.heartbeatDue(w) })
		}
	}
	deep(func() {
		w.fail(err)
		w.conn.Close()
		w.c.transportDied(w)
	})
}

// frame reads and handles the next message or control frame; an error ends the connection.
func (w *wsTransport) frame() error {
	op, p, err := w.fr.next()
	if err != nil {
		if ce, ok := errors.AsType[*wsCloseError](err); ok && !ce.remote {
			w.writeClose(ce.code)
		}
		return err
	}
	switch op {
	case opPing:
		if !w.closing() {
			_ = w.write(context.Background(), opPong, p)
		}
	case opPong:
	case opClose:
		code, reason, err := parseClose(p)
		if err != nil {
			if ce, ok := errors.AsType[*wsCloseError](err); ok {
				w.writeClose(ce.code)
			}
			return err
		}
		echo := code
		if echo == closeNoStatus {
			echo = closeNormal
		}
		w.writeClose(echo)
		return &wsCloseError{code: code, reason: reason, remote: true}
	default:
		if !w.closing() { // after our close frame, data is not dispatched
			w.c.receive(p)
		}
		recycle(p)
	}
	return nil
}

// receive decodes and dispatches one websocket message.
func (c *Client) receive(b []byte) {
	msgs, err := DecodeMessages(b)
	if err != nil {
		c.log.Warn("undecodable websocket frame dropped", "error", err, "bytes", len(b))
		return
	}
	c.dispatch(msgs, nil)
}
