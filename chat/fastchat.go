package chat

import (
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// fastChat decodes a chat message of the usual shape in one pass over data, without reflection,
// maps or a second scan: a JSON object whose known fields are plain strings (from an object of
// strings), with no key twice at any depth. It only ever accepts: anything
// else, and anything decodeChat would refuse, returns ok false, and decodeChat (the reference)
// decides and words the reason. So for every input it accepts, decodeChat returns the same
// Message (FuzzFastChat checks that).
//
// Why: every inbound chat line is decoded on the consumer's single dispatch goroutine, and the
// reference decoder (json.Valid, a duplicate-key scan, json.Unmarshal into a map, then each
// field again) was the largest share of the daemon's CPU per message.
func fastChat(token string, data []byte) (*Message, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	s := newScanner(data)
	var m Message
	var have struct{ id, interaction, text, from, sentAt bool }
	var sentAt string
	sameID := false // interactionId is the subject's
	ok := s.fields(func(key []byte) bool {
		switch string(key) { // compared, not kept: no copy
		case "id":
			have.id = true
			return s.strInto(&m.ID)
		case "interactionId":
			have.interaction = true
			b, ok := s.strBytes()
			sameID = ok && string(b) == token // compared, not kept: no copy
			return ok
		case "text":
			have.text = true
			return s.strInto(&m.Text)
		case "sentAt":
			have.sentAt = true
			return s.strInto(&sentAt)
		case "from":
			have.from = true
			return s.sender(&m.From)
		}
		return s.value(1)
	})
	if !ok {
		return nil, false
	}
	if !s.end() || !have.id || !have.interaction || !have.text || !have.from || m.ID == "" ||
		!sameID || checkToken("interactionId", token) != nil || !m.From.Role.Valid() {
		return nil, false
	}
	m.InteractionID = token
	if have.sentAt {
		t, err := object{}.parseTimestamp("sentAt", sentAt)
		if err != nil {
			return nil, false
		}
		m.SentAt = t
	}
	return &m, true
}

// scanner reads JSON from data; every method reports false on anything it does not take.
type scanner struct {
	data []byte
	src  string // data as a string, copied once: a value without escapes is a substring of it ("": each value is copied)
	i    int
}

// newScanner scans data. Every string value it returns without escapes is a substring of data
// itself, read as a string without a copy (unsafe.String): no allocation per field, and none per
// message. That holds because data is never written after it arrives: nats.go gives each message
// a payload of its own, and nothing in this package writes one (a handler must not either:
// Delivery has no way to). A value kept from it keeps the whole message's bytes alive, a few
// hundred bytes: what outlives the message's handling (a start token, kept in the state for the
// session's life) is copied. A scanner without src (scanner{data: data}) copies each value:
// fastEvent's, whose ids the state keeps, for messages far rarer than chat lines.
//
// Why: the copy of each payload (one allocation and a memmove per chat line) was 4.5 % of the
// daemon's CPU in an ingestion drain, and a tenth of the bytes it allocated.
func newScanner(data []byte) scanner {
	return scanner{data: data, src: unsafe.String(unsafe.SliceData(data), len(data))}
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// nextKey reads the next key of an object and its colon; more false at the object's end.
func (s *scanner) nextKey(first bool) (key []byte, more, ok bool) {
	if s.byte('}') {
		return nil, false, true
	}
	if !first && !s.byte(',') {
		return nil, false, false
	}
	s.ws()
	k, ok := s.plainKey()
	if !ok || !s.byte(':') {
		return nil, false, false
	}
	return k, true, true
}

// fields reads an object (after whitespace): for each key, take reads its value with the
// scanner (strInto, value, ...) and says whether it took it. A key seen twice, or a value take
// does not take, fails it.
func (s *scanner) fields(take func(key []byte) bool) bool {
	s.ws()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return false
	}
	return s.object(take)
}

// object reads the object starting at s.i ('{') as fields does.
func (s *scanner) object(take func(key []byte) bool) bool {
	s.i++
	var seen keySet
	for first := true; ; first = false {
		key, more, ok := s.nextKey(first)
		if !ok {
			return false
		}
		if !more {
			return true
		}
		if !seen.add(key) || !take(key) {
			return false
		}
	}
}

// strInto reads a string value into *dst.
func (s *scanner) strInto(dst *string) bool {
	v, ok := s.str()
	if ok {
		*dst = v
	}
	return ok
}

// keySet holds the keys of one object, to refuse a duplicate (few keys: a linear search).
type keySet struct {
	keys [16][]byte
	n    int
}

// add records k; false when k is there already, or when the object has too many keys for the set.
func (ks *keySet) add(k []byte) bool {
	if ks.n == len(ks.keys) {
		return false
	}
	for _, seen := range ks.keys[:ks.n] {
		if string(seen) == string(k) {
			return false
		}
	}
	ks.keys[ks.n] = k
	ks.n++
	return true
}

// plainKey reads a string without escapes, or leaves s.i alone: a key (a key with an escape goes
// to the reference decoder), or a value's bytes (strBytes).
func (s *scanner) plainKey() ([]byte, bool) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.data); j++ {
		switch c := s.data[j]; {
		case c == '"':
			s.i = j + 1
			return s.data[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// str reads a string value, resolving escapes as encoding/json does (a lone surrogate becomes
// U+FFFD).
func (s *scanner) str() (string, bool) {
	s.ws()
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	j := start
	for ; j < len(s.data); j++ {
		c := s.data[j]
		if c == '"' {
			s.i = j + 1
			if s.src == "" {
				return string(s.data[start:j]), true
			}
			return s.src[start:j], true
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", false
		}
	}
	// An escape: build the value from here.
	buf := make([]byte, 0, len(s.data)-start)
	buf = append(buf, s.data[start:j]...)
	for j < len(s.data) {
		c := s.data[j]
		switch {
		case c == '"':
			s.i = j + 1
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			buf = append(buf, c)
			j++
			continue
		}
		if j+1 >= len(s.data) {
			return "", false
		}
		switch e := s.data[j+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(s.data, j+2)
			if !ok {
				return "", false
			}
			j += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s.data, j+2); ok && j+1 < len(s.data) && s.data[j] == '\\' && s.data[j+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						j += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
			continue
		default:
			return "", false
		}
		j += 2
	}
	return "", false
}

// hex4 reads the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// value skips any JSON value. An object's keys are checked for duplicates, as the reference does
// at every depth; keys with escapes, more than 16 keys in one object or nesting deeper than 16 are
// left to the reference.
func (s *scanner) value(depth int) bool {
	s.ws()
	if s.i >= len(s.data) || depth > 16 {
		return false
	}
	switch c := s.data[s.i]; {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case c == '{':
		return s.object(func([]byte) bool { return s.value(depth + 1) })
	case c == '[':
		s.i++
		if s.byte(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if s.byte(']') {
				return true
			}
			if !s.byte(',') {
				return false
			}
		}
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.data)-s.i >= len(lit) && string(s.data[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return true
		}
	}
	return false
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	d := s.data
	i := s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		return false
	}
	digits := func() bool {
		start := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
}

// sender reads the from object: role, id and name strings, other keys scalars, no key twice.
func (s *scanner) sender(out *Sender) bool {
	var role string
	hasRole := false
	ok := s.fields(func(key []byte) bool {
		switch string(key) {
		case "role":
			hasRole = true
			b, ok := s.strBytes()
			role = knownRole(b)
			return ok
		case "id":
			return s.strInto(&out.ID)
		case "name":
			return s.strInto(&out.Name)
		}
		return s.value(1)
	})
	out.Role = Role(role)
	return ok && hasRole
}

// knownRole is b as a string, without a copy for the roles of the contract.
func knownRole(b []byte) string {
	switch Role(b) { // compared, not converted
	case RoleCustomer:
		return string(RoleCustomer)
	case RoleAgent:
		return string(RoleAgent)
	case RoleBot:
		return string(RoleBot)
	case RoleSystem:
		return string(RoleSystem)
	}
	return string(b)
}

// strBytes reads a string value like str, but returns its bytes: those of data, without a copy,
// when the string has no escapes.
func (s *scanner) strBytes() ([]byte, bool) {
	s.ws()
	if b, ok := s.plainKey(); ok {
		return b, true
	}
	v, ok := s.str() // escapes, or not a string str takes: str decides
	return []byte(v), ok
}

// end reports whether only whitespace follows.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.data)
}

// fastEvent is fastChat for an interaction event: id, interactionId and type plain strings,
// agentId, toAgentId, cobrowseVendor and at plain strings when present, anything else scalars or
// values without a duplicate key; requestedBy (an object to check as a sender) and anything
// unusual go to decodeEvent, which decides and words every refusal. FuzzFastEvent checks that it
// only accepts what decodeEvent accepts, with the same result.
func fastEvent(token string, data []byte) (*Event, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	s := scanner{data: data} // a copy per value: an event's ids are kept in the state
	var e Event
	var have struct{ id, interaction, typ, at, agent, toAgent, vendor bool }
	var typ, at string
	ok := s.fields(func(key []byte) bool {
		switch string(key) {
		case "id":
			have.id = true
			return s.strInto(&e.ID)
		case "interactionId":
			have.interaction = true
			return s.strInto(&e.InteractionID)
		case "type":
			have.typ = true
			return s.strInto(&typ)
		case "agentId":
			have.agent = true
			return s.strInto(&e.AgentID)
		case "toAgentId":
			have.toAgent = true
			return s.strInto(&e.ToAgentID)
		case "cobrowseVendor":
			have.vendor = true
			return s.strInto(&e.Vendor)
		case "at":
			have.at = true
			return s.strInto(&at)
		case "requestedBy": // a sender to check: left to the reference
			return false
		}
		return s.value(1)
	})
	if !ok {
		return nil, false
	}
	if !s.end() || !have.id || !have.interaction || !have.typ || e.ID == "" || typ == "" ||
		e.InteractionID != token || checkToken("interactionId", e.InteractionID) != nil {
		return nil, false
	}
	e.InteractionID = token
	for _, f := range [...]struct {
		key, v  string
		present bool
	}{{"agentId", e.AgentID, have.agent}, {"toAgentId", e.ToAgentID, have.toAgent}, {"cobrowseVendor", e.Vendor, have.vendor}} {
		if f.present && checkToken(f.key, f.v) != nil { // present: a token, never empty
			return nil, false
		}
	}
	e.Type = EventType(typ)
	if have.at {
		t, err := object{}.parseTimestamp("at", at)
		if err != nil {
			return nil, false
		}
		e.At = t
	}
	return &e, true
}
