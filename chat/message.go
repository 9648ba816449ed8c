// Package chat reads the contact center's inbound streams from NATS JetStream: chat messages
// (<prefix>.chat.<interactionId>.message) and interaction events
// (<prefix>.interaction.<interactionId>.event), captured by one stream so that an interaction's chat
// and events keep their publish order, and read by one durable pull consumer with explicit acks.
//
// It also reads the signals (<prefix>.signal.<interactionId>.<source>: the vendor's webhooks after
// the daemon's router, the pages' reports, operators' stops) from the same stream.
//
// It decodes and validates each message, terminates malformed ones (logged once, never their text),
// spots the form of a co-browse start message ({start:X} or <start:X>) and hands every valid
// message, with its delivery, to a Handler in stream order. It knows no co-browse vendor: whether X
// is a session token (Genesys) or a PIN (Zoom) is the interaction's vendor's call.
package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Role is the kind of participant that sent a chat message.
type Role string

// The roles a chat message may come from.
const (
	RoleCustomer Role = "customer"
	RoleAgent    Role = "agent"
	RoleBot      Role = "bot"
	RoleSystem   Role = "system"
)

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RoleCustomer, RoleAgent, RoleBot, RoleSystem:
		return true
	}
	return false
}

// Sender is the author of a chat message.
type Sender struct {
	Role Role   `json:"role"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// Message is a chat message, published on <prefix>.chat.<interactionId>.message.
type Message struct {
	ID            string    `json:"id"`
	InteractionID string    `json:"interactionId"`
	From          Sender    `json:"from"`
	Text          string    `json:"text"`
	SentAt        time.Time `json:"sentAt,omitzero"`
}

// EventType is the kind of an interaction event.
type EventType string

// The interaction event types the daemon acts on. Any other type is valid on the wire but ignored.
const (
	EventCreated     EventType = "created"
	EventAssigned    EventType = "assigned"
	EventTransferred EventType = "transferred"
	EventClosed      EventType = "closed"
	EventTimeout     EventType = "timeout"
	EventActivity    EventType = "activity"
	// EventCobrowseRequested: the bot or the agent asks for co-browse; the daemon creates the
	// session for vendors that can (Zoom BYOP, CEC).
	EventCobrowseRequested EventType = "cobrowse_requested"
)

// Known reports whether t is one of the event types the daemon acts on.
func (t EventType) Known() bool {
	switch t {
	case EventCreated, EventAssigned, EventTransferred, EventClosed, EventTimeout, EventActivity, EventCobrowseRequested:
		return true
	}
	return false
}

// Event is an interaction event, published on <prefix>.interaction.<interactionId>.event.
type Event struct {
	ID            string    `json:"id"`
	InteractionID string    `json:"interactionId"`
	Type          EventType `json:"type"`
	AgentID       string    `json:"agentId,omitempty"`
	ToAgentID     string    `json:"toAgentId,omitempty"`
	// Vendor is the co-browse vendor that serves the interaction (created, assigned), when the
	// platform names one; the controller decides what an unknown or disabled one means.
	Vendor string `json:"cobrowseVendor,omitempty"`
	// RequestedBy is who asked for co-browse (cobrowse_requested).
	RequestedBy *Sender   `json:"requestedBy,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// SignalType is what an inbound signal says about the interaction's co-browse session.
type SignalType string

// The signal types the daemon acts on. Any other type is valid on the wire but ignored.
const (
	SignalSessionStarted SignalType = "session_started"
	SignalUserJoined     SignalType = "user_joined"
	SignalUserLeft       SignalType = "user_left"
	SignalSessionEnded   SignalType = "session_ended"
	SignalStop           SignalType = "stop" // an operator asks the daemon to stop the session
)

// Known reports whether t is one of the signal types the daemon acts on.
func (t SignalType) Known() bool {
	switch t {
	case SignalSessionStarted, SignalUserJoined, SignalUserLeft, SignalSessionEnded, SignalStop:
		return true
	}
	return false
}

// The sources of inbound signals: the fourth token of <prefix>.signal.<interactionId>.<source>.
const (
	SourceZoom     = "zoom"     // the daemon's Zoom webhook router
	SourceCustomer = "customer" // the customer page's backend
	SourceAgent    = "agent"    // the agent desktop's backend
	SourceOperator = "operator" // an operator (sessions.stop)
)

func knownSource(s string) bool {
	switch s {
	case SourceZoom, SourceCustomer, SourceAgent, SourceOperator:
		return true
	}
	return false
}

// Signal is an inbound report about an interaction's co-browse session from outside the chat:
// the vendor's webhooks after the daemon's router, the pages, an operator. Published on
// <prefix>.signal.<interactionId>.<source>, in the same stream as the interaction's chat and events.
type Signal struct {
	ID            string          `json:"id"`
	InteractionID string          `json:"interactionId"`
	Source        string          `json:"source"`
	Type          SignalType      `json:"type"`
	Role          Role            `json:"role,omitempty"`      // whose join or leave (customer, agent)
	SessionID     string          `json:"sessionId,omitempty"` // the vendor's session id, when known
	At            time.Time       `json:"at,omitzero"`
	Raw           json.RawMessage `json:"raw,omitempty"` // the vendor's payload, kept for the record
}

// SignalSubject is the subject a signal about the interaction from source is published on.
func SignalSubject(prefix, interactionID, source string) string {
	return orDefaultPrefix(prefix) + ".signal." + interactionID + "." + source
}

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "cc"

// ChatSubject is the subject a chat message of the interaction is published on. An empty prefix
// means DefaultPrefix.
func ChatSubject(prefix, interactionID string) string {
	return orDefaultPrefix(prefix) + ".chat." + interactionID + ".message"
}

// EventSubject is the subject an event of the interaction is published on. An empty prefix means
// DefaultPrefix.
func EventSubject(prefix, interactionID string) string {
	return orDefaultPrefix(prefix) + ".interaction." + interactionID + ".event"
}

func orDefaultPrefix(prefix string) string {
	if prefix == "" {
		return DefaultPrefix
	}
	return prefix
}

// startWhitespace is the whitespace StartCandidate allows around the start message: space, tab,
// line feed, carriage return and form feed. It is exactly RE2's \s ([\t\n\f\r ]), so the regexp
// `^\s*(\{start:[A-Za-z0-9]{1,64}\}|<start:[A-Za-z0-9]{1,64}>)\s*$` is an exact oracle. Vertical
// tab and Unicode spaces (NBSP, U+2028, ...) are not whitespace here.
const startWhitespace = " \t\n\r\f"

// MaxStartToken bounds the token of a start message. Every vendor's token fits (Genesys: 9
// digits; Zoom: a PIN of at most 10 characters); a longer one is not a start message.
const MaxStartToken = 64

// StartCandidate reports whether text has the form of a co-browse start message, {start:X} or
// <start:X> with X one to MaxStartToken ASCII letters and digits, optionally surrounded by
// startWhitespace and nothing else, and returns X as written. It knows no vendor: whether X is a
// token of the interaction's vendor (nine digits for Genesys, a PIN for Zoom) is the vendor's
// call (connector.Connector.MatchStart).
func StartCandidate(text string) (token string, ok bool) {
	s := strings.Trim(text, startWhitespace)
	const frame = len("{start:") + len("}")
	if len(s) <= frame || len(s) > frame+MaxStartToken {
		return "", false
	}
	var closer byte
	switch s[:7] {
	case "{start:":
		closer = '}'
	case "<start:":
		closer = '>'
	default:
		return "", false
	}
	if s[len(s)-1] != closer {
		return "", false
	}
	body := s[7 : len(s)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", false
		}
	}
	return body, true
}

