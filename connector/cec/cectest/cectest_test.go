package cectest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 5 * time.Second

func newServer(t *testing.T, o Options) *Server {
	t.Helper()
	s := New(o)
	t.Cleanup(s.Close)
	return s
}

// call POSTs body to path with headers and returns the status and the decoded JSON reply.
func call(t *testing.T, s *Server, path string, hdr map[string]string, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: wait}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("reply %q is not a JSON object: %v", b, err)
	}
	return resp.StatusCode, out
}

func tokenHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/json", "X-Token-Expire": "600"}
}

func tokenBody(o Options) string {
	b, _ := json.Marshal(map[string]string{"app_key": o.AppKey, "app_secret": o.AppSecret})
	return string(b)
}

func getToken(t *testing.T, s *Server) string {
	t.Helper()
	st, r := call(t, s, PathToken, tokenHeaders(), tokenBody(s.Options()))
	tok, _ := r["AccessToken"].(string)
	if st != 200 || tok == "" {
		t.Fatalf("token: %d %v", st, r)
	}
	return tok
}

func apiHeaders(s *Server, tok string) map[string]string {
	o := s.Options()
	return map[string]string{"Content-Type": "application/json", "x-app-key": o.AppKey, "Authorization": "Bearer " + tok,
		"X-TenantSpaceID": o.TenantSpaceID}
}

func TestToken(t *testing.T) {
	s := newServer(t, Options{TokenTTL: 120 * time.Second})
	o := s.Options()
	st, r := call(t, s, PathToken, tokenHeaders(), tokenBody(o))
	if st != 200 || r["ApplyType"] != "Bearer" || r["Expires"] != "120" || r["AppKey"] != o.AppKey || r["UserID"] != "Anonymous" {
		t.Fatalf("token reply %d %v: want the documented fields, Expires capped by TokenTTL", st, r)
	}
	if _, ok := r["CreateTime"].(string); !ok {
		t.Fatal("CreateTime is not a string")
	}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		body string
		want int
	}{
		{"no X-Token-Expire", map[string]string{"Content-Type": "application/json"}, tokenBody(o), 400},
		{"X-Token-Expire over 3600", map[string]string{"Content-Type": "application/json", "X-Token-Expire": "3601"}, tokenBody(o), 400},
		{"X-Token-Expire zero", map[string]string{"Content-Type": "application/json", "X-Token-Expire": "0"}, tokenBody(o), 400},
		{"not JSON", map[string]string{"Content-Type": "text/plain", "X-Token-Expire": "60"}, tokenBody(o), 400},
		{"wrong secret", tokenHeaders(), `{"app_key":"` + o.AppKey + `","app_secret":"x"}`, 401},
		{"no secret", tokenHeaders(), `{"app_key":"` + o.AppKey + `"}`, 400},
	} {
		st, r := call(t, s, PathToken, tc.hdr, tc.body)
		if st != tc.want || r["error_msg"] == nil || r["error_code"] == nil {
			t.Errorf("%s: %d %v, want %d with error_code and error_msg", tc.name, st, r, tc.want)
		}
	}
	if s.TokensIssued() != 1 || s.Requests(RouteToken) != 7 {
		t.Fatalf("%d tokens issued, %d requests", s.TokensIssued(), s.Requests(RouteToken))
	}
}

func TestConnectionInfoAuth(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newServer(t, Options{Now: clock})
	tok := getToken(t, s)
	body := `{"roomId":"r1","role":"recorder"}`
	if st, r := call(t, s, PathConnectionInfo, apiHeaders(s, tok), body); st != 200 || r["success"] != true {
		t.Fatalf("getConnectionInfo: %d %v", st, r)
	}
	for _, tc := range []struct {
		name string
		mod  func(h map[string]string)
		want int
	}{
		{"no app key", func(h map[string]string) { delete(h, "x-app-key") }, 401},
		{"another app key", func(h map[string]string) { h["x-app-key"] = "other" }, 401},
		{"no bearer", func(h map[string]string) { h["Authorization"] = tok }, 401},
		{"two spaces", func(h map[string]string) { h["Authorization"] = "Bearer  " + tok }, 401},
		{"unknown token", func(h map[string]string) { h["Authorization"] = "Bearer nope" }, 401},
		{"no tenant space", func(h map[string]string) { delete(h, "X-TenantSpaceID") }, 403},
		{"another tenant space", func(h map[string]string) { h["X-TenantSpaceID"] = "other" }, 403},
	} {
		h := apiHeaders(s, tok)
		tc.mod(h)
		st, r := call(t, s, PathConnectionInfo, h, body)
		if st != tc.want || r["success"] != false || r["errorReason"] == nil {
			t.Errorf("%s: %d %v, want %d success:false", tc.name, st, r, tc.want)
		}
	}
	// Expiry by the server's clock, and on demand.
	mu.Lock()
	now = now.Add(601 * time.Second)
	mu.Unlock()
	if st, r := call(t, s, PathConnectionInfo, apiHeaders(s, tok), body); st != 401 || r["errorReason"] != "token expired" {
		t.Fatalf("an expired token: %d %v", st, r)
	}
	tok2 := getToken(t, s)
	if !s.TokenValid(tok2) || s.TokenValid(tok) {
		t.Fatal("TokenValid")
	}
	s.ExpireTokens()
	if st, r := call(t, s, PathConnectionInfo, apiHeaders(s, tok2), body); st != 401 || r["errorReason"] != "token expired" {
		t.Fatalf("after ExpireTokens: %d %v", st, r)
	}
	tok3 := getToken(t, s)
	s.RevokeTokens()
	if st, r := call(t, s, PathConnectionInfo, apiHeaders(s, tok3), body); st != 401 || r["errorReason"] != "invalid token" {
		t.Fatalf("after RevokeTokens: %d %v", st, r)
	}
}

