package zoomtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// The errors of the browser methods that are not SDK errors.
var (
	ErrClosed    = errors.New("zoomtest: server closed")
	ErrNoSession = errors.New("zoomtest: no such live session")
	ErrNoUser    = errors.New("zoomtest: no such user present in the session")
)

// The roles as REST and webhooks name them.
const (
	RoleCustomer = "customer"
	RoleAgent    = "agent"
)

// Why a session ended (Session.EndedBy).
const (
	EndedByEnd          = "end"               // End: a browser called session.end()
	EndedByCustomerLeft = "customer_left"     // the customer left with no agent present
	EndedByCustomerWait = "customer_wait"     // the agents waited CustomerWait for a customer who had left
	EndedByAgentsLeft   = "agents_left"       // the customer had left and the last agent left too
	EndedByReconnect    = "reconnect_timeout" // a disconnected user did not reconnect within ReconnectWindow
)

// User is one connection of a user to a session.
type User struct {
	UserID       string // the id REST and webhooks give (per-session, or the JWT's under EchoUserIDs)
	JWTUserID    string // the user_id claim of the user's JWT
	Name         string // the user_name claim
	Role         string // RoleCustomer or RoleAgent
	ConnectionID string
	JoinTime     time.Time
	LeaveTime    time.Time // zero while present
	Disconnected bool      // present but disconnected (a refresh), waiting to reconnect
}

// Present reports whether the user has not left.
func (u User) Present() bool { return u.LeaveTime.IsZero() }

// Session is a snapshot of a Cobrowse session.
type Session struct {
	ID        string
	PIN       string // upper case
	BYOP      bool   // the PIN is the customer page's own
	StartTime time.Time
	EndTime   time.Time // zero while live
	EndedBy   string    // one of the EndedBy constants, once ended
	Users     []User    // every connection, in join order, the customer first
}

// Live reports whether the session has not ended.
func (s Session) Live() bool { return s.EndTime.IsZero() }

// Agents returns the agents present.
func (s Session) Agents() []User {
	var out []User
	for _, u := range s.Users {
		if u.Role == RoleAgent && u.Present() {
			out = append(out, u)
		}
	}
	return out
}

type user struct {
	User
	reconnectGen int // the running reconnect timer's generation; 0: none
}

type session struct {
	id, pin   string
	byop      bool
	start     time.Time
	end       time.Time
	endedBy   string
	users     []*user
	waitGen   int // the running customer-wait timer's generation; 0: none
	gen       int // timer generations, shared by this session's timers
	timerStop []func() bool
}

func (ss *session) snapshot() Session {
	out := Session{ID: ss.id, PIN: ss.pin, BYOP: ss.byop, StartTime: ss.start, EndTime: ss.end, EndedBy: ss.endedBy}
	for _, u := range ss.users {
		out.Users = append(out.Users, u.User)
	}
	return out
}

func (ss *session) customer() *user {
	for _, u := range ss.users {
		if u.Role == RoleCustomer {
			return u
		}
	}
	return nil
}

func (ss *session) present(role string) []*user {
	var out []*user
	for _, u := range ss.users {
		if u.Role == role && u.Present() {
			out = append(out, u)
		}
	}
	return out
}

func (ss *session) find(userID string) *user {
	for _, u := range ss.users {
		if u.UserID == userID && u.Present() {
			return u
		}
	}
	return nil
}

// stopTimers stops the session's timers; each one stopped before it fired is done. s.mu is held.
func (ss *session) stopTimers(s *Server) {
	for _, stop := range ss.timerStop {
		if stop() {
			s.timers.Done()
		}
	}
	ss.timerStop = nil
	ss.waitGen = 0
	for _, u := range ss.users {
		u.reconnectGen = 0
	}
}

// after runs fn (with s.mu held) after d unless the session's generation moved on, the session
// ended or the server closed. s.mu is held.
func (s *Server) afterLocked(ss *session, d time.Duration, fn func(gen int)) int {
	ss.gen++
	gen := ss.gen
	s.timers.Add(1)
	t := time.AfterFunc(d, func() {
		defer s.timers.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || !ss.end.IsZero() {
			return
		}
		fn(gen)
	})
	ss.timerStop = append(ss.timerStop, t.Stop)
	return gen
}