// subjectKind tells which inbound subject pattern a subject matched.
type subjectKind int

const (
	subjectNone subjectKind = iota
	subjectChat
	subjectEvent
	subjectSignal
)

// parseSubject splits <prefix>.chat.<id>.message, <prefix>.interaction.<id>.event or
// <prefix>.signal.<id>.<source>; for a signal, source is the fourth token.
func parseSubject(prefix, subject string) (kind subjectKind, id, source string) {
	k, id := parseSubject3(prefix, subject)
	if k != subjectNone {
		return k, id, ""
	}
	rest, ok := strings.CutPrefix(subject, prefix+".signal.")
	if !ok {
		return subjectNone, "", ""
	}
	id, source, ok = strings.Cut(rest, ".")
	if !ok || id == "" || source == "" || strings.ContainsAny(id, "*> \t\r\n") || strings.ContainsAny(source, ".*> \t\r\n") {
		return subjectNone, "", ""
	}
	return subjectSignal, id, source
}

// parseSubject3 splits the three-token-tailed subjects: chat messages and interaction events.
func parseSubject3(prefix, subject string) (subjectKind, string) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return subjectNone, ""
	}
	kind, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return subjectNone, ""
	}
	id, last, ok := strings.Cut(rest, ".")
	if !ok || id == "" || strings.ContainsAny(id, "*> \t\r\n") {
		return subjectNone, ""
	}
	switch {
	case kind == "chat" && last == "message":
		return subjectChat, id
	case kind == "interaction" && last == "event":
		return subjectEvent, id
	}
	return subjectNone, ""
}