func TestConnectionInfoAndPages(t *testing.T) {
	s := newServer(t, Options{})
	tok := getToken(t, s)
	h := apiHeaders(s, tok)
	st, rec := call(t, s, PathConnectionInfo, h, `{"roomId":"i-1-abc","role":"recorder"}`)
	st2, rep := call(t, s, PathConnectionInfo, h, `{"roomId":"i-1-abc","role":"replayer","workNo":"667"}`)
	if st != 200 || st2 != 200 {
		t.Fatalf("%d %v / %d %v", st, rec, st2, rep)
	}
	data := func(r map[string]any) map[string]any { d, _ := r["data"].(map[string]any); return d }
	rd, pd := data(rec), data(rep)
	if rd["roomId"] != "i-1-abc" || rd["wssUrlOut"] != s.Options().WSSURLOut || rd["wssUrl"] != DefaultWSSURL || rd["connectParam"] == "" || rd["connectParam"] == pd["connectParam"] ||
		rec["errorCode"] != nil || rec["errorReason"] != nil {
		t.Fatalf("recorder reply %v", rec)
	}
	room, ok := s.Room("i-1-abc")
	if !ok || len(room.Issued) != 2 || room.Issues(RoleReplayer)[0].WorkNo != "667" {
		t.Fatalf("room %+v", room)
	}
	// The pages.
	recParam, repParam := rd["connectParam"].(string), pd["connectParam"].(string)
	out := s.Options().WSSURLOut
	for _, tc := range []struct {
		role        Role
		room, url   string
		param       string
		want        error
		description string
	}{
		{RoleRecorder, "nope", out, recParam, ErrUnknownRoom, "unknown room"},
		{RoleRecorder, "i-1-abc", DefaultWSSURL, recParam, ErrWrongURL, "internal address"},
		{RoleReplayer, "i-1-abc", out, recParam, ErrBadConnectParam, "the recorder's param for the replayer"},
		{RoleRecorder, "i-1-abc", out, "", ErrBadConnectParam, "no param"},
		{"observer", "i-1-abc", out, recParam, ErrBadRole, "bad role"},
		{RoleRecorder, "i-1-abc", out, recParam, nil, "recorder"},
		{RoleReplayer, "i-1-abc", out, repParam, nil, "replayer"},
	} {
		if err := s.Connect(tc.role, tc.room, tc.url, tc.param); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.description, err, tc.want)
		}
	}
	if r, _ := s.Room("i-1-abc"); !r.RecorderConnected || !r.ReplayerConnected || r.Connects[RoleRecorder] != 1 {
		t.Fatalf("room %+v: want both connected", r)
	}
	_ = s.Disconnect(RoleReplayer, "i-1-abc")
	if r, _ := s.Room("i-1-abc"); r.ReplayerConnected {
		t.Fatal("Disconnect")
	}

	// No room id: a UUID. A long one, a bad role: refused.
	if _, r := call(t, s, PathConnectionInfo, h, `{"role":"recorder"}`); len(data(r)["roomId"].(string)) != 36 {
		t.Fatalf("no roomId: %v", r)
	}
	if st, r := call(t, s, PathConnectionInfo, h, `{"roomId":"`+strings.Repeat("x", 65)+`","role":"recorder"}`); st != 200 || r["success"] != false || r["errorCode"] != 1.0 {
		t.Fatalf("a long roomId: %d %v", st, r)
	}
	if st, r := call(t, s, PathConnectionInfo, h, `{"roomId":"r","role":"observer"}`); st != 400 || r["success"] != false {
		t.Fatalf("a bad role: %d %v", st, r)
	}
	if st, r := call(t, s, PathConnectionInfo, h, `{"roomId":1,"role":"recorder"}`); st != 400 {
		t.Fatalf("a roomId not a string: %d %v", st, r)
	}

	// Release.
	if st, r := call(t, s, PathRelease, h, `{"callId":"i-1-abc"}`); st != 200 || r["retCode"] != "0" {
		t.Fatalf("release: %d %v", st, r)
	}
	if st, r := call(t, s, PathRelease, h, `{"callId":"i-1-abc"}`); st != 200 || r["retCode"] != "0" {
		t.Fatalf("release again: %d %v", st, r)
	}
	r, _ := s.Room("i-1-abc")
	if !r.Released || r.Releases != 2 || r.RecorderConnected {
		t.Fatalf("room %+v: want released twice, its pages disconnected", r)
	}
	if err := s.Connect(RoleRecorder, "i-1-abc", out, recParam); !errors.Is(err, ErrReleased) {
		t.Fatalf("Connect to a released room: %v", err)
	}
	if st, r := call(t, s, PathConnectionInfo, h, `{"roomId":"i-1-abc","role":"recorder"}`); st != 200 || r["success"] != false {
		t.Fatalf("connection info for a released room: %d %v", st, r)
	}
	if st, r := call(t, s, PathRelease, h, `{"callId":"nope"}`); st != 200 || r["retCode"] != "1" {
		t.Fatalf("release of an unknown room: %d %v", st, r)
	}
	if st, r := call(t, s, PathRelease, h, `{}`); st != 400 || r["retCode"] != "400" {
		t.Fatalf("release without callId: %d %v", st, r)
	}
	if st, r := call(t, s, PathRelease, map[string]string{}, `{"callId":"i-1-abc"}`); st != 401 || r["retMsg"] == nil {
		t.Fatalf("release without the headers: %d %v", st, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if r, err := s.WaitReleased(ctx, "i-1-abc"); err != nil || !r.Released {
		t.Fatalf("WaitReleased: %v", err)
	}
	if r, err := s.WaitRoom(ctx, func(r Room) bool { return strings.HasPrefix(r.ID, "i-1-") && r.Released }); err != nil || r.ID != "i-1-abc" {
		t.Fatalf("WaitRoom: %+v, %v", r, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancelShort()
	if _, err := s.WaitRoom(short, func(r Room) bool { return r.ID == "i-9" }); err == nil {
		t.Fatal("WaitRoom found a room that does not exist")
	}
	if len(s.Rooms()) != 2 {
		t.Fatalf("%d rooms, want 2 (i-1-abc and the UUID; the refused long one is not kept)", len(s.Rooms()))
	}
}

func TestFaults(t *testing.T) {
	s := newServer(t, Options{})
	o := s.Options()
	s.SetFault(RouteToken, Fault{Status: 503, ErrorReason: "busy", Times: 2})
	for range 2 {
		if st, r := call(t, s, PathToken, tokenHeaders(), tokenBody(o)); st != 503 || r["error_msg"] != "busy" {
			t.Fatalf("fault: %d %v", st, r)
		}
	}
	tok := getToken(t, s)
	s.SetFault(RouteAll, Fault{Refuse: true, ErrorCode: "42", ErrorReason: "nope"})
	if st, r := call(t, s, PathConnectionInfo, apiHeaders(s, tok), `{"role":"recorder"}`); st != 200 || r["success"] != false || r["errorCode"] != 42.0 {
		t.Fatalf("refuse: %d %v", st, r)
	}
	if st, r := call(t, s, PathRelease, apiHeaders(s, tok), `{"callId":"x"}`); st != 200 || r["retCode"] != "42" {
		t.Fatalf("refuse: %d %v", st, r)
	}
	if st, r := call(t, s, PathToken, tokenHeaders(), tokenBody(o)); st != 200 || r["AccessToken"] != nil || r["error_code"] != "42" {
		t.Fatalf("refuse: %d %v", st, r)
	}
	s.ClearFaults()

	// A hung request: WaitRequests sees it arrive; the client's deadline ends it.
	s.SetFault(RouteConnectionInfo, Fault{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	done := make(chan error, 1)
	rctx, rcancel := context.WithCancel(ctx)
	go func() {
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, s.URL()+PathConnectionInfo, bytes.NewReader([]byte(`{}`)))
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		_, err := (&http.Client{Transport: tr}).Do(req)
		done <- err
	}()
	if err := s.WaitRequests(ctx, RouteConnectionInfo, 1); err != nil {
		t.Fatal(err)
	}
	rcancel()
	if err := <-done; err == nil {
		t.Fatal("a hung request answered")
	}
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if err := s.WaitRequests(short, RouteRelease, 2); err == nil || !strings.Contains(err.Error(), "1 releaseConnection requests, want 2") {
		t.Fatalf("WaitRequests past its deadline: %v", err)
	}
}

// TestCloseReleasesHungRequests: Close returns while a request hangs, and ends it.
func TestCloseReleasesHungRequests(t *testing.T) {
	s := New(Options{})
	s.SetFault(RouteToken, Fault{Hang: true})
	done := make(chan error, 1)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	go func() {
		resp, err := (&http.Client{Transport: tr}).Post(s.URL()+PathToken, "application/json", strings.NewReader(`{}`))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.WaitRequests(ctx, RouteToken, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	<-done
}
