package cometd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transport names.
const (
	TransportWebSocket   = "websocket"
	TransportLongPolling = "long-polling"
)

// StateKind says what happened to the Bayeux session.
type StateKind int

// State kinds.
const (
	// StateConnected: the first successful /meta/connect after Start; also sent again when
	// connects succeed after a StateDisconnected while the session (clientId) survived.
	StateConnected StateKind = iota + 1
	// StateReestablished: a NEW Bayeux session (new clientId) after a re-handshake, subscriptions
	// restored. Anything joined on the old session (a Genesys join) is gone.
	StateReestablished
	// StateDisconnected: connects are failing (network, HTTP status, server error, or the session
	// was lost and a re-handshake is under way); the client retries with backoff. Err says why.
	// Sent once per outage.
	StateDisconnected
	// StateTerminated: the client stopped for good: advice reconnect "none" (or a negative
	// interval), Disconnect (Err nil) or Close (Err ErrClosed). The last event.
	StateTerminated
)

func (k StateKind) String() string {
	switch k {
	case StateConnected:
		return "connected"
	case StateReestablished:
		return "reestablished"
	case StateDisconnected:
		return "disconnected"
	case StateTerminated:
		return "terminated"
	}
	return "StateKind(" + strconv.Itoa(int(k)) + ")"
}

// StateEvent tells the owner what happened to the Bayeux session.
type StateEvent struct {
	Kind     StateKind
	Err      error
	ClientID string
}

// Options configure a Client. Only URL is required.
type Options struct {
	URL        string   // http(s)://host:port/app/cometd ; ws(s) derived from it for websocket
	Transports []string // preference order; default {websocket, long-polling}
	// Header holds extra headers for every long-polling request and the websocket upgrade (e.g.
	// Origin). The headers the transports write themselves (Host, Content-Length, Content-Type,
	// Connection, Cookie, Upgrade, Sec-WebSocket-*) are ignored.
	Header  http.Header
	Cookies []*http.Cookie // seeded into this session's own cookie jar for URL
	// TLSConfig is used for https (and wss) URLs; nil means the system roots. Share one between
	// clients: the client keeps no copy of its own (one per base config and server name is made
	// for the whole process).
	TLSConfig *tls.Config
	// Dial opens the TCP connections of both transports; nil = a net.Dialer. Share one.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// RoundTripper, when set, carries the long-polling requests through net/http instead of the
	// client's own HTTP/1.1 connections: for an HTTP proxy, or a test transport. It costs what
	// net/http costs per connection (two goroutines and its buffers). The websocket transport
	// always dials with Dial and TLSConfig.
	RoundTripper     http.RoundTripper
	MaxNetworkDelay  time.Duration // extra wait on top of advice.timeout for a /meta/connect, and the whole wait for other requests; default 10s
	BackoffIncrement time.Duration // default 1s
	MaxBackoff       time.Duration // default 60s
	Logger           *slog.Logger  // nil = discard
	// OnMessage receives deliveries: every server->client message that is not a reply to one of
	// our requests, in arrival order. OnMessage and OnState are called one at a time, in order, on
	// a goroutine the Client owns (never on a network reader, never on the caller of a Client
	// method), so they may call Client methods; to stop the client they call Stop, not Close or
	// Disconnect (which wait until no callback runs). Events queue up behind a callback that
	// blocks.
	OnMessage func(Message)
	OnState   func(StateEvent) // state changes, same goroutine rules
	// MaxMessageSize bounds one HTTP reply body or websocket frame; default 8 MiB.
	MaxMessageSize int64
}

// Defaults.
const (
	DefaultMaxNetworkDelay  = 10 * time.Second
	DefaultBackoffIncrement = time.Second
	DefaultMaxBackoff       = time.Minute
	DefaultMaxMessageSize   = 8 << 20
	// DefaultConnectTimeout is the connect hold assumed until the server advises one.
	DefaultConnectTimeout = 30 * time.Second
)

