package zoom

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The tolerant JSON types of the decoders. Zoom documents some fields only by name, and its
// undocumented payloads are inferred, so a value of an unexpected JSON type is read when its
// meaning is clear (an id as a number, a time as epoch milliseconds) and otherwise left empty: a
// decoder fails only when the JSON itself is broken.

// flexString is a string, or a number kept as written, or empty for anything else.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		*s = flexString(b)
	default:
		*s = ""
	}
	return nil
}

// flexTime is an RFC 3339 date-time string (Zoom's "date-time" fields), or epoch seconds or
// milliseconds as a number or a numeric string; anything else is the zero time.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	t.Time = parseTime(string(s))
	return nil
}

// parseTime reads what flexTime accepts. A number above 1e11 is milliseconds (1e11 seconds is the
// year 5138; 1e11 milliseconds is 1973), else seconds.
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		switch {
		case n <= 0:
			return time.Time{}
		case n > 1e11:
			if n > 253402300799999 { // after 9999-12-31
				return time.Time{}
			}
			return time.UnixMilli(n).UTC()
		default:
			return time.Unix(n, 0).UTC()
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

// flexRole is role_type: "customer" or "agent" (REST and webhooks), or 1 or 2 (the JWT's numbers),
// as a number or a string, any case; anything else is RoleUnknown.
type flexRole RoleType

func (r *flexRole) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*r = flexRole(parseRole(string(s)))
	return nil
}

func parseRole(s string) RoleType {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "customer", "1":
		return RoleCustomer
	case "agent", "2":
		return RoleAgent
	}
	return RoleUnknown
}

// flexDuration is a duration: "HH:MM:SS" (the form a Zoom reporting API uses), or whole seconds as
// a number or a numeric string; anything else is zero.
type flexDuration time.Duration

func (d *flexDuration) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*d = flexDuration(parseDuration(string(s)))
	return nil
}

func parseDuration(s string) time.Duration {
	s = strings.TrimSpace(s)
	if n, ok := parseSeconds(s); ok && n < 1<<32 {
		return time.Duration(n) * time.Second
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0
	}
	var total int64
	for i, p := range parts {
		n, ok := parseSeconds(p)
		if !ok || n >= 1<<32 || i > 0 && n >= 60 {
			return 0
		}
		total = total*60 + n
	}
	return time.Duration(total) * time.Second
}
