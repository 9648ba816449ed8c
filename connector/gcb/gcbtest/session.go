package gcbtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest/internal/bayeux"
)

// Roles, numbered as Genesys numbers them (connector.Role).
const (
	roleCustomer   = 1
	roleAgent      = 2
	roleController = 3
)

// The Genesys CometD channels.
const (
	ChannelCreate      = "/service/session/create"
	ChannelJoin        = "/service/session/join"
	ChannelExit        = "/service/session/exit"
	ChannelStop        = "/service/session/stop"
	ChannelJoined      = "/service/session/joined"
	ChannelActivated   = "/service/session/activated"
	ChannelDeactivated = "/service/session/deactivated"
)

// What Session.EndedBy returns.
const (
	EndedByController     = "controller"      // /service/session/stop over CometD
	EndedByControllerREST = "controller-rest" // GET .../users/{userToken}/session/stop
	EndedByAgent          = "agent"           // the agent left (AgentExit, exit, or its Bayeux session was lost)
	EndedByCustomer       = "customer"        // the customer left (CustomerExit, exit, or its Bayeux session was lost)
	EndedByNode           = "node"            // the node was killed or restarted, or the cluster closed
)

// Errors of the methods that play the customer and the agent.
var (
	ErrEnded        = errors.New("gcbtest: session ended")
	ErrNodeDown     = errors.New("gcbtest: node is down")
	ErrAgentBusy    = errors.New("gcbtest: agent busy: it has another live session")
	ErrAgentPresent = errors.New("gcbtest: an agent already joined this session")
	ErrNotPresent   = errors.New("gcbtest: no such participant in the session")
)

// State is a co-browse session's state.
type State int

// The states: idle until an agent joins, then active, then ended.
const (
	StateIdle State = iota
	StateActive
	StateEnded
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateActive:
		return "active"
	case StateEnded:
		return "ended"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// User is a participant of a session.
type User struct {
	ID   string // userId, "1", "2", ... in join order
	Role int    // 1 customer, 2 agent, 3 controller
	Name string
}

// Session is a co-browse session. Its methods are safe for concurrent use.
type Session struct {
	c         *Cluster
	node      *Node
	token     string
	historyID string
	seq       int64
	done      chan struct{}

	// guarded by c.mu
	state         State
	users         []*user
	nextUserID    int
	hadController bool
	activation    time.Time
	deactivation  time.Time
	endedBy       string
	agents        []string      // agent ids bound to this session
	changed       chan struct{} // closed and replaced at each membership change; nil until waited on
}

// user is one join: played from Go (bx nil) or a Bayeux client.
type user struct {
	sess    *Session
	id      int
	token   string
	role    int
	name    string
	bx      *bayeux.Session
	present bool
	// heldUntil is set on a Controller whose Bayeux session went under Options.HoldController:
	// it stays present (refusing a second Controller) until then.
	heldUntil time.Time
}

func (u *user) public() User { return User{ID: strconv.Itoa(u.id), Role: u.role, Name: u.name} }

// Token returns the 9-digit session token.
func (s *Session) Token() string { return s.token }

// HistoryID returns the sessionHistoryId, a UUID.
func (s *Session) HistoryID() string { return s.historyID }

// Node returns the node that owns the session.
func (s *Session) Node() *Node { return s.node }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// State returns the session's state.
func (s *Session) State() State {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.state
}

// EndedBy says who ended the session: "" while live, else one of the EndedBy constants.
func (s *Session) EndedBy() string {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.endedBy
}

// Times returns the activation time (zero if no agent ever joined) and the deactivation time
// (zero while live).
func (s *Session) Times() (activation, deactivation time.Time) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.activation, s.deactivation
}

// Users returns the users present now, in join order. A Controller whose Bayeux session was
// lost, or who exited, is not present.
func (s *Session) Users() []User {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	var out []User
	for _, u := range s.users {
		if u.present {
			out = append(out, u.public())
		}
	}
	return out
}

