package zoom

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// FuzzAPIReplies serves any bytes as Zoom's 200 answer to the REST calls and to the OAuth token
// request: the clients never panic, and every failure is a *connector.ServerError of one of the
// sentinels the controller decides on (a body that is not an answer is Zoom being unavailable,
// never a session found or a token accepted by mistake).
func FuzzAPIReplies(f *testing.F) {
	for _, seed := range []string{
		`{"sessions":[{"session_id":"s1","session_pin":"123456","start_time":"2026-03-14T10:00:00Z","users":[{"user_id":"1","user_name":"Customer x","role_type":"customer"}]}]}`,
		`{"session_id":"s1","start_time":"2026-03-14T10:00:00Z","end_time":"","duration":"00:01:02","session_pin":"123456","user_count":2}`,
		`{"users":[{"user_connection_id":"c","user_id":1,"role_type":2,"join_time":"2026-03-14T10:00:00Z","leave_time":null}]}`,
		`{"access_token":"tok","token_type":"bearer","expires_in":3599,"scope":"x"}`,
		`{"sessions":null,"next_page_token":"n"}`, `[]`, `null`, ``, `{`, `{"expires_in":"-1","access_token":""}`,
	} {
		f.Add([]byte(seed))
	}
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	f.Cleanup(srv.Close)
	api, err := NewAPI(APIConfig{BaseURL: srv.URL + "/v2", Tokens: &fixedBearer{tok: "t"}, MaxPages: 2})
	if err != nil {
		f.Fatal(err)
	}
	ts, err := NewTokenSource(OAuthConfig{BaseURL: srv.URL, AccountID: "a", ClientID: "c", ClientSecret: "fuzz-client-secret"})
	if err != nil {
		f.Fatal(err)
	}
	sentinel := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			return
		}
		var se *connector.ServerError
		if !errors.As(err, &se) || !(errors.Is(err, connector.ErrUnavailable) || errors.Is(err, connector.ErrNotFound) ||
			errors.Is(err, connector.ErrRefused)) {
			t.Fatalf("%s: %v (%T) wraps no sentinel", what, err, err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		body.Store(&b)
		ctx := context.Background()
		s, err := api.LiveSessionByPIN(ctx, "123456")
		sentinel(t, "live sessions", err)
		if err == nil && (s.SessionID == "" || s.PIN != "123456") {
			t.Fatalf("a session found without its id or with another PIN: %+v", s)
		}
		_, err = api.Session(ctx, "s1")
		sentinel(t, "session", err)
		_, err = api.SessionUsers(ctx, "s1")
		sentinel(t, "session users", err)
		tok, err := ts.Token(ctx)
		sentinel(t, "oauth token", err)
		if err == nil && tok == "" {
			t.Fatal("an empty OAuth token accepted")
		}
		ts.Invalidate(tok) // the next input is fetched, not served from the cache
	})
}
