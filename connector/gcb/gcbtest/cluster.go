package gcbtest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StickyCookie is the load balancer's stickiness cookie; its value is the node's name.
const StickyCookie = "gcbSessionServer"

// endedKept is how many ended sessions the cluster remembers for Session and Sessions.
const endedKept = 10000

// Options configure a Cluster. The zero value is a one-node cluster with CometD 3.1's default
// timers.
type Options struct {
	Nodes          int           // cluster size; default 1
	ServerURL      bool          // nodes have the `serverUrl` option: Get Session returns sessionServerUrl (URL stickiness); false: only the gcbSessionServer cookie (cookie stickiness)
	Path           string        // web app path, default "/cobrowse"; CometD at <Path>/cometd (and anything under it), REST at <Path>/rest/live/..., health at <Path>/health
	ConnectTimeout time.Duration // Bayeux advice timeout: how long /meta/connect is held; default 30s
	MaxInterval    time.Duration // a Bayeux session expires when no /meta/connect arrives within this after the last reply; default 10s
	AllowedOrigins []string      // Get Session requires an Origin or Referer header; if this list is non-empty the origin must be on it (else 403)
	Logger         *slog.Logger  // nil = discard

	// RefuseControllerRejoin makes a Controller join refused ("403::rejoin not allowed") on a
	// session that already had a Controller, even after that Controller's Bayeux session was
	// lost. By default such a re-join is allowed (see the package doc).
	RefuseControllerRejoin bool

	// HoldController keeps a Controller whose Bayeux session went (expired, dropped) a member
	// for this long: meanwhile a new Controller's join is refused with "403::controller already
	// joined", as a server that releases the old membership later than the Bayeux session would.
	// Its token keeps working for the REST stop. Zero: the Controller leaves with its Bayeux
	// session.
	HoldController time.Duration
}

// Cluster is a Co-browse cluster: a front (the load balancer) and its nodes, each an HTTP
// server on 127.0.0.1. The nodes share the session directory, as a real cluster does.
type Cluster struct {
	opts Options
	log  *slog.Logger
	path string

	front      *httpServer
	frontGroup group
	nodes      []*Node
	rr         atomic.Uint64

	mu         sync.Mutex // guards every co-browse session, user and the maps below
	live       map[string]*Session
	ended      map[string]*Session
	endedOrder []string
	users      map[string]*user    // userToken -> user, while its session is live
	agents     map[string]*Session // agent id -> the live session the agent is bound to
	seq        int64
	closed     bool
}

// NewCluster starts a front and opts.Nodes nodes, each on 127.0.0.1:0. It panics if it cannot
// listen (as httptest.NewServer does). Close stops everything.
func NewCluster(opts Options) *Cluster {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.Path == "" {
		opts.Path = "/cobrowse"
	}
	opts.Path = "/" + strings.Trim(opts.Path, "/")
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		opts:   opts,
		log:    opts.Logger.With("component", "gcbtest"),
		path:   opts.Path,
		live:   make(map[string]*Session),
		ended:  make(map[string]*Session),
		users:  make(map[string]*user),
		agents: make(map[string]*Session),
	}
	for i := range opts.Nodes {
		n := &Node{c: c, name: fmt.Sprintf("node-%d", i+1)}
		n.log = c.log.With("node", n.name)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.Close()
			panic(fmt.Sprintf("gcbtest: listen: %v", err))
		}
		n.addr = ln.Addr().String()
		n.url = "http://" + n.addr + c.path
		n.start(ln)
		c.nodes = append(c.nodes, n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.Close()
		panic(fmt.Sprintf("gcbtest: listen: %v", err))
	}
	c.front = serve(ln, http.HandlerFunc(c.serveFront), c.log)
	return c
}

// URL returns the cluster (front) URL including Path: what a connector is configured with.
func (c *Cluster) URL() string { return "http://" + c.front.ln.Addr().String() + c.path }

