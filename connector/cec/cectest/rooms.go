package cectest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The errors of Connect and Disconnect: what the CEC WebSocket would refuse.
var (
	ErrUnknownRoom     = errors.New("cectest: no connection info was issued for the room")
	ErrReleased        = errors.New("cectest: the room was released")
	ErrWrongURL        = errors.New("cectest: not the room's external WebSocket address (wssUrlOut)")
	ErrBadConnectParam = errors.New("cectest: connectParam was not issued for the room and role")
	ErrBadRole         = errors.New("cectest: role is not recorder or replayer")
)

// Issue is one connection info getConnectionInfo handed out.
type Issue struct {
	Role     Role
	RoomID   string
	UserID   string // as the request gave them
	UserName string
	WorkNo   string
	// WSSURL and WSSURLOut are the internal and the external addresses handed out.
	WSSURL, WSSURLOut string
	ConnectParam      string
	At                time.Time
}

// Room is what the server knows of a room: every connection info handed out for it, which pages
// are connected (Connect), and whether it was released.
type Room struct {
	ID      string
	Created time.Time
	// Issued is every connection info handed out for the room, in order.
	Issued []Issue
	// RecorderConnected and ReplayerConnected: the customer's and the agent's page are connected
	// (Connect, until Disconnect or the release).
	RecorderConnected, ReplayerConnected bool
	// Connects counts the successful Connect calls per role.
	Connects map[Role]int
	// Released: releaseConnection was called for the room; ReleasedAt the first time; Releases
	// how many times.
	Released   bool
	ReleasedAt time.Time
	Releases   int
}

// Issues returns the connection infos handed out for role.
func (r Room) Issues(role Role) []Issue {
	var out []Issue
	for _, is := range r.Issued {
		if is.Role == role {
			out = append(out, is)
		}
	}
	return out
}

type room struct {
	id         string
	created    time.Time
	issued     []Issue
	connected  map[Role]bool
	connects   map[Role]int
	released   bool
	releasedAt time.Time
	releases   int
}

func (r *room) snapshot() Room {
	out := Room{ID: r.id, Created: r.created, Issued: slices.Clone(r.issued),
		RecorderConnected: r.connected[RoleRecorder], ReplayerConnected: r.connected[RoleReplayer],
		Connects: map[Role]int{}, Released: r.released, ReleasedAt: r.releasedAt, Releases: r.releases}
	for k, v := range r.connects {
		out.Connects[k] = v
	}
	return out
}

// Room returns the room id, if any connection info was issued for it.
func (s *Server) Room(id string) (Room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		return Room{}, false
	}
	return r.snapshot(), true
}

// Rooms returns every room, in creation order.
func (s *Server) Rooms() []Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Room, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.rooms[id].snapshot())
	}
	return out
}

// Connect plays a page opening the CEC WebSocket with what it was handed: the room, the address
// and the connectParam of role. It checks them as the WebSocket would (as far as this server can
// guess): the room was issued connection info and is not released (ErrUnknownRoom, ErrReleased),
// wssURL is the external address handed out (ErrWrongURL: pages are on the Internet), and
// connectParam is one handed out for this room and this role (ErrBadConnectParam). The page then
// counts as connected until Disconnect or the room's release.
func (s *Server) Connect(role Role, roomID, wssURL, connectParam string) error {
	if role != RoleRecorder && role != RoleReplayer {
		return ErrBadRole
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	switch {
	case r == nil:
		return fmt.Errorf("%w: %q", ErrUnknownRoom, roomID)
	case r.released:
		return ErrReleased
	case wssURL != s.opts.WSSURLOut:
		return ErrWrongURL
	}
	ok := slices.ContainsFunc(r.issued, func(is Issue) bool {
		return is.Role == role && is.ConnectParam == connectParam && connectParam != ""
	})
	if !ok {
		return ErrBadConnectParam
	}
	r.connected[role] = true
	if r.connects == nil {
		r.connects = map[Role]int{}
	}
	r.connects[role]++
	s.changedLocked()
	return nil
}

// Disconnect plays role's page closing its WebSocket (the page ended, or went away).
func (s *Server) Disconnect(role Role, roomID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return fmt.Errorf("%w: %q", ErrUnknownRoom, roomID)
	}
	delete(r.connected, role)
	s.changedLocked()
	return nil
}

// WaitReleased waits until the room is released, or ctx ends.
func (s *Server) WaitReleased(ctx context.Context, roomID string) (Room, error) {
	err := s.waitFor(ctx, func() bool { r := s.rooms[roomID]; return r != nil && r.released },
		func() string { return fmt.Sprintf("room %q not released", roomID) })
	r, _ := s.Room(roomID)
	return r, err
}

// WaitRoom waits until a room satisfies cond (called with a snapshot of each room, in creation
// order), and returns the first that does; or ctx ends. A test or a demo that knows only the
// interaction waits for its room with a prefix: strings.HasPrefix(r.ID, interactionID+"-").
func (s *Server) WaitRoom(ctx context.Context, cond func(Room) bool) (Room, error) {
	var found Room
	err := s.waitFor(ctx, func() bool {
		for _, id := range s.order {
			if r := s.rooms[id].snapshot(); cond(r) {
				found = r
				return true
			}
		}
		return false
	}, func() string { return "no room satisfies the condition" })
	return found, err
}

// TokensIssued counts the access tokens tokenByAkSk issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuedTokens
}
