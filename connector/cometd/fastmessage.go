package cometd

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// fastMessages decodes a Bayeux body of the usual shape in one pass, without reflection: an array
// of messages (or one message) whose keys are the common ones, each once, with plain strings (no
// escapes), successful as true or false, advice of reconnect and whole-millisecond durations, and
// data and ext as any JSON value but null. It only ever accepts: anything else returns ok false,
// and decodeMessages (encoding/json, the reference) decides and words the error. For every body it
// accepts, decodeMessages returns the same messages (FuzzFastMessages checks that).
//
// Why: every reply and delivery of every session goes through here, on the session's own
// goroutine; a held /meta/connect's renewal is most of what a waiting session does, and
// encoding/json's reflection and its allocations were the largest share of that (docs/
// scaling.md).
func fastMessages(body []byte) ([]Message, bool) {
	if !utf8.Valid(body) {
		return nil, false
	}
	s := bscan{data: body}
	s.ws()
	if s.i >= len(s.data) {
		return nil, false
	}
	var msgs []Message
	switch s.data[s.i] {
	case '{':
		msgs = make([]Message, 1)
		if !s.message(&msgs[0]) {
			return nil, false
		}
	case '[':
		s.i++
		n := bytes.Count(body, []byte(`"channel"`)) // a capacity hint, never a count
		msgs = make([]Message, 0, max(n, 1))
		for first := true; ; first = false {
			s.ws()
			if s.i < len(s.data) && s.data[s.i] == ']' {
				if first {
					return nil, false // [] : the reference's own empty slice
				}
				s.i++
				break
			}
			if !first && !s.lit(",") {
				return nil, false
			}
			s.ws()
			var m Message
			if s.i >= len(s.data) || s.data[s.i] != '{' || !s.message(&m) {
				return nil, false
			}
			msgs = append(msgs, m)
		}
	default:
		return nil, false
	}
	s.ws()
	if s.i != len(s.data) {
		return nil, false
	}
	for i := range msgs {
		if msgs[i].Channel == "" {
			return nil, false
		}
	}
	return msgs, true
}

// bscan reads JSON from data; every method reports false on anything it does not take.
type bscan struct {
	data []byte
	i    int
}

func (s *bscan) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit takes the literal t (after whitespace).
func (s *bscan) lit(t string) bool {
	s.ws()
	if len(s.data)-s.i >= len(t) && string(s.data[s.i:s.i+len(t)]) == t {
		s.i += len(t)
		return true
	}
	return false
}

// plain reads a string without escapes or control characters (after whitespace).
func (s *bscan) plain() ([]byte, bool) {
	s.ws()
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

func (s *bscan) str(dst *string) bool {
	b, ok := s.plain()
	if ok {
		*dst = common(b)
	}
	return ok
}

// common is b as a string, without a copy for the values every renewal carries.
func common(b []byte) string {
	switch string(b) { // compared, not converted
	case "/meta/connect":
		return "/meta/connect"
	case ReconnectRetry:
		return ReconnectRetry
	case ReconnectHandshake:
		return ReconnectHandshake
	case ReconnectNone:
		return ReconnectNone
	}
	return string(b)
}

// object reads an object at s.i ('{'): take reads each key's value; a key twice fails it. The keys
// are data's own bytes, not copies (take switches on string(key), which copies nothing).
func (s *bscan) object(take func(key []byte) bool) bool {
	s.i++
	var seen [16][]byte
	n := 0
	for first := true; ; first = false {
		if s.lit("}") {
			return true
		}
		if !first && !s.lit(",") {
			return false
		}
		k, ok := s.plain()
		if !ok || !s.lit(":") || n == len(seen) {
			return false
		}
		for _, p := range seen[:n] {
			if bytes.Equal(p, k) {
				return false
			}
		}
		seen[n] = k
		n++
		if !take(k) {
			return false
		}
	}
}

func (s *bscan) message(m *Message) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "channel":
			return s.str(&m.Channel)
		case "id":
			return s.str(&m.ID)
		case "clientId":
			return s.str(&m.ClientID)
		case "error":
			return s.str(&m.Error)
		case "subscription":
			return s.str(&m.Subscription)
		case "version":
			return s.str(&m.Version)
		case "connectionType":
			return s.str(&m.ConnectionType)
		case "successful":
			var ok bool
			switch {
			case s.lit("true"):
				ok = true
			case s.lit("false"):
			default:
				return false
			}
			m.Successful = &ok
			return true
		case "data":
			return s.raw(&m.Data)
		case "ext":
			return s.raw(&m.Ext)
		case "advice":
			s.ws()
			if s.i >= len(s.data) || s.data[s.i] != '{' {
				return false
			}
			a := &Advice{}
			m.Advice = a
			return s.object(func(key []byte) bool {
				switch string(key) {
				case "reconnect":
					return s.str(&a.Reconnect)
				case "interval":
					return s.millis(&a.Interval)
				case "timeout":
					return s.millis(&a.Timeout)
				case "maxInterval":
					return s.millis(&a.MaxInterval)
				}
				return false
			})
		}
		return false
	})
}

// millis reads a whole number of milliseconds: 0, or up to 18 digits not starting with 0, with
// an optional minus (no fraction, no exponent: those are the reference's).
func (s *bscan) millis(dst **int64) bool {
	s.ws()
	j := s.i
	neg := j < len(s.data) && s.data[j] == '-'
	if neg {
		j++
	}
	start := j
	var v int64
	for j < len(s.data) && '0' <= s.data[j] && s.data[j] <= '9' && j-start < 18 {
		v = v*10 + int64(s.data[j]-'0')
		j++
	}
	switch {
	case j == start, j-start > 1 && s.data[start] == '0':
		return false
	case j < len(s.data) && (s.data[j] == '.' || s.data[j] == 'e' || s.data[j] == 'E' || '0' <= s.data[j] && s.data[j] <= '9'):
		return false
	}
	if neg {
		v = -v
	}
	s.i = j
	*dst = &v
	return true
}

// raw takes any JSON value but null, as the reference's json.RawMessage holds it: its own bytes,
// copied.
func (s *bscan) raw(dst *json.RawMessage) bool {
	s.ws()
	start := s.i
	if !s.skip(0) {
		return false
	}
	v := s.data[start:s.i]
	if string(v) == "null" || !json.Valid(v) {
		return false
	}
	*dst = append(json.RawMessage(nil), v...)
	return true
}

// skip moves past one JSON value's bytes (strings with their escapes, nesting up to 32 deep);
// json.Valid then checks them.
func (s *bscan) skip(depth int) bool {
	if s.i >= len(s.data) || depth > 32 {
		return false
	}
	switch c := s.data[s.i]; c {
	case '"':
		for j := s.i + 1; j < len(s.data); j++ {
			switch s.data[j] {
			case '\\':
				j++
			case '"':
				s.i = j + 1
				return true
			}
		}
		return false
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.i++
		for {
			s.ws()
			if s.i >= len(s.data) {
				return false
			}
			switch s.data[s.i] {
			case closer:
				s.i++
				return true
			case ',', ':':
				s.i++
				continue
			}
			if !s.skip(depth + 1) {
				return false
			}
		}
	case '}', ']', ',', ':':
		return false
	default: // a number or a literal: up to the next delimiter
		j := s.i
		for j < len(s.data) {
			switch s.data[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r', ':', '"', '{', '[':
				if j == s.i {
					return false
				}
				s.i = j
				return true
			}
			j++
		}
		s.i = j
		return j > 0
	}
}
