package cometd

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// The HTTP/1.1 of our own transports: requests written in one piece, replies read with a buffer
// taken from a pool only while a reply is being read (a connection waiting for its reply holds
// no buffer: see httpConn.wait), so an idle or waiting session costs no bufio.

// Limits of a reply's head.
const (
	maxLine       = 8 << 10  // one status or header line
	maxHeadBytes  = 64 << 10 // the whole head (status line and headers)
	maxSetCookies = 32       // Set-Cookie headers kept from one reply
	maxInterim    = 8        // 1xx replies skipped before the final one
	readBufSize   = 4 << 10
)

// Errors of the wire.
var (
	errBadReply    = errors.New("cometd: malformed HTTP reply")
	errReplyTooBig = errors.New("cometd: reply larger than MaxMessageSize")
)

// bufPool holds the read buffers of replies being read, shared by every client.
var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// wireReader buffers one reply's bytes. Its buffer comes from bufPool (release returns it).
type wireReader struct {
	src  io.Reader
	bufp *[]byte
	buf  []byte
	r, w int
	head int // bytes of head consumed so far (bounded by maxHeadBytes)
	got  bool
}

func newWireReader(src io.Reader, first []byte) *wireReader {
	bp := bufPool.Get().(*[]byte)
	b := &wireReader{src: src, bufp: bp, buf: *bp}
	b.w = copy(b.buf, first)
	b.got = len(first) > 0
	return b
}

// release gives the buffer back; the reader must not be used again.
func (b *wireReader) release() {
	if b.bufp != nil && cap(b.buf) == readBufSize {
		*b.bufp = b.buf[:readBufSize]
		bufPool.Put(b.bufp)
	}
	b.bufp, b.buf = nil, nil
}

