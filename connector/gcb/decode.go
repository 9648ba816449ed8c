package gcb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The Genesys docs mix types freely (userId is a number in the join reply and a string in users[]
// and in the joined notification; times are numbers in the samples). The decoders below accept
// both forms so that a server that differs from the samples still works.

// flexString is a JSON string or number, kept as its text.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexString(n.String())
	default:
		return fmt.Errorf("gcb: want a string or a number, got %s", b)
	}
	return nil
}

// flexInt is a JSON number or a numeric string.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	if s == "" {
		*f = 0
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(s)))
	if err != nil {
		return fmt.Errorf("gcb: want an integer, got %s", b)
	}
	*f = flexInt(n)
	return nil
}

// flexTime is a UTC epoch-milliseconds time given as a JSON number (possibly with a fraction or
// an exponent) or a numeric string; an RFC 3339 string is accepted too. Null, "", 0 and an absent
// field all mean "not given" (the zero time).
type flexTime time.Time

func (f *flexTime) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	t, err := parseEpochMillis(string(s))
	if err != nil {
		return err
	}
	*f = flexTime(t)
	return nil
}

func (f flexTime) Time() time.Time { return time.Time(f) }

func parseEpochMillis(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n == 0 {
			return time.Time{}, nil
		}
		return time.UnixMilli(n).UTC(), nil
	}
	if x, err := strconv.ParseFloat(s, 64); err == nil {
		if x == 0 {
			return time.Time{}, nil
		}
		return time.UnixMilli(int64(x)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("gcb: not an epoch-milliseconds time: %q", s)
}

// joinReply is the data of a /service/session/join reply.
type joinReply struct {
	UserToken        string     `json:"userToken"`
	UserID           flexString `json:"userId"`
	Users            []userJSON `json:"users"`
	SessionHistoryID string     `json:"sessionHistoryId"`
	Error            string     `json:"error"` // not documented; honoured if a server puts one in data
}

// userJSON is one user in a join reply, and the data of /service/session/joined.
type userJSON struct {
	UserID flexString `json:"userId"`
	Role   flexInt    `json:"role"`
	Name   string     `json:"name"`
}

func (u userJSON) participant() connector.Participant {
	return connector.Participant{ID: string(u.UserID), Role: connector.Role(u.Role), Name: u.Name}
}

// timesJSON is the data of /service/session/activated and /deactivated, and the REST stop's body.
type timesJSON struct {
	ActivationTime   flexTime `json:"activationTime"`
	DeactivationTime flexTime `json:"deactivationTime"`
	Error            string   `json:"error"`
}

func (t timesJSON) times() connector.Times {
	return connector.Times{Activation: t.ActivationTime.Time(), Deactivation: t.DeactivationTime.Time()}
}

// decodeTimes decodes an optional times object; an empty body or "{}" gives zero times.
func decodeTimes(b []byte) (connector.Times, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return connector.Times{}, nil
	}
	var t timesJSON
	if err := json.Unmarshal(b, &t); err != nil {
		return connector.Times{}, err
	}
	return t.times(), nil
}

func participants(users []userJSON) []connector.Participant {
	out := make([]connector.Participant, 0, len(users))
	for _, u := range users {
		out = append(out, u.participant())
	}
	return out
}

// getSessionReply is the body of Get Session.
type getSessionReply struct {
	SessionToken      flexString `json:"sessionToken"`
	SessionServerName string     `json:"sessionServerName"`
	SessionServerURL  string     `json:"sessionServerUrl"`
}