// WaitUser waits until a user with that role is present (for example the Controller a
// connector joins) and returns it. It fails if the session ends first or ctx is done.
func (s *Session) WaitUser(ctx context.Context, role int) (User, error) {
	for {
		s.c.mu.Lock()
		for _, u := range s.users {
			if u.present && u.role == role {
				s.c.mu.Unlock()
				return u.public(), nil
			}
		}
		if s.state == StateEnded {
			s.c.mu.Unlock()
			return User{}, ErrEnded
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return User{}, ctx.Err()
		}
	}
}

func (s *Session) changedLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// AgentJoin plays the agent (role 2, slave.html) joining: the session becomes active;
// /service/session/joined goes to the users already present, then /service/session/activated
// to all. agentID is the agent's identity for the one-live-session-per-agent rule ("" skips
// the rule); it is refused with ErrAgentBusy if that agent is bound to another live session.
func (s *Session) AgentJoin(agentID, name string) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.state == StateEnded {
		return ErrEnded
	}
	if s.present(roleAgent) != nil {
		return ErrAgentPresent
	}
	if !c.bindAgentLocked(agentID, s) {
		return ErrAgentBusy
	}
	s.joinLocked(roleAgent, name, nil)
	return nil
}

// AgentExit plays the agent leaving: the session ends, deactivated goes to all.
func (s *Session) AgentExit() error { return s.partyExit(roleAgent, EndedByAgent) }

// CustomerExit plays the customer leaving: the session ends, deactivated goes to all.
func (s *Session) CustomerExit() error { return s.partyExit(roleCustomer, EndedByCustomer) }

func (s *Session) partyExit(role int, by string) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.state == StateEnded {
		return ErrEnded
	}
	if s.present(role) == nil {
		return ErrNotPresent
	}
	c.endLocked(s, by)
	return nil
}

func (s *Session) present(role int) *user {
	for _, u := range s.users {
		if u.present && u.role == role {
			return u
		}
	}
	return nil
}

// joinLocked adds a user: joined goes to the users already present, and an agent's join
// activates an idle session (activated to all).
func (s *Session) joinLocked(role int, name string, bx *bayeux.Session) *user {
	s.nextUserID++
	u := &user{sess: s, id: s.nextUserID, token: newUserToken(), role: role, name: name, bx: bx, present: true}
	joined := map[string]any{"userId": strconv.Itoa(u.id), "role": role, "name": name}
	for _, other := range s.users {
		if other.present && other.bx != nil {
			other.bx.Deliver(ChannelJoined, joined)
		}
	}
	s.users = append(s.users, u)
	s.c.users[u.token] = u
	if role == roleController {
		s.hadController = true
	}
	if bx != nil {
		list, _ := bx.Value.([]*user)
		bx.Value = append(list, u)
	}
	if role == roleAgent && s.state == StateIdle {
		s.state = StateActive
		s.activation = time.Now()
		activated := map[string]any{"activationTime": s.activation.UnixMilli()}
		for _, other := range s.users {
			if other.present && other.bx != nil {
				other.bx.Deliver(ChannelActivated, activated)
			}
		}
	}
	s.changedLocked()
	return u
}

// leaveLocked takes a user out of the session (its token stays valid while the session is
// live, for the REST stop).
func (u *user) leaveLocked() {
	u.present = false
	if u.bx != nil {
		list, _ := u.bx.Value.([]*user)
		u.bx.Value = slices.DeleteFunc(list, func(x *user) bool { return x == u })
		u.bx = nil
	}
	u.sess.changedLocked()
}

// timesBody is the stop reply and the deactivated payload: activationTime is absent when the
// session never activated.
func timesBody(activation, deactivation time.Time) map[string]int64 {
	body := map[string]int64{"deactivationTime": deactivation.UnixMilli()}
	if !activation.IsZero() {
		body["activationTime"] = activation.UnixMilli()
	}
	return body
}

