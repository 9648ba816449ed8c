package zoom

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The token endpoint's limits and defaults.
const (
	// MaxTokenRequestBody bounds a token request's body: a larger one is answered 413.
	MaxTokenRequestBody = 4 << 10
	// MaxTokenRequestID bounds interactionId and agentId, in characters (runes).
	MaxTokenRequestID = 256
	// DefaultTokenLookupTimeout bounds the state lookup when TokenEndpointConfig.LookupTimeout
	// is zero.
	DefaultTokenLookupTimeout = 2 * time.Second
	// TokenRealm is the realm of the WWW-Authenticate challenge of a 401.
	TokenRealm = "cobrowse-connector"
)

// maxTokenFieldErrors bounds the problems one 400 lists (a 4 KiB body can hold hundreds of unknown
// properties); the rest are counted in one last entry.
const maxTokenFieldErrors = 20

// maxTokenPropertyName bounds how much of an unknown property's name an answer repeats.
const maxTokenPropertyName = 64

// ErrUnknownInteraction is what a TokenLookup wraps when the daemon holds no state for the
// interaction: the endpoint answers 404.
var ErrUnknownInteraction = errors.New("zoom: unknown interaction")

// TokenState is what the token endpoint knows of an interaction, from the daemon's state bucket.
type TokenState struct {
	Vendor    string // the interaction's co-browse vendor (fixed, or the daemon's default); only "zoom" gets tokens
	AgentID   string // the interaction's current agent; "" when none
	Closed    bool   // the interaction closed
	Live      bool   // a co-browse session is live
	Validated bool   // the live session's PIN was validated and bound (joined or active), not stopping
	Ending    bool   // the live session is being stopped: no more tokens for it
	PIN       string // the live session's PIN, when known
	BYOP      bool   // the daemon created the session with its own PIN: the customer token needs enable_byop
}

func (s TokenState) String() string {
	return fmt.Sprintf("zoom.TokenState{Vendor:%q AgentID:%q Closed:%v Live:%v Validated:%v Ending:%v PIN:%s BYOP:%v}",
		s.Vendor, s.AgentID, s.Closed, s.Live, s.Validated, s.Ending, connector.MaskToken(s.PIN), s.BYOP)
}

// Format prints String (the PIN masked) for every verb.
func (s TokenState) Format(f fmt.State, verb rune) { formatAs(f, verb, s.String()) }

// LogValue masks the PIN.
func (s TokenState) LogValue() slog.Value {
	return slog.GroupValue(slog.String("vendor", s.Vendor), slog.String("agent", s.AgentID), slog.Bool("closed", s.Closed),
		slog.Bool("live", s.Live), slog.Bool("validated", s.Validated), slog.Bool("ending", s.Ending),
		slog.String("pin", connector.MaskToken(s.PIN)), slog.Bool("byop", s.BYOP))
}

// TokenLookup reads an interaction's state for the token endpoint (the daemon reads its state
// bucket, so any replica can answer). No state is an error wrapping ErrUnknownInteraction; any
// other error is a failure to read (the endpoint answers 503).
type TokenLookup func(ctx context.Context, interactionID string) (TokenState, error)

// TokenEndpointConfig configures a TokenEndpoint.
type TokenEndpointConfig struct {
	// Minter mints the tokens. Required.
	Minter *Minter
	// BearerSecrets are the accepted bearer secrets: the current one, then the previous one while
	// callers rotate. Empty entries are ignored. Only their SHA-256 digests are kept.
	BearerSecrets []Secret
	// AcceptClientCert makes a request over TLS whose client certificate the server verified
	// (tls.Config.ClientAuth VerifyClientCertIfGiven or RequireAndVerifyClientCert, with the
	// ClientCAs of the callers) authenticated without a bearer. The server's tls.Config decides
	// which certificates are good; this endpoint only asks whether one was verified.
	AcceptClientCert bool
	// Lookup reads the interaction's state. Required.
	Lookup TokenLookup
	// LookupTimeout bounds Lookup. Zero: DefaultTokenLookupTimeout.
	LookupTimeout time.Duration
	// Now is the clock of RotateBearers' overlap; nil: time.Now. For tests.
	Now func() time.Time
	// Logger receives the audit lines and the refusals (component=zoom vendor=zoom). Default:
	// discard.
	Logger *slog.Logger
}

