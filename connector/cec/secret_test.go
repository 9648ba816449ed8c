package cec

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

const appSecret = "SK-very-secret-0123456789"

func TestSecretNeverPrints(t *testing.T) {
	s := Secret(appSecret)
	out := fmt.Sprintf("%v %+v %#v %s %q %d %x %X %T", s, s, s, s, s, s, s, s, s)
	b, _ := json.Marshal(struct{ S Secret }{s})
	var logs logBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", s)
	for _, text := range []string{out, string(b), logs.String()} {
		if strings.Contains(text, appSecret) || strings.Contains(text, "0123456789") {
			t.Fatalf("the secret shows: %s", text)
		}
	}
	if Secret("").String() != "[unset]" || s.String() != redacted {
		t.Fatal("String")
	}
}

func TestConfigNeverPrintsTheSecret(t *testing.T) {
	cfg := Config{Domain: "https://cec.example.com", AppKey: "ak", AppSecret: appSecret, TenantSpaceID: "ts",
		ReleaseURL: "https://cec.example.com/release", Logger: slog.New(slog.DiscardHandler)}
	out := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg) + fmt.Sprintf("%s %q %d", cfg, cfg, cfg) + fmt.Sprint(&cfg)
	var logs logBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "config", cfg)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out += fmt.Sprintf("%v %+v %#v", c, c, c) + logs.String()
	if strings.Contains(out, appSecret) {
		t.Fatalf("the app secret shows: %s", out)
	}
	for _, want := range []string{"https://cec.example.com", "[redacted]"} {
		if !strings.Contains(out, want) {
			t.Fatalf("printed config lacks %q: %s", want, out)
		}
	}
}

// tokenCapture records the access tokens the client sends.
type tokenCapture struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	seen map[string]bool
}

func (c *tokenCapture) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		c.mu.Lock()
		c.seen[tok] = true
		c.mu.Unlock()
	}
	return c.rt.RoundTrip(r)
}

