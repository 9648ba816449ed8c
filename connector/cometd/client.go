package cometd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strconv"
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
	URL              string            // http(s)://host:port/app/cometd ; ws(s) derived from it for websocket
	Transports       []string          // preference order; default {websocket, long-polling}
	Header           http.Header       // extra headers on every HTTP request and on the websocket upgrade (e.g. Origin)
	Cookies          []*http.Cookie    // seeded into this session's own cookie jar for URL
	RoundTripper     http.RoundTripper // may be shared between many clients; nil = a transport of this client's own
	MaxNetworkDelay  time.Duration     // extra wait on top of advice.timeout for a /meta/connect, and the whole wait for other requests; default 10s
	BackoffIncrement time.Duration     // default 1s
	MaxBackoff       time.Duration     // default 60s
	Logger           *slog.Logger      // nil = discard
	// OnMessage receives deliveries: every server->client message that is not a reply to one of
	// our requests, in arrival order. OnMessage and OnState are called one at a time, in order, on
	// a goroutine the Client owns (never on a network reader, never on the caller of a Client
	// method), so they may call Client methods, including Close and Disconnect. They must not
	// block for long: events queue up behind them.
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

// HTTPError is a long-polling reply (or websocket upgrade) with an unexpected HTTP status.
type HTTPError struct {
	StatusCode int
}

func (e *HTTPError) Error() string { return "cometd: HTTP status " + strconv.Itoa(e.StatusCode) }

// Client is a Bayeux 1.0 client for one session. Create it with New, then Start it.
//
// Goroutines: on long-polling the Client runs one loop goroutine (parked in the /meta/connect
// request) besides net/http's own; on websocket the loop and one frame reader. Callbacks run on
// a short-lived goroutine started when events are queued and ending when the queue is empty.
type Client struct {
	opts       Options
	url        string
	transports []string
	http       *http.Client
	ownRT      *http.Transport // the transport built when Options.RoundTripper is nil
	log        *slog.Logger

	ctx    context.Context // the client's lifetime; cancelled by Close/Disconnect/termination
	cancel context.CancelFunc

	ids       atomic.Uint64
	wsRefused atomic.Bool // the server answered an upgrade with an HTTP status: prefer the next transport from now on

	mu       sync.Mutex
	state    int // stateNew, stateRunning, stateStopping
	clientID string
	tr       transport
	advice   Advice
	subs     []string
	pend     []*pending
	armed    *pending // a websocket /meta/connect in flight that owns the loop
	lp       *loop
	start    int // startPending, startDone (first connect succeeded), startAbandoned (Start gave up)

	stopOnce sync.Once
	stopCh   chan struct{}
	termErr  error
	doneOnce sync.Once
	done     chan struct{}
	netWG    sync.WaitGroup // loop and websocket readers

	ev events
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
	c := &Client{opts: opts, url: u.String(), stopCh: make(chan struct{}), done: make(chan struct{})}
	c.transports = opts.Transports
	if len(c.transports) == 0 {
		c.transports = []string{TransportWebSocket, TransportLongPolling}
	}
	for _, t := range c.transports {
		if t != TransportWebSocket && t != TransportLongPolling {
			return nil, fmt.Errorf("cometd: unknown transport %q", t)
		}
	}
	c.transports = slices.Compact(slices.Clone(c.transports))
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
	logger := opts.Logger
	if logger == nil {
		logger = discard
	}
	c.log = logger.With("component", "cometd")

	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	if len(opts.Cookies) > 0 {
		jar.SetCookies(u, opts.Cookies)
	}
	rt := opts.RoundTripper
	if rt == nil {
		c.ownRT = http.DefaultTransport.(*http.Transport).Clone()
		rt = c.ownRT
	}
	c.http = &http.Client{Jar: jar, Transport: rt}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.ev.c = c
	return c, nil
}

var discard = slog.New(slog.DiscardHandler)

// Start handshakes (ctx bounds the handshake and the first connect), then runs the connect
// loop on a goroutine the Client owns, and returns after the first connect reply. The loop
// outlives ctx: it runs until Disconnect, Close, or the server's reconnect advice "none".
// When Start fails the Client is closed and no state events are sent.
func (c *Client) Start(ctx context.Context) error {
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
	stop := context.AfterFunc(c.ctx, cancel) // Close during Start aborts the handshake
	err := c.handshake(hctx)
	stop()
	cancel()
	if err != nil {
		c.Close()
		return err
	}
	started := make(chan error, 1)
	c.lp = &loop{c: c, started: started, fresh: true, timer: time.NewTimer(time.Hour)}
	c.lp.timer.Stop()
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
	return c.advice
}

// Subscriptions returns the channels this client is subscribed to (restored after a re-handshake).
func (c *Client) Subscriptions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.subs)
}

// Done is closed when the client has terminated.
func (c *Client) Done() <-chan struct{} { return c.done }

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
// loop and waits for every goroutine the Client started. StateTerminated carries a nil Err.
func (c *Client) Disconnect(ctx context.Context) error {
	if !c.beginStop(nil) {
		c.finish()
		return nil
	}
	c.mu.Lock()
	t, id := c.tr, c.clientID
	c.mu.Unlock()
	var err error
	if t != nil && id != "" {
		var replies []Message
		replies, err = c.exchange(ctx, t, []Message{{Channel: "/meta/disconnect", ClientID: id}})
		if err == nil {
			err = replyError(&replies[0])
		}
	}
	c.finish()
	return err
}

// Close stops everything without talking to the server and waits for the goroutines. Safe to
// call twice, and from OnMessage/OnState.
func (c *Client) Close() error {
	c.beginStop(ErrClosed)
	c.finish()
	return nil
}

// beginStop records why the client stops and tells the loop; false if it was already stopping.
func (c *Client) beginStop(reason error) bool {
	first := false
	c.stopOnce.Do(func() {
		first = true
		c.mu.Lock()
		c.state = stateStopping
		c.termErr = reason
		c.mu.Unlock()
		close(c.stopCh)
	})
	return first
}

// finish cancels everything in flight, closes the transport and waits for the goroutines.
func (c *Client) finish() {
	c.cancel()
	c.closeTransport()
	c.netWG.Wait()
	c.finishArmed()
	c.markDone()
	c.ev.closeAndWait()
	if c.ownRT != nil {
		c.ownRT.CloseIdleConnections()
	}
}

func (c *Client) markDone() { c.doneOnce.Do(func() { close(c.done) }) }

func (c *Client) stopping() bool {
	select {
	case <-c.stopCh:
		return true
	default:
		return false
	}
}

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
		c.advice.Reconnect = ReconnectRetry
	}
	if a == nil {
		return
	}
	if a.Reconnect != "" {
		c.advice.Reconnect = a.Reconnect
	}
	if a.Interval != nil {
		c.advice.Interval = ptr(*a.Interval)
	}
	if a.Timeout != nil {
		c.advice.Timeout = ptr(*a.Timeout)
	}
	if a.MaxInterval != nil {
		c.advice.MaxInterval = ptr(*a.MaxInterval)
	}
	c.advice.MultipleClients = a.MultipleClients
	if a.Hosts != nil {
		c.advice.Hosts = slices.Clone(a.Hosts)
	}
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
	m.ID = c.nextID()
	ctx, cancel := context.WithTimeout(ctx, c.opts.MaxNetworkDelay)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	p := c.register(&m, true)
	defer c.unregister(p)
	if err := c.send(ctx, t, []*pending{p}, []Message{m}); err != nil {
		return nil, c.ctxErr(err)
	}
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
