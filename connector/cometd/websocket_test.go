package cometd

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const testWait = 5 * time.Second

// rawServer serves one websocket connection per script run, on loopback: it reads the upgrade
// request and hands the connection to the script, which writes the reply itself.
func rawServer(t *testing.T, script func(conn net.Conn, br *bufio.Reader, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			req, err := http.ReadRequest(br)
			if err == nil {
				script(conn, br, req)
			}
			conn.Close()
		}
	}()
	return "http://" + ln.Addr().String() + "/cometd"
}

// accept101 writes the 101 reply for req, with extra header lines and bytes right after it.
func accept101(conn net.Conn, req *http.Request, extra string, after []byte) {
	reply := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptFor(req.Header.Get("Sec-WebSocket-Key")) + "\r\n" + extra + "\r\n"
	conn.Write(append([]byte(reply), after...))
}

// clientFrame reads one frame from the client and unmasks it; masked says it was masked.
func clientFrame(br *bufio.Reader) (op byte, p []byte, masked bool, err error) {
	var h [2]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		return
	}
	op, masked = h[0]&0x0f, h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	var key [4]byte
	if masked {
		io.ReadFull(br, key[:])
	}
	p = make([]byte, n)
	if _, err = io.ReadFull(br, p); err != nil {
		return
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
	return
}

// wsClient is a client whose deliveries go to msgs; it is closed when the test ends.
func wsClient(t *testing.T, url string, mod func(*Options)) (*Client, chan Message) {
	t.Helper()
	msgs := make(chan Message, 16)
	o := Options{URL: url, MaxNetworkDelay: testWait, OnMessage: func(m Message) { msgs <- m }}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, msgs
}

func nextMsg(t *testing.T, msgs chan Message) Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(testWait):
		t.Fatal("no delivery")
	}
	return Message{}
}

// TestWebSocketUpgrade: the upgrade carries Options.Header, the jar's cookies and a valid key;
// cookies set by the 101 are kept; frames sent right after the 101 (in the same packet) are read.
func TestWebSocketUpgrade(t *testing.T) {
	reqs := make(chan *http.Request, 1)
	url := rawServer(t, func(conn net.Conn, br *bufio.Reader, req *http.Request) {
		reqs <- req
		accept101(conn, req, "Set-Cookie: lb=n1; Path=/\r\n", serverFrame(true, opText, []byte(`[{"channel":"/x","data":1}]`)))
		clientFrame(br) // until the client closes
	})
	c, msgs := wsClient(t, url, func(o *Options) {
		o.Header = http.Header{"Origin": {"https://agent.example"}}
		o.Cookies = []*http.Cookie{{Name: "gcbSessionServer", Value: "node-2", Path: "/"}}
	})
	w, err := c.dialWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req := <-reqs
	key, _ := base64.StdEncoding.DecodeString(req.Header.Get("Sec-WebSocket-Key"))
	if req.Method != http.MethodGet || req.URL.Path != "/cometd" || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") ||
		!strings.Contains(strings.ToLower(req.Header.Get("Connection")), "upgrade") ||
		req.Header.Get("Sec-WebSocket-Version") != "13" || len(key) != 16 ||
		req.Header.Get("Origin") != "https://agent.example" || req.Header.Get("Cookie") != "gcbSessionServer=node-2" {
		t.Fatalf("upgrade request %v", req.Header)
	}
	if m := nextMsg(t, msgs); m.Channel != "/x" || string(m.Data) != "1" {
		t.Fatalf("delivery %+v", m)
	}
	if got := c.jar.header("/cometd", time.Now()); got != "gcbSessionServer=node-2; lb=n1" {
		t.Fatalf("jar %q", got)
	}
	w.close()
}

// TestWebSocketUpgradeRefused: a status other than 101 is *HTTPError and remembered; a 101 that
// does not complete the upgrade (wrong accept, an extension not asked for) is an error.
func TestWebSocketUpgradeRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reply  func(conn net.Conn, req *http.Request)
		status int
	}{
		{"400", func(conn net.Conn, _ *http.Request) {
			conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno!"))
		}, 400},
		{"wrong accept", func(conn net.Conn, req *http.Request) {
			conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n"))
		}, 0},
		{"extension", func(conn net.Conn, req *http.Request) {
			accept101(conn, req, "Sec-WebSocket-Extensions: permessage-deflate\r\n", nil)
		}, 0},
		{"no upgrade", func(conn net.Conn, req *http.Request) {
			conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptFor(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := rawServer(t, func(conn net.Conn, _ *bufio.Reader, req *http.Request) { tc.reply(conn, req) })
			c, _ := wsClient(t, url, nil)
			_, err := c.dialWS(context.Background())
			var he *HTTPError
			switch {
			case tc.status != 0 && (!errors.As(err, &he) || he.StatusCode != tc.status || !c.WebSocketRefused()):
				t.Fatalf("%v, refused %v; want *HTTPError %d", err, c.WebSocketRefused(), tc.status)
			case tc.status == 0 && (!errors.Is(err, errUpgrade) || c.WebSocketRefused()):
				t.Fatalf("%v, want errUpgrade", err)
			}
		})
	}
}

