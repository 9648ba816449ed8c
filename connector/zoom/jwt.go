package zoom

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/golang-jwt/jwt/v5"
)

// RoleType is a Zoom Cobrowse role as the JWT's role_type claim numbers it. REST replies and
// webhooks name the same roles "customer" and "agent".
type RoleType int

// The roles. RoleUnknown is what a decoder gives for a role it could not read.
const (
	RoleUnknown  RoleType = 0
	RoleCustomer RoleType = 1 // the browser that shares its page (customer SDK, SDK_TOKEN)
	RoleAgent    RoleType = 2 // the agent desk or the agent npm SDK (ACCESS_TOKEN)
)

func (r RoleType) String() string {
	switch r {
	case RoleCustomer:
		return "customer"
	case RoleAgent:
		return "agent"
	case RoleUnknown:
		return "unknown"
	}
	return "role_type(" + strconv.Itoa(int(r)) + ")"
}

// The JWT's lifetime bounds and the claims' length limit.
const (
	// MinTokenTTL and MaxTokenTTL bound exp - iat: Zoom requires exp to be at least 30 minutes
	// and at most 48 hours after iat.
	MinTokenTTL = 1800 * time.Second
	MaxTokenTTL = 172800 * time.Second
	// DefaultTokenTTL is exp - iat when the config sets none: 2 hours, as Zoom's own token
	// sample does.
	DefaultTokenTTL = 7200 * time.Second
	// MaxUserField bounds user_id and user_name, in UTF-16 code units (JavaScript's length).
	// Zoom's token sample refuses longer values; another Zoom text allows 80 for user_name, so
	// 35 is the limit both accept.
	MaxUserField = 35
)

// ErrBadTokenRequest is wrapped by every refusal of Mint: a claim outside Zoom's rules. The error
// says which rule, never the secret.
var ErrBadTokenRequest = errors.New("zoom: bad token request")

// MinterConfig configures a Minter.
type MinterConfig struct {
	// SDKKey is the Cobrowse SDK key, the app_key claim. It is public (it is in the customer
	// page's script URL). Required. Not the REST API key: that is a common mistake Zoom's
	// validator rejects.
	SDKKey string
	// SDKSecret signs the tokens (HMAC-SHA256). Required; never logged.
	SDKSecret Secret
	// TTL is exp - iat, whole seconds within [MinTokenTTL, MaxTokenTTL]. Zero: DefaultTokenTTL.
	TTL time.Duration
	// Now is the clock; nil: time.Now. For tests.
	Now func() time.Time
}

func (c MinterConfig) String() string {
	return fmt.Sprintf("zoom.MinterConfig{SDKKey:%q SDKSecret:%s TTL:%s}", c.SDKKey, c.SDKSecret, c.TTL)
}

// Format prints String for every verb.
func (c MinterConfig) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without the secret.
func (c MinterConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("sdk_key", c.SDKKey), slog.String("sdk_secret", c.SDKSecret.String()),
		slog.Duration("ttl", c.TTL))
}

// Minter mints the Cobrowse SDK's JWTs: the customer's SDK_TOKEN (role_type 1) and the agent's
// ACCESS_TOKEN (role_type 2). It is safe for concurrent use.
//
// The token is HS256 (header {"alg":"HS256","typ":"JWT"}), signed with the SDK secret, and carries
// exactly app_key, role_type, iat, exp, user_id, user_name and, when asked, enable_byop: Zoom's
// validator is strict about claim names and wants role_type and enable_byop as JSON numbers, so
// nothing else is added (no nbf, no jti, no tpc, which belongs to the Video SDK).
type Minter struct {
	key    string
	secret *atomic.Pointer[[]byte] // swapped by SetSecret; a pointer, so that a copy shares it
	ttl    int64                   // seconds
	now    func() time.Time
}

// SetSecret replaces the SDK secret: every token minted after it returns is signed with the new
// one (a token minted before keeps its signature; Zoom checks it against the app's secret, so the
// app must accept the new one first). An empty secret changes nothing.
func (m *Minter) SetSecret(secret Secret) error {
	if secret == "" {
		return errors.New("zoom: SDKSecret is required")
	}
	b := []byte(secret)
	m.secret.Store(&b)
	return nil
}