// Errors.
var (
	ErrClosed          = errors.New("cometd: client closed")
	ErrNotConnected    = errors.New("cometd: no Bayeux session (not started, or re-handshaking)")
	ErrStarted         = errors.New("cometd: client already started")
	ErrNoReply         = errors.New("cometd: the server sent no reply to a request")
	ErrReconnectNone   = errors.New("cometd: server advised reconnect none")
	ErrNoTransport     = errors.New("cometd: no usable transport")
	ErrReservedInBatch = errors.New("cometd: /meta/handshake and /meta/connect cannot be batched by the caller")
)

// HTTPError is a long-polling reply (or websocket upgrade) with an unexpected HTTP status
// (redirects are not followed).
type HTTPError struct {
	StatusCode int
}

func (e *HTTPError) Error() string { return "cometd: HTTP status " + strconv.Itoa(e.StatusCode) }

// Client is a Bayeux 1.0 client for one session. Create it with New, then Start it.
//
// Goroutines: on long-polling the Client runs one loop goroutine (parked reading its
// /meta/connect reply); on websocket one frame reader. Callbacks run on a short-lived goroutine
// started when events are queued and ending when the queue is empty.
type Client struct {
	*endpoint              // shared by the clients of one URL and transport list
	opts      settings     // what the client keeps of its Options
	jar       cookieJar    // its own: one Bayeux session per cookie jar
	hc        *http.Client // the net/http route (Options.RoundTripper), else nil
	log       clog
	life      life // the client's lifetime; cancelled by Close/Disconnect/termination

	ids       atomic.Uint64
	wsRefused atomic.Bool // the server answered an upgrade with an HTTP status: prefer the next transport from now on
	stopped   atomic.Bool // beginStop happened

	mu       sync.Mutex
	state    uint8 // stateNew, stateRunning, stateStopping
	start    uint8 // startPending, startDone (first connect succeeded), startAbandoned (Start gave up)
	isDone   bool  // markDone happened
	clientID string
	tr       transport
	advice   advice
	subs     []string
	pend     []*pending
	armed    *pending // a websocket /meta/connect in flight that owns the loop
	lp       *loop
	termErr  error
	done     chan struct{}  // made by Done when asked for before the end
	netWG    sync.WaitGroup // loop and websocket readers

	ev events
}

// settings are what a client keeps of its Options.
type settings struct {
	Header           http.Header
	TLSConfig        *tls.Config
	Dial             func(ctx context.Context, network, address string) (net.Conn, error)
	OnMessage        func(Message)
	OnState          func(StateEvent)
	MaxNetworkDelay  time.Duration
	BackoffIncrement time.Duration
	MaxBackoff       time.Duration
	MaxMessageSize   int64
}

// endpoint is what the clients of one URL and transport list share: the URL's parts.
type endpoint struct {
	url        string
	host       string // the Host header
	addr       string // host:port to dial
	serverName string // for TLS
	uri        string // the request URI
	path       string // its path, for cookies
	secure     bool
	transports []string
}

// endpoints interns the endpoints, up to maxEndpoints of them (then each client has its own).
var (
	endpoints    sync.Map // string -> *endpoint
	endpointsN   atomic.Int64
	maxEndpoints = int64(1024)
)

// endpointFor returns the shared endpoint of u (already checked) and transports.
func endpointFor(raw string, u *url.URL, transports []string) *endpoint {
	key := raw + "\x00" + strings.Join(transports, "\x00")
	if v, ok := endpoints.Load(key); ok {
		return v.(*endpoint)
	}
	ep := &endpoint{url: raw, transports: transports, secure: u.Scheme == "https"}
	if u.Scheme != raw[:len(u.Scheme)] { // ws, wss
		ep.url = u.String()
	}
	ep.host, ep.serverName, ep.addr = u.Host, u.Hostname(), u.Host
	if u.Port() == "" {
		port := "80"
		if ep.secure {
			port = "443"
		}
		ep.addr = net.JoinHostPort(ep.serverName, port)
	}
	ep.uri = u.RequestURI()
	ep.path = pathOf(ep.uri)
	if endpointsN.Load() >= maxEndpoints {
		return ep
	}
	v, loaded := endpoints.LoadOrStore(key, ep)
	if !loaded {
		endpointsN.Add(1)
	}
	return v.(*endpoint)
}

