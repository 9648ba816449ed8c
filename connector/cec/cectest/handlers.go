package cectest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// serveToken is tokenByAkSk: POST, Content-Type application/json, X-Token-Expire a whole number
// of seconds from 1 to MaxTokenExpire, body {"app_key","app_secret"}.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) { writeError(w, RouteToken, status, code, msg) }
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "405", "tokenByAkSk takes POST")
		return
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		fail(http.StatusBadRequest, "400", "Content-Type must be application/json")
		return
	}
	raw := r.Header.Get("X-Token-Expire")
	expire, err := strconv.Atoi(raw)
	if err != nil || expire < 1 || expire > MaxTokenExpire || strings.TrimSpace(raw) != raw {
		fail(http.StatusBadRequest, "400", fmt.Sprintf("X-Token-Expire must be a whole number of seconds from 1 to %d", MaxTokenExpire))
		return
	}
	var body struct {
		AppKey    *string `json:"app_key"`
		AppSecret *string `json:"app_secret"`
	}
	if err := readJSON(r, &body); err != nil {
		fail(http.StatusBadRequest, "400", "body is not a JSON object with app_key and app_secret: "+err.Error())
		return
	}
	if body.AppKey == nil || body.AppSecret == nil {
		fail(http.StatusBadRequest, "400", "app_key and app_secret are required")
		return
	}
	if *body.AppKey != s.opts.AppKey || *body.AppSecret != s.opts.AppSecret {
		fail(http.StatusUnauthorized, "401", "app_key or app_secret is invalid")
		return
	}
	life := time.Duration(expire) * time.Second
	if ttl := s.opts.TokenTTL; ttl > 0 && ttl < life {
		life = max(ttl.Round(time.Second), time.Second)
	}
	tok := randomToken()
	now := s.opts.Now()
	s.mu.Lock()
	s.tokens[tok] = &token{appKey: *body.AppKey, expires: now.Add(life)}
	s.issuedTokens++
	s.changedLocked()
	s.mu.Unlock()
	s.log.Debug("token issued", "expires_in", life)
	writeJSON(w, http.StatusOK, map[string]any{
		"AccessToken": tok,
		"ApplyType":   "Bearer",
		"CreateTime":  strconv.FormatInt(now.Unix(), 10),
		"Expires":     strconv.FormatInt(int64(life/time.Second), 10),
		"Scope":       "default",
		"AppKey":      *body.AppKey,
		"UserID":      "Anonymous",
	})
}

// authorize checks API Fabric's headers: x-app-key the app's, Authorization "Bearer <token>" with
// a token issued to that app and not expired (401 otherwise), X-TenantSpaceID the tenant space's
// (403 otherwise). It returns 0 when they pass.
func (s *Server) authorize(r *http.Request) (status int, reason string) {
	appKey := r.Header.Get("x-app-key")
	if appKey != s.opts.AppKey {
		return http.StatusUnauthorized, "x-app-key is missing or not the app's"
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" || strings.TrimSpace(tok) != tok {
		return http.StatusUnauthorized, "Authorization must be Bearer <AccessToken>"
	}
	s.mu.Lock()
	t, known := s.tokens[tok]
	var expired, otherApp bool
	if known {
		expired = !s.opts.Now().Before(t.expires)
		otherApp = t.appKey != appKey
	}
	s.mu.Unlock()
	switch {
	case !known:
		return http.StatusUnauthorized, "invalid token"
	case expired:
		return http.StatusUnauthorized, "token expired"
	case otherApp:
		return http.StatusUnauthorized, "token not issued to this x-app-key"
	}
	if ts := r.Header.Get("X-TenantSpaceID"); ts != s.opts.TenantSpaceID {
		return http.StatusForbidden, "X-TenantSpaceID is missing or not the app's tenant space"
	}
	return 0, ""
}

