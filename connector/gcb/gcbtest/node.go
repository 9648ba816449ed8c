package gcbtest

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest/internal/bayeux"
)

// Fault is injected into a node's replies. The zero Fault clears it.
type Fault struct {
	// Channel is the Bayeux channel whose replies are affected ("/service/session/join",
	// "/meta/connect", "/service/session/activated", ...), or a REST path prefix under Path
	// ("/rest", "/rest/live/sessions", "/rest/live/users"); "" is everything but /health.
	Channel string
	// Delay delays the response (the HTTP response, or the websocket frame) that carries an
	// affected message.
	Delay time.Duration
	// Drop never sends that response: an HTTP request hangs until the client gives up or the
	// node dies; a websocket frame is lost. The request itself is processed.
	Drop bool
}

// NodeStats count what a node did since the cluster started (across restarts).
type NodeStats struct {
	Up               bool
	Handshakes       int64 // successful Bayeux handshakes
	WebSocketConns   int64 // websocket connections accepted (directly or through the front)
	LongPollRequests int64 // long-polling Bayeux HTTP requests
	BayeuxSessions   int   // live Bayeux sessions now
	HeldConnects     int   // /meta/connect requests held now (long-polling and websocket)
}

// Node is one Co-browse node: CometD, the Live Session REST API and the health check.
type Node struct {
	c    *Cluster
	name string
	addr string // host:port, kept across restarts
	url  string
	log  *slog.Logger

	fault atomic.Pointer[Fault]

	mu   sync.Mutex
	gen  *generation // nil while the node is down
	base bayeux.Stats
}

// generation is one run of a node, from start to kill: its listener, HTTP server and Bayeux
// server. Restart makes a new one, empty.
type generation struct {
	n     *Node
	bx    *bayeux.Server
	http  *httpServer
	group group
	mux   *http.ServeMux
}

// Name returns the node's sessionServerName, e.g. "node-1".
func (n *Node) Name() string { return n.name }

// URL returns the node's own URL including Path: what sessionServerUrl returns when
// Options.ServerURL is on.
func (n *Node) URL() string { return n.url }

// CometDURL returns the node's CometD URL.
func (n *Node) CometDURL() string { return n.url + "/cometd" }

// Stats returns the node's counters.
func (n *Node) Stats() NodeStats {
	n.mu.Lock()
	g, base := n.gen, n.base
	n.mu.Unlock()
	st := NodeStats{
		Handshakes:       base.Handshakes,
		WebSocketConns:   base.WebSocketConns,
		LongPollRequests: base.LongPollRequests,
	}
	if g != nil {
		cur := g.bx.Stats()
		st.Up = true
		st.Handshakes += cur.Handshakes
		st.WebSocketConns += cur.WebSocketConns
		st.LongPollRequests += cur.LongPollRequests
		st.BayeuxSessions = cur.Sessions
		st.HeldConnects = cur.HeldConnects
	}
	return st
}

// SetFault injects f into the node's replies; the zero Fault clears it.
func (n *Node) SetFault(f Fault) {
	if f == (Fault{}) {
		n.fault.Store(nil)
		return
	}
	n.fault.Store(&f)
}

func (n *Node) faultFor(channel string) (time.Duration, bool) {
	f := n.fault.Load()
	if f == nil {
		return 0, false
	}
	if f.Channel == "" || f.Channel == channel ||
		strings.HasPrefix(f.Channel, "/rest") && strings.HasPrefix(channel, f.Channel) {
		return f.Delay, f.Drop
	}
	return 0, false
}

// Kill stops the node: its listener closes (connections are refused), open connections are
// closed, its live sessions are lost (EndedBy "node", no notification) and the front answers
// 503 for it. Killing a dead node does nothing.
func (n *Node) Kill() {
	n.mu.Lock()
	g := n.gen
	n.gen = nil
	n.mu.Unlock()
	if g == nil {
		return
	}
	c := n.c
	c.mu.Lock()
	for _, s := range c.live {
		if s.node == n {
			c.endLocked(s, EndedByNode)
		}
	}
	c.mu.Unlock()
	g.http.srv.Close()
	g.bx.Close()
	g.group.closeWait()
	g.http.wait()
	st := g.bx.Stats()
	n.mu.Lock()
	n.base.Handshakes += st.Handshakes
	n.base.WebSocketConns += st.WebSocketConns
	n.base.LongPollRequests += st.LongPollRequests
	n.mu.Unlock()
	n.log.Info("node killed")
}