const (
	stateNew = iota
	stateRunning
	stateStopping
)

const (
	startPending = iota
	startDone
	startAbandoned
)

// New checks opts and builds a Client; it does no I/O.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("cometd: bad URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("cometd: URL scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("cometd: URL has no host")
	}
	for k, vs := range opts.Header {
		if !validToken([]byte(k)) {
			return nil, fmt.Errorf("cometd: bad header name %q", k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return nil, fmt.Errorf("cometd: bad value for header %s", k)
			}
		}
	}
	transports := opts.Transports
	if len(transports) == 0 {
		transports = []string{TransportWebSocket, TransportLongPolling}
	}
	for _, t := range transports {
		if t != TransportWebSocket && t != TransportLongPolling {
			return nil, fmt.Errorf("cometd: unknown transport %q", t)
		}
	}
	c := &Client{endpoint: endpointFor(opts.URL, u, slices.Compact(slices.Clone(transports))), opts: settings{
		Header: opts.Header, TLSConfig: opts.TLSConfig, Dial: opts.Dial, OnMessage: opts.OnMessage, OnState: opts.OnState,
		MaxNetworkDelay: opts.MaxNetworkDelay, BackoffIncrement: opts.BackoffIncrement, MaxBackoff: opts.MaxBackoff,
		MaxMessageSize: opts.MaxMessageSize,
	}}
	if c.opts.MaxNetworkDelay <= 0 {
		c.opts.MaxNetworkDelay = DefaultMaxNetworkDelay
	}
	if c.opts.BackoffIncrement <= 0 {
		c.opts.BackoffIncrement = DefaultBackoffIncrement
	}
	if c.opts.MaxBackoff <= 0 {
		c.opts.MaxBackoff = DefaultMaxBackoff
	}
	if c.opts.MaxBackoff < c.opts.BackoffIncrement {
		c.opts.MaxBackoff = c.opts.BackoffIncrement
	}
	if c.opts.MaxMessageSize <= 0 {
		c.opts.MaxMessageSize = DefaultMaxMessageSize
	}
	c.log = clog{opts.Logger}
	if c.log.l == nil {
		c.log.l = discard
	}
	c.jar.seed(opts.Cookies, c.path, time.Now())
	if opts.RoundTripper != nil {
		c.hc = &http.Client{Jar: &c.jar, Transport: opts.RoundTripper,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	c.ev.c = c
	return c, nil
}

var discard = slog.New(slog.DiscardHandler)

// clog is Options.Logger with component=cometd first on every record: no With clone per client.
type clog struct{ l *slog.Logger }

func (l clog) Debug(msg string, args ...any) { l.log(slog.LevelDebug, msg, args) }
func (l clog) Info(msg string, args ...any)  { l.log(slog.LevelInfo, msg, args) }
func (l clog) Warn(msg string, args ...any)  { l.log(slog.LevelWarn, msg, args) }

func (l clog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !l.l.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // the caller of Debug, Info or Warn
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.Add("component", "cometd")
	r.Add(args...)
	_ = l.l.Handler().Handle(ctx, r)
}

// Start handshakes (ctx bounds the handshake and the first connect), then runs the connect
// loop on a goroutine the Client owns, and returns after the first connect reply. The loop
// outlives ctx: it runs until Disconnect, Close, or the server's reconnect advice "none".
// When Start fails the Client is closed and no state events are sent.
func (c *Client) Start(ctx context.Context) error {
	return c.begin(ctx, nil)
}

// StartCall is Start followed by Call (channel, data), with the call sent beside the first
// /meta/connect: in its HTTP request on long-polling, in its frame on websocket. That saves the
// round trip Call would wait for after Start. Bayeux lets other messages share a request with a
// connect, and the first connect asks the server to answer at once (advice timeout 0), so a
// server that holds a connect's request until the connect is answered holds this one no longer
// than that.
//
// ready, if not nil, is called after the handshake and before the connect and the call are sent,
// with ctx: its error fails StartCall (and closes the Client) before the call is sent. When the
// start fails the Client is closed, as Start closes it; when the start succeeds and the call
// fails, the Client runs on, as after Start and a failed Call.
func (c *Client) StartCall(ctx context.Context, channel string, data any, ready func(context.Context) error) (json.RawMessage, error) {
	raw, err := encodeData(data)
	if err != nil {
		return nil, err
	}
	var p *pending
	var t transport
	err = c.begin(ctx, func() ([]Message, []*pending, error) {
		if ready != nil {
			if err := ready(ctx); err != nil {
				return nil, nil, err
			}
		}
		var id string
		var err error
		if t, id, err = c.session(); err != nil {
			return nil, nil, err
		}
		m := Message{Channel: channel, Data: raw, ClientID: id}
		p = c.register(&m, t, true)
		return []Message{m}, []*pending{p}, nil
	})
	if p != nil {
		defer c.unregister(p)
	}
	if err != nil {
		return nil, err
	}
	ctx, done := c.bound(ctx)
	defer done()
	return c.result(ctx, t, p)
}

// begin is Start; with, if not nil, is called after the handshake and gives the messages (and
// their requests) to send beside the first connect, or the error that fails the start.
func (c *Client) begin(ctx context.Context, with func() ([]Message, []*pending, error)) error {
	c.mu.Lock()
	switch c.state {
	case stateRunning:
		c.mu.Unlock()
		return ErrStarted
	case stateStopping:
		c.mu.Unlock()
		return ErrClosed
	}
	c.state = stateRunning
	c.mu.Unlock()

	hctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.lifeCtx(), cancel) // Close during Start aborts the handshake
	err := c.handshake(hctx)
	stop()
	cancel()
	if err != nil {
		c.Close()
		return err
	}
	started := make(chan error, 1)
	c.lp = &loop{c: c, started: started, fresh: true}
	if with != nil {
		if c.lp.with, c.lp.withScope, err = with(); err != nil {
			c.Close()
			return err
		}
	}
	if !c.goNet(func() { c.runLoop(c.lp) }) {
		c.Close()
		return ErrClosed
	}
	select {
	case err = <-started:
	case <-ctx.Done():
		c.mu.Lock()
		if c.start == startDone { // the first connect won the race: the session is up
			c.mu.Unlock()
			return nil
		}
		c.start = startAbandoned
		c.mu.Unlock()
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
	}
	return err
}