func (c TokenEndpointConfig) String() string {
	minter := "<nil>"
	if c.Minter != nil {
		minter = c.Minter.String()
	}
	return fmt.Sprintf("zoom.TokenEndpointConfig{Minter:%s BearerSecrets:%d %s AcceptClientCert:%v Lookup:%v LookupTimeout:%s}",
		minter, len(c.BearerSecrets), redacted, c.AcceptClientCert, c.Lookup != nil, c.LookupTimeout)
}

// Format prints String for every verb.
func (c TokenEndpointConfig) Format(f fmt.State, verb rune) { formatAs(f, verb, c.String()) }

// LogValue shows the config without the secrets.
func (c TokenEndpointConfig) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int("bearer_secrets", len(c.BearerSecrets)), slog.Bool("accept_client_cert", c.AcceptClientCert),
		slog.Bool("lookup", c.Lookup != nil), slog.Duration("lookup_timeout", c.LookupTimeout)}
	if c.Minter != nil {
		attrs = append(attrs, slog.Any("minter", *c.Minter))
	}
	return slog.GroupValue(attrs...)
}

// TokenEndpoint is the HTTP handler that mints Cobrowse JWTs for the platform's backend (never a
// browser, never open: every request is authenticated). It serves any path; the daemon's mux
// chooses one. A request is
//
//	POST <path>
//	Authorization: Bearer <secret>          (or a verified TLS client certificate)
//	{"interactionId": "I1", "role": "customer"}
//	{"interactionId": "I1", "role": "agent", "agentId": "A1"}
//
// role is "customer" or "agent", or the JWT's numbers 1 or 2 (as Zoom's token sample sends them).
// The user_id is never the caller's: it is DeriveUserID of the interaction, the role and the
// agent, and the user_name the one CustomerTokenRequest or AgentTokenRequest gives. The answers
// are JSON:
//
//	200  {"token":"<jwt>","expiresAt":"<RFC 3339>"} and "pin": the live session's PIN, for an
//	     agent token, or a customer token with enable_byop (the page passes it as customPinCode)
//	400  {"errors":[{"property":"role","reason":"..."}]}: every problem of the body at once
//	401  no or a wrong bearer (WWW-Authenticate: Bearer realm="cobrowse-connector")
//	403  the interaction is not served by Zoom, is closed, or its session is ending; an agent
//	     token for an agent who is not the interaction's current one, or with no validated session
//	404  no state for the interaction
//	405  not a POST (Allow: POST)
//	413  a body over MaxTokenRequestBody
//	500  minting failed
//	503  the state could not be read: try again
//
// Every answer but the 200 is {"errors":[{"property":"","reason":"..."}]} with its status. A
// minted token writes one audit line at Info ("audit: token minted"); a refusal is logged once
// (Warn; Error for a 500), never with the bearer, the body, a whole JWT or a whole PIN. It is safe
// for concurrent use.
type TokenEndpoint struct {
	mint       func(TokenRequest) (Token, error) // the minter's Mint; tests replace it
	digests    *secretSet                        // of the bearer secrets; swapped by RotateBearers
	now        func() time.Time
	clientCert bool
	lookup     TokenLookup
	timeout    time.Duration
	log        *slog.Logger
}