// malformedError is why an inbound message was rejected. Its text never holds message content:
// only field names, sizes and offsets, so it is safe to log.
type malformedError struct{ reason string }

func (e *malformedError) Error() string { return e.reason }

func malformed(format string, args ...any) error {
	return &malformedError{reason: fmt.Sprintf(format, args...)}
}

// object is a decoded JSON object: exact-case keys (encoding/json matches struct fields
// case-insensitively, which would accept "ID" or "Text") and unknown keys ignored. Duplicate keys
// never reach it: decodePayload refuses them first.
type object map[string]json.RawMessage

// decodePayload decodes a whole inbound payload as a JSON object, after refusing a payload with a
// duplicate key at any depth (checkDuplicateKeys): with encoding/json the last one would silently
// win, so `{"text":"hi","text":"{start:123456789}"}` would start a session that a reader of the
// first key never saw.
func decodePayload(data []byte, what string) (object, error) {
	if !utf8.Valid(data) {
		return nil, malformed("%s: not valid UTF-8", what)
	}
	// Invalid JSON is left to decodeObject, which says where it breaks.
	if json.Valid(data) {
		if err := checkDuplicateKeys(data, what); err != nil {
			return nil, err
		}
	}
	return decodeObject(data, what)
}

func decodeObject(data []byte, what string) (object, error) {
	if !utf8.Valid(data) {
		return nil, malformed("%s: not valid UTF-8", what)
	}
	var obj object
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, jsonReason(what, err)
	}
	if obj == nil { // the literal null
		return nil, malformed("%s: not a JSON object", what)
	}
	return obj, nil
}

// checkDuplicateKeys refuses data, which must be valid JSON (json.Valid), when one of its objects,
// at any depth and including values the decoder ignores, has the same key twice. Keys are compared
// as encoding/json decodes them (escapes resolved, so "text" and "\u0074ext" are the same key;
// invalid UTF-8 and lone surrogates become U+FFFD). The reason names the key and the path to its
// object (key names and array indexes, never a value).
func checkDuplicateKeys(data []byte, what string) error {
	key, path, ok := duplicateKey(data)
	if !ok {
		return nil
	}
	if path == "" {
		return malformed("%s: duplicate key %s", what, quoteKey(key))
	}
	return malformed("%s: duplicate key %s in %s", what, quoteKey(key), path)
}

// keyFrame is one open object or array of the duplicate-key scan.
type keyFrame struct {
	object    bool
	keys      [][]byte            // the object's keys so far, while there are few
	set       map[string]struct{} // all of them, once there are many
	last      []byte              // the object's latest key: the name of a child container
	index     int                 // the array's current element
	expectKey bool                // the object's next string is a key
}

// manyKeys is where a keyFrame switches from a linear search to a map.
const manyKeys = 16

// duplicateKey scans data, valid JSON, for the first key (in document order) that its object
// already has. It returns the key as it decodes and the path of its object ("" at the top level,
// else like from or meta[1].a). On input that is not valid JSON it never panics, and what it
// returns is unspecified.
func duplicateKey(data []byte) (key, path string, found bool) {
	var frames [8]keyFrame
	stack := frames[:0]
	var keys [manyKeys][]byte
	spare := keys[:0:manyKeys] // a popped frame's key slice, reused by the next push
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case '{', '[':
			stack = append(stack, keyFrame{object: c == '{', keys: spare[:0], expectKey: c == '{'})
			spare = nil
			i++
		case '}', ']':
			if n := len(stack); n > 0 {
				spare = stack[n-1].keys
				stack = stack[:n-1]
			}
			i++
		case ',':
			if n := len(stack); n > 0 {
				if top := &stack[n-1]; top.object {
					top.expectKey = true
				} else {
					top.index++
				}
			}
			i++
		case '"':
			end, escaped := stringEnd(data, i)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
				top := &stack[n-1]
				top.expectKey = false
				k := data[i+1 : max(end-1, i+1)]
				if escaped || !utf8.Valid(k) {
					var s string
					if json.Unmarshal(data[i:end], &s) == nil {
						k = []byte(s)
					}
				}
				if top.has(k) {
					return string(k), framePath(stack[:n-1]), true
				}
				top.add(k)
				top.last = k
			}
			i = end
		default: // whitespace, ':', numbers, true, false, null
			i++
		}
	}
	return "", "", false
}