// fill reads more bytes, compacting or growing the buffer when it is full.
func (b *wireReader) fill() error {
	if b.r > 0 && b.r == b.w {
		b.r, b.w = 0, 0
	}
	if b.w == len(b.buf) {
		if b.r > 0 {
			b.w = copy(b.buf, b.buf[b.r:b.w])
			b.r = 0
		} else {
			nb := make([]byte, 2*len(b.buf))
			copy(nb, b.buf[:b.w])
			b.buf = nb
		}
	}
	n, err := b.src.Read(b.buf[b.w:])
	if n > 0 {
		b.got = true
		b.w += n
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// line returns the next line without its CRLF (or LF). The slice is valid until the next read.
func (b *wireReader) line() ([]byte, error) {
	for {
		if i := bytes.IndexByte(b.buf[b.r:b.w], '\n'); i >= 0 {
			if i >= maxLine {
				return nil, errBadReply
			}
			l := b.buf[b.r : b.r+i]
			b.r += i + 1
			b.head += i + 1
			if b.head > maxHeadBytes {
				return nil, errBadReply
			}
			return bytes.TrimSuffix(l, []byte("\r")), nil
		}
		if b.w-b.r >= maxLine {
			return nil, errBadReply
		}
		if err := b.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// readInto fills p completely.
func (b *wireReader) readInto(p []byte) error {
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	if n < len(p) {
		if _, err := io.ReadFull(b.src, p[n:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// buffered returns the bytes read past what was consumed.
func (b *wireReader) buffered() []byte { return b.buf[b.r:b.w] }

// reply is what our transports keep of an HTTP reply.
type reply struct {
	status     int
	keepAlive  bool     // the connection may carry the next request
	setCookies []string // Set-Cookie values, in order
	body       []byte

	// For the websocket upgrade (status 101).
	upgrade    string
	connection string
	accept     string
	extensions string
	protocol   string
}

// readReply reads one reply for a request: 1xx replies before it are skipped (101 is final: it
// answers an upgrade), and unless the status has no body (1xx, 204, 304) or noBody is set, the
// body is read whole, framed by Content-Length, chunked coding, or the end of the connection. A
// body larger than max is errReplyTooBig; a malformed head or framing errBadReply.
func readReply(b *wireReader, max int64, noBody bool) (*reply, error) {
	var r *reply
	var chunked, haveLength bool
	var length int64
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			return nil, errBadReply
		}
		r = &reply{}
		chunked, haveLength, length = false, false, 0
		l, err := b.line()
		if err != nil {
			return nil, err
		}
		http10, err := parseStatusLine(l, r)
		if err != nil {
			return nil, err
		}
		r.keepAlive = !http10
		if err := readHeaders(b, r, &chunked, &haveLength, &length, http10); err != nil {
			return nil, err
		}
		b.head = 0 // the bound is per head; a chunked body's lines count afresh
		if r.status >= 200 || r.status == http.StatusSwitchingProtocols {
			break
		}
	}
	if r.status < 200 || r.status == http.StatusNoContent || r.status == http.StatusNotModified || noBody {
		if r.status == http.StatusSwitchingProtocols {
			r.keepAlive = false
		}
		return r, nil
	}
	var err error
	switch {
	case chunked:
		r.body, err = readChunked(b, max)
	case haveLength:
		if length > max {
			return nil, errReplyTooBig
		}
		r.body = make([]byte, length)
		err = b.readInto(r.body)
	default: // until the server closes the connection
		r.keepAlive = false
		r.body, err = readToEOF(b, max)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// parseStatusLine reads "HTTP/1.x NNN reason" into r.status; it reports an HTTP/1.0 reply.
func parseStatusLine(l []byte, r *reply) (http10 bool, err error) {
	var proto []byte
	switch {
	case bytes.HasPrefix(l, []byte("HTTP/1.1 ")):
		proto = l[9:]
	case bytes.HasPrefix(l, []byte("HTTP/1.0 ")):
		proto, http10 = l[9:], true
	default:
		return false, errBadReply
	}
	if len(proto) < 3 || (len(proto) > 3 && proto[3] != ' ') {
		return false, errBadReply
	}
	code := 0
	for _, c := range proto[:3] {
		if c < '0' || c > '9' {
			return false, errBadReply
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return false, errBadReply
	}
	r.status = code
	return http10, nil
}

// readHeaders reads header lines up to the empty line, keeping the ones our transports use.
func readHeaders(b *wireReader, r *reply, chunked, haveLength *bool, length *int64, http10 bool) error {
	keepAliveSaid := false
	for {
		l, err := b.line()
		if err != nil {
			return err
		}
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' { // obsolete line folding
			return errBadReply
		}
		i := bytes.IndexByte(l, ':')
		if i <= 0 || !validToken(l[:i]) {
			return errBadReply
		}
		name, value := l[:i], bytes.Trim(l[i+1:], " \t")
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (*haveLength && n != *length) {
				return errBadReply
			}
			*haveLength, *length = true, n
		case asciiEqualFold(name, "Transfer-Encoding"):
			// Only chunked (last) is understood; anything else cannot be framed.
			last := value
			if j := bytes.LastIndexByte(value, ','); j >= 0 {
				last = bytes.Trim(value[j+1:], " \t")
			}
			if !asciiEqualFold(last, "chunked") {
				return errBadReply
			}
			*chunked = true
		case asciiEqualFold(name, "Connection"):
			r.connection = appendList(r.connection, value)
			if hasToken(value, "close") {
				r.keepAlive = false
			}
			if hasToken(value, "keep-alive") {
				keepAliveSaid = true
			}
		case asciiEqualFold(name, "Set-Cookie"):
			if len(r.setCookies) < maxSetCookies {
				r.setCookies = append(r.setCookies, string(value))
			}
		case asciiEqualFold(name, "Upgrade"):
			r.upgrade = string(value)
		case asciiEqualFold(name, "Sec-WebSocket-Accept"):
			r.accept = string(value)
		case asciiEqualFold(name, "Sec-WebSocket-Extensions"):
			r.extensions = appendList(r.extensions, value)
		case asciiEqualFold(name, "Sec-WebSocket-Protocol"):
			r.protocol = appendList(r.protocol, value)
		}
	}
	if *chunked {
		*haveLength = false // chunked coding wins over a length (RFC 9112 6.3)
	}
	if http10 && keepAliveSaid && !hasToken([]byte(r.connection), "close") {
		r.keepAlive = true
	}
	return nil
}

func appendList(list string, v []byte) string {
	if list == "" {
		return string(v)
	}
	return list + ", " + string(v)
}

// parseLength reads a Content-Length value: decimal digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// readChunked reads a chunked body and its trailer.
func readChunked(b *wireReader, max int64) ([]byte, error) {
	var body []byte
	for {
		l, err := b.line()
		if err != nil {
			return nil, err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 { // chunk extensions are ignored
			l = l[:i]
		}
		l = bytes.Trim(l, " \t")
		if len(l) == 0 || len(l) > 15 {
			return nil, errBadReply
		}
		var n int64
		for _, c := range l {
			d := unhex(c)
			if d < 0 {
				return nil, errBadReply
			}
			n = n<<4 | int64(d)
		}
		if n == 0 {
			break
		}
		if int64(len(body))+n > max {
			return nil, errReplyTooBig
		}
		at := len(body)
		body = slices.Grow(body, int(n))[:at+int(n)]
		if err := b.readInto(body[at:]); err != nil {
			return nil, err
		}
		crlf, err := b.line()
		if err != nil {
			return nil, err
		}
		if len(crlf) != 0 {
			return nil, errBadReply
		}
	}
	for { // the trailer: header lines up to an empty line
		l, err := b.line()
		if err != nil {
			return nil, err
		}
		if len(l) == 0 {
			break
		}
	}
	if body == nil {
		body = []byte{}
	}
	return body, nil
}

func readToEOF(b *wireReader, max int64) ([]byte, error) {
	body := append([]byte(nil), b.buffered()...)
	b.r = b.w
	if int64(len(body)) > max {
		return nil, errReplyTooBig
	}
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := b.src.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if int64(len(body)) > max {
			return nil, errReplyTooBig
		}
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds token t (case-insensitive).
func hasToken(v []byte, t string) bool {
	for len(v) > 0 {
		item := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if asciiEqualFold(bytes.Trim(item, " \t"), t) {
			return true
		}
	}
	return false
}

// validToken reports whether b is an RFC 9110 token (a header name).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x7f || c <= ' ' || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v may be written as a header value (no CR, LF or NUL).
func validHeaderValue(v string) bool {
	for i := range len(v) {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// reservedHeader names the headers our transports write themselves; Options.Header cannot set them.
func reservedHeader(name string) bool {
	for _, r := range []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
		"Cookie", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Content-Type"} {
		if asciiEqualFold([]byte(name), r) {
			return true
		}
	}
	return false
}

// appendHead appends a request line and headers, up to and including the empty line.
func appendHead(dst []byte, method, uri, host string, extra http.Header, cookie string) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, uri...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	ua := false
	for k, vs := range extra {
		if reservedHeader(k) {
			continue
		}
		ua = ua || asciiEqualFold([]byte(k), "User-Agent")
		for _, v := range vs {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	if !ua {
		dst = append(dst, "User-Agent: cobrowse-connector-cometd\r\n"...)
	}
	if cookie != "" {
		dst = append(dst, "Cookie: "...)
		dst = append(dst, cookie...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// appendPost appends a whole POST of a JSON body, head and body.
func appendPost(dst []byte, uri, host string, extra http.Header, cookie string, body []byte) []byte {
	dst = appendHead(dst, "POST", uri, host, extra, cookie)
	dst = append(dst, "Content-Type: application/json;charset=UTF-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...)
}