// ClientID returns the current Bayeux session id ("" while there is none).
func (c *Client) ClientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// Transport returns the transport in use ("" before Start).
func (c *Client) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tr == nil {
		return ""
	}
	return c.tr.name()
}

// WebSocketRefused reports whether the server answered this client's websocket upgrade with an
// HTTP status (the client then prefers the next transport): the owner may remember it per server.
func (c *Client) WebSocketRefused() bool { return c.wsRefused.Load() }

// Advice returns the last advice seen, merged field by field (servers send advice only when it
// changes).
func (c *Client) Advice() Advice {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.advice.public()
}

// Subscriptions returns the channels this client is subscribed to (restored after a re-handshake).
func (c *Client) Subscriptions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.subs)
}

// Done is closed when the client has terminated.
func (c *Client) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDone {
		return closedCh
	}
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

// Subscribe subscribes to channel; the subscription is restored after every re-handshake.
func (c *Client) Subscribe(ctx context.Context, channel string) error {
	replies, err := c.request(ctx, []Message{{Channel: "/meta/subscribe", Subscription: channel}})
	if err != nil {
		return err
	}
	return replyError(&replies[0])
}

// Unsubscribe cancels a subscription; it is forgotten even if the server's reply fails.
func (c *Client) Unsubscribe(ctx context.Context, channel string) error {
	c.forget(channel)
	replies, err := c.request(ctx, []Message{{Channel: "/meta/unsubscribe", Subscription: channel}})
	if err != nil {
		return err
	}
	return replyError(&replies[0])
}