// NewTokenEndpoint checks cfg and returns the endpoint. It refuses to build an open endpoint: at
// least one non-empty bearer secret, or AcceptClientCert.
func NewTokenEndpoint(cfg TokenEndpointConfig) (*TokenEndpoint, error) {
	var errs []error
	if cfg.Minter == nil {
		errs = append(errs, errors.New("zoom: token endpoint: Minter is required"))
	}
	if cfg.Lookup == nil {
		errs = append(errs, errors.New("zoom: token endpoint: Lookup is required"))
	}
	e := &TokenEndpoint{clientCert: cfg.AcceptClientCert, lookup: cfg.Lookup, timeout: cfg.LookupTimeout, now: cfg.Now}
	if e.now == nil {
		e.now = time.Now
	}
	digests := bearerDigests(cfg.BearerSecrets)
	e.digests = newSecretSet(digests)
	if len(digests) == 0 && !cfg.AcceptClientCert {
		errs = append(errs, errors.New("zoom: token endpoint: no bearer secret and AcceptClientCert off: the endpoint would be open"))
	}
	if e.timeout == 0 {
		e.timeout = DefaultTokenLookupTimeout
	}
	if e.timeout < 0 {
		errs = append(errs, fmt.Errorf("zoom: token endpoint: LookupTimeout must not be negative (got %s)", cfg.LookupTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	e.mint = cfg.Minter.Mint
	l := cfg.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	e.log = l.With("component", "zoom", "vendor", "zoom")
	return e, nil
}

func (e *TokenEndpoint) String() string {
	return fmt.Sprintf("zoom.TokenEndpoint{BearerSecrets:%d %s AcceptClientCert:%v LookupTimeout:%s}",
		e.digests.accepting(e.now()), redacted, e.clientCert, e.timeout)
}

// Format prints String for every verb.
func (e *TokenEndpoint) Format(f fmt.State, verb rune) { formatAs(f, verb, e.String()) }

// LogValue shows the endpoint without the secrets' digests.
func (e *TokenEndpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("bearer_secrets", e.digests.accepting(e.now())), slog.Bool("accept_client_cert", e.clientCert),
		slog.Duration("lookup_timeout", e.timeout))
}

// TokenAPIRequest is a checked token request.
type TokenAPIRequest struct {
	InteractionID string
	Role          RoleType // RoleCustomer or RoleAgent
	AgentID       string   // set for RoleAgent only
}

// FieldError is one problem of a token request: the property ("" for the body as a whole) and
// why. A reason never quotes a value.
type FieldError struct {
	Property string `json:"property"`
	Reason   string `json:"reason"`
}

// TokenAPIResponse is the 200 answer. It carries credentials: String and LogValue mask them.
type TokenAPIResponse struct {
	Token string `json:"token"`
	// PIN is the live session's PIN, for an agent token, or a customer token with enable_byop:
	// absent otherwise, or when the state holds none.
	PIN       string `json:"pin,omitempty"`
	ExpiresAt string `json:"expiresAt"` // the token's exp, RFC 3339 UTC
}

func (r TokenAPIResponse) String() string {
	return fmt.Sprintf("zoom.TokenAPIResponse{Token:%s PIN:%s ExpiresAt:%s}", connector.MaskToken(r.Token),
		connector.MaskToken(r.PIN), r.ExpiresAt)
}

// Format prints String for every verb.
func (r TokenAPIResponse) Format(f fmt.State, verb rune) { formatAs(f, verb, r.String()) }

// LogValue masks the token and the PIN.
func (r TokenAPIResponse) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token", connector.MaskToken(r.Token)), slog.String("pin", connector.MaskToken(r.PIN)),
		slog.String("expires_at", r.ExpiresAt))
}

// tokenAPIErrors is the body of every answer but the 200.
type tokenAPIErrors struct {
	Errors []FieldError `json:"errors"`
}

// The reasons the answers give.
const (
	reasonUserIDChosen   = "user_id is derived from the interaction and role; a caller cannot choose it"
	reasonUserNameChosen = "user_name is derived from the interaction, role and agentId; a caller cannot choose it"
	reasonBadRole        = `role must be "customer", "agent", 1 or 2`
)

// DecodeTokenRequest decodes and checks a request body; it returns the request or the list of
// problems (property, reason). Exported for the fuzz target and for documentation. The rules:
//
//   - the body is one JSON object (valid UTF-8, at most MaxTokenRequestBody bytes, nothing after
//     it), each property at most once, and only interactionId, role and agentId; userId, user_id,
//     userName and user_name (any case) are refused as such: the user_id and user_name are derived;
//   - interactionId: a string of 1 to MaxTokenRequestID characters that is a NATS subject token
//     (no '.', '*', '>', whitespace or control character);
//   - role: "customer" or "agent" (lower case), or the JSON integers 1 or 2 (not 1.0, not "1");
//   - agentId: the same rules as interactionId; required for role agent, refused for role
//     customer. null is taken as absent.
//
// Every problem found is listed (at most 20, then a count), in a fixed order: the body's, the
// properties' in their order, then interactionId, role, agentId.
func DecodeTokenRequest(body []byte) (TokenAPIRequest, []FieldError) {
	req, errs := decodeTokenRequest(body)
	if len(errs) > 0 {
		return TokenAPIRequest{}, capFieldErrors(errs)
	}
	return req, nil
}