// serveConnectionInfo is getConnectionInfo: POST with API Fabric's headers, body {"roomId",
// "userId","userName","workNo","role"}; role recorder or replayer.
func (s *Server) serveConnectionInfo(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) { writeError(w, RouteConnectionInfo, status, code, msg) }
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "405", "getConnectionInfo takes POST")
		return
	}
	if st, why := s.authorize(r); st != 0 {
		fail(st, strconv.Itoa(st), why)
		return
	}
	var body struct {
		RoomID   string `json:"roomId"`
		UserID   string `json:"userId"`
		UserName string `json:"userName"`
		WorkNo   string `json:"workNo"`
		Role     Role   `json:"role"`
	}
	if err := readJSON(r, &body); err != nil {
		fail(http.StatusBadRequest, "400", "body is not a JSON object of strings: "+err.Error())
		return
	}
	if body.Role != RoleRecorder && body.Role != RoleReplayer {
		fail(http.StatusBadRequest, "400", "role must be recorder or replayer")
		return
	}
	if body.RoomID == "" {
		body.RoomID = uuid()
	}
	if len(body.RoomID) > s.opts.MaxRoomID {
		fail(http.StatusOK, "1", fmt.Sprintf("roomId is longer than %d bytes", s.opts.MaxRoomID))
		return
	}
	is := Issue{Role: body.Role, RoomID: body.RoomID, UserID: body.UserID, UserName: body.UserName, WorkNo: body.WorkNo,
		WSSURL: s.opts.WSSURL, WSSURLOut: s.opts.WSSURLOut, ConnectParam: randomString(30), At: s.opts.Now()}
	s.mu.Lock()
	rm := s.rooms[body.RoomID]
	if rm != nil && rm.released {
		s.mu.Unlock()
		fail(http.StatusOK, "2", "the room was released")
		return
	}
	if rm == nil {
		rm = &room{id: body.RoomID, created: is.At, connected: map[Role]bool{}, connects: map[Role]int{}}
		s.rooms[body.RoomID] = rm
		s.order = append(s.order, body.RoomID)
	}
	rm.issued = append(rm.issued, is)
	s.changedLocked()
	s.mu.Unlock()
	s.log.Debug("connection info issued", "session_id", is.RoomID, "role", is.Role)
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true,
		"data": map[string]any{
			"roomId":       is.RoomID,
			"wssUrl":       is.WSSURL,
			"wssUrlOut":    is.WSSURLOut,
			"connectParam": is.ConnectParam,
		},
		"errorCode":   nil,
		"errorReason": nil,
	})
}

// serveRelease is releaseConnection: POST with API Fabric's headers (see the package doc), body
// {"callId"}: the room.
func (s *Server) serveRelease(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) { writeError(w, RouteRelease, status, code, msg) }
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "405", "releaseConnection takes POST")
		return
	}
	if st, why := s.authorize(r); st != 0 {
		fail(st, strconv.Itoa(st), why)
		return
	}
	var body struct {
		CallID string `json:"callId"`
	}
	if err := readJSON(r, &body); err != nil || body.CallID == "" {
		fail(http.StatusBadRequest, "400", "callId is required")
		return
	}
	s.mu.Lock()
	rm := s.rooms[body.CallID]
	if rm == nil {
		s.mu.Unlock()
		fail(http.StatusOK, "1", "no co-browse connection for the callId")
		return
	}
	rm.releases++
	if !rm.released {
		rm.released, rm.releasedAt = true, s.opts.Now()
		clear(rm.connected) // the server closes the room's connections
	}
	s.changedLocked()
	s.mu.Unlock()
	s.log.Debug("room released", "session_id", body.CallID)
	writeJSON(w, http.StatusOK, map[string]any{"retCode": "0", "retMsg": "success"})
}

// readJSON reads one JSON object from the request body into v.
func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return err
	}
	if len(b) > maxBody {
		return fmt.Errorf("body over %d bytes", maxBody)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	return json.Unmarshal(b, v)
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// randomToken is an access token: 32 random bytes in hex (CEC's format is not documented).
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
