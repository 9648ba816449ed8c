package gcbtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Transport returns an http.RoundTripper that serves requests to the cluster's URLs (the
// front's and the nodes') in-process, without sockets: each request costs no file descriptor
// and no goroutine but the caller's. It is meant for load tests that hold thousands of
// sessions in one process (the machine allows 20,000 open files per process). Long-polling
// and REST work as over the network, cookies and faults included; a websocket upgrade fails
// (use the real URLs for websocket). A request to a dead node fails as a refused connection;
// one in flight when its node dies fails as a reset connection.
func (c *Cluster) Transport() http.RoundTripper { return inProcess{c} }

type inProcess struct{ c *Cluster }

var errInProcessUpgrade = errors.New("gcbtest: the in-process transport does not do websocket upgrades")

func (t inProcess) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		return nil, errInProcessUpgrade
	}
	var handler func(http.ResponseWriter, *http.Request)
	if t.c.front != nil && req.URL.Host == t.c.front.ln.Addr().String() {
		handler = t.c.serveFront
	} else {
		for _, n := range t.c.nodes {
			if n.addr != req.URL.Host {
				continue
			}
			g := n.current()
			if g == nil {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			}
			handler = func(w http.ResponseWriter, r *http.Request) { g.handle(w, r, false) }
		}
	}
	if handler == nil {
		return nil, fmt.Errorf("gcbtest: %s is not a cluster address", req.URL.Host)
	}

	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	r.Host = req.URL.Host
	if req.Body == nil {
		r.Body = http.NoBody
	} else {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	w := &recorder{header: make(http.Header)}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler { //nolint:errorlint // a recovered panic value, compared by identity as net/http does
				panic(p)
			}
			resp, err = nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}
	}()
	handler(w, r)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