// endLocked ends a live session: deactivated goes to every present user (but not when the
// node died), tokens and agent bindings are released, Done is closed.
func (c *Cluster) endLocked(s *Session, by string) {
	if s.state == StateEnded {
		return
	}
	s.state = StateEnded
	s.endedBy = by
	s.deactivation = time.Now()
	if by != EndedByNode {
		body := timesBody(s.activation, s.deactivation)
		for _, u := range s.users {
			if u.present && u.bx != nil {
				u.bx.Deliver(ChannelDeactivated, body)
			}
		}
	}
	for _, u := range s.users {
		delete(c.users, u.token)
		if u.present {
			u.leaveLocked()
		}
	}
	for _, a := range s.agents {
		if c.agents[a] == s {
			delete(c.agents, a)
		}
	}
	s.agents = nil
	if c.live[s.token] == s {
		delete(c.live, s.token)
	}
	c.rememberEndedLocked(s)
	s.changedLocked()
	close(s.done)
	c.log.Debug("session ended", "token", connector.MaskToken(s.token), "ended_by", by)
}

// bindAgentLocked binds an agent to s for the one-live-session-per-agent rule; false if the
// agent is bound to another live session.
func (c *Cluster) bindAgentLocked(agentID string, s *Session) bool {
	if agentID == "" {
		return true
	}
	if other := c.agents[agentID]; other != nil {
		return other == s
	}
	c.agents[agentID] = s
	s.agents = append(s.agents, agentID)
	return true
}

// createSession creates a live idle session on the node, with the customer present if asked.
func (n *Node) createSession(withCustomer bool) (*Session, error) {
	if n.current() == nil {
		return nil, ErrNodeDown
	}
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || n.current() == nil { // checked again under c.mu: Kill ends the node's sessions under it
		return nil, ErrNodeDown
	}
	var token string
	for {
		token = newSessionToken()
		if c.live[token] == nil {
			break
		}
	}
	c.seq++
	s := &Session{c: c, node: n, token: token, historyID: newUUID(), seq: c.seq, done: make(chan struct{})}
	c.live[token] = s
	if withCustomer {
		s.joinLocked(roleCustomer, "Customer", nil)
	}
	n.log.Debug("session created", "token", connector.MaskToken(token))
	return s, nil
}

// The CometD side.

type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}

type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	n, err := strconv.Atoi(string(b))
	*f = flexInt(n)
	return err
}

type joinRequest struct {
	SessionToken flexString `json:"sessionToken"`
	Role         flexInt    `json:"role"`
	Name         string     `json:"name"`
}

type joinResult struct {
	UserToken        string     `json:"userToken"`
	UserID           int        `json:"userId"`
	Users            []joinUser `json:"users"`
	SessionHistoryID string     `json:"sessionHistoryId"`
}

type joinUser struct {
	UserID string `json:"userId"`
	Role   int    `json:"role"`
	Name   string `json:"name"`
}

type tokenRequest struct {
	UserToken string `json:"userToken"`
}

// service handles the Genesys /service/session/* channels of a node.
func (g *generation) service(bx *bayeux.Session, channel string, data json.RawMessage) (any, string, bool) {
	switch channel {
	case ChannelJoin:
		res, errText := g.join(bx, data)
		return res, errText, true
	case ChannelStop:
		res, errText := g.stop(bx, data)
		return res, errText, true
	case ChannelExit:
		res, errText := g.exit(bx, data)
		return res, errText, true
	case ChannelCreate:
		s, err := g.n.createSession(false)
		if err != nil {
			return nil, "503::" + err.Error(), true
		}
		return map[string]string{"sessionToken": s.token}, "", true
	}
	return nil, "", false
}