// Publish sends data on channel and returns the server's publish reply; a successful:false
// reply is returned as *Error.
func (c *Client) Publish(ctx context.Context, channel string, data any) (Message, error) {
	raw, err := encodeData(data)
	if err != nil {
		return Message{}, err
	}
	replies, err := c.request(ctx, []Message{{Channel: channel, Data: raw}})
	if err != nil {
		return Message{}, err
	}
	return replies[0], replyError(&replies[0])
}

// Call is a remote call on a /service/... channel: it publishes with a unique id and returns the
// result data, accepting EITHER a result carried in the publish reply's data (remote-call style),
// OR a separate delivery on the same channel with the same id. Replies and deliveries are told
// apart by the `successful` field, never by `id` alone. A reply with successful:true and no data
// means "wait for the delivery"; successful:false fails the call with *Error.
func (c *Client) Call(ctx context.Context, channel string, data any) (json.RawMessage, error) {
	raw, err := encodeData(data)
	if err != nil {
		return nil, err
	}
	return c.call(ctx, Message{Channel: channel, Data: raw})
}

// Batch sends several messages in one request (one HTTP POST or one websocket frame) and returns
// their replies in order. Missing ids and the clientId are filled in. Subscriptions made or
// cancelled in a batch are tracked like Subscribe and Unsubscribe do.
func (c *Client) Batch(ctx context.Context, msgs ...Message) ([]Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	for i := range msgs {
		if msgs[i].Channel == "/meta/handshake" || msgs[i].Channel == "/meta/connect" {
			return nil, ErrReservedInBatch
		}
		if msgs[i].Channel == "/meta/unsubscribe" {
			c.forget(msgs[i].Subscription)
		}
	}
	return c.request(ctx, slices.Clone(msgs))
}

// Disconnect sends /meta/disconnect (best effort, bounded by ctx and MaxNetworkDelay), stops the
// loop and waits for every goroutine the Client started, callbacks included: when it returns no
// callback runs and none will. StateTerminated carries a nil Err. A callback stops its own client
// with Stop instead: Disconnect there would wait for itself.
func (c *Client) Disconnect(ctx context.Context) error { return c.stop(ctx, true, true) }

// Close stops everything without talking to the server and waits for the goroutines, callbacks
// included: when it returns no callback runs and none will. Safe to call twice. A callback
// stops its own client with Stop instead: Close there would wait for itself.
func (c *Client) Close() error {
	return c.stop(context.Background(), false, true) // nil: it does not disconnect
}

// Stop is Disconnect (disconnect set: /meta/disconnect first, bounded by ctx) or Close that does
// not wait for the callbacks, for OnMessage and OnState (and functions given to Post) to stop
// their own client. When it returns the client's network goroutines have ended and no delivery
// will be made; the state callbacks still queued, StateTerminated last, run after the calling
// callback returns. Anyone may call it; Close or Disconnect afterwards waits for the rest.
func (c *Client) Stop(ctx context.Context, disconnect bool) error {
	return c.stop(ctx, disconnect, false)
}

// Post runs fn one at a time and in order with the callbacks, on their goroutine, behind the
// callbacks queued so far: fn may block and call the client as a callback may (Stop, not Close).
// It is how an owner's timers and other goroutines join the order of the callbacks. Once the
// client has stopped and its last callback has run, Post runs fn on the caller's goroutine
// instead and returns false. Close and Disconnect wait for the functions queued by Post.
func (c *Client) Post(fn func()) bool { return c.ev.post(fn) }