// Restart brings the node back EMPTY (no sessions, no Bayeux sessions) on the same address;
// a live node is killed first. If the address cannot be bound again the node stays down and
// the error is logged.
func (n *Node) Restart() {
	n.Kill()
	n.c.mu.Lock()
	closed := n.c.closed
	n.c.mu.Unlock()
	if closed {
		return
	}
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; the kernel may need a moment
		if ln, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		n.log.Error("restart: listen", "addr", n.addr, "error", err)
		return
	}
	n.start(ln)
	n.c.mu.Lock()
	closed = n.c.closed
	n.c.mu.Unlock()
	if closed { // the cluster closed meanwhile
		n.Kill()
		return
	}
	n.log.Info("node restarted")
}

// ExpireBayeuxSessions drops every Bayeux session of the node now: held connects are answered
// 402::Unknown client with advice to handshake, and so are later requests. Members lose their
// co-browse membership as if their Bayeux session had expired.
func (n *Node) ExpireBayeuxSessions() {
	if g := n.current(); g != nil {
		g.bx.ExpireAll()
	}
}

func (n *Node) current() *generation {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen
}

func (n *Node) start(ln net.Listener) {
	g := &generation{n: n}
	g.bx = bayeux.New(bayeux.Options{
		Timeout:     n.c.opts.ConnectTimeout,
		MaxInterval: n.c.opts.MaxInterval,
		Logger:      n.log,
		Service:     g.service,
		Removed:     g.removed,
		Fault:       n.faultFor,
	})
	p := n.c.path
	g.mux = http.NewServeMux()
	g.mux.HandleFunc(p+"/cometd", g.cometd)
	g.mux.HandleFunc(p+"/cometd/", g.cometd)
	g.mux.HandleFunc("POST "+p+"/rest/live/sessions", g.restCreate)
	g.mux.HandleFunc("GET "+p+"/rest/live/sessions/{token}", g.restGet)
	g.mux.HandleFunc("GET "+p+"/rest/live/users/{userToken}/session/stop", g.restStop)
	g.mux.HandleFunc("GET "+p+"/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	g.mux.HandleFunc("GET "+p+"/slave.html", g.slave)
	g.http = serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.handle(w, r, false) }), n.log)
	n.mu.Lock()
	n.gen = g
	n.mu.Unlock()
}

type viaFrontKey struct{}

// handle serves one request, direct or handed over by the front.
func (g *generation) handle(w http.ResponseWriter, r *http.Request, viaFront bool) {
	if !g.group.enter() {
		g.abort(w, r, viaFront)
		return
	}
	defer g.group.leave()
	if viaFront {
		r = r.WithContext(context.WithValue(r.Context(), viaFrontKey{}, true))
	}
	g.mux.ServeHTTP(w, r)
}

// abort answers a request the node cannot finish because it died: through the front a 502
// (what a load balancer says), direct an aborted connection.
func (g *generation) abort(w http.ResponseWriter, r *http.Request, viaFront bool) {
	if viaFront {
		http.Error(w, "gcbtest front: "+g.n.name+" went away", http.StatusBadGateway)
		return
	}
	panic(http.ErrAbortHandler)
}

func (g *generation) abortReq(w http.ResponseWriter, r *http.Request) {
	via, _ := r.Context().Value(viaFrontKey{}).(bool)
	g.abort(w, r, via)
}

func (g *generation) cometd(w http.ResponseWriter, r *http.Request) {
	g.bx.Serve(w, r, g.abortReq)
}

