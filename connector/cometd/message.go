package cometd

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// Message is one Bayeux message.
type Message struct {
	Channel                  string          `json:"channel"`
	ID                       string          `json:"id,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
	Successful               *bool           `json:"successful,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Advice                   *Advice         `json:"advice,omitempty"`
	Ext                      json.RawMessage `json:"ext,omitempty"`
	Subscription             string          `json:"subscription,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	ConnectionType           string          `json:"connectionType,omitempty"`
}

// IsReply reports whether m answers a request: replies carry `successful`, deliveries do not.
// Replies and deliveries must be told apart by this field, never by `id` alone (faye puts the
// publisher's id on pushed messages).
func (m *Message) IsReply() bool { return m.Successful != nil }

// OK reports whether m is a reply with successful:true.
func (m *Message) OK() bool { return m.Successful != nil && *m.Successful }

// UnmarshalJSON decodes a message leniently: `subscription` may be a string or an array of
// strings (cometd-nodejs-server echoes whatever the request carried; several names are joined
// with ","), and unknown fields are ignored.
func (m *Message) UnmarshalJSON(b []byte) error {
	type plain Message
	var w struct {
		plain
		Subscription json.RawMessage `json:"subscription"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message(w.plain)
	m.Subscription = ""
	sub := bytes.TrimSpace(w.Subscription)
	switch {
	case len(sub) == 0 || string(sub) == "null":
	case sub[0] == '"':
		if err := json.Unmarshal(sub, &m.Subscription); err != nil {
			return err
		}
	case sub[0] == '[':
		var names []string
		if err := json.Unmarshal(sub, &names); err != nil {
			return err
		}
		m.Subscription = strings.Join(names, ",")
	default:
		return errors.New("cometd: subscription is neither a string nor an array")
	}
	return nil
}

// Advice is the server's advice on how to reconnect.
type Advice struct {
	Reconnect       string   `json:"reconnect,omitempty"` // "retry", "handshake", "none"
	Interval        *int64   `json:"interval,omitempty"`  // ms
	Timeout         *int64   `json:"timeout,omitempty"`   // ms
	MaxInterval     *int64   `json:"maxInterval,omitempty"`
	MultipleClients bool     `json:"multiple-clients,omitempty"`
	Hosts           []string `json:"hosts,omitempty"`
}

// Reconnect advice values.
const (
	ReconnectRetry     = "retry"
	ReconnectHandshake = "handshake"
	ReconnectNone      = "none"
)

