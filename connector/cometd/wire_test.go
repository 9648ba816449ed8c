package cometd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// serverFrame builds an unmasked frame as a server sends it.
func serverFrame(fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(p); {
	case n <= 125:
		out = append(out, byte(n))
	case n <= 0xffff:
		out = append(out, 126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	return append(out, p...)
}

// readAll reads frames until an error; it returns what next gave, as "op:payload" strings.
func readAll(f *frameReader) ([]string, error) {
	var got []string
	for {
		if err := f.wait(); err != nil {
			return got, err
		}
		op, p, err := f.next()
		if err != nil {
			return got, err
		}
		got = append(got, string(rune('0'+op))+":"+string(p))
		recycle(p)
	}
}

func TestFrameReader(t *testing.T) {
	long := strings.Repeat("x", 70000)
	var stream []byte
	stream = append(stream, serverFrame(true, opText, []byte("hello"))...)
	stream = append(stream, serverFrame(false, opText, []byte("frag"))...)
	stream = append(stream, serverFrame(true, opPing, []byte("p"))...) // between fragments
	stream = append(stream, serverFrame(false, opContinuation, []byte("men"))...)
	stream = append(stream, serverFrame(true, opContinuation, []byte("ted"))...)
	stream = append(stream, serverFrame(true, opBinary, []byte{0xff, 0})...)
	stream = append(stream, serverFrame(true, opText, []byte(long))...)
	stream = append(stream, serverFrame(true, opClose, []byte{0x03, 0xe8, 'o', 'k'})...)
	for _, split := range []bool{false, true} {
		var src io.Reader = bytes.NewReader(stream[7:])
		if split {
			src = iotest.OneByteReader(src)
		}
		f := &frameReader{src: src, left: append([]byte(nil), stream[:7]...), max: 1 << 20}
		got, err := readAll(f)
		want := []string{"1:hello", "9:p", "1:fragmented", "2:\xff\x00", "1:" + long, "8:\x03\xe8ok"}
		if !errors.Is(err, io.EOF) || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("split %v: %.80q %v", split, got, err)
		}
	}
	if code, reason, err := parseClose([]byte{0x03, 0xe9, 'b'}); code != 1001 || reason != "b" || err != nil {
		t.Fatalf("close payload: %d %q %v", code, reason, err)
	}
}

func TestFrameReaderRefuses(t *testing.T) {
	cases := []struct {
		name  string
		bytes []byte
		code  int
	}{
		{"masked", []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, closeProtocolError},
		{"reserved bits", []byte{0xc1, 0}, closeProtocolError},
		{"unknown opcode", []byte{0x83, 0}, closeProtocolError},
		{"long control", append([]byte{0x89, 126, 0, 126}, make([]byte, 126)...), closeProtocolError},
		{"fragmented control", []byte{0x09, 0}, closeProtocolError},
		{"lone continuation", []byte{0x80, 0}, closeProtocolError},
		{"message in a message", append(serverFrame(false, opText, []byte("a")), serverFrame(true, opText, []byte("b"))...), closeProtocolError},
		{"too big", serverFrame(true, opText, make([]byte, 65)), closeTooBig},
		{"too big in fragments", append(serverFrame(false, opText, make([]byte, 40)), serverFrame(true, opContinuation, make([]byte, 40))...), closeTooBig},
		{"not utf-8", serverFrame(true, opText, []byte{0xff}), closeInvalidData},
		{"length out of range", []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, closeProtocolError},
	}
	for _, tc := range cases {
		f := &frameReader{src: bytes.NewReader(tc.bytes), max: 64}
		_, err := readAll(f)
		var ce *wsCloseError
		if !errors.As(err, &ce) || ce.code != tc.code || ce.remote {
			t.Errorf("%s: %v, want a local close %d", tc.name, err, tc.code)
		}
	}
	for _, p := range [][]byte{{1}, {0x03, 0xed}, {0x00, 0x10}, {0x03, 0xe8, 0xff}} {
		if _, _, err := parseClose(p); err == nil {
			t.Errorf("close payload %x accepted", p)
		}
	}
}

func TestAppendFrameMasks(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 70000} {
		p := bytes.Repeat([]byte("ab"), n)[:n]
		fr := appendFrame(nil, opText, p)
		if fr[0] != 0x81 || fr[1]&0x80 == 0 {
			t.Fatalf("%d: header %x: want FIN, text, mask bit", n, fr[:2])
		}
		hl := 2
		switch fr[1] & 0x7f {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		key, body := fr[hl:hl+4], fr[hl+4:]
		if len(body) != n {
			t.Fatalf("%d: body of %d bytes", n, len(body))
		}
		for i := range body {
			body[i] ^= key[i&3]
		}
		if !bytes.Equal(body, p) {
			t.Fatalf("%d: unmasked payload differs", n)
		}
	}
}

func TestWSKey(t *testing.T) {
	// The example of RFC 6455 section 1.3.
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	if _, a := wsKey(); a == "" {
		t.Fatal("no accept")
	}
	if got := acceptFor(key); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept %q", got)
	}
}

