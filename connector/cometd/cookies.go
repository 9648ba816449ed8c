package cometd

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookieJar is the cookie store of one client: every cookie the server sets (or Options.Cookies
// seeds) goes back on later requests whose path it covers, until it expires. A client talks to
// one origin, so the jar keeps only name, value, path and expiry; see doc.go for what it ignores.
type cookieJar struct {
	mu   sync.Mutex
	list []jarCookie
}

type jarCookie struct {
	name, value, path string
	expires           int64 // unix nanoseconds; 0: until the client is closed
}

// Bounds of the jar, so that a hostile server cannot make it grow.
const (
	maxCookies     = 32
	maxCookieBytes = 4096 // name and value
)

// setCookie parses one Set-Cookie value (RFC 6265 5.2) received for a request to reqPath and
// stores, replaces or deletes the cookie. It reports whether the value was understood.
func (j *cookieJar) setCookie(raw, reqPath string, now time.Time) bool {
	c, del, ok := parseSetCookie(raw, reqPath, now)
	if !ok {
		return false
	}
	j.store(c, del)
	return true
}

func (j *cookieJar) store(c jarCookie, del bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range j.list {
		if j.list[i].name == c.name && j.list[i].path == c.path {
			if del {
				j.list = append(j.list[:i], j.list[i+1:]...)
			} else {
				j.list[i] = c
			}
			return
		}
	}
	if del || len(j.list) >= maxCookies {
		return
	}
	j.list = append(j.list, c)
}

// header returns the Cookie header value for a request to path ("" for none): the live cookies
// whose path covers it, longer paths first (RFC 6265 5.4), else in the order they were set.
func (j *cookieJar) header(path string, now time.Time) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := now.UnixNano()
	var idx [maxCookies]int
	n := 0
	for i, c := range j.list {
		if (c.expires == 0 || c.expires > t) && pathMatch(path, c.path) && n < len(idx) {
			idx[n] = i
			n++
		}
	}
	if n == 0 {
		return ""
	}
	for i := 1; i < n; i++ { // a stable insertion sort: the list is small
		for k := i; k > 0 && len(j.list[idx[k]].path) > len(j.list[idx[k-1]].path); k-- {
			idx[k], idx[k-1] = idx[k-1], idx[k]
		}
	}
	var b strings.Builder
	for i, x := range idx[:n] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(j.list[x].name)
		b.WriteByte('=')
		b.WriteString(j.list[x].value)
	}
	return b.String()
}

// SetCookies and Cookies make the jar an http.CookieJar for the net/http route (Options.RoundTripper).
func (j *cookieJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	now := time.Now()
	for _, hc := range cookies {
		c, del, ok := fromHTTPCookie(hc, u.Path, now)
		if ok {
			j.store(c, del)
		}
	}
}

func (j *cookieJar) Cookies(u *url.URL) []*http.Cookie {
	h := j.header(pathOf(u.Path), time.Now())
	if h == "" {
		return nil
	}
	var out []*http.Cookie
	for _, kv := range strings.Split(h, "; ") {
		name, value, _ := strings.Cut(kv, "=")
		quoted := len(value) > 1 && value[0] == '"'
		if quoted {
			value = value[1 : len(value)-1]
		}
		out = append(out, &http.Cookie{Name: name, Value: value, Quoted: quoted})
	}
	return out
}

// seed stores the Options.Cookies for the client's URL path.
func (j *cookieJar) seed(cookies []*http.Cookie, reqPath string, now time.Time) {
	for _, hc := range cookies {
		if c, del, ok := fromHTTPCookie(hc, reqPath, now); ok && !del {
			j.store(c, false)
		}
	}
}

func fromHTTPCookie(hc *http.Cookie, reqPath string, now time.Time) (c jarCookie, del, ok bool) {
	if hc == nil || !validCookieName(hc.Name) || !validCookieValue(hc.Value) || len(hc.Name)+len(hc.Value) > maxCookieBytes {
		return jarCookie{}, false, false
	}
	c = jarCookie{name: hc.Name, value: hc.Value, path: hc.Path}
	if hc.Quoted {
		c.value = `"` + hc.Value + `"`
	}
	if c.path == "" || c.path[0] != '/' {
		c.path = defaultPath(reqPath)
	}
	switch {
	case hc.MaxAge < 0:
		return c, true, true
	case hc.MaxAge > 0:
		c.expires = now.Add(time.Duration(hc.MaxAge) * time.Second).UnixNano()
	case !hc.Expires.IsZero():
		if !hc.Expires.After(now) {
			return c, true, true
		}
		c.expires = hc.Expires.UnixNano()
	}
	return c, false, true
}

// parseSetCookie reads "name=value; Attr=...; ..." for a request to reqPath. del says the
// cookie is to be removed (expired, or Max-Age <= 0).
func parseSetCookie(raw, reqPath string, now time.Time) (c jarCookie, del, ok bool) {
	pair, attrs, _ := strings.Cut(raw, ";")
	name, value, found := strings.Cut(pair, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !found || !validCookieName(name) || !validCookieValue(value) || len(name)+len(value) > maxCookieBytes {
		return jarCookie{}, false, false
	}
	c = jarCookie{name: name, value: value}
	var maxAge *int64
	var expires time.Time
	for attrs != "" {
		var a string
		a, attrs, _ = strings.Cut(attrs, ";")
		k, v, _ := strings.Cut(a, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "path":
			if strings.HasPrefix(v, "/") && validHeaderValue(v) && len(v) <= 1024 {
				c.path = v
			}
		case "max-age":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) {
				maxAge = &n
			}
		case "expires":
			if t, err := http.ParseTime(v); err == nil {
				expires = t
			} else if t, err := time.Parse("Mon, 02-Jan-2006 15:04:05 MST", v); err == nil {
				expires = t
			}
		}
		// Domain, Secure, HttpOnly, SameSite, Partitioned and unknown attributes: see doc.go.
	}
	if c.path == "" {
		c.path = defaultPath(reqPath)
	}
	switch {
	case maxAge != nil && *maxAge <= 0:
		return c, true, true
	case maxAge != nil:
		secs := min(*maxAge, int64(100*365*24*3600))
		c.expires = now.Add(time.Duration(secs) * time.Second).UnixNano()
	case !expires.IsZero():
		if !expires.After(now) {
			return c, true, true
		}
		c.expires = expires.UnixNano()
	}
	return c, false, true
}

// defaultPath is RFC 6265's default-path of a request path: its directory.
func defaultPath(p string) string {
	if p == "" || p[0] != '/' {
		return "/"
	}
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "/"
	}
	return p[:i]
}

// pathOf is the path part of a request URI.
func pathOf(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if uri == "" {
		return "/"
	}
	return uri
}

// pathMatch is RFC 6265 5.1.4 path-match.
func pathMatch(reqPath, cookiePath string) bool {
	if reqPath == cookiePath {
		return true
	}
	if !strings.HasPrefix(reqPath, cookiePath) {
		return false
	}
	return strings.HasSuffix(cookiePath, "/") || reqPath[len(cookiePath)] == '/'
}

func validCookieName(n string) bool { return validToken([]byte(n)) }

// validCookieValue accepts RFC 6265 cookie-octets, optionally in double quotes.
func validCookieValue(v string) bool {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := range len(v) {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