func (g *generation) join(bx *bayeux.Session, data json.RawMessage) (any, string) {
	var req joinRequest
	if len(data) == 0 || json.Unmarshal(data, &req) != nil {
		return nil, "400::invalid join request"
	}
	if req.SessionToken == "" {
		return nil, "400::sessionToken missing"
	}
	role := int(req.Role)
	if role < roleCustomer || role > roleController {
		return nil, "400::invalid role"
	}
	c := g.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.live[string(req.SessionToken)]
	if s == nil {
		if c.ended[string(req.SessionToken)] != nil {
			return nil, "410::session ended"
		}
		return nil, "404::session not found"
	}
	if s.node != g.n {
		return nil, "404::session not found on this node"
	}
	for _, u := range s.users {
		if u.present && u.bx == bx {
			return nil, "403::already joined"
		}
	}
	if p := s.present(roleController); p != nil && !p.heldUntil.IsZero() && !time.Now().Before(p.heldUntil) {
		p.leaveLocked() // the held Controller's time is over
	}
	if s.present(role) != nil {
		switch role {
		case roleCustomer:
			return nil, "403::customer already joined"
		case roleAgent:
			return nil, "403::agent already joined"
		default:
			return nil, "403::controller already joined"
		}
	}
	if role == roleController && s.hadController && c.opts.RefuseControllerRejoin {
		return nil, "403::rejoin not allowed"
	}
	if role != roleCustomer && !c.bindAgentLocked(req.Name, s) {
		return nil, "403::agent busy"
	}
	res := joinResult{Users: []joinUser{}, SessionHistoryID: s.historyID}
	for _, u := range s.users {
		if u.present {
			res.Users = append(res.Users, joinUser{UserID: strconv.Itoa(u.id), Role: u.role, Name: u.name})
		}
	}
	u := s.joinLocked(role, req.Name, bx)
	res.UserToken, res.UserID = u.token, u.id
	return res, ""
}

// member finds the user a request's userToken names, if it belongs to this Bayeux session.
func (g *generation) member(bx *bayeux.Session, data json.RawMessage) (*user, string) {
	var req tokenRequest
	if len(data) == 0 || json.Unmarshal(data, &req) != nil || req.UserToken == "" {
		return nil, "400::userToken missing"
	}
	u := g.n.c.users[req.UserToken]
	if u == nil || u.sess.node != g.n {
		return nil, "404::user not found"
	}
	if !u.present || u.bx != bx {
		return nil, "403::user token not bound to this client"
	}
	return u, ""
}

func (g *generation) stop(bx *bayeux.Session, data json.RawMessage) (any, string) {
	c := g.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	u, errText := g.member(bx, data)
	if errText != "" {
		return nil, errText
	}
	if u.role != roleController {
		return nil, "403::only the controller may stop the session"
	}
	c.endLocked(u.sess, EndedByController)
	return struct{}{}, ""
}

func (g *generation) exit(bx *bayeux.Session, data json.RawMessage) (any, string) {
	c := g.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	u, errText := g.member(bx, data)
	if errText != "" {
		return nil, errText
	}
	switch u.role {
	case roleCustomer:
		c.endLocked(u.sess, EndedByCustomer)
	case roleAgent:
		c.endLocked(u.sess, EndedByAgent)
	default: // the Controller leaves; the session goes on
		delete(c.users, u.token)
		u.leaveLocked()
	}
	return struct{}{}, ""
}

// removed is called when a Bayeux session of the node goes (expired, disconnected, dropped):
// a Controller loses its membership (its token still stops the session through REST while
// the session is live); a customer or an agent dropping ends the session.
func (g *generation) removed(bx *bayeux.Session, _ bayeux.Reason) {
	c := g.n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	list, _ := bx.Value.([]*user)
	for _, u := range slices.Clone(list) {
		if !u.present || u.sess.state == StateEnded {
			continue
		}
		switch u.role {
		case roleCustomer:
			c.endLocked(u.sess, EndedByCustomer)
		case roleAgent:
			c.endLocked(u.sess, EndedByAgent)
		default:
			if c.opts.HoldController > 0 {
				// Still a member for a while, but no longer reachable: no notifications.
				u.bx = nil
				u.heldUntil = time.Now().Add(c.opts.HoldController)
				continue
			}
			u.leaveLocked()
		}
	}
	bx.Value = nil
}

// Identifiers.

func newSessionToken() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000_000))
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%09d", n.Int64())
}

func newUserToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