// stringEnd returns the offset just past the JSON string starting at data[start] ('"'), and
// whether it holds an escape.
func stringEnd(data []byte, start int) (end int, escaped bool) {
	for i := start + 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return len(data), escaped
}

func (f *keyFrame) has(k []byte) bool {
	if f.set != nil {
		_, ok := f.set[string(k)]
		return ok
	}
	for _, seen := range f.keys {
		if bytes.Equal(seen, k) {
			return true
		}
	}
	return false
}

func (f *keyFrame) add(k []byte) {
	if f.set == nil && len(f.keys) < manyKeys {
		f.keys = append(f.keys, k)
		return
	}
	if f.set == nil {
		f.set = make(map[string]struct{}, 2*manyKeys)
		for _, seen := range f.keys {
			f.set[string(seen)] = struct{}{}
		}
	}
	f.set[string(k)] = struct{}{}
}

// framePath names, from the top level, the container opened inside the last of ancestors (each
// frame's open child is its latest key or its current element): keys joined by '.', array
// elements as [i].
func framePath(stack []keyFrame) string {
	var b strings.Builder
	for _, f := range stack {
		if f.object {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(shortKey(f.last))
		} else {
			fmt.Fprintf(&b, "[%d]", f.index)
		}
	}
	return b.String()
}

// maxKeyShown bounds a key (in runes) written into a rejection reason.
const maxKeyShown = 40

func shortKey(k []byte) string {
	s := string(k)
	if utf8.RuneCountInString(s) > maxKeyShown {
		s = string([]rune(s)[:maxKeyShown]) + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func quoteKey(k string) string { return strconv.Quote(shortKey([]byte(k))) }

// jsonReason describes a decoding error without quoting the input.
func jsonReason(what string, err error) error {
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return malformed("%s: invalid JSON at offset %d", what, e.Offset)
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return malformed("%s: not a JSON object", what)
	}
	return malformed("%s: invalid JSON", what)
}

// str returns the string at key; a missing key or null is absent, any other non-string is an error.
func (o object) str(key string) (string, bool, error) {
	raw, ok := o[key]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return "", false, nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false, malformed("field %s: not a string", key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, malformed("field %s: invalid string", key)
	}
	return s, true, nil
}

// required returns the non-empty string at key.
func (o object) required(key string) (string, error) {
	s, ok, err := o.str(key)
	if err != nil {
		return "", err
	}
	if !ok || s == "" {
		return "", malformed("field %s: missing", key)
	}
	return s, nil
}

// optional returns the string at key, or "" when absent.
func (o object) optional(key string) (string, error) {
	s, _, err := o.str(key)
	return s, err
}

// timestamp returns the RFC 3339 time at key in UTC, or the zero time when absent.
func (o object) timestamp(key string) (time.Time, error) {
	s, ok, err := o.str(key)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return o.parseTimestamp(key, s)
}

// parseTimestamp reads s, the value of field key, as an RFC 3339 time in UTC.
func (object) parseTimestamp(key, s string) (time.Time, error) {
	// time.Parse takes a one-digit hour ("T0:00:00") that RFC 3339 does not: check the form first.
	if !rfc3339Form(s) {
		return time.Time{}, malformed("field %s: not an RFC 3339 timestamp", key)
	}
	t, ok := utcTimestamp(s)
	if !ok {
		var err error
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, malformed("field %s: not an RFC 3339 timestamp", key)
		}
	}
	// An offset can carry a time past either end of the 4-digit years ("0000-01-01T00:00:00+01:00"
	// is in year -1 in UTC), where time.Time.MarshalJSON refuses to write it back.
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, malformed("field %s: out of range (UTC year 1 to 9999)", key)
	}
	return t, nil
}

