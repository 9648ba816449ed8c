package zoom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The defaults of the Bring Your Own PIN flow (Config.BYOPPollInterval, Config.BYOPStartWait).
const (
	// DefaultBYOPPollInterval is how often a created session's PIN is looked up in Zoom's live
	// sessions while the daemon waits for the customer's page to start it.
	DefaultBYOPPollInterval = 2 * time.Second
	// DefaultBYOPStartWait bounds that wait: a page that has not started the session by then
	// will not (the customer closed it, or never had it open).
	DefaultBYOPStartWait = 2 * time.Minute
)

// opStart names the wait for a created session to go live in errors.
const opStart = "start"

// pinTries bounds how many fresh PINs create draws when Zoom says one is in use by a live session.
const pinTries = 3

// create is Join for a request (a trigger without a token: the bot or the agent asked for
// co-browse). Zoom has no call that creates a session: the customer's page starts it. So the
// daemon chooses the PIN (Bring Your Own PIN), mints the customer's token with enable_byop: 1, and
// returns a pending session whose HandoffStart carries both to the customer's page. The session is
// live (EventStarted) when the PIN is first seen among Zoom's live sessions.
//
// A fresh PIN is 10 random letters and digits (NewBYOPPIN); one that a live session already uses
// (Zoom would refuse the page's start with 1010) is never handed out: each is looked up first, and
// another drawn. That look-up also tells Zoom's REST API is reachable before the page is told to
// start (unavailable: the request is retried later, as a join would be).
func (c *Connector) create(ctx context.Context, t connector.Trigger) (connector.Session, error) {
	node := c.api.Node()
	log := c.log.With("interaction", t.InteractionID)
	if t.InteractionID == "" {
		return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrRefused, Reason: "a created session needs its interaction"}
	}
	for range pinTries {
		pin := NewBYOPPIN()
		_, err := c.api.LiveSessionByPIN(ctx, pin)
		switch {
		case err == nil:
			log.WarnContext(ctx, "a fresh BYOP PIN is in use by a live session; drawing another", "token", connector.MaskToken(pin))
			continue
		case !errors.Is(err, connector.ErrNotFound):
			return nil, relabel(opJoin, node, err)
		}
		req := CustomerTokenRequest(t.InteractionID)
		req.EnableBYOP = true
		tok, err := c.minter.Mint(req)
		if err != nil {
			return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrRefused, Reason: "minting the customer's token", Err: err}
		}
		startBy := c.now().Add(c.startWait)
		p := c.newPending(t.InteractionID, t.AgentID, pin, tok.JWT, startBy)
		log.InfoContext(ctx, "created a Zoom session for the request: the customer's page starts it with the daemon's PIN",
			"token", connector.MaskToken(pin), "customer_token", tok, "start_wait", c.startWait)
		return p, nil
	}
	return nil, &connector.ServerError{Op: opJoin, Node: node, Kind: connector.ErrUnavailable,
		Reason: fmt.Sprintf("%d fresh PINs in a row were in use by live sessions", pinTries)}
}

// pending is a session the daemon created for a request, from the PIN's hand-over to the customer's
// page until Zoom lists it live; then it carries on as the started session (started), to which it
// hands its signals, views and stop. It implements connector.Pending.
type pending struct {
	c           *Connector
	log         *slog.Logger
	interaction string
	agent       string
	pin         string
	startBy     time.Time

	events chan connector.Event // EventStarted or EventLost, then closed
	cancel context.CancelFunc
	done   chan struct{} // closed when the poll's goroutine is over

	mu            sync.Mutex
	customerToken string   // the customer's BYOP token, for HandoffStart; "" after a restart
	started       *session // set once Zoom lists the session live
	ending        bool     // Stop was called
	closed        bool
}

var (
	_ connector.Session = (*pending)(nil)
	_ connector.Pending = (*pending)(nil)
)

// newPending starts the poll of the PIN on a goroutine the session owns; Stop or Close ends it.
func (c *Connector) newPending(interaction, agent, pin, customerToken string, startBy time.Time) *pending {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pending{c: c, interaction: interaction, agent: agent, pin: pin, startBy: startBy, customerToken: customerToken,
		events: make(chan connector.Event, 1), cancel: cancel, done: make(chan struct{}),
		log: c.log.With("interaction", interaction, "token", connector.MaskToken(pin))}
	go p.poll(ctx)
	return p
}

// poll looks the PIN up among Zoom's live sessions, at once and then every poll interval, until
// the session is live (EventStarted), the start wait is over (EventLost, ErrNotFound), or the
// session is stopped or closed (the stream just closes). A Zoom that is unavailable meanwhile is
// only logged: the wait's bound is what gives up. With RequireMintedCustomer, a live session with
// the PIN whose customer is not the one minted for the interaction is not this session (EventLost,
// ErrNotBound): a PIN of ten random characters makes that practically impossible, but the check
// costs nothing.
func (p *pending) poll(ctx context.Context) {
	defer close(p.done)
	defer close(p.events)
	node := p.c.api.Node()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cctx, cancel := context.WithTimeout(ctx, p.c.pollTimeout)
		live, err := p.c.rejoinAPI.LiveSessionByPIN(cctx, p.pin)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && p.c.requireBound && !hasCustomerNamed(live.Users, CustomerUserName(p.interaction)):
			p.log.Warn("a live session has the created session's PIN but not its customer; giving it up", "session_id", live.SessionID)
			p.events <- connector.Event{Kind: connector.EventLost, Err: &connector.ServerError{Op: opStart, Node: node,
				Kind: connector.ErrNotBound, Reason: ReasonPINNotBound, Err: ErrPINNotBound}}
			return
		case err == nil:
			p.begin(live)
			return
		case !errors.Is(err, connector.ErrNotFound):
			p.log.Info("looking up the created session's PIN failed; trying again", "error", err, "retry_in", p.c.pollInterval)
		}
		left := p.startBy.Sub(p.c.now())
		if left <= 0 {
			p.log.Warn("the customer's page did not start the created session in time", "start_wait", p.c.startWait)
			p.events <- connector.Event{Kind: connector.EventLost, Err: &connector.ServerError{Op: opStart, Node: node,
				Kind: connector.ErrNotFound, Reason: "the customer's page did not start the session in time"}}
			return
		}
		timer.Reset(min(p.c.pollInterval, left))
	}
}