func TestReadReply(t *testing.T) {
	cases := []struct {
		name, raw string
		status    int
		body      string
		keepAlive bool
		cookies   int
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n\r\n[]", 200, "[]", true, 2},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n[{}\r\n1\r\n]\r\n0\r\nTrailer: x\r\n\r\n", 200, "[{}]", true, 0},
		{"close", "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 500, "", false, 0},
		{"to eof", "HTTP/1.0 200 OK\r\n\r\nbody", 200, "body", false, 0},
		{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", 200, "x", true, 0},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204, "", true, 0},
		{"bare lf", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", 200, "x", true, 0},
		{"no reason", "HTTP/1.1 302\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", 302, "", true, 0},
	}
	for _, tc := range cases {
		for _, split := range []bool{false, true} {
			var src io.Reader = strings.NewReader(tc.raw)
			if split {
				src = iotest.OneByteReader(src)
			}
			br := newWireReader(src, nil)
			r, err := readReply(br, 1<<20, false)
			br.release()
			if err != nil || r.status != tc.status || string(r.body) != tc.body || r.keepAlive != tc.keepAlive || len(r.setCookies) != tc.cookies {
				t.Fatalf("%s (split %v): %+v %v", tc.name, split, r, err)
			}
		}
	}
	up := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n\x81\x01x"
	br := newWireReader(strings.NewReader(up), nil)
	r, err := readReply(br, 0, true)
	if err != nil || r.status != 101 || r.accept != "abc" || !hasToken([]byte(r.connection), "upgrade") || string(br.buffered()) != "\x81\x01x" {
		t.Fatalf("upgrade: %+v %v %q", r, err, br.buffered())
	}
	br.release()
}

func TestReadReplyRefuses(t *testing.T) {
	for _, raw := range []string{
		"",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 20x OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxLine) + "\r\n\r\n",
	} {
		br := newWireReader(strings.NewReader(raw), nil)
		if r, err := readReply(br, 10, false); err == nil {
			t.Errorf("%.60q: accepted %+v", raw, r)
		}
		br.release()
	}
	br := newWireReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"), nil)
	if _, err := readReply(br, 10, false); !errors.Is(err, errReplyTooBig) {
		t.Errorf("chunked body over max: %v", err)
	}
	br.release()
}

func TestCookieJar(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var j cookieJar
	for _, sc := range []string{
		"BAYEUX_BROWSER=b1; Path=/; HttpOnly",
		"sticky=n2",                     // default path: /cobrowse
		"deep=1; Path=/cobrowse/cometd", // longer path: first
		"other=x; Path=/elsewhere",      // not sent
		"gone=1; Max-Age=0",             // deleted at once
		"old=1; Expires=Thu, 01 Jan 2026 00:00:00 GMT",
		"later=1; Expires=Sat, 02 Jan 2027 00:00:00 GMT; Domain=example.com; Secure; SameSite=Lax",
		"bad name=1", "novalue", `v=a"b`,
	} {
		j.setCookie(sc, "/cobrowse/cometd", now)
	}
	if got := j.header("/cobrowse/cometd", now); got != "deep=1; sticky=n2; later=1; BAYEUX_BROWSER=b1" {
		t.Fatalf("header %q", got)
	}
	j.setCookie("BAYEUX_BROWSER=b2; Path=/", "/cobrowse/cometd", now) // replaced in place
	j.setCookie("sticky=; Max-Age=-1; Path=/cobrowse", "/cobrowse/cometd", now)
	if got := j.header("/cobrowse/cometd", now); got != "deep=1; later=1; BAYEUX_BROWSER=b2" {
		t.Fatalf("header after replace and delete %q", got)
	}
	if got := j.header("/cobrowse/cometd", now.AddDate(2, 0, 0)); got != "deep=1; BAYEUX_BROWSER=b2" {
		t.Fatalf("header after expiry %q", got)
	}
	if got := j.header("/cobrowsex", now); got != "BAYEUX_BROWSER=b2" {
		t.Fatalf("path match: %q", got)
	}
	for i := range 2 * maxCookies {
		j.setCookie("c"+string(rune('a'+i%26))+string(rune('a'+i/26))+"=1", "/", now)
	}
	if len(j.list) != maxCookies {
		t.Fatalf("%d cookies kept", len(j.list))
	}
}

// FuzzFrameReader: any byte stream from a server either yields frames that respect the
// protocol's bounds or fails; it never panics and never returns more than max bytes.
func FuzzFrameReader(f *testing.F) {
	f.Add(serverFrame(true, opText, []byte(`[{"channel":"/a"}]`)), false)
	f.Add(append(serverFrame(false, opText, []byte("ab")), serverFrame(true, opContinuation, []byte("c"))...), true)
	f.Add(serverFrame(true, opPing, []byte("ping")), false)
	f.Add(serverFrame(true, opClose, []byte{0x03, 0xe8}), false)
	f.Add([]byte{0x81, 126, 0, 3, 'a', 'b', 'c'}, true)
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 1, 0}, false)
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, false)
	f.Fuzz(func(t *testing.T, data []byte, split bool) {
		var src io.Reader = bytes.NewReader(data)
		if split {
			src = iotest.OneByteReader(src)
		}
		const max = 256
		fr := &frameReader{src: src, max: max}
		for {
			if err := fr.wait(); err != nil {
				return
			}
			op, p, err := fr.next()
			if err != nil {
				var ce *wsCloseError
				if errors.As(err, &ce) && !validCloseCode(ce.code) {
					t.Fatalf("would close with an invalid code %d", ce.code)
				}
				return
			}
			switch op {
			case opText:
				if !utf8.Valid(p) {
					t.Fatal("invalid UTF-8 text message")
				}
				fallthrough
			case opBinary:
				if len(p) > max {
					t.Fatalf("message of %d bytes over %d", len(p), max)
				}
			case opPing, opPong, opClose:
				if len(p) > 125 {
					t.Fatalf("control frame of %d bytes", len(p))
				}
				if op == opClose {
					_, _, _ = parseClose(p)
				}
			default:
				t.Fatalf("opcode %d returned", op)
			}
			recycle(p)
		}
	})
}