// decodeTokenRequest is DecodeTokenRequest, but with the errors it returns what it could check
// (a valid interactionId, for the log of a refusal) and every problem, uncapped.
func decodeTokenRequest(body []byte) (TokenAPIRequest, []FieldError) {
	var errs []FieldError
	add := func(property, format string, args ...any) {
		errs = append(errs, FieldError{Property: property, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return TokenAPIRequest{}, []FieldError{{Reason: "the body is empty: a JSON object is required"}}
	case len(body) > MaxTokenRequestBody:
		return TokenAPIRequest{}, []FieldError{{Reason: fmt.Sprintf("the body has more than %d bytes", MaxTokenRequestBody)}}
	case !utf8.Valid(body):
		return TokenAPIRequest{}, []FieldError{{Reason: "the body is not valid UTF-8"}}
	}
	notJSON := func(dec *json.Decoder, err error) (TokenAPIRequest, []FieldError) {
		off := dec.InputOffset()
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			off = se.Offset
		}
		return TokenAPIRequest{}, []FieldError{{Reason: fmt.Sprintf("the body is not valid JSON (near byte %d)", off)}}
	}

	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return notJSON(dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return TokenAPIRequest{}, []FieldError{{Reason: "the body must be a JSON object"}}
	}
	fields := map[string]json.RawMessage{}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return notJSON(dec, err)
		}
		key, _ := kt.(string) // the decoder allows only a string here
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return notJSON(dec, err)
		}
		dup := seen[key]
		seen[key] = true
		switch key {
		case "interactionId", "role", "agentId":
			if dup {
				add(key, "appears more than once")
			} else {
				fields[key] = v
			}
			continue
		}
		if dup {
			continue // reported the first time
		}
		switch userField(key) {
		case "user_id":
			add(propertyName(key), reasonUserIDChosen)
		case "user_name":
			add(propertyName(key), reasonUserNameChosen)
		default:
			add(propertyName(key), "unknown property; the properties are interactionId, role and agentId")
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return notJSON(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		add("", "trailing data after the JSON object")
	}

	var req TokenAPIRequest
	interaction, present, reason := tokenAPIString(fields["interactionId"])
	switch {
	case !present:
		add("interactionId", "interactionId is required")
	case reason != "":
		add("interactionId", "interactionId %s", reason)
	default:
		req.InteractionID = interaction
	}

	role := parseTokenAPIRole(fields["role"])
	if role == RoleUnknown {
		if isNull(fields["role"]) {
			add("role", "role is required: "+reasonBadRole)
		} else {
			add("role", reasonBadRole)
		}
	}
	req.Role = role

	agent, present, reason := tokenAPIString(fields["agentId"])
	switch {
	case role == RoleCustomer && present:
		add("agentId", "agentId is only for role agent: a customer token names no agent")
	case role == RoleAgent && !present:
		add("agentId", "agentId is required for role agent")
	case present && reason != "":
		add("agentId", "agentId %s", reason)
	case role == RoleAgent:
		req.AgentID = agent
	}

	return req, errs
}

// capFieldErrors keeps the first maxTokenFieldErrors problems and counts the others.
func capFieldErrors(errs []FieldError) []FieldError {
	if len(errs) <= maxTokenFieldErrors {
		return errs
	}
	more := len(errs) - maxTokenFieldErrors + 1
	errs = append(errs[:maxTokenFieldErrors-1:maxTokenFieldErrors-1], FieldError{Reason: fmt.Sprintf("and %d more problems", more)})
	return errs
}

// userField says whether a property name means the user_id or the user_name, however it is spelt
// (userId, user_id, UserID, user-name, ...): "user_id", "user_name" or "".
func userField(key string) string {
	k := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(key))
	switch k {
	case "userid":
		return "user_id"
	case "username":
		return "user_name"
	}
	return ""
}