// begin makes the pending session the started one and gives EventStarted with its handle.
func (p *pending) begin(live LiveSession) {
	h := connector.Handle{Vendor: connector.Zoom, Token: p.pin, SessionID: live.SessionID, AgentID: p.agent,
		InteractionID: p.interaction, Data: handleData{PIN: p.pin, SessionID: live.SessionID, BYOP: true}.encode()}
	s := newSession(p.c, h, participantsOf(live.Users), false)
	p.mu.Lock()
	if p.ending || p.closed {
		p.mu.Unlock()
		return
	}
	p.started = s
	p.customerToken = ""
	// Under the lock, with started: Events never finds the session started and its event not
	// sent yet. The channel holds one event and this is its only one: the send does not block.
	p.events <- connector.Event{Kind: connector.EventStarted, Handle: h}
	p.mu.Unlock()
	p.log.Info("the customer's page started the created session", "session_id", live.SessionID, "participants", len(live.Users))
}

// Pending reports whether Zoom has not listed the session live yet.
func (p *pending) Pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started == nil
}

// Handle is the started session's handle, or, while pending, one without a session id whose Data
// says the PIN is the daemon's and until when the page may start it (for Rejoin).
func (p *pending) Handle() connector.Handle {
	p.mu.Lock()
	s := p.started
	p.mu.Unlock()
	if s != nil {
		return s.Handle()
	}
	return connector.Handle{Vendor: connector.Zoom, Token: p.pin, AgentID: p.agent, InteractionID: p.interaction,
		Data: handleData{PIN: p.pin, BYOP: true, StartBy: p.startBy.Unix()}.encode()}
}

// Participants are the users Zoom listed when it first listed the session; none while pending.
func (p *pending) Participants() []connector.Participant {
	if s := p.current(); s != nil {
		return s.Participants()
	}
	return nil
}

// Events gives EventStarted or EventLost, then closes. It is nil once the session started and its
// EventStarted was taken (the started session's events come as signals); until then it is the
// channel, also when the start came before the caller asked: a restart's Rejoin finds a session
// the page started meanwhile at its first look, often before the controller asks for the events,
// and a nil then would lose the start.
func (p *pending) Events() <-chan connector.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started != nil && len(p.events) == 0 {
		return nil
	}
	return p.events
}

func (p *pending) current() *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Signal hands the signal to the started session; while pending a signal means nothing (the
// router finds no interaction for a session not indexed yet, so none should come).
func (p *pending) Signal(g connector.Signal) []connector.Event {
	if s := p.current(); s != nil {
		return s.Signal(g)
	}
	return nil
}

// Handoffs: while pending, HandoffStart gives the customer's page the BYOP token and the PIN to
// start the session with (session.start({sdkToken, customPinCode})); once started, the started
// session's views; HandoffEnd the end requests, either way.
func (p *pending) Handoffs(kind connector.HandoffKind, agentID string) []connector.Handoff {
	if kind == connector.HandoffEnd {
		return endHandoffs(agentID)
	}
	p.mu.Lock()
	s, tok, ending := p.started, p.customerToken, p.ending || p.closed
	p.mu.Unlock()
	if s != nil {
		return s.Handoffs(kind, agentID)
	}
	if kind != connector.HandoffStart || ending || tok == "" {
		return nil
	}
	return []connector.Handoff{{Kind: connector.HandoffStart, ToCustomer: true, Token: tok, PIN: p.pin}}
}

// Stop ends the wait for the page (the controller asks the page to end what it may have started)
// or, once started, stops the started session.
func (p *pending) Stop(ctx context.Context) (connector.Times, error) {
	p.mu.Lock()
	s := p.started
	p.ending = true
	p.customerToken = ""
	p.mu.Unlock()
	if s != nil {
		return s.Stop(ctx)
	}
	p.cancel()
	return connector.Times{}, nil
}

// Close ends the poll and waits for its goroutine (bounded by ctx), and closes the started session.
func (p *pending) Close(ctx context.Context) error {
	p.mu.Lock()
	s := p.started
	p.closed = true
	p.customerToken = ""
	p.mu.Unlock()
	p.cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s != nil {
		return s.Close(ctx)
	}
	return nil
}

// rejoinPending takes a created session back after a restart: the wait for the page goes on until
// the handle's start-by time (the customer's token is not minted again: the page has it, and the
// token endpoint gives it again).
func (c *Connector) rejoinPending(h connector.Handle, d handleData) *pending {
	startBy := time.Unix(d.StartBy, 0)
	if d.StartBy == 0 {
		startBy = c.now().Add(c.startWait)
	}
	c.log.Info("waiting again for the customer's page to start a created session", "interaction", h.InteractionID,
		"token", connector.MaskToken(d.PIN), "start_by", startBy)
	return c.newPending(h.InteractionID, h.AgentID, d.PIN, "", startBy)
}

// IsBYOP reports whether a saved Zoom handle is of a session the daemon created with its own PIN
// (a request): the customer's token for it carries enable_byop.
func IsBYOP(h connector.Handle) bool { return decodeHandle(h).BYOP }