func (c *Client) stop(ctx context.Context, disconnect, wait bool) error {
	reason := ErrClosed
	if disconnect {
		reason = nil
	}
	if !c.beginStop(reason) {
		c.finish(wait)
		return nil
	}
	var err error
	if disconnect {
		c.mu.Lock()
		t, id := c.tr, c.clientID
		c.mu.Unlock()
		if t != nil && id != "" {
			var replies []Message
			replies, err = c.exchange(ctx, t, []Message{{Channel: "/meta/disconnect", ClientID: id}})
			if err == nil {
				err = replyError(&replies[0])
			}
		}
	}
	c.finish(wait)
	return err
}

// beginStop records why the client stops; false if it was already stopping.
func (c *Client) beginStop(reason error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped.Load() {
		return false
	}
	c.state = stateStopping
	c.termErr = reason
	c.stopped.Store(true)
	return true
}

// finish cancels everything in flight, closes the transport and waits for the network
// goroutines, and for the callbacks when wait is set.
func (c *Client) finish(wait bool) {
	c.life.cancel()
	c.closeTransport()
	c.netWG.Wait()
	c.finishArmed()
	c.markDone()
	if wait {
		c.ev.closeAndWait()
	} else {
		c.ev.close()
	}
}

func (c *Client) markDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isDone {
		c.isDone = true
		if c.done != nil {
			close(c.done)
		}
	}
}

// closedCh is a closed channel.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *Client) stopping() bool { return c.stopped.Load() }

// lifeCtx is the client's lifetime as a context, to derive request contexts from.
func (c *Client) lifeCtx() context.Context { return &c.life }

// closeTransport closes the transport in use, if any.
func (c *Client) closeTransport() {
	c.mu.Lock()
	t := c.tr
	c.tr = nil
	c.mu.Unlock()
	if t != nil {
		t.close()
	}
}

// install makes t the transport in use with session id; false (and t closed) when stopping.
func (c *Client) install(t transport, id string, adv *Advice) bool {
	c.mu.Lock()
	if c.state == stateStopping {
		c.mu.Unlock()
		t.close()
		return false
	}
	old := c.tr
	c.tr = t
	c.clientID = id
	c.mergeAdvice(adv, true)
	c.mu.Unlock()
	if old != nil && old != t {
		old.close()
	}
	return true
}

// mergeAdvice keeps the last advice seen, field by field. c.mu held.
func (c *Client) mergeAdvice(a *Advice, handshake bool) {
	if handshake && (a == nil || a.Reconnect == "") {
		c.advice.reconnect = ReconnectRetry
	}
	if a == nil {
		return
	}
	if a.Reconnect != "" {
		switch a.Reconnect { // the constants, not the decoded copies
		case ReconnectRetry:
			c.advice.reconnect = ReconnectRetry
		case ReconnectHandshake:
			c.advice.reconnect = ReconnectHandshake
		case ReconnectNone:
			c.advice.reconnect = ReconnectNone
		default:
			c.advice.reconnect = a.Reconnect
		}
	}
	if a.Interval != nil {
		c.advice.interval, c.advice.set = *a.Interval, c.advice.set|adviceInterval
	}
	if a.Timeout != nil {
		c.advice.timeout, c.advice.set = *a.Timeout, c.advice.set|adviceTimeout
	}
	if a.MaxInterval != nil {
		c.advice.maxInterval, c.advice.set = *a.MaxInterval, c.advice.set|adviceMaxInterval
	}
	c.advice.multiple = a.MultipleClients
	if a.Hosts != nil {
		c.advice.hosts = slices.Clone(a.Hosts)
	}
}

// advice is the last advice seen, kept without pointers (Advice has three).
type advice struct {
	reconnect                      string
	interval, timeout, maxInterval int64 // ms, when set
	set                            uint8
	multiple                       bool
	hosts                          []string
}