// propertyName is an unknown property's name as an answer repeats it: at most
// maxTokenPropertyName bytes, cut on a character boundary.
func propertyName(key string) string {
	if len(key) <= maxTokenPropertyName {
		return key
	}
	cut := maxTokenPropertyName
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return key[:cut] + "..."
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// tokenAPIString reads an id property: absent (missing or null), or a string that checkTokenAPIID
// accepts; reason says what is wrong otherwise.
func tokenAPIString(raw json.RawMessage) (v string, present bool, reason string) {
	if isNull(raw) {
		return "", false, ""
	}
	raw = bytes.TrimSpace(raw)
	if raw[0] != '"' {
		return "", true, "must be a string"
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, "must be a string"
	}
	return v, true, checkTokenAPIID(v)
}

// checkTokenAPIID is the rule of interactionId and agentId: 1 to MaxTokenRequestID characters of
// valid UTF-8, a NATS subject token. It returns what is wrong, or "".
func checkTokenAPIID(v string) string {
	if v == "" {
		return "must not be empty"
	}
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	if n := utf8.RuneCountInString(v); n > MaxTokenRequestID {
		return fmt.Sprintf("has %d characters; at most %d are allowed", n, MaxTokenRequestID)
	}
	for i, r := range v {
		var what string
		switch {
		case r == '.':
			what = "a token separator '.'"
		case r == '*' || r == '>':
			what = "a wildcard"
		case unicode.IsSpace(r):
			what = "whitespace"
		case unicode.IsControl(r):
			what = "a control character"
		default:
			continue
		}
		return fmt.Sprintf("is not a NATS subject token (%s at byte offset %d)", what, i)
	}
	return ""
}

// parseTokenAPIRole reads role: the strings "customer" and "agent", the integers 1 and 2.
func parseTokenAPIRole(raw json.RawMessage) RoleType {
	switch string(bytes.TrimSpace(raw)) {
	case `"customer"`, "1":
		return RoleCustomer
	case `"agent"`, "2":
		return RoleAgent
	}
	return RoleUnknown
}

// ServeHTTP answers one token request (see TokenEndpoint).
func (e *TokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e.refuse(w, r, http.StatusMethodNotAllowed, "", nil, FieldError{Reason: "POST only"})
		return
	}
	auth, ok := e.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+TokenRealm+`"`)
		e.refuse(w, r, http.StatusUnauthorized, "", []any{"auth", auth}, FieldError{Reason: "missing or wrong credentials"})
		return
	}
	body, status, reason := readTokenRequest(w, r)
	if status != 0 {
		e.refuse(w, r, status, "", []any{"auth", auth}, FieldError{Reason: reason})
		return
	}
	req, problems := decodeTokenRequest(body)
	if len(problems) > 0 {
		// req.InteractionID is set only when it is a valid id: safe to log.
		e.refuse(w, r, http.StatusBadRequest, req.InteractionID, []any{"auth", auth}, capFieldErrors(problems)...)
		return
	}
	keys := []any{"auth", auth, "role", req.Role.String()}
	if req.Role == RoleAgent {
		keys = append(keys, "agent", req.AgentID)
	}

	ctx, cancel := context.WithTimeout(r.Context(), e.timeout)
	st, err := e.lookup(ctx, req.InteractionID)
	cancel()
	switch {
	case errors.Is(err, ErrUnknownInteraction):
		e.refuse(w, r, http.StatusNotFound, req.InteractionID, keys, FieldError{Reason: "no such interaction"})
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		e.refuse(w, r, http.StatusServiceUnavailable, req.InteractionID, append(keys, "error", err),
			FieldError{Reason: "the interaction's state could not be read; try again"})
		return
	}
	if reason := authorise(req, st); reason != "" {
		e.refuse(w, r, http.StatusForbidden, req.InteractionID, keys, FieldError{Reason: reason})
		return
	}

	var tr TokenRequest
	if req.Role == RoleCustomer {
		tr = CustomerTokenRequest(req.InteractionID)
		tr.EnableBYOP = st.BYOP
	} else {
		tr = AgentTokenRequest(req.InteractionID, req.AgentID)
	}
	tok, err := e.mint(tr)
	if err != nil {
		e.refuse(w, r, http.StatusInternalServerError, req.InteractionID, append(keys, "error", err),
			FieldError{Reason: "the token could not be minted"})
		return
	}
	ans := TokenAPIResponse{Token: tok.JWT, ExpiresAt: tok.ExpiresAt.UTC().Format(time.RFC3339)}
	if st.PIN != "" && (req.Role == RoleAgent || st.BYOP) {
		ans.PIN = st.PIN
	}
	audit := append([]any{"interaction", req.InteractionID}, keys...)
	audit = append(audit, "user_id", tok.UserID, "token", connector.MaskToken(tok.JWT), "expires_at", ans.ExpiresAt,
		"enable_byop", tr.EnableBYOP, "remote", r.RemoteAddr)
	if ans.PIN != "" {
		audit = append(audit, "pin", connector.MaskToken(ans.PIN))
	}
	e.log.Info("audit: token minted", audit...)
	writeTokenJSON(w, http.StatusOK, ans)
}

