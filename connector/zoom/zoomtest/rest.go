package zoomtest

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// page cuts n items into the page the request asks for: page_size (default 30, 1 to 300) and
// next_page_token (opaque; here the offset, encoded). A bad value is 400 with Zoom's code 300.
func page(w http.ResponseWriter, r *http.Request, n int) (from, to int, next string, size int, ok bool) {
	q := r.URL.Query()
	size = 30
	if v := q.Get("page_size"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 300 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"code": 300, "message": "Invalid page_size: " + v})
			return 0, 0, "", 0, false
		}
		size = p
	}
	if v := q.Get("next_page_token"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		off, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(b), "offset:") || off < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"code": 300, "message": "Invalid next_page_token."})
			return 0, 0, "", 0, false
		}
		from = off
	}
	from = min(from, n)
	to = min(from+size, n)
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(to)))
	}
	return from, to, next, size, true
}

// serveLiveSessions is GET /v2/cobrowsesdk/live_sessions.
func (s *Server) serveLiveSessions(w http.ResponseWriter, r *http.Request) {
	pin := strings.ToUpper(r.URL.Query().Get(s.opts.PINParam))
	s.mu.Lock()
	var list []*session
	for _, ss := range s.live {
		if s.opts.IgnorePINFilter || pin == "" || ss.pin == pin {
			list = append(list, ss)
		}
	}
	slices.SortFunc(list, func(a, b *session) int { return cmp.Or(a.start.Compare(b.start), cmp.Compare(a.id, b.id)) })
	from, to, next, size, ok := page(w, r, len(list))
	if !ok {
		s.mu.Unlock()
		return
	}
	sessions := []map[string]any{}
	for _, ss := range list[from:to] {
		users := []map[string]any{}
		for _, u := range ss.users {
			if u.Present() {
				users = append(users, map[string]any{"user_id": u.UserID, "user_name": u.Name, "role_type": u.Role})
			}
		}
		sessions = append(sessions, map[string]any{
			"session_id": ss.id, "start_time": zoomTime(ss.start), "session_pin": ss.pin, "users": users,
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"page_size": size, "next_page_token": next, "sessions": sessions})
}

// servePastSessions is GET /v2/cobrowsesdk/past_sessions: the ended sessions the server remembers,
// filtered by from and to (dates, yyyy-mm-dd, UTC, inclusive, on the start time), session_id and
// session_pin, oldest first, paged like live_sessions.
func (s *Server) servePastSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var from, to time.Time
	for _, d := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(d.name); v != "" {
			t, err := time.Parse(time.DateOnly, v)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"code": 300, "message": "Invalid " + d.name + ": " + v})
				return
			}
			*d.dst = t
		}
	}
	id, pin := q.Get("session_id"), strings.ToUpper(q.Get("session_pin"))
	s.mu.Lock()
	var list []*session
	for _, sid := range s.endOrder {
		ss := s.ended[sid]
		switch {
		case ss == nil,
			id != "" && ss.id != id,
			pin != "" && ss.pin != pin,
			!from.IsZero() && ss.start.Before(from),
			!to.IsZero() && !ss.start.Before(to.AddDate(0, 0, 1)):
			continue
		}
		list = append(list, ss)
	}
	slices.SortStableFunc(list, func(a, b *session) int { return a.start.Compare(b.start) })
	from2, to2, next, size, ok := page(w, r, len(list))
	if !ok {
		s.mu.Unlock()
		return
	}
	sessions := []map[string]any{}
	for _, ss := range list[from2:to2] {
		users := []map[string]any{}
		ids := map[string]bool{}
		for _, u := range ss.users {
			ids[u.UserID] = true
			users = append(users, map[string]any{"user_id": u.UserID, "user_name": u.Name, "role_type": u.Role})
		}
		sessions = append(sessions, map[string]any{
			"session_id": ss.id, "start_time": zoomTime(ss.start), "end_time": zoomTime(ss.end),
			"duration": hhmmss(ss.end.Sub(ss.start)), "user_count": len(ids), "session_pin": ss.pin, "users": users,
		})
	}
	s.mu.Unlock()
	out := map[string]any{"page_size": size, "next_page_token": next, "sessions": sessions}
	if !from.IsZero() {
		out["from"] = from.Format(time.DateOnly)
	}
	if !to.IsZero() {
		out["to"] = to.Format(time.DateOnly)
	}
	writeJSON(w, http.StatusOK, out)
}

// serveSession is GET /v2/cobrowsesdk/sessions/{id}.
func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	ss := s.lookup(r.PathValue("id"))
	if ss == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "message": "Session does not exist."})
		return
	}
	s.mu.Lock()
	ids := map[string]bool{}
	for _, u := range ss.users {
		ids[u.UserID] = true
	}
	out := map[string]any{
		"session_id": ss.id, "start_time": zoomTime(ss.start), "session_pin": ss.pin, "user_count": len(ids),
	}
	if !ss.end.IsZero() {
		out["end_time"] = zoomTime(ss.end)
		out["duration"] = hhmmss(ss.end.Sub(ss.start))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// serveSessionUsers is GET /v2/cobrowsesdk/sessions/{id}/users.
func (s *Server) serveSessionUsers(w http.ResponseWriter, r *http.Request) {
	ss := s.lookup(r.PathValue("id"))
	if ss == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "message": "Session does not exist."})
		return
	}
	s.mu.Lock()
	from, to, next, size, ok := page(w, r, len(ss.users))
	if !ok {
		s.mu.Unlock()
		return
	}
	users := []map[string]any{}
	for _, u := range ss.users[from:to] {
		m := map[string]any{
			"user_connection_id": u.ConnectionID, "user_id": u.UserID, "user_name": u.Name, "role_type": u.Role,
			"ip_address": "127.0.0.1", "data_center": "US", "join_time": zoomTime(u.JoinTime),
		}
		if !u.Present() {
			m["leave_time"] = zoomTime(u.LeaveTime)
			m["duration"] = hhmmss(u.LeaveTime.Sub(u.JoinTime))
		}
		users = append(users, m)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"page_size": size, "next_page_token": next, "users": users})
}

func (s *Server) lookup(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.live[id]; ss != nil {
		return ss
	}
	return s.ended[id]
}

func hhmmss(d time.Duration) string {
	sec := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
}
