package daemon

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// reloadSecrets are the secrets of one version of the reload test's config file.
type reloadSecrets struct {
	webhook, bearer, sdk, client string
	overlap                      string
	tokenTTL                     string // a key a reload cannot apply
}

// writeReloadConfig writes the config file of a Zoom-only daemon on an embedded NATS.
func writeReloadConfig(t *testing.T, path string, z *zoomtest.Server, s reloadSecrets) {
	t.Helper()
	o := z.Options()
	yaml := fmt.Sprintf(`nats:
  embedded:
    enabled: true
    port: -1
http:
  listen: ""
  public_listen: 127.0.0.1:0
zoom:
  enabled: true
  sdk_key: %q
  sdk_secret: %q
  token_ttl: %s
  account_id: %q
  client_id: %q
  client_secret: %q
  api_url: %q
  oauth_url: %q
  webhook:
    secret: %q
  token_endpoint:
    bearer_secret: %q
  rotation_overlap: %s
`, o.SDKKey, s.sdk, s.tokenTTL, o.AccountID, o.ClientID, s.client, z.APIURL(), z.URL(), s.webhook, s.bearer, s.overlap)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startReloadConfig starts a Zoom stand-in and writes the first config of a reload test (v1) to a
// file, returning it loaded as run loads it.
func startReloadConfig(t *testing.T) (*zoomtest.Server, string, reloadSecrets, configs.Config) {
	t.Helper()
	z := zoomtest.New(zoomtest.Options{})
	t.Cleanup(z.Close)
	path := filepath.Join(t.TempDir(), "cobrowse.yaml")
	v1 := reloadSecrets{webhook: "webhook-secret-one", bearer: "bearer-secret-one", sdk: "sdk-secret-one-0123456789",
		client: z.Options().ClientSecret, overlap: "1h", tokenTTL: "2h"}
	writeReloadConfig(t, path, z, v1)
	cfg, err := LoadRunConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return z, path, v1, cfg
}

// TestReloadSecrets: a reload (SIGHUP; here the Reload channel) applies the secrets without a
// restart: the new and the replaced webhook secret both verify within the overlap, the new and
// the replaced bearer secret both authenticate, tokens minted after it are signed with the new
// SDK secret; any other changed key is logged once as needing a restart, by name; an invalid
// config is refused with its reason and changes nothing; one info line per reload names the
// secrets changed, never their values.
func TestReloadSecrets(t *testing.T) {
	z, path, v1, cfg := startReloadConfig(t)
	logs := &logtest.Buffer{}
	reload := make(chan struct{})
	reloaded := make(chan error, 1)
	addr := make(chan string, 1)
	natsURL, _ := startDaemon(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{ReplaceAttr: DurationsAsText})),
		ConfigPath: path, Reload: reload, Reloaded: func(err error) { reloaded <- err },
		PublicAddr: func(a string) { addr <- a }})
	base := "http://" + <-addr

	// An interaction the token endpoint knows, saved as the controller saves it.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	store, err := controller.OpenKVStore(t.Context(), js, controller.KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(t.Context(), controller.State{InteractionID: "iz", Vendor: connector.Zoom}, 0); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	// token asks for a customer token with the bearer: its status and, on a 200, the JWT.
	token := func(bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/zoom/token", strings.NewReader(`{"interactionId":"iz","role":"customer"}`))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Token string `json:"token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Token
	}
	// webhook sends a url_validation signed with secret: its status.
	webhook := func(secret string) int {
		t.Helper()
		body := []byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"plain-1"},"event_ts":` +
			strconv.FormatInt(time.Now().UnixMilli(), 10) + `}`)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("v0:" + ts + ":"))
		m.Write(body)
		req, _ := http.NewRequest(http.MethodPost, base+"/zoom/webhook", bytes.NewReader(body))
		req.Header.Set("x-zm-request-timestamp", ts)
		req.Header.Set("x-zm-signature", "v0="+hex.EncodeToString(m.Sum(nil)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	signedBy := func(jwt, secret string) bool {
		parts := strings.Split(jwt, ".")
		if len(parts) != 3 {
			return false
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(parts[0] + "." + parts[1]))
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil)) == parts[2]
	}
	doReload := func() error {
		t.Helper()
		reload <- struct{}{}
		select {
		case err := <-reloaded:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("no reload outcome")
			return nil
		}
	}

	if st, jwt := token(v1.bearer); st != http.StatusOK || !signedBy(jwt, v1.sdk) {
		t.Fatalf("before the reload: %d, signed by the first SDK secret: %v", st, signedBy(jwt, v1.sdk))
	}
	if st, _ := token("bearer-secret-two"); st != http.StatusUnauthorized {
		t.Fatalf("an unknown bearer: %d", st)
	}
	if webhook(v1.webhook) != http.StatusOK || webhook("webhook-secret-two") != http.StatusUnauthorized {
		t.Fatal("webhook secrets before the reload")
	}

	// The new secrets, and a key that needs a restart.
	v2 := v1
	v2.webhook, v2.bearer, v2.sdk, v2.client, v2.tokenTTL = "webhook-secret-two", "bearer-secret-two", "sdk-secret-two-0123456789", "client-secret-two", "3h"
	writeReloadConfig(t, path, z, v2)
	if err := doReload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, s := range []string{v1.bearer, v2.bearer} {
		if st, _ := token(s); st != http.StatusOK {
			t.Fatalf("bearer %s after the reload: %d", s, st)
		}
	}
	if _, jwt := token(v2.bearer); !signedBy(jwt, v2.sdk) {
		t.Fatal("a token minted after the reload is not signed with the new SDK secret")
	}
	for _, s := range []string{v1.webhook, v2.webhook} {
		if st := webhook(s); st != http.StatusOK {
			t.Fatalf("webhook secret %s after the reload: %d", s, st)
		}
	}
	if !logs.WaitFor(`msg="config reloaded" component=reload secrets_changed="[zoom.webhook.secret zoom.token_endpoint.bearer_secret zoom.sdk_secret zoom.client_secret]"`, time.Second, nil) {
		t.Fatalf("no reload line naming the secrets:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `msg="config change needs a restart; not applied" component=reload key=zoom.token_ttl`) {
		t.Fatalf("the key that needs a restart is not named:\n%s", logs.String())
	}

	// The same file again: nothing new to say of zoom.token_ttl, no secret changed.
	if err := doReload(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "key=zoom.token_ttl"); n != 1 {
		t.Fatalf("zoom.token_ttl reported %d times, want once", n)
	}
	if !strings.Contains(logs.String(), `msg="config reloaded" component=reload secrets_changed=[]`) {
		t.Fatalf("the second reload's line:\n%s", logs.String())
	}

	// An invalid config is refused with its reason; nothing changes.
	bad := v2
	bad.bearer, bad.webhook = "", "webhook-secret-three"
	writeReloadConfig(t, path, z, bad)
	if err := doReload(); err == nil || !strings.Contains(err.Error(), "zoom.token_endpoint.bearer_secret") {
		t.Fatalf("an invalid reload: %v", err)
	}
	if !strings.Contains(logs.String(), `msg="config reload refused; the running config stays"`) {
		t.Fatalf("the refusal is not logged:\n%s", logs.String())
	}
	if st, _ := token(v2.bearer); st != http.StatusOK || webhook("webhook-secret-three") != http.StatusUnauthorized || webhook(v2.webhook) != http.StatusOK {
		t.Fatal("a refused reload changed the secrets")
	}

	// With no overlap, the secret a reload replaces is refused at once; one replaced earlier keeps
	// the end its own reload gave it.
	v3 := v2
	v3.webhook, v3.overlap = "webhook-secret-three", "0s"
	writeReloadConfig(t, path, z, v3)
	if err := doReload(); err != nil {
		t.Fatal(err)
	}
	if webhook(v3.webhook) != http.StatusOK || webhook(v2.webhook) != http.StatusUnauthorized || webhook(v1.webhook) != http.StatusOK {
		t.Fatal("after a reload without overlap")
	}

	for _, secret := range []string{v1.webhook, v2.webhook, v1.bearer, v2.bearer, v1.sdk, v2.sdk, v2.client, "webhook-secret-three"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret reached the log: %s", secret)
		}
	}
}

// TestChangedKeys: the keys of two configs that differ, by their dotted names; a duration and a
// list are one key each.
func TestChangedKeys(t *testing.T) {
	a := configs.Default()
	b := configs.Default()
	b.Zoom.Webhook.Secret = "x"
	b.Controller.Retention = configs.Duration{Duration: time.Hour}
	b.Chat.TriggerRoles = []string{"customer"}
	b.Log.Level = "debug"
	got := changedKeys(a, b)
	want := []string{"log.level", "chat.trigger_roles", "controller.retention", "zoom.webhook.secret"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("changed keys %v, want %v", got, want)
	}
	setLeaf(&a, b, "zoom.webhook.secret")
	if a.Zoom.Webhook.Secret != "x" || len(changedKeys(a, b)) != 3 {
		t.Fatalf("setLeaf: %v", changedKeys(a, b))
	}
}