// TestNoSecretsInLogsOrErrors runs a whole life at debug level, with CEC echoing the app secret
// and the access token in its error texts: neither shows in any log or error, nor any
// connectParam in full.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	s := newCEC(t, cectest.Options{AppSecret: appSecret})
	var logs logBuffer
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	capture := &tokenCapture{rt: tr, seen: map[string]bool{}}
	cfg := config(s, true)
	cfg.Logger = debugLogger(&logs)
	cfg.RoundTripper = capture
	cfg.RequestTimeout = time.Second
	c := newConnector(t, cfg)
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error(), fmt.Sprintf("%+v %#v", err, err), connector.ReasonOf(err))
		}
	}

	// The token call fails with CEC quoting the secret.
	s.SetFault(cectest.RouteToken, cectest.Fault{Status: 401, ErrorReason: "app_secret " + appSecret + " is wrong", Times: 1})
	_, err := c.Join(ctxFor(t), trigger("i-0"))
	wantServerError(t, err, connector.ErrRefused, opJoin)
	if !strings.Contains(err.Error(), redacted) {
		t.Fatalf("error %v: want the echoed secret masked", err)
	}
	note(err)

	sess := join(t, c, trigger("i-1"))
	sess.Handoffs(connector.HandoffStart, "")
	sess.Handoffs(connector.HandoffView, "agent-i-1")
	sess.Signal(connector.Signal{Source: "agent", Type: "user_joined"})

	// getConnectionInfo fails with CEC quoting the token it was sent.
	var tok string
	capture.mu.Lock()
	for k := range capture.seen {
		tok = k
	}
	capture.mu.Unlock()
	s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Status: 403, ErrorReason: "token " + tok + " not for this tenant", Times: 1})
	_, err = c.Join(ctxFor(t), trigger("i-2"))
	wantServerError(t, err, connector.ErrRefused, opJoin)
	note(err)

	// Renewals: a 401, a new token.
	s.ExpireTokens()
	sess2 := join(t, c, trigger("i-3"))
	_, err = sess.Stop(ctxFor(t))
	note(err)
	s.SetFault(cectest.RouteRelease, cectest.Fault{Status: 500, ErrorReason: "secret " + appSecret, Times: 2})
	_, err = sess2.Stop(ctxFor(t))
	wantServerError(t, err, connector.ErrUnavailable, opStop)
	note(err)
	_, err = c.StopHandle(ctxFor(t), sess2.Handle())
	note(err)
	_, _ = c.Rejoin(ctxFor(t), sess2.Handle())
	printed := fmt.Sprintf("%v %+v %#v %v %+v", sess, sess, sess, c, c.api.tokens)

	text := logs.String() + strings.Join(errs, "\n") + printed
	if strings.Contains(text, appSecret) {
		t.Fatalf("the app secret shows:\n%s", text)
	}
	capture.mu.Lock()
	defer capture.mu.Unlock()
	if len(capture.seen) < 2 {
		t.Fatalf("%d access tokens used, want a renewal", len(capture.seen))
	}
	for tok := range capture.seen {
		if strings.Contains(text, tok) {
			t.Fatalf("an access token shows in full:\n%s", text)
		}
		if !strings.Contains(logs.String(), connector.MaskToken(tok)) {
			t.Fatalf("the access token's masked form %q is not logged", connector.MaskToken(tok))
		}
	}
	for _, r := range s.Rooms() {
		for _, is := range r.Issued {
			if strings.Contains(text, is.ConnectParam) {
				t.Fatalf("a connectParam shows in full:\n%s", text)
			}
		}
	}
	if !strings.Contains(logs.String(), `"connect_param":"*`) {
		t.Fatal("no masked connectParam in the logs")
	}
	for _, key := range []string{`"interaction":"i-1"`, `"session_id":"i-1-`, `"agent":"agent-i-1"`, `"vendor":"cec"`, `"node":"` + s.URL()} {
		if !strings.Contains(logs.String(), key) {
			t.Fatalf("logs lack %s:\n%s", key, logs.String())
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	good := Config{Domain: "https://cec.example.com/", AppKey: "ak", AppSecret: "sk", TenantSpaceID: "ts"}
	c, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.cfg.Domain != "https://cec.example.com" || c.cfg.TokenExpire != DefaultTokenExpire || c.cfg.RequestTimeout != DefaultRequestTimeout {
		t.Fatalf("defaults: %v", c.cfg)
	}
	if c.Vendor() != connector.CEC {
		t.Fatal("vendor")
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no domain", func(c *Config) { c.Domain = "" }, "Domain is required"},
		{"domain with credentials", func(c *Config) { c.Domain = "https://u:p@cec.example.com" }, "credentials"},
		{"domain with a query", func(c *Config) { c.Domain = "https://cec.example.com?x=1" }, "query"},
		{"domain not http", func(c *Config) { c.Domain = "ftp://cec.example.com" }, "scheme"},
		{"no app key", func(c *Config) { c.AppKey = "" }, "AppKey is required"},
		{"app key with a newline", func(c *Config) { c.AppKey = "a\nb" }, "AppKey must be printable"},
		{"no secret", func(c *Config) { c.AppSecret = " " }, "AppSecret is required"},
		{"no tenant space", func(c *Config) { c.TenantSpaceID = "" }, "TenantSpaceID is required"},
		{"token expire too long", func(c *Config) { c.TokenExpire = 3601 * time.Second }, "TokenExpire"},
		{"token expire negative", func(c *Config) { c.TokenExpire = -time.Second }, "TokenExpire"},
		{"token expire not whole seconds", func(c *Config) { c.TokenExpire = 90500 * time.Millisecond }, "TokenExpire"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"release URL with credentials", func(c *Config) { c.ReleaseURL = "https://u:p@cec.example.com/r" }, "ReleaseURL"},
		{"release URL relative", func(c *Config) { c.ReleaseURL = "/release" }, "ReleaseURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			cfg.AppSecret = appSecret
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), appSecret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
}
