package zoom

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestWebhookRotate: after a rotation, a delivery signed with the new secret, the configured
// previous one or the replaced one verifies, the replaced one only until the overlap ends; a
// second rotation does not extend an overlap already running; a bad list changes nothing; an
// overlap of 0 refuses the replaced secret at once.
func TestWebhookRotate(t *testing.T) {
	clk := &fakeClock{t: hookNow}
	w, err := NewWebhook(WebhookConfig{Secrets: []Secret{"s1", "prev"}, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(startedBody)
	verifies := func(secret string) bool {
		t.Helper()
		_, err := w.Verify(signed(secret, clk.now(), body), body)
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("verify with %s: %v", secret, err)
		}
		return err == nil
	}
	if err := w.Rotate([]Secret{"s2", "prev"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s2", "prev", "s1"} {
		if !verifies(s) {
			t.Fatalf("%s refused right after the rotation", s)
		}
	}
	if verifies("other") {
		t.Fatal("an unknown secret verified")
	}
	// The url_validation answer is made with the secret that signed the delivery.
	validation := []byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"p-1"}}`)
	if _, reply, err := w.Receive(signed("s1", clk.now(), validation), validation); err != nil || reply.EncryptedToken != ValidationToken("s1", "p-1") {
		t.Fatalf("url_validation signed with the replaced secret: %+v %v", reply, err)
	}

	clk.add(59 * time.Minute)
	if err := w.Rotate([]Secret{"s3"}, time.Hour); err != nil { // prev dropped too: it gets its own hour
		t.Fatal(err)
	}
	if err := w.Rotate(nil, time.Hour); err == nil {
		t.Fatal("a rotation to no secret was accepted")
	}
	if err := w.Rotate([]Secret{"s4", ""}, time.Hour); err == nil {
		t.Fatal("a rotation with an empty secret was accepted")
	}
	for _, s := range []string{"s3", "s2", "prev", "s1"} {
		if !verifies(s) {
			t.Fatalf("%s refused within its overlap", s)
		}
	}
	if verifies("s4") {
		t.Fatal("a refused rotation changed the secrets")
	}
	clk.add(time.Minute) // s1's hour is over, not s2's or prev's
	if verifies("s1") {
		t.Fatal("s1 verified after its overlap")
	}
	if !verifies("s2") || !verifies("prev") {
		t.Fatal("the secrets replaced a minute ago were refused")
	}
	clk.add(59 * time.Minute)
	if verifies("s2") || verifies("prev") || !verifies("s3") {
		t.Fatal("after every overlap, only the current secret verifies")
	}
	if got := w.String(); !strings.Contains(got, "Secrets:1 ") {
		t.Fatalf("String: %s", got)
	}

	if err := w.Rotate([]Secret{"s5"}, 0); err != nil {
		t.Fatal(err)
	}
	if verifies("s3") || !verifies("s5") {
		t.Fatal("with no overlap, the replaced secret is refused at once")
	}
}

// TestTokenEndpointRotateBearers: the bearer secrets rotate as the webhook's do; a caller with
// the replaced secret is authenticated as "replaced_bearer" within the overlap, refused after it;
// a rotation that would leave the endpoint open changes nothing.
func TestTokenEndpointRotateBearers(t *testing.T) {
	clk := &fakeClock{t: fixedNow}
	f := newTokenFixture(t, func(c *TokenEndpointConfig) { c.Now = clk.now })
	body := `{"interactionId":"I-new","role":"customer"}`
	status := func(secret string) int { return f.do(http.MethodPost, "Bearer "+secret, body).Code }
	if err := f.e.RotateBearers([]Secret{"bearer-new"}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"bearer-new", teBearer, tePrevBearer} {
		if st := status(s); st != http.StatusOK {
			t.Fatalf("%s: %d right after the rotation", s, st)
		}
	}
	f.logs.reset()
	status(teBearer)
	if !strings.Contains(f.logs.String(), `"auth":"replaced_bearer"`) {
		t.Fatalf("the replaced bearer's request is not logged as such: %s", f.logs.String())
	}
	if err := f.e.RotateBearers([]Secret{""}, time.Hour); err == nil {
		t.Fatal("a rotation that opens the endpoint was accepted")
	}
	clk.add(10 * time.Minute)
	for _, s := range []string{teBearer, tePrevBearer} {
		if st := status(s); st != http.StatusUnauthorized {
			t.Fatalf("%s: %d after the overlap, want 401", s, st)
		}
	}
	if st := status("bearer-new"); st != http.StatusOK {
		t.Fatalf("the new bearer: %d", st)
	}
	if got := f.e.String(); !strings.Contains(got, "BearerSecrets:1 ") {
		t.Fatalf("String: %s", got)
	}
}

// TestMinterSetSecret: a token minted after SetSecret is signed with the new SDK secret.
func TestMinterSetSecret(t *testing.T) {
	m := newTestMinter(t, 0)
	req := TokenRequest{Role: RoleCustomer, UserID: "u1", UserName: "Ann"}
	before, err := m.Mint(req)
	if err != nil {
		t.Fatal(err)
	}
	checkJWT(t, before.JWT, testKey, testSecret)
	if err := m.SetSecret(""); err == nil {
		t.Fatal("an empty SDK secret was accepted")
	}
	if err := m.SetSecret("sdk-secret-rotated-0123456789"); err != nil {
		t.Fatal(err)
	}
	after, err := m.Mint(req)
	if err != nil {
		t.Fatal(err)
	}
	checkJWT(t, after.JWT, testKey, "sdk-secret-rotated-0123456789")
	if strings.Contains(m.String(), "rotated") {
		t.Fatalf("String shows the secret: %s", m.String())
	}
}

// TestTokenSourceSetClientSecret: the OAuth client secret is used at the next token request; the
// token cached meanwhile is kept until it is due.
func TestTokenSourceSetClientSecret(t *testing.T) {
	z := newZoom(t, zoomtest.Options{})
	ts, clk := newTokenSource(t, z, func(c *OAuthConfig) { c.ClientSecret = "a-wrong-client-secret" })
	ctx := ctxFor(t)
	if _, err := ts.Token(ctx); !errors.Is(err, connector.ErrRefused) {
		t.Fatalf("with the wrong secret: %v", err)
	}
	if err := ts.SetClientSecret(" "); err == nil {
		t.Fatal("a blank client secret was accepted")
	}
	if err := ts.SetClientSecret(Secret(z.Options().ClientSecret)); err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token(ctx)
	if err != nil || tok == "" {
		t.Fatalf("with the reloaded secret: %q %v", tok, err)
	}
	if err := ts.SetClientSecret("another-wrong-secret"); err != nil {
		t.Fatal(err)
	}
	if again, err := ts.Token(ctx); err != nil || again != tok {
		t.Fatalf("the cached token is kept until due: %q %v", again, err)
	}
	clk.add(2 * time.Hour) // past its expiry: the next request sends the new (wrong) secret
	_, err = ts.Token(ctx)
	if !errors.Is(err, connector.ErrRefused) {
		t.Fatalf("the next request did not send the new secret: %v", err)
	}
	if strings.Contains(err.Error(), "another-wrong-secret") || strings.Contains(err.Error(), z.Options().ClientSecret) {
		t.Fatalf("an error shows a client secret: %v", err)
	}
}