// CustomerStart plays the customer page's session.start({sdkToken: jwt, customPinCode: customPIN}):
// it checks the customer JWT and starts a session with the customer in it, sending
// cobrowse.session_started. customPIN empty: Zoom makes a 6-digit PIN. Refusals are *SDKError:
// 2001 for a bad token (or a custom PIN without enable_byop), 1009 for a BYOP token without a
// custom PIN, 1008 for a custom PIN that is not 1-10 letters and digits, 1010 for a PIN a live
// session has.
func (s *Server) CustomerStart(jwt, customPIN string) (Session, error) {
	c, serr := s.checkJWT(jwt, 1)
	if serr != nil {
		return Session{}, serr
	}
	switch {
	case customPIN != "" && !c.byop:
		return Session{}, sdkErr(CodeTokenInvalid, "a custom PIN needs enable_byop: 1 in the token")
	case customPIN == "" && c.byop:
		return Session{}, sdkErr(CodeStartPINRequired, "the token has enable_byop: 1 but no custom PIN was given")
	case customPIN != "" && !validPIN(customPIN):
		return Session{}, sdkErr(CodePINInvalidFormat, "a custom PIN is 1 to 10 letters and digits")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Session{}, ErrClosed
	}
	pin := strings.ToUpper(customPIN)
	if pin != "" {
		if _, taken := s.byPIN[pin]; taken {
			return Session{}, sdkErr(CodeStartPINConflict, "the PIN belongs to a live session")
		}
	} else {
		for pin == "" || s.byPIN[pin] != nil {
			n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
			pin = fmt.Sprintf("%06d", n.Int64())
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	ss := &session{id: s.newSessionID(), pin: pin, byop: customPIN != "", start: now}
	cu := s.addUserLocked(ss, c, RoleCustomer, now)
	s.live[ss.id] = ss
	s.byPIN[pin] = ss
	s.hooks.enqueueLocked("cobrowse.session_started", map[string]any{
		"session_id": ss.id, "start_time": zoomTime(now), "role_type": RoleCustomer,
		"user_id": cu.UserID, "user_name": cu.Name,
	})
	s.notifyLocked()
	s.log.Debug("session started", "session_id", ss.id, "byop", ss.byop)
	return ss.snapshot(), nil
}

// AgentJoin plays the agent desk joining with the agent JWT and the PIN (any case). It returns the
// agent's connection and sends cobrowse.session_user_joined. Refusals are *SDKError: 2001 for a bad
// token, 1006 for a PIN no live session has, 1013 when MaxAgents agents are present, 1015 when a
// present user has the same JWT user_id.
func (s *Server) AgentJoin(jwt, pin string) (User, error) {
	c, serr := s.checkJWT(jwt, 2)
	if serr != nil {
		return User{}, serr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return User{}, ErrClosed
	}
	ss := s.byPIN[strings.ToUpper(pin)]
	if ss == nil {
		return User{}, sdkErr(CodeJoinPINNotFound, "no live session has this PIN")
	}
	for _, u := range ss.users {
		if u.Present() && u.JWTUserID == c.userID {
			return User{}, sdkErr(CodeSessionDuplicateID, "a present user has this user_id")
		}
	}
	if len(ss.present(RoleAgent)) >= s.opts.MaxAgents {
		return User{}, sdkErr(CodeAgentCountLimit, "%d agents are present", s.opts.MaxAgents)
	}
	now := time.Now().UTC().Truncate(time.Second)
	u := s.addUserLocked(ss, c, RoleAgent, now)
	s.hooks.enqueueLocked("cobrowse.session_user_joined", map[string]any{
		"session_id": ss.id, "user_id": u.UserID, "user_name": u.Name, "role_type": RoleAgent, "join_time": zoomTime(now),
	})
	s.notifyLocked()
	return u.User, nil
}

// AgentLeave plays an agent leaving the desk (without ending the session): it sends
// cobrowse.session_user_left. If the customer had left and no agent remains, the session ends.
func (s *Server) AgentLeave(sessionID, userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, u, err := s.userLocked(sessionID, userID, RoleAgent)
	if err != nil {
		return err
	}
	s.leaveLocked(ss, u)
	if c := ss.customer(); c != nil && !c.Present() && len(ss.present(RoleAgent)) == 0 {
		s.endLocked(ss, EndedByAgentsLeft)
	}
	s.notifyLocked()
	return nil
}

// CustomerLeave plays the customer's page going away without ending the session (the tab closed):
// it sends cobrowse.session_user_left for the customer. With no agent present the session ends at
// once; otherwise the agents wait CustomerWait, then it ends. The customer does not come back.
func (s *Server) CustomerLeave(sessionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.live[sessionID]
	if ss == nil || s.closed {
		return ErrNoSession
	}
	c := ss.customer()
	if c == nil || !c.Present() {
		return ErrNoUser
	}
	s.leaveLocked(ss, c)
	if len(ss.present(RoleAgent)) == 0 {
		s.endLocked(ss, EndedByCustomerLeft)
	} else {
		ss.waitGen = s.afterLocked(ss, s.opts.CustomerWait, func(gen int) {
			if ss.waitGen == gen {
				s.endLocked(ss, EndedByCustomerWait)
				s.notifyLocked()
			}
		})
	}
	s.notifyLocked()
	return nil
}

// End plays session.end() from either browser: the session ends and cobrowse.session_ended is
// sent (no session_user_left for the users still present).
func (s *Server) End(sessionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.live[sessionID]
	if ss == nil || s.closed {
		return ErrNoSession
	}
	s.endLocked(ss, EndedByEnd)
	s.notifyLocked()
	return nil
}

// Disconnect plays a user's page losing its connection (a refresh, a navigation): the user stays
// in the session, disconnected; no webhook is sent. If it does not Reconnect within
// ReconnectWindow, the session ends.
func (s *Server) Disconnect(sessionID, userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, u, err := s.userLocked(sessionID, userID, "")
	if err != nil {
		return err
	}
	if u.Disconnected {
		return nil
	}
	u.Disconnected = true
	u.reconnectGen = s.afterLocked(ss, s.opts.ReconnectWindow, func(gen int) {
		if u.reconnectGen == gen && u.Disconnected {
			s.endLocked(ss, EndedByReconnect)
			s.notifyLocked()
		}
	})
	s.notifyLocked()
	return nil
}

// Reconnect plays a disconnected user's page coming back within the reconnect window.
func (s *Server) Reconnect(sessionID, userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u, err := s.userLocked(sessionID, userID, "")
	if err != nil {
		return err
	}
	u.Disconnected = false
	u.reconnectGen = 0 // the timer, if it fires, finds its generation gone
	s.notifyLocked()
	return nil
}

// Session returns a session, live or ended (the last 10,000 ended ones are kept).
func (s *Server) Session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.live[id]; ss != nil {
		return ss.snapshot(), true
	}
	if ss := s.ended[id]; ss != nil {
		return ss.snapshot(), true
	}
	return Session{}, false
}

// SessionByPIN returns the live session with the PIN (any case).
func (s *Server) SessionByPIN(pin string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.byPIN[strings.ToUpper(pin)]; ss != nil {
		return ss.snapshot(), true
	}
	return Session{}, false
}

// WaitEnded waits until the session has ended and returns it.
func (s *Server) WaitEnded(ctx context.Context, id string) (Session, error) {
	var out Session
	err := s.waitFor(ctx, func() bool {
		if ss := s.ended[id]; ss != nil {
			out = ss.snapshot()
			return true
		}
		return false
	})
	return out, err
}

func (s *Server) userLocked(sessionID, userID, role string) (*session, *user, error) {
	ss := s.live[sessionID]
	if ss == nil || s.closed {
		return nil, nil, ErrNoSession
	}
	u := ss.find(userID)
	if u == nil || role != "" && u.Role != role {
		return nil, nil, ErrNoUser
	}
	return ss, u, nil
}

func (s *Server) addUserLocked(ss *session, c tokenClaims, role string, now time.Time) *user {
	u := &user{User: User{JWTUserID: c.userID, Name: c.userName, Role: role, JoinTime: now,
		ConnectionID: strings.ToLower(rand.Text()[:16])}}
	if s.opts.EchoUserIDs {
		u.UserID = c.userID
	} else {
		// A per-session id of the server's own: digits, unique in the session, unrelated to
		// the JWT. A user who joins again gets a new one.
		for u.UserID == "" || slices.ContainsFunc(ss.users, func(o *user) bool { return o.UserID == u.UserID }) {
			n, _ := rand.Int(rand.Reader, big.NewInt(90_000_000))
			u.UserID = fmt.Sprint(10_000_000 + n.Int64())
		}
	}
	ss.users = append(ss.users, u)
	return u
}

func (s *Server) leaveLocked(ss *session, u *user) {
	now := time.Now().UTC().Truncate(time.Second)
	u.LeaveTime = now
	u.Disconnected = false
	u.reconnectGen = 0
	s.hooks.enqueueLocked("cobrowse.session_user_left", map[string]any{
		"session_id": ss.id, "user_id": u.UserID, "user_name": u.Name, "role_type": u.Role, "leave_time": zoomTime(now),
	})
}

// endLocked ends a live session: timers stopped, present users' leave times set (no user_left
// webhooks), cobrowse.session_ended sent, the session moved to the ended ones.
func (s *Server) endLocked(ss *session, why string) {
	if !ss.end.IsZero() {
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	ss.end, ss.endedBy = now, why
	ss.stopTimers(s)
	for _, u := range ss.users {
		if u.Present() {
			u.LeaveTime = now
		}
		u.Disconnected = false
	}
	delete(s.live, ss.id)
	if s.byPIN[ss.pin] == ss {
		delete(s.byPIN, ss.pin)
	}
	s.ended[ss.id] = ss
	s.endOrder = append(s.endOrder, ss.id)
	if len(s.endOrder) > endedKept {
		delete(s.ended, s.endOrder[0])
		s.endOrder = s.endOrder[1:]
	}
	s.hooks.enqueueLocked("cobrowse.session_ended", map[string]any{
		"session_id": ss.id, "start_time": zoomTime(ss.start), "end_time": zoomTime(now),
	})
	s.log.Debug("session ended", "session_id", ss.id, "ended_by", why)
}

// newSessionID makes a session id: 22 characters of standard base64 and "==" (like Zoom's meeting
// UUIDs), so "/" and "+" appear and a client must escape the id in a path. s.mu is held.
func (s *Server) newSessionID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := base64.StdEncoding.EncodeToString(b[:])
		if s.live[id] == nil && s.ended[id] == nil {
			return id
		}
	}
}

func validPIN(pin string) bool {
	if len(pin) == 0 || len(pin) > 10 {
		return false
	}
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// zoomTime is Zoom's date-time form: RFC 3339, UTC, whole seconds.
func zoomTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