// NewMinter checks cfg and returns a Minter.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	var errs []error
	if strings.TrimSpace(cfg.SDKKey) == "" {
		errs = append(errs, errors.New("zoom: SDKKey is required"))
	}
	if cfg.SDKSecret == "" {
		errs = append(errs, errors.New("zoom: SDKSecret is required"))
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTokenTTL
	}
	if err := checkTTL(cfg.TTL); err != nil {
		errs = append(errs, fmt.Errorf("zoom: TTL: %w", err))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := &Minter{key: cfg.SDKKey, secret: new(atomic.Pointer[[]byte]), ttl: int64(cfg.TTL / time.Second), now: cfg.Now}
	b := []byte(cfg.SDKSecret)
	m.secret.Store(&b)
	return m, nil
}

// checkTTL refuses a lifetime Zoom would refuse. Only whole seconds count (iat and exp are whole
// seconds).
func checkTTL(ttl time.Duration) error {
	s := ttl.Truncate(time.Second)
	if s < MinTokenTTL || s > MaxTokenTTL {
		return fmt.Errorf("%s is outside [%s, %s]", ttl, MinTokenTTL, MaxTokenTTL)
	}
	return nil
}

func (m Minter) String() string {
	return fmt.Sprintf("zoom.Minter{SDKKey:%q SDKSecret:%s TTL:%s}", m.key, redacted, time.Duration(m.ttl)*time.Second)
}

// Format prints String for every verb.
func (m Minter) Format(f fmt.State, verb rune) { formatAs(f, verb, m.String()) }

// LogValue shows the minter without the secret.
func (m Minter) LogValue() slog.Value {
	return slog.GroupValue(slog.String("sdk_key", m.key), slog.String("sdk_secret", redacted),
		slog.Duration("ttl", time.Duration(m.ttl)*time.Second))
}

// TokenRequest is what one token is minted for.
type TokenRequest struct {
	Role RoleType // RoleCustomer or RoleAgent; required
	// UserID is the user_id claim: 1 to MaxUserField characters, unique inside a Zoom session
	// (a second join with the same user_id is refused with SDK error 1015). Use DeriveUserID, so
	// that no caller chooses it.
	UserID string
	// UserName is the user_name claim, the name the other side sees: at most MaxUserField
	// characters (FitUserName cuts a longer one). Empty: the user_id, as Zoom's sample does.
	UserName string
	// EnableBYOP sets enable_byop: 1, which lets the customer start the session with a PIN of
	// our own (customPinCode). Without it Zoom makes a 6-digit PIN.
	EnableBYOP bool
	// TTL overrides the minter's exp - iat for this token, within the same bounds. Zero: the
	// minter's.
	TTL time.Duration
}

// Token is a minted JWT. It is a bearer credential for the browser SDK: String and LogValue mask it.
type Token struct {
	JWT       string
	Role      RoleType
	UserID    string
	IssuedAt  time.Time // iat
	ExpiresAt time.Time // exp
}

func (t Token) String() string {
	return fmt.Sprintf("zoom.Token{%s %s user_id=%s exp=%s}", connector.MaskToken(t.JWT), t.Role, t.UserID,
		t.ExpiresAt.UTC().Format(time.RFC3339))
}

// Format prints String for every verb.
func (t Token) Format(f fmt.State, verb rune) { formatAs(f, verb, t.String()) }

// LogValue masks the JWT.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token", connector.MaskToken(t.JWT)), slog.String("role", t.Role.String()),
		slog.String("user_id", t.UserID), slog.Time("expires_at", t.ExpiresAt))
}

// claims are exactly the Cobrowse JWT's claims, in Zoom's names and JSON types.
type claims struct {
	AppKey     string `json:"app_key"`
	RoleType   int    `json:"role_type"`
	IssuedAt   int64  `json:"iat"`
	ExpiresAt  int64  `json:"exp"`
	UserID     string `json:"user_id"`
	UserName   string `json:"user_name"`
	EnableBYOP int    `json:"enable_byop,omitempty"`
}

