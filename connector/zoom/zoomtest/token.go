package zoomtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The SDK error codes the browser methods return (the session_error codes of the Cobrowse SDK).
const (
	CodeJoinPINNotFound    = 1006 // SESSION_JOIN_PIN_NOT_FOUND: the agent's PIN names no live session
	CodePINInvalidFormat   = 1008 // SESSION_PIN_INVALID_FORMAT: a custom PIN that is not 1-10 letters and digits
	CodeStartPINRequired   = 1009 // SESSION_START_PIN_REQUIRED: a BYOP token without a custom PIN
	CodeStartPINConflict   = 1010 // SESSION_START_PIN_CONFLICT: the custom PIN is a live session's
	CodeAgentCountLimit    = 1013 // SESSION_AGENT_COUNT_LIMIT: the agent seats are full
	CodeSessionDuplicateID = 1015 // SESSION_DUPLICATE_USER: the user_id is already in the session
	CodeTokenInvalid       = 2001 // TOKEN_INVALID: the JWT was refused
)

var codeNames = map[int]string{
	CodeJoinPINNotFound:    "SESSION_JOIN_PIN_NOT_FOUND",
	CodePINInvalidFormat:   "SESSION_PIN_INVALID_FORMAT",
	CodeStartPINRequired:   "SESSION_START_PIN_REQUIRED",
	CodeStartPINConflict:   "SESSION_START_PIN_CONFLICT",
	CodeAgentCountLimit:    "SESSION_AGENT_COUNT_LIMIT",
	CodeSessionDuplicateID: "SESSION_DUPLICATE_USER",
	CodeTokenInvalid:       "TOKEN_INVALID",
}

// SDKError is a refusal of a browser method, as the SDK's session_error would report it.
type SDKError struct {
	Code   int
	Name   string // the SDK's exception name
	Reason string // which rule, in zoomtest's words
}

func (e *SDKError) Error() string {
	return fmt.Sprintf("zoomtest: SDK error %d %s: %s", e.Code, e.Name, e.Reason)
}

func sdkErr(code int, format string, args ...any) *SDKError {
	return &SDKError{Code: code, Name: codeNames[code], Reason: fmt.Sprintf(format, args...)}
}

// tokenClaims is what a checked JWT carries.
type tokenClaims struct {
	userID, userName string
	byop             bool
}

// allowedClaims are the only claims a Cobrowse JWT may carry here.
var allowedClaims = map[string]bool{
	"app_key": true, "role_type": true, "iat": true, "exp": true, "user_id": true, "user_name": true, "enable_byop": true,
}

// checkJWT verifies a browser's JWT by the rules in the package doc, written out here without a
// JWT library so that the check does not share code (or mistakes) with the minter under test.
func (s *Server) checkJWT(tok string, role int64) (tokenClaims, *SDKError) {
	bad := func(format string, args ...any) (tokenClaims, *SDKError) {
		return tokenClaims{}, sdkErr(CodeTokenInvalid, format, args...)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return bad("not three dot-separated parts")
	}
	raw := make([][]byte, 3)
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil {
			return bad("part %d is not unpadded base64url", i+1)
		}
		raw[i] = b
	}
	mac := hmac.New(sha256.New, []byte(s.opts.SDKSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(mac.Sum(nil), raw[2]) {
		return bad("signature does not verify with the SDK secret")
	}
	var hdr map[string]any
	if err := json.Unmarshal(raw[0], &hdr); err != nil {
		return bad("header is not a JSON object")
	}
	if hdr["alg"] != "HS256" {
		return bad("header alg is %v, not HS256", hdr["alg"])
	}
	if hdr["typ"] != "JWT" {
		return bad("header typ is %v, not JWT", hdr["typ"])
	}
	var c map[string]any
	d := json.NewDecoder(bytes.NewReader(raw[1]))
	d.UseNumber()
	if err := d.Decode(&c); err != nil || c == nil || d.More() {
		return bad("payload is not one JSON object")
	}
	for k := range c {
		if !allowedClaims[k] {
			return bad("unknown claim %q", k)
		}
	}
	if c["app_key"] != s.opts.SDKKey {
		return bad("app_key is not the SDK key")
	}
	rt, ok := intClaim(c, "role_type")
	if !ok || rt != role {
		return bad("role_type must be the JSON number %d", role)
	}
	iat, ok1 := intClaim(c, "iat")
	exp, ok2 := intClaim(c, "exp")
	if !ok1 || !ok2 {
		return bad("iat and exp must be JSON integers")
	}
	if life := exp - iat; life < 1800 || life > 172800 {
		return bad("exp - iat is %d s, outside [1800, 172800]", life)
	}
	if time.Now().Unix() >= exp {
		return bad("token expired")
	}
	var out tokenClaims
	for _, f := range []struct {
		name string
		dst  *string
	}{{"user_id", &out.userID}, {"user_name", &out.userName}} {
		v, ok := c[f.name].(string)
		if !ok || v == "" {
			return bad("%s must be a non-empty string", f.name)
		}
		if !utf8.ValidString(v) || jsLen(v) > 35 {
			return bad("%s is longer than 35 characters", f.name)
		}
		*f.dst = v
	}
	if _, present := c["enable_byop"]; present {
		b, ok := intClaim(c, "enable_byop")
		if !ok || b < 0 || b > 1 {
			return bad("enable_byop must be the JSON number 0 or 1")
		}
		out.byop = b == 1
	}
	return out, nil
}

// intClaim reads a claim that must be a JSON integer (a number without fraction or exponent).
func intClaim(c map[string]any, name string) (int64, bool) {
	n, ok := c[name].(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE") {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

// jsLen is JavaScript's String.length: UTF-16 code units.
func jsLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}