// authorise applies the interaction's state to a request: the reason of a 403, or "".
func authorise(req TokenAPIRequest, st TokenState) string {
	switch {
	case st.Vendor != string(connector.Zoom):
		return "the interaction is not served by Zoom"
	case st.Closed:
		return "the interaction is closed"
	case st.Ending:
		return "the session is ending"
	case req.Role != RoleAgent:
		return ""
	case req.AgentID != st.AgentID:
		return "not the interaction's current agent"
	case !st.Live || !st.Validated:
		return "no validated session: an agent token is minted only once the customer's PIN is validated"
	}
	return ""
}

// authenticate says how the request is authenticated ("client_cert", "bearer" for the first
// secret, "previous_bearer" for another configured one, "replaced_bearer" for one a rotation
// replaced, within its overlap), or why not ("none", "bad_scheme", "wrong_bearer"). Every
// accepted digest is compared, in constant time, whatever matched.
func (e *TokenEndpoint) authenticate(r *http.Request) (string, bool) {
	if e.clientCert && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return "client_cert", true
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "none", false
	}
	if len(vals) > 1 {
		return "several_authorization_headers", false
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "bad_scheme", false
	}
	got := sha256.Sum256([]byte(token))
	match, a := e.digests.match(e.now(), func(d []byte) bool { return subtle.ConstantTimeCompare(got[:], d) == 1 })
	switch {
	case match < 0:
		return "wrong_bearer", false
	case !a.until.IsZero():
		return "replaced_bearer", true // replaced by a reload, accepted until the overlap ends
	case match == 0:
		return "bearer", true
	}
	return "previous_bearer", true
}

// bearerDigests are the SHA-256 digests of the non-empty secrets.
func bearerDigests(secrets []Secret) [][]byte {
	var out [][]byte
	for _, s := range secrets {
		if s != "" {
			d := sha256.Sum256([]byte(s))
			out = append(out, d[:])
		}
	}
	return out
}

// RotateBearers replaces the accepted bearer secrets (the current one, then the previous one, as
// TokenEndpointConfig.BearerSecrets) while requests are served. A secret accepted until now and
// not among them stays accepted for overlap (by the endpoint's clock), so that callers have that
// long to move over; overlap <= 0 refuses it at once. A list that would leave the endpoint open
// (no secret, and no client certificates) changes nothing.
func (e *TokenEndpoint) RotateBearers(secrets []Secret, overlap time.Duration) error {
	digests := bearerDigests(secrets)
	if len(digests) == 0 && !e.clientCert {
		return errors.New("zoom: token endpoint: no bearer secret and AcceptClientCert off: the endpoint would be open")
	}
	e.digests.rotate(digests, e.now(), overlap)
	return nil
}

// readTokenRequest reads at most MaxTokenRequestBody bytes of the body; a non-zero status is a
// refusal.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (body []byte, status int, reason string) {
	tooLarge := fmt.Sprintf("the body has more than %d bytes", MaxTokenRequestBody)
	if r.ContentLength > MaxTokenRequestBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	if r.Body == nil {
		return nil, 0, ""
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxTokenRequestBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	if err != nil {
		return nil, http.StatusBadRequest, "the body could not be read"
	}
	return body, 0, ""
}

// refuse answers a refusal with its status and problems, and logs it once: Warn, Error for a 5xx
// that is the daemon's fault (500).
func (e *TokenEndpoint) refuse(w http.ResponseWriter, r *http.Request, status int, interaction string, keys []any, problems ...FieldError) {
	attrs := []any{"status", status, "remote", r.RemoteAddr}
	if interaction != "" {
		attrs = append(attrs, "interaction", interaction)
	}
	attrs = append(attrs, keys...)
	reasons := make([]string, len(problems))
	for i, p := range problems {
		if p.Property != "" {
			reasons[i] = p.Property + ": " + p.Reason
		} else {
			reasons[i] = p.Reason
		}
	}
	attrs = append(attrs, "reason", strings.Join(reasons, "; "))
	level := slog.LevelWarn
	if status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	e.log.Log(r.Context(), level, "token request refused", attrs...)
	writeTokenJSON(w, status, tokenAPIErrors{Errors: problems})
}

// writeTokenJSON writes an answer. Nothing of it may be cached: a 200 carries a credential.
func writeTokenJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: strings and slices of strings only
		b, status = []byte(`{"errors":[{"property":"","reason":"internal error"}]}`), http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