// UnmarshalJSON decodes advice leniently: the durations may be written as JSON floats
// (30000.0), which are truncated to whole milliseconds.
func (a *Advice) UnmarshalJSON(b []byte) error {
	var w struct {
		Reconnect       string      `json:"reconnect"`
		Interval        json.Number `json:"interval"`
		Timeout         json.Number `json:"timeout"`
		MaxInterval     json.Number `json:"maxInterval"`
		MultipleClients bool        `json:"multiple-clients"`
		Hosts           []string    `json:"hosts"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*a = Advice{Reconnect: w.Reconnect, MultipleClients: w.MultipleClients, Hosts: w.Hosts}
	var err error
	if a.Interval, err = millis(w.Interval); err != nil {
		return err
	}
	if a.Timeout, err = millis(w.Timeout); err != nil {
		return err
	}
	a.MaxInterval, err = millis(w.MaxInterval)
	return err
}

func millis(n json.Number) (*int64, error) {
	if n == "" {
		return nil, nil
	}
	if v, err := n.Int64(); err == nil {
		return &v, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, err
	}
	const limit = 1 << 62
	if f > limit || f < -limit || f != f {
		return nil, errors.New("cometd: advice duration out of range")
	}
	v := int64(f)
	return &v, nil
}

// Error is a Bayeux failure reply (successful:false), parsed from "code:args:message".
type Error struct {
	Channel string
	Code    int
	Args    []string
	Message string
	Raw     string
}

func (e *Error) Error() string {
	if e.Raw == "" {
		return "cometd: " + e.Channel + ": request failed"
	}
	return "cometd: " + e.Channel + ": " + e.Raw
}

// SessionUnknown reports whether the server no longer knows the session: CometD's
// "402::Unknown client" / "402::session_unknown", faye's "401:<id>:Unknown client".
func (e *Error) SessionUnknown() bool { return e.Code == 402 || e.Code == 401 }

// ParseError parses a Bayeux error string "code:args:message" (args comma separated) received on
// channel. A string that does not follow the format is kept whole in Message, with Code 0.
func ParseError(channel, raw string) *Error {
	e := &Error{Channel: channel, Raw: raw, Message: raw}
	code, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return e
	}
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 {
		return e
	}
	args, msg, ok := strings.Cut(rest, ":")
	if !ok {
		return e
	}
	e.Code = n
	e.Message = msg
	if args != "" {
		e.Args = strings.Split(args, ",")
	}
	return e
}

// replyError turns a failed reply into *Error (nil if the reply is successful).
func replyError(m *Message) error {
	if m.OK() {
		return nil
	}
	return ParseError(m.Channel, m.Error)
}

// ErrBadBody is wrapped by DecodeMessages errors.
var ErrBadBody = errors.New("cometd: body is not a Bayeux message or array of messages")

// DecodeMessages parses a Bayeux body (an HTTP reply or a websocket frame): a JSON array of
// messages, or a single message object. Every message must have a channel.
func DecodeMessages(body []byte) ([]Message, error) {
	if msgs, ok := fastMessages(body); ok {
		return msgs, nil
	}
	return decodeMessages(body)
}

// decodeMessages is DecodeMessages with encoding/json: the reference, for every body the fast
// decoder leaves to it.
func decodeMessages(body []byte) ([]Message, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, ErrBadBody
	}
	var msgs []Message
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &msgs); err != nil {
			return nil, errors.Join(ErrBadBody, err)
		}
	case '{':
		msgs = make([]Message, 1)
		if err := json.Unmarshal(b, &msgs[0]); err != nil {
			return nil, errors.Join(ErrBadBody, err)
		}
	default:
		return nil, ErrBadBody
	}
	for i := range msgs {
		if msgs[i].Channel == "" {
			return nil, errors.Join(ErrBadBody, errors.New("message without channel"))
		}
	}
	return msgs, nil
}

// appendConnect appends m, a message of a connect's shape (channel, id, clientId, connectionType,
// and an advice with a timeout only: /meta/connect, also /meta/disconnect), as a batch of one
// exactly as json.Marshal([]Message{*m}) writes it, without reflection: a waiting session sends a
// connect every connect period. ok is false for any other shape, or for a string that JSON would
// escape; the caller then uses encoding/json.
func appendConnect(dst []byte, m *Message) (_ []byte, ok bool) {
	if m.Data != nil || m.Successful != nil || m.Error != "" || m.Ext != nil || m.Subscription != "" ||
		m.Version != "" || m.MinimumVersion != "" || m.SupportedConnectionTypes != nil {
		return dst, false
	}
	if a := m.Advice; a != nil && (a.Reconnect != "" || a.Interval != nil || a.MaxInterval != nil ||
		a.MultipleClients || a.Hosts != nil) {
		return dst, false
	}
	if !plainJSON(m.Channel) || !plainJSON(m.ID) || !plainJSON(m.ClientID) || !plainJSON(m.ConnectionType) {
		return dst, false
	}
	dst = append(dst, `[{"channel":"`...)
	dst = append(dst, m.Channel...)
	dst = append(dst, '"')
	if m.ID != "" {
		dst = append(dst, `,"id":"`...)
		dst = append(dst, m.ID...)
		dst = append(dst, '"')
	}
	if m.ClientID != "" {
		dst = append(dst, `,"clientId":"`...)
		dst = append(dst, m.ClientID...)
		dst = append(dst, '"')
	}
	if a := m.Advice; a != nil {
		dst = append(dst, `,"advice":{`...)
		if a.Timeout != nil {
			dst = append(dst, `"timeout":`...)
			dst = strconv.AppendInt(dst, *a.Timeout, 10)
		}
		dst = append(dst, '}')
	}
	if m.ConnectionType != "" {
		dst = append(dst, `,"connectionType":"`...)
		dst = append(dst, m.ConnectionType...)
		dst = append(dst, '"')
	}
	return append(dst, "}]"...), true
}

// plainJSON reports whether encoding/json writes s between its quotes as it is: ASCII without
// control characters and without the characters it escapes (other UTF-8 is refused too, though
// most of it is written as it is).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