// FuzzReadReply: any reply either fails or parses to a status of three digits and a body within
// the bound; a reply that parses also parses the same when it arrives one byte at a time.
func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nSet-Cookie: BAYEUX_BROWSER=x; Path=/\r\n\r\n[]",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[{}]\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n[]\r\n0\r\nA: b\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\n[]",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Server Error\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1024
		br := newWireReader(bytes.NewReader(data), nil)
		r, err := readReply(br, max, false)
		br.release()
		if err != nil {
			return
		}
		if r.status < 100 || r.status > 999 || int64(len(r.body)) > max || len(r.setCookies) > maxSetCookies {
			t.Fatalf("reply %+v", r)
		}
		br = newWireReader(iotest.OneByteReader(bytes.NewReader(data)), nil)
		r2, err := readReply(br, max, false)
		br.release()
		if err != nil || r2.status != r.status || !bytes.Equal(r2.body, r.body) || r2.keepAlive != r.keepAlive {
			t.Fatalf("byte by byte: %+v %v, whole: %+v", r2, err, r)
		}
		for _, sc := range r.setCookies {
			var j cookieJar
			j.setCookie(sc, "/cometd", time.Now())
		}
	})
}

// FuzzSetCookie: any Set-Cookie value is stored as a cookie whose name and value can be sent
// back in a Cookie header, or refused; the jar never holds more than its bound.
func FuzzSetCookie(f *testing.F) {
	for _, seed := range []string{
		"BAYEUX_BROWSER=abc123; Path=/; HttpOnly",
		"gcbSessionServer=node-2; Path=/; Max-Age=3600",
		`q="quoted"; Expires=Wed, 21 Oct 2099 07:28:00 GMT`,
		"x=1; Max-Age=0", "x=1; max-age=-5; path=/a/b", "=novalue", "a b=c", "a=b;;;", "a=\x00",
		"a=1; Expires=Mon, 02-Jan-2006 15:04:05 MST; Domain=.example.com; Secure; SameSite=None",
	} {
		f.Add(seed, "/cometd")
	}
	f.Fuzz(func(t *testing.T, raw, reqPath string) {
		now := time.Unix(1_800_000_000, 0)
		var j cookieJar
		j.setCookie(raw, reqPath, now)
		j.setCookie(raw, reqPath, now) // again: replaced, not added
		if len(j.list) > 1 {
			t.Fatalf("%d cookies from one Set-Cookie", len(j.list))
		}
		h := j.header(pathOf(reqPath), now)
		if !validHeaderValue(h) || strings.Contains(h, "\r") {
			t.Fatalf("Cookie header %q", h)
		}
		for _, c := range j.list {
			if !validCookieName(c.name) || !validCookieValue(c.value) || !strings.HasPrefix(c.path, "/") {
				t.Fatalf("stored %+v", c)
			}
		}
	})
}