// restFault applies an injected fault to a REST response; false: do not answer.
func (g *generation) restFault(w http.ResponseWriter, r *http.Request) bool {
	rest := strings.TrimPrefix(r.URL.Path, g.n.c.path)
	delay, drop := g.n.faultFor(rest)
	if !drop && delay <= 0 {
		return true
	}
	var t <-chan time.Time
	if !drop {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		t = timer.C
	}
	select {
	case <-t:
		return true
	case <-r.Context().Done():
		return false
	case <-g.bx.Closing():
		g.abortReq(w, r)
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func restError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"status": status, "error": msg})
}

func setSticky(w http.ResponseWriter, node string) {
	http.SetCookie(w, &http.Cookie{Name: StickyCookie, Value: node, Path: "/"})
}

// restCreate is POST <Path>/rest/live/sessions: the customer side creates a session here.
func (g *generation) restCreate(w http.ResponseWriter, r *http.Request) {
	if !g.restFault(w, r) {
		return
	}
	s, err := g.n.createSession(true)
	if err != nil {
		restError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	setSticky(w, g.n.name)
	writeJSON(w, http.StatusOK, map[string]string{"sessionToken": s.token, "sessionServerName": g.n.name})
}

// restGet is Get Session: any node answers for any live session of the cluster.
func (g *generation) restGet(w http.ResponseWriter, r *http.Request) {
	if !g.restFault(w, r) {
		return
	}
	origin, ok := g.n.c.checkOrigin(r)
	if !ok {
		if origin == "" {
			restError(w, http.StatusForbidden, "an Origin or Referer header is required")
		} else {
			restError(w, http.StatusForbidden, "origin "+origin+" is not allowed")
		}
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	w.Header().Set("Access-Control-Allow-Credentials", "true")
	w.Header().Add("Vary", "Origin")
	token := r.PathValue("token")
	c := g.n.c
	c.mu.Lock()
	s, ended := c.live[token], c.ended[token] != nil
	c.mu.Unlock()
	switch {
	case s == nil && ended:
		restError(w, http.StatusGone, "session "+token+" has ended")
		return
	case s == nil:
		restError(w, http.StatusNotFound, "session "+token+" not found")
		return
	}
	setSticky(w, s.node.name)
	body := map[string]string{"sessionToken": s.token, "sessionServerName": s.node.name}
	if c.opts.ServerURL {
		body["sessionServerUrl"] = s.node.url
	}
	writeJSON(w, http.StatusOK, body)
}

// checkOrigin finds the request's origin (Origin, else Referer's scheme://host) and checks it
// against AllowedOrigins.
func (c *Cluster) checkOrigin(r *http.Request) (string, bool) {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		origin = ""
		if ref := r.Header.Get("Referer"); ref != "" {
			if u, err := url.Parse(ref); err == nil && u.Scheme != "" && u.Host != "" {
				origin = u.Scheme + "://" + u.Host
			}
		}
	}
	if origin == "" {
		return "", false
	}
	if len(c.opts.AllowedOrigins) == 0 {
		return origin, true
	}
	norm := strings.ToLower(strings.TrimSuffix(origin, "/"))
	for _, o := range c.opts.AllowedOrigins {
		if strings.ToLower(strings.TrimSuffix(o, "/")) == norm {
			return origin, true
		}
	}
	return origin, false
}

// restStop is GET <Path>/rest/live/users/{userToken}/session/stop: the Controller's user
// token only, on the node that owns the session.
func (g *generation) restStop(w http.ResponseWriter, r *http.Request) {
	if !g.restFault(w, r) {
		return
	}
	c := g.n.c
	ut := r.PathValue("userToken")
	c.mu.Lock()
	u := c.users[ut]
	if u == nil || u.sess.node != g.n {
		c.mu.Unlock()
		restError(w, http.StatusNotFound, "user token not found on "+g.n.name)
		return
	}
	if u.role != roleController {
		c.mu.Unlock()
		restError(w, http.StatusForbidden, "only the controller may stop the session")
		return
	}
	s := u.sess
	c.endLocked(s, EndedByControllerREST)
	body := timesBody(s.activation, s.deactivation)
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// slave is a stand-in for the agent view page.
func (g *generation) slave(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	_, _ = w.Write([]byte("<!doctype html><title>gcbtest agent view</title><p>gcbtest " + g.n.name + ": the agent view of a co-browse session (the token is in the URL fragment).</p>\n"))
}