// The jwt.Claims methods. Only signing uses these claims; they are never parsed back.
func (c claims) GetExpirationTime() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}
func (c claims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}
func (c claims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c claims) GetIssuer() (string, error)              { return "", nil }
func (c claims) GetSubject() (string, error)             { return "", nil }
func (c claims) GetAudience() (jwt.ClaimStrings, error)  { return nil, nil }

// Mint checks r against Zoom's rules and returns the signed token. A refusal wraps
// ErrBadTokenRequest and names the rule; it quotes neither the secret nor the user's name.
func (m *Minter) Mint(r TokenRequest) (Token, error) {
	if r.Role != RoleCustomer && r.Role != RoleAgent {
		return Token{}, fmt.Errorf("%w: role_type must be 1 (customer) or 2 (agent), not %d", ErrBadTokenRequest, int(r.Role))
	}
	if err := checkUserField("user_id", r.UserID); err != nil {
		return Token{}, err
	}
	if r.UserName == "" {
		r.UserName = r.UserID
	}
	if err := checkUserField("user_name", r.UserName); err != nil {
		return Token{}, err
	}
	ttl := m.ttl
	if r.TTL != 0 {
		if err := checkTTL(r.TTL); err != nil {
			return Token{}, fmt.Errorf("%w: TTL: %w", ErrBadTokenRequest, err)
		}
		ttl = int64(r.TTL / time.Second)
	}
	iat := m.now().Unix()
	c := claims{AppKey: m.key, RoleType: int(r.Role), IssuedAt: iat, ExpiresAt: iat + ttl, UserID: r.UserID, UserName: r.UserName}
	if r.EnableBYOP {
		c.EnableBYOP = 1
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(*m.secret.Load())
	if err != nil {
		// HS256 with a []byte key does not fail; say so without the library's text, in case
		// a future version quotes its key.
		return Token{}, errors.New("zoom: signing the token failed")
	}
	return Token{JWT: signed, Role: r.Role, UserID: r.UserID, IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(c.ExpiresAt, 0)}, nil
}

// checkUserField enforces user_id's and user_name's rules: present, at most MaxUserField UTF-16
// code units, valid UTF-8 and no control characters (a name with a newline or a NUL is never what
// was meant, and Zoom's handling of it is unknown). The value itself is not quoted: a name is
// personal data.
func checkUserField(name, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is required", ErrBadTokenRequest, name)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadTokenRequest, name)
	case utf16Len(v) > MaxUserField:
		return fmt.Errorf("%w: %s has %d characters, at most %d are allowed", ErrBadTokenRequest, name, utf16Len(v), MaxUserField)
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("%w: %s contains a control character", ErrBadTokenRequest, name)
	}
	return nil
}

// FitUserName makes a display name fit user_name's rules: control characters become spaces, runs
// of spaces one, the ends are trimmed, and the rest is cut to MaxUserField characters on a
// character boundary. Invalid UTF-8 becomes U+FFFD. It may return "" (Mint then uses the user_id).
func FitUserName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.Join(strings.FieldsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	return strings.TrimSpace(clipUTF16(name, MaxUserField))
}

// userIDEncoding is base32 (RFC 4648 alphabet, lower case, no padding): letters and digits only,
// case-insensitively unique.
var userIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// DeriveUserID returns the user_id for a role on an interaction: 35 characters of lower-case
// base32 of SHA-256 over the fields (175 bits), each field length-prefixed and separated so that
// no two different field lists hash alike. It is stable (the same agent re-opening the desk on the
// same interaction gets the same user_id, so Zoom's "duplicate user" rule holds per seat) and no
// caller chooses it (a customer cannot claim an agent's user_id).
//
// For the customer the agent is ignored: there is one customer per interaction, whoever the agent
// is (a transfer does not change the customer's id). For an agent, agentID is the contact-center
// agent.
func DeriveUserID(interactionID string, role RoleType, agentID string) string {
	if role == RoleCustomer {
		agentID = ""
	}
	h := sha256.New()
	h.Write([]byte("cobrowse-connector/zoom/user_id/v1\n"))
	for _, f := range []string{interactionID, strconv.Itoa(int(role)), agentID} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
		h.Write([]byte{'\n'})
	}
	return userIDEncoding.EncodeToString(h.Sum(nil))[:MaxUserField]
}
