package zoom

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

const (
	testKey    = "sdk-key-123"
	testSecret = "sdk-secret-0123456789abcdef"
)

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newTestMinter(t *testing.T, ttl time.Duration) *Minter {
	t.Helper()
	m, err := NewMinter(MinterConfig{SDKKey: testKey, SDKSecret: testSecret, TTL: ttl, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mint mints and checks the token with checkJWT: every token a test mints is verified.
func mint(t *testing.T, m *Minter, r TokenRequest) (Token, map[string]json.RawMessage) {
	t.Helper()
	tok, err := m.Mint(r)
	if err != nil {
		t.Fatalf("Mint(%+v): %v", r, err)
	}
	return tok, checkJWT(t, tok.JWT, testKey, testSecret)
}

var (
	intJSON = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	strJSON = regexp.MustCompile(`^"`)
)

// checkJWT is an independent check of a Cobrowse JWT, written with base64url, crypto/hmac and
// encoding/json only (not golang-jwt, which minted it): the header is exactly HS256/JWT, the
// signature verifies with the secret, the claims are exactly Zoom's names with their JSON types
// (numbers are numbers, strings are strings), exp - iat is within [1800, 172800] and user_id and
// user_name are 1 to 35 UTF-16 code units. It returns the raw claims.
func checkJWT(t *testing.T, tok, key, secret string) map[string]json.RawMessage {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	dec := func(i int) []byte {
		if strings.ContainsAny(parts[i], "=+/") {
			t.Fatalf("part %d is not unpadded base64url: %q", i, parts[i])
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		return b
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(dec(0), &hdr); err != nil {
		t.Fatalf("header: %v", err)
	}
	if len(hdr) != 2 || string(hdr["alg"]) != `"HS256"` || string(hdr["typ"]) != `"JWT"` {
		t.Fatalf("header %s, want exactly alg HS256 and typ JWT", dec(0))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(mac.Sum(nil), dec(2)) {
		t.Fatal("signature does not verify")
	}
	var c map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(dec(1)))
	if err := d.Decode(&c); err != nil || d.More() {
		t.Fatalf("payload %s: %v", dec(1), err)
	}
	allowed := map[string]*regexp.Regexp{
		"app_key": strJSON, "role_type": regexp.MustCompile(`^[12]$`), "iat": intJSON, "exp": intJSON,
		"user_id": strJSON, "user_name": strJSON, "enable_byop": regexp.MustCompile(`^1$`),
	}
	for k, v := range c {
		re, ok := allowed[k]
		if !ok {
			t.Fatalf("unexpected claim %q", k)
		}
		if !re.Match(v) {
			t.Fatalf("claim %s = %s has the wrong JSON type or value", k, v)
		}
	}
	for _, k := range []string{"app_key", "role_type", "iat", "exp", "user_id", "user_name"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("claim %q missing", k)
		}
	}
	var appKey, uid, uname string
	var iat, exp int64
	for k, dst := range map[string]any{"app_key": &appKey, "user_id": &uid, "user_name": &uname, "iat": &iat, "exp": &exp} {
		if err := json.Unmarshal(c[k], dst); err != nil {
			t.Fatalf("claim %s: %v", k, err)
		}
	}
	if appKey != key {
		t.Fatalf("app_key %q, want %q", appKey, key)
	}
	if life := exp - iat; life < 1800 || life > 172800 {
		t.Fatalf("exp - iat = %d, outside [1800, 172800]", life)
	}
	for name, v := range map[string]string{"user_id": uid, "user_name": uname} {
		if n := len(utf16.Encode([]rune(v))); n < 1 || n > 35 {
			t.Fatalf("%s has %d UTF-16 units", name, n)
		}
	}
	return c
}

func TestMintClaims(t *testing.T) {
	m := newTestMinter(t, 0)
	tok, c := mint(t, m, TokenRequest{Role: RoleCustomer, UserID: "cust-1", UserName: "Ann Smith"})
	want := fmt.Sprintf(`{"app_key":%q,"role_type":1,"iat":%d,"exp":%d,"user_id":"cust-1","user_name":"Ann Smith"}`,
		testKey, fixedNow.Unix(), fixedNow.Unix()+7200)
	got, _ := json.Marshal(c)
	var wantMap map[string]json.RawMessage
	_ = json.Unmarshal([]byte(want), &wantMap)
	wantJSON, _ := json.Marshal(wantMap)
	if string(got) != string(wantJSON) {
		t.Fatalf("claims\n got %s\nwant %s", got, wantJSON)
	}
	if !tok.IssuedAt.Equal(fixedNow) || !tok.ExpiresAt.Equal(fixedNow.Add(2*time.Hour)) || tok.Role != RoleCustomer || tok.UserID != "cust-1" {
		t.Fatalf("token %+v", tok)
	}

	_, c = mint(t, m, TokenRequest{Role: RoleAgent, UserID: "agent-7", EnableBYOP: true, TTL: 48 * time.Hour})
	if string(c["role_type"]) != "2" || string(c["enable_byop"]) != "1" || string(c["user_name"]) != `"agent-7"` {
		t.Fatalf("agent claims %s", c)
	}
	var iat, exp int64
	_ = json.Unmarshal(c["iat"], &iat)
	_ = json.Unmarshal(c["exp"], &exp)
	if exp-iat != 172800 {
		t.Fatalf("per-token TTL: exp - iat = %d", exp-iat)
	}

	_, c = mint(t, newTestMinter(t, 1800*time.Second+999*time.Millisecond), TokenRequest{Role: RoleCustomer, UserID: "u"})
	_ = json.Unmarshal(c["iat"], &iat)
	_ = json.Unmarshal(c["exp"], &exp)
	if exp-iat != 1800 {
		t.Fatalf("TTL is whole seconds: exp - iat = %d", exp-iat)
	}
	if _, ok := c["enable_byop"]; ok {
		t.Fatal("enable_byop present without EnableBYOP")
	}
}

// TestMintRandom mints many tokens with random names and ids at the limits and checks each one
// independently.
func TestMintRandom(t *testing.T) {
	m := newTestMinter(t, 0)
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("aZ09 -_.éß漢😀\u00a0")
	for i := range 2000 {
		word := func() string {
			var b strings.Builder
			for n := 1 + r.IntN(35); utf16Len(b.String()) < n; {
				b.WriteRune(alphabet[r.IntN(len(alphabet))])
			}
			return clipUTF16(b.String(), MaxUserField)
		}
		req := TokenRequest{Role: RoleType(1 + r.IntN(2)), UserID: word(), UserName: word(), EnableBYOP: r.IntN(2) == 0,
			TTL: time.Duration(1800+r.Int64N(172800-1800+1)) * time.Second}
		if i%3 == 0 {
			req.TTL = 0
		}
		if strings.TrimSpace(req.UserID) == "" {
			continue
		}
		_, c := mint(t, m, req)
		var uid, uname string
		_ = json.Unmarshal(c["user_id"], &uid)
		_ = json.Unmarshal(c["user_name"], &uname)
		if uid != req.UserID || uname != req.UserName || string(c["role_type"]) != fmt.Sprint(int(req.Role)) {
			t.Fatalf("claims %s for %+v", c, req)
		}
		if _, ok := c["enable_byop"]; ok != req.EnableBYOP {
			t.Fatalf("enable_byop %v for %+v", ok, req)
		}
	}
}

func TestMintRefuses(t *testing.T) {
	m := newTestMinter(t, 0)
	long := strings.Repeat("x", 36)
	for _, tc := range []struct {
		name string
		req  TokenRequest
		want string
	}{
		{"role 0", TokenRequest{UserID: "u"}, "role_type"},
		{"role 3", TokenRequest{Role: 3, UserID: "u"}, "role_type"},
		{"no user_id", TokenRequest{Role: RoleCustomer}, "user_id is required"},
		{"long user_id", TokenRequest{Role: RoleCustomer, UserID: long}, "user_id has 36"},
		{"long user_name", TokenRequest{Role: RoleAgent, UserID: "u", UserName: long}, "user_name has 36"},
		{"name of 18 emoji is 36 UTF-16 units", TokenRequest{Role: RoleAgent, UserID: "u", UserName: strings.Repeat("😀", 18)}, "user_name has 36"},
		{"control character", TokenRequest{Role: RoleAgent, UserID: "u", UserName: "a\nb"}, "control"},
		{"invalid UTF-8", TokenRequest{Role: RoleAgent, UserID: "u\xff"}, "UTF-8"},
		{"TTL too short", TokenRequest{Role: RoleAgent, UserID: "u", TTL: 1799 * time.Second}, "TTL"},
		{"TTL too long", TokenRequest{Role: RoleAgent, UserID: "u", TTL: 172801 * time.Second}, "TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := m.Mint(tc.req)
			if !errors.Is(err, ErrBadTokenRequest) || !strings.Contains(err.Error(), tc.want) || tok.JWT != "" {
				t.Fatalf("Mint = %v, %v; want ErrBadTokenRequest mentioning %q", tok, err, tc.want)
			}
		})
	}
	// Exactly 35 is accepted, counted as JavaScript counts.
	mint(t, m, TokenRequest{Role: RoleAgent, UserID: strings.Repeat("x", 35), UserName: strings.Repeat("😀", 17) + "x"})
}

func TestNewMinterChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  MinterConfig
		want string
	}{
		{MinterConfig{SDKSecret: "s"}, "SDKKey"},
		{MinterConfig{SDKKey: "k"}, "SDKSecret"},
		{MinterConfig{SDKKey: "k", SDKSecret: "s", TTL: 1799 * time.Second}, "TTL"},
		{MinterConfig{SDKKey: "k", SDKSecret: "s", TTL: 172801 * time.Second}, "TTL"},
		{MinterConfig{SDKKey: "k", SDKSecret: "s", TTL: -time.Hour}, "TTL"},
	} {
		if _, err := NewMinter(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewMinter(%v) = %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
	for _, ttl := range []time.Duration{MinTokenTTL, MaxTokenTTL, 0} {
		if _, err := NewMinter(MinterConfig{SDKKey: "k", SDKSecret: "s", TTL: ttl}); err != nil {
			t.Errorf("TTL %s: %v", ttl, err)
		}
	}
}

// TestMinterHidesSecret prints and logs the minter and its config every way.
func TestMinterHidesSecret(t *testing.T) {
	const sdk = "SDK-SECRET-zzz"
	mc := MinterConfig{SDKKey: "k", SDKSecret: sdk}
	m, err := NewMinter(mc)
	if err != nil {
		t.Fatal(err)
	}
	assertHidden(t, []string{sdk}, mc, &mc, m, *m, Secret(sdk), []Secret{sdk}, struct{ S Secret }{sdk})
	if Secret("").String() != "[unset]" {
		t.Fatal("an empty secret should show as [unset]")
	}
}

// assertHidden prints, logs (JSON and text) and marshals each value every way, and fails if any
// secret shows, raw or in hex.
func assertHidden(t *testing.T, secrets []string, values ...any) {
	t.Helper()
	var out bytes.Buffer
	jl := slog.New(slog.NewJSONHandler(&out, nil))
	tl := slog.New(slog.NewTextHandler(&out, nil))
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		jl.Info("x", "v", v)
		tl.Info("x", "v", v)
		b, _ := json.Marshal(v)
		out.Write(b)
	}
	for _, s := range secrets {
		for _, form := range []string{s, fmt.Sprintf("%x", s), fmt.Sprintf("%X", s)} {
			if strings.Contains(out.String(), form) {
				t.Fatalf("secret %s shows in the output:\n%s", s, out.String())
			}
		}
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatal("no [redacted] in the output")
	}
}

func TestTokenMasksJWT(t *testing.T) {
	tok, _ := mint(t, newTestMinter(t, 0), TokenRequest{Role: RoleCustomer, UserID: "u"})
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %s", tok, tok, tok)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "tok", tok)
	if strings.Contains(out.String(), tok.JWT[:len(tok.JWT)-3]) {
		t.Fatalf("the JWT shows: %s", out.String())
	}
}

func TestDeriveUserID(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z2-7]{35}$`)
	seen := map[string]string{}
	for _, in := range []struct {
		interaction string
		role        RoleType
		agent       string
	}{
		{"I1", RoleAgent, "A1"}, {"I1", RoleAgent, "A2"}, {"I2", RoleAgent, "A1"}, {"I1", RoleCustomer, ""},
		{"I2", RoleCustomer, ""}, {"", RoleAgent, ""}, {"", RoleCustomer, ""}, {"I1", RoleAgent, ""},
		// Separators: shifting bytes between fields must change the id.
		{"I1\n2:A", RoleAgent, "1"}, {"I1", RoleAgent, "A\n"}, {"I1:", RoleAgent, "A1"}, {"I", RoleAgent, "1A1"},
		{"1:I1\n1:2\n2:A1\n", RoleAgent, ""}, {"I1", RoleType(12), "A1"}, {"I11", RoleAgent, "A1"},
	} {
		id := DeriveUserID(in.interaction, in.role, in.agent)
		if !valid.MatchString(id) {
			t.Fatalf("DeriveUserID%v = %q", in, id)
		}
		key := fmt.Sprintf("%q/%d/%q", in.interaction, in.role, in.agent)
		if prev, dup := seen[id]; dup {
			t.Fatalf("%s and %s share the id %s", prev, key, id)
		}
		seen[id] = key
		if again := DeriveUserID(in.interaction, in.role, in.agent); again != id {
			t.Fatalf("not stable: %s then %s", id, again)
		}
	}
	if DeriveUserID("I1", RoleCustomer, "A1") != DeriveUserID("I1", RoleCustomer, "A2") {
		t.Fatal("the customer's id must not depend on the agent")
	}
	mint(t, newTestMinter(t, 0), TokenRequest{Role: RoleAgent, UserID: DeriveUserID("I1", RoleAgent, "A1")})
}

func TestFitUserName(t *testing.T) {
	for in, want := range map[string]string{
		"  Ann \t Smith\n":         "Ann Smith",
		"a\x00b":                   "a b",
		strings.Repeat("x", 40):    strings.Repeat("x", 35),
		strings.Repeat("😀", 20):    strings.Repeat("😀", 17),
		"bad\xffutf8":              "bad\uFFFDutf8",
		"":                         "",
		strings.Repeat("ab ", 12):  strings.TrimSpace(strings.Repeat("ab ", 12)[:35]),
		"\u2028line\u2029para\x7f": "line para",
	} {
		got := FitUserName(in)
		if got != want {
			t.Errorf("FitUserName(%q) = %q, want %q", in, got, want)
		}
		if got != "" {
			if err := checkUserField("user_name", got); err != nil {
				t.Errorf("FitUserName(%q) = %q does not pass: %v", in, got, err)
			}
		}
	}
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