// Nodes returns the nodes, in order (node-1 first).
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Node returns the node with that name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// Close stops the front and every node and waits for all their goroutines. Live sessions end
// (EndedBy "node").
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.front != nil {
		c.front.srv.Close()
	}
	for _, n := range c.nodes {
		n.Kill()
	}
	c.frontGroup.closeWait()
	if c.front != nil {
		c.front.wait()
	}
}

// CreateSession plays the customer: it creates a live, idle session on the node with that
// index (0 for node-1), with the customer present (userId "1", role 1). Its token is 9 random
// digits (it may start with 0).
func (c *Cluster) CreateSession(node int) (*Session, error) {
	if node < 0 || node >= len(c.nodes) {
		return nil, fmt.Errorf("gcbtest: no node %d (the cluster has %d)", node, len(c.nodes))
	}
	return c.nodes[node].createSession(true)
}

// Session returns the session with that token: the live one, else the most recently ended
// one the cluster still remembers; nil if unknown.
func (c *Cluster) Session(token string) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.live[token]; s != nil {
		return s
	}
	return c.ended[token]
}

// Sessions returns the live sessions and the last ended ones the cluster remembers (up to
// 10,000), in creation order.
func (c *Cluster) Sessions() []*Session {
	c.mu.Lock()
	out := make([]*Session, 0, len(c.live)+len(c.ended))
	for _, s := range c.live {
		out = append(out, s)
	}
	for _, s := range c.ended {
		out = append(out, s)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return int(a.seq - b.seq) })
	return out
}

// LiveSessions counts the live sessions.
func (c *Cluster) LiveSessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

func (c *Cluster) rememberEndedLocked(s *Session) {
	if _, ok := c.ended[s.token]; !ok {
		c.endedOrder = append(c.endedOrder, s.token)
	}
	c.ended[s.token] = s
	if len(c.endedOrder) > endedKept {
		old := c.endedOrder[0]
		c.endedOrder = c.endedOrder[1:]
		delete(c.ended, old)
	}
}

// serveFront is the load balancer: it routes on the gcbSessionServer cookie to that node
// (503 if the node is down), and without the cookie (or with an unknown value) to the next
// live node in turn. It hands the request to the node in-process: no second socket, and a
// websocket upgrade is accepted by the node on the front's own connection.
func (c *Cluster) serveFront(w http.ResponseWriter, r *http.Request) {
	if !c.frontGroup.enter() {
		http.Error(w, "gcbtest front: closing", http.StatusServiceUnavailable)
		return
	}
	defer c.frontGroup.leave()
	var n *Node
	if ck, err := r.Cookie(StickyCookie); err == nil {
		n = c.Node(ck.Value)
	}
	if n == nil {
		n = c.nextLive()
	}
	if n == nil {
		http.Error(w, "gcbtest front: no node available", http.StatusServiceUnavailable)
		return
	}
	g := n.current()
	if g == nil {
		http.Error(w, "gcbtest front: "+n.name+" is down", http.StatusServiceUnavailable)
		return
	}
	g.handle(w, r, true)
}

func (c *Cluster) nextLive() *Node {
	for range len(c.nodes) {
		n := c.nodes[int(c.rr.Add(1)-1)%len(c.nodes)]
		if n.current() != nil {
			return n
		}
	}
	return nil
}

// httpServer is a net/http server on its own listener.
type httpServer struct {
	srv    *http.Server
	ln     net.Listener
	served chan struct{}
}

func serve(ln net.Listener, h http.Handler, log *slog.Logger) *httpServer {
	s := &httpServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:     ln,
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "error", err)
		}
	}()
	return s
}

func (s *httpServer) wait() { <-s.served }

// group counts handlers in flight, so that a stop can wait for them (http.Server does not
// wait for hijacked connections, nor for requests the front hands to a node).
type group struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *group) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 && g.zero != nil {
		close(g.zero)
		g.zero = nil
	}
}

// closeWait refuses new handlers and waits for those in flight.
func (g *group) closeWait() {
	g.mu.Lock()
	g.closed = true
	if g.n == 0 {
		g.mu.Unlock()
		return
	}
	if g.zero == nil {
		g.zero = make(chan struct{})
	}
	zero := g.zero
	g.mu.Unlock()
	<-zero
}