// TestWebSocketFrames: pings are answered with the same payload, fragmented and binary messages
// are delivered whole, the client's frames are masked, and a close frame from the server is
// echoed with its code and ends the connection.
func TestWebSocketFrames(t *testing.T) {
	type seen struct {
		op     byte
		p      string
		masked bool
	}
	frames := make(chan seen, 16)
	release := make(chan struct{})
	url := rawServer(t, func(conn net.Conn, br *bufio.Reader, req *http.Request) {
		accept101(conn, req, "", nil)
		conn.Write(serverFrame(true, opPing, []byte("hi")))
		op, p, masked, _ := clientFrame(br)
		frames <- seen{op, string(p), masked}
		conn.Write(serverFrame(false, opText, []byte(`[{"channel":"/a",`)))
		conn.Write(serverFrame(true, opPing, nil))
		conn.Write(serverFrame(true, opContinuation, []byte(`"data":"frag"}]`)))
		conn.Write(serverFrame(true, opBinary, []byte(`{"channel":"/b"}`)))
		for range 2 { // the pong, then the client's message
			op, p, masked, _ := clientFrame(br)
			frames <- seen{op, string(p), masked}
		}
		<-release
		conn.Write(serverFrame(true, opClose, append(binary.BigEndian.AppendUint16(nil, 1001), "bye"...)))
		op, p, masked, _ = clientFrame(br)
		frames <- seen{op, string(p), masked}
	})
	c, msgs := wsClient(t, url, nil)
	w, err := c.dialWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	next := func() seen {
		t.Helper()
		select {
		case f := <-frames:
			if !f.masked {
				t.Fatalf("client frame %+v not masked", f)
			}
			return f
		case <-time.After(testWait):
			t.Fatal("no frame from the client")
		}
		return seen{}
	}
	if f := next(); f.op != opPong || f.p != "hi" {
		t.Fatalf("answer to ping: %+v", f)
	}
	if m := nextMsg(t, msgs); m.Channel != "/a" || string(m.Data) != `"frag"` {
		t.Fatalf("fragmented message %+v", m)
	}
	if m := nextMsg(t, msgs); m.Channel != "/b" {
		t.Fatalf("binary message %+v", m)
	}
	if err := w.send(context.Background(), []byte(`[{"channel":"/c"}]`), nil); err != nil {
		t.Fatal(err)
	}
	if f := next(); f.op != opPong || f.p != "" {
		t.Fatalf("answer to the empty ping: %+v", f)
	}
	if f := next(); f.op != opText || f.p != `[{"channel":"/c"}]` {
		t.Fatalf("client message %+v", f)
	}
	close(release)
	if f := next(); f.op != opClose || f.p != "\x03\xe9" {
		t.Fatalf("answer to close: %+v", f)
	}
	c.netWG.Wait() // the reader ended
	var ce *wsCloseError
	if !w.isDead() || !errors.As(w.err(), &ce) || !ce.remote || ce.code != 1001 || ce.reason != "bye" {
		t.Fatalf("transport error %v", w.err())
	}
	if err := w.send(context.Background(), []byte("[]"), nil); err == nil {
		t.Fatal("send on a closed websocket")
	}
}

// TestWebSocketLimits: a message over MaxMessageSize closes the connection with 1009, and a
// masked frame from the server with 1002.
func TestWebSocketLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
	}{
		{"too big", serverFrame(true, opText, []byte(`[{"channel":"/a","data":"`+strings.Repeat("x", 200)+`"}]`)), closeTooBig},
		{"masked", []byte{0x81, 0x82, 0, 0, 0, 0, '[', ']'}, closeProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			url := rawServer(t, func(conn net.Conn, br *bufio.Reader, req *http.Request) {
				accept101(conn, req, "", tc.frame)
				_, p, _, _ := clientFrame(br)
				got <- p
			})
			c, msgs := wsClient(t, url, func(o *Options) { o.MaxMessageSize = 100 })
			w, err := c.dialWS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if len(p) < 2 || int(binary.BigEndian.Uint16(p)) != tc.code {
					t.Fatalf("close frame %x, want code %d", p, tc.code)
				}
			case <-time.After(testWait):
				t.Fatal("no close frame")
			}
			c.netWG.Wait()
			var ce *wsCloseError
			if !errors.As(w.err(), &ce) || ce.remote || ce.code != tc.code {
				t.Fatalf("transport error %v", w.err())
			}
			select {
			case m := <-msgs:
				t.Fatalf("delivered %+v", m)
			default:
			}
		})
	}
}

// TestWebSocketCloseHandshake: closing sends a close frame (1000) and the reader ends when the
// server answers it.
func TestWebSocketCloseHandshake(t *testing.T) {
	got := make(chan []byte, 1)
	url := rawServer(t, func(conn net.Conn, br *bufio.Reader, req *http.Request) {
		accept101(conn, req, "", nil)
		op, p, _, _ := clientFrame(br)
		if op == opClose {
			conn.Write(serverFrame(true, opClose, p))
		}
		got <- p
		io.Copy(io.Discard, br) // until the client closes the TCP connection
	})
	c, _ := wsClient(t, url, nil)
	w, err := c.dialWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w.close()
	if p := <-got; string(p) != "\x03\xe8" {
		t.Fatalf("close frame %x", p)
	}
	c.netWG.Wait()
	if d := time.Since(start); d >= wsCloseWait {
		t.Fatalf("the reader ended after %v: it did not see the server's close frame", d)
	}
	var ce *wsCloseError
	if !errors.As(w.err(), &ce) && !strings.Contains(w.err().Error(), errClosedLocally.Error()) {
		t.Fatalf("transport error %v", w.err())
	}
}

// TestPeerClosed: a kept connection with bytes waiting, or closed by the server, is not reused;
// under TLS only the end of the stream counts.
func TestPeerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if peerClosed(client, false) {
		t.Fatal("an idle open connection looks closed")
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		deadline := time.After(testWait)
		for !cond() {
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatal(what)
			}
		}
	}
	server.Write([]byte("x"))
	eventually("bytes waiting not seen", func() bool { return peerClosed(client, false) })
	if peerClosed(client, true) {
		t.Fatal("bytes waiting under TLS look like the end")
	}
	server.Close()
	var b [1]byte
	client.Read(b[:]) // the byte
	eventually("the server's close not seen", func() bool { return peerClosed(client, true) })
}