// rfc3339Form reports whether s has the form of an RFC 3339 date-time (section 5.6), two-digit
// fields throughout: ^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$
// (checked by hand: a regexp here was a visible share of decoding every chat line).
func rfc3339Form(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return false
	}
	for i := range len(head) {
		c := s[i]
		switch head[i] {
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case 'T':
			if c != 'T' && c != 't' {
				return false
			}
		default:
			if c != head[i] {
				return false
			}
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z" || rest == "z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		for _, i := range [...]int{1, 2, 4, 5} {
			if rest[i] < '0' || rest[i] > '9' {
				return false
			}
		}
		return true
	}
	return false
}

// checkToken refuses a value of field key that cannot be one NATS subject token, the rule the
// daemon's publishers apply to the ids they put in subjects (attach.checkToken): non-empty, valid
// UTF-8, and no token separator ('.'), wildcard ('*', '>'), whitespace of any kind (Unicode
// spaces, form feed and vertical tab included) or control character. The reason names the field
// and the offending kind of character with its byte offset, never the value.
func checkToken(key, v string) error {
	if v == "" {
		return malformed("field %s: empty", key)
	}
	if !utf8.ValidString(v) {
		return malformed("field %s: not a NATS subject token (not valid UTF-8)", key)
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
		return malformed("field %s: not a NATS subject token (%s at byte offset %d)", key, what, i)
	}
	return nil
}

// optionalToken returns the string at key, or "" when absent (missing or null); when present it
// must satisfy checkToken.
func (o object) optionalToken(key string) (string, error) {
	s, ok, err := o.str(key)
	if err != nil || !ok {
		return "", err
	}
	if err := checkToken(key, s); err != nil {
		return "", err
	}
	return s, nil
}

// interactionID returns the required interactionId, checks it is a NATS subject token and checks
// it against the subject's token.
func (o object) interactionID(token string) (string, error) {
	id, err := o.required("interactionId")
	if err != nil {
		return "", err
	}
	if err := checkToken("interactionId", id); err != nil {
		return "", err
	}
	if id != token {
		return "", malformed("field interactionId: differs from the subject's token (%d bytes vs %d)", len(id), len(token))
	}
	return id, nil
}

// decodeChat decodes and validates a chat message published on the subject whose interaction
// token is token. Required: id, interactionId (a NATS subject token, see checkToken, equal to
// token), text (present, may be empty), from.role (one of the four roles). Optional: from.id,
// from.name, sentAt (RFC 3339, in UTC years 1 to 9999). A duplicate key anywhere is malformed.
func decodeChat(token string, data []byte) (*Message, error) {
	obj, err := decodePayload(data, "chat message")
	if err != nil {
		return nil, err
	}
	var m Message
	if m.ID, err = obj.required("id"); err != nil {
		return nil, err
	}
	if m.InteractionID, err = obj.interactionID(token); err != nil {
		return nil, err
	}
	text, ok, err := obj.str("text")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, malformed("field text: missing")
	}
	m.Text = text
	if m.From, err = decodeSender(obj["from"], "from"); err != nil {
		return nil, err
	}
	if m.SentAt, err = obj.timestamp("sentAt"); err != nil {
		return nil, err
	}
	return &m, nil
}

func decodeSender(raw json.RawMessage, field string) (Sender, error) {
	if raw == nil || bytes.Equal(raw, []byte("null")) {
		return Sender{}, malformed("field %s: missing", field)
	}
	if raw[0] != '{' {
		return Sender{}, malformed("field %s: not a JSON object", field)
	}
	obj, err := decodeObject(raw, "field "+field)
	if err != nil {
		return Sender{}, err
	}
	var s Sender
	role, ok, err := obj.str("role")
	if err != nil {
		return Sender{}, malformed("field %s.role: not a string", field)
	}
	if !ok {
		return Sender{}, malformed("field %s.role: missing", field)
	}
	if s.Role = Role(role); !s.Role.Valid() {
		return Sender{}, malformed("field %s.role: not one of customer, agent, bot, system", field)
	}
	if s.ID, err = obj.optional("id"); err != nil {
		return Sender{}, malformed("field %s.id: not a string", field)
	}
	if s.Name, err = obj.optional("name"); err != nil {
		return Sender{}, malformed("field %s.name: not a string", field)
	}
	return s, nil
}