const (
	adviceInterval = 1 << iota
	adviceTimeout
	adviceMaxInterval
)

// adviceNow is the advice in force as the client keeps it, for the loop's own reads.
func (c *Client) adviceNow() advice {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.advice
}

// delay is how long the advised interval says to wait before the next connect (see interval).
func (a advice) delay() time.Duration {
	if a.set&adviceInterval == 0 || a.interval <= 0 {
		return 0
	}
	return time.Duration(a.interval) * time.Millisecond
}

func (a *advice) public() Advice {
	out := Advice{Reconnect: a.reconnect, MultipleClients: a.multiple, Hosts: slices.Clone(a.hosts)}
	if a.set&adviceInterval != 0 {
		out.Interval = ptr(a.interval)
	}
	if a.set&adviceTimeout != 0 {
		out.Timeout = ptr(a.timeout)
	}
	if a.set&adviceMaxInterval != 0 {
		out.MaxInterval = ptr(a.maxInterval)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func (c *Client) remember(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.subs, channel) {
		c.subs = append(c.subs, channel)
	}
}

func (c *Client) forget(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = slices.DeleteFunc(c.subs, func(s string) bool { return s == channel })
}

func encodeData(data any) (json.RawMessage, error) {
	if data == nil {
		return json.RawMessage("null"), nil
	}
	if raw, ok := data.(json.RawMessage); ok && len(raw) > 0 {
		return raw, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("cometd: encode data: %w", err)
	}
	return b, nil
}

func (c *Client) nextID() string { return strconv.FormatUint(c.ids.Add(1), 10) }

// session returns the transport and clientId of the live session.
func (c *Client) session() (transport, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == stateStopping:
		return nil, "", ErrClosed
	case c.tr == nil || c.clientID == "":
		return nil, "", ErrNotConnected
	}
	return c.tr, c.clientID, nil
}

// request sends msgs on the live session and returns their replies in order.
func (c *Client) request(ctx context.Context, msgs []Message) ([]Message, error) {
	t, id, err := c.session()
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		if msgs[i].ClientID == "" {
			msgs[i].ClientID = id
		}
	}
	replies, err := c.exchange(ctx, t, msgs)
	if err != nil {
		return nil, err
	}
	for i := range replies {
		if replies[i].OK() && msgs[i].Subscription != "" && msgs[i].Channel == "/meta/subscribe" {
			c.remember(msgs[i].Subscription)
		}
	}
	return replies, nil
}

// call is Call after encoding.
func (c *Client) call(ctx context.Context, m Message) (json.RawMessage, error) {
	t, id, err := c.session()
	if err != nil {
		return nil, err
	}
	m.ClientID = id
	ctx, done := c.bound(ctx)
	defer done()
	p := c.register(&m, t, true) // gives m its id
	defer c.unregister(p)
	if err := c.send(ctx, t, []*pending{p}, []Message{m}); err != nil {
		return nil, c.ctxErr(err)
	}
	return c.result(ctx, t, p)
}

// bound is ctx bounded by MaxNetworkDelay and by the client's life (Close cuts it short); done
// releases what bound made.
func (c *Client) bound(ctx context.Context) (_ context.Context, done func()) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.MaxNetworkDelay)
	stop := context.AfterFunc(c.lifeCtx(), cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// result waits for the result of the call p sent on t (see Call).
func (c *Client) result(ctx context.Context, t transport, p *pending) (json.RawMessage, error) {
	waitDelivery := false
	for {
		r, err := c.await(ctx, t, p, waitDelivery)
		if err != nil {
			return nil, err
		}
		if !r.IsReply() {
			return r.Data, nil
		}
		if !r.OK() {
			return nil, replyError(&r)
		}
		if d := bytes.TrimSpace(r.Data); len(d) > 0 && string(d) != "null" {
			return r.Data, nil
		}
		waitDelivery = true
		// successful:true without data: the result comes as a delivery.
	}
}