// decodeEvent decodes and validates an interaction event published on the subject whose
// interaction token is token. Required: id, interactionId (a NATS subject token, see checkToken,
// equal to token), type (any non-empty string: an unknown type is valid here, and the consumer
// acks and ignores it). Optional: agentId and toAgentId (each, when present and not null, a NATS
// subject token: the daemon publishes on <prefix>.agent.<agentId>.cobrowse), at (RFC 3339, in UTC
// years 1 to 9999). A duplicate key anywhere is malformed.
func decodeEvent(token string, data []byte) (*Event, error) {
	obj, err := decodePayload(data, "event")
	if err != nil {
		return nil, err
	}
	var e Event
	if e.ID, err = obj.required("id"); err != nil {
		return nil, err
	}
	if e.InteractionID, err = obj.interactionID(token); err != nil {
		return nil, err
	}
	typ, err := obj.required("type")
	if err != nil {
		return nil, err
	}
	e.Type = EventType(typ)
	if e.AgentID, err = obj.optionalToken("agentId"); err != nil {
		return nil, err
	}
	if e.ToAgentID, err = obj.optionalToken("toAgentId"); err != nil {
		return nil, err
	}
	if e.Vendor, err = obj.optionalToken("cobrowseVendor"); err != nil {
		return nil, err
	}
	if raw, ok := obj["requestedBy"]; ok && !bytes.Equal(raw, []byte("null")) {
		who, err := decodeSender(raw, "requestedBy")
		if err != nil {
			return nil, err
		}
		e.RequestedBy = &who
	}
	if e.At, err = obj.timestamp("at"); err != nil {
		return nil, err
	}
	return &e, nil
}

// decodeSignal decodes and validates a signal published on <prefix>.signal.<token>.<source>.
// Required: id, interactionId (equal to token), source (equal to the subject's), type (any
// non-empty string: an unknown type is acked and ignored). Optional: role (customer or agent),
// sessionId (a string), at (RFC 3339), raw (any JSON value, kept as it is).
func decodeSignal(token, source string, data []byte) (*Signal, error) {
	if !knownSource(source) {
		return nil, malformed("signal: subject source is not one of zoom, customer, agent, operator")
	}
	obj, err := decodePayload(data, "signal")
	if err != nil {
		return nil, err
	}
	var g Signal
	if g.ID, err = obj.required("id"); err != nil {
		return nil, err
	}
	if g.InteractionID, err = obj.interactionID(token); err != nil {
		return nil, err
	}
	if g.Source, err = obj.required("source"); err != nil {
		return nil, err
	}
	if g.Source != source {
		return nil, malformed("field source: differs from the subject's")
	}
	typ, err := obj.required("type")
	if err != nil {
		return nil, err
	}
	g.Type = SignalType(typ)
	role, err := obj.optional("role")
	if err != nil {
		return nil, err
	}
	if g.Role = Role(role); role != "" && g.Role != RoleCustomer && g.Role != RoleAgent {
		return nil, malformed("field role: not one of customer, agent")
	}
	if g.SessionID, err = obj.optional("sessionId"); err != nil {
		return nil, err
	}
	if g.At, err = obj.timestamp("at"); err != nil {
		return nil, err
	}
	if raw, ok := obj["raw"]; ok && !bytes.Equal(raw, []byte("null")) {
		g.Raw = bytes.Clone(raw)
	}
	return &g, nil
}

// utcTimestamp reads s, of rfc3339Form, when it is in UTC ("T", "Z") with at most nine fraction digits
// and every field in range: the form every chat line's sentAt has, read without time.Parse (a
// visible share of decoding a chat line). ok is false for anything else, which time.Parse then
// reads or refuses; FuzzParseTimestamp checks that both agree.
func utcTimestamp(s string) (time.Time, bool) {
	n := len(s)
	if s[n-1] != 'Z' || s[10] != 'T' { // lower case: time.Parse refuses it, and decides
		return time.Time{}, false
	}
	num := func(i, w int) int {
		v := 0
		for _, c := range []byte(s[i : i+w]) {
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : n-1]; frac != "" { // rfc3339Form: "." and one digit or more
		digits := frac[1:]
		if len(digits) > 9 {
			return time.Time{}, false
		}
		nsec = num(20, len(digits))
		for range 9 - len(digits) {
			nsec *= 10
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// daysIn is the number of days of month in year (proleptic Gregorian, as package time).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
