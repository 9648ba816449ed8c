package bayeux

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Meta channels.
const (
	MetaHandshake   = "/meta/handshake"
	MetaConnect     = "/meta/connect"
	MetaSubscribe   = "/meta/subscribe"
	MetaUnsubscribe = "/meta/unsubscribe"
	MetaDisconnect  = "/meta/disconnect"
)

// Connection types.
const (
	LongPolling = "long-polling"
	WebSocket   = "websocket"
)

// Error strings, as CometD 3.1 words them.
const (
	ErrUnknownClient   = "402::Unknown client"
	errChannelMissing  = "400::channel missing"
	errSubMissing      = "403::subscription_missing"
	errSubInvalid      = "403::subscription_invalid"
	errUnknownMeta     = "400::unknown meta channel"
	errConnTypeMissing = "400::connectionType missing"
)

// inMsg is a message from a client. Only the fields the server looks at are decoded; id and
// data are kept raw (an id is echoed back as it came, string or number).
type inMsg struct {
	Channel        string          `json:"channel"`
	ID             json.RawMessage `json:"id,omitempty"`
	ClientID       string          `json:"clientId,omitempty"`
	ConnectionType string          `json:"connectionType,omitempty"`
	Subscription   json.RawMessage `json:"subscription,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	Advice         *struct {
		Timeout *int64 `json:"timeout,omitempty"`
	} `json:"advice,omitempty"`
}

// outMsg is a message to a client.
type outMsg struct {
	Channel                  string          `json:"channel"`
	ID                       json.RawMessage `json:"id,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Successful               *bool           `json:"successful,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Advice                   map[string]any  `json:"advice,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	Subscription             json.RawMessage `json:"subscription,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
}

// out is one encoded message on its way to a client; the channel is kept for fault matching.
type out struct {
	channel string
	raw     json.RawMessage
	pushed  bool // a server-initiated message (a deliver or a broadcast), not a reply
}

func encode(m outMsg) out {
	raw, err := json.Marshal(m)
	if err != nil { // cannot happen: every field is plain data
		panic(err)
	}
	return out{channel: m.Channel, raw: raw}
}

func ptr(b bool) *bool { return &b }

// reply starts a reply to m.
func reply(m *inMsg, ok bool) outMsg {
	return outMsg{Channel: m.Channel, ID: m.ID, Successful: ptr(ok)}
}

func failure(m *inMsg, errText string) out {
	r := reply(m, false)
	r.Error = errText
	return encode(r)
}

// unknownClient is CometD 3.1's answer to a message whose session is unknown, expired or
// bound elsewhere; handshake and connect replies carry the advice to handshake again.
func unknownClient(m *inMsg) out {
	r := reply(m, false)
	r.Error = ErrUnknownClient
	if m.Channel == MetaConnect || m.Channel == MetaHandshake {
		r.Advice = map[string]any{"reconnect": "handshake", "interval": 0}
	}
	return encode(r)
}

// decodeMessages reads a body: a JSON array of messages, or one message object.
func decodeMessages(body []byte) ([]inMsg, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	switch body[0] {
	case '[':
		var msgs []inMsg
		if err := json.Unmarshal(body, &msgs); err != nil {
			return nil, err
		}
		return msgs, nil
	case '{':
		var m inMsg
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return []inMsg{m}, nil
	}
	return nil, errors.New("body is neither a JSON array nor an object")
}

// joinArray writes msgs as one JSON array.
func joinArray(msgs []out) []byte {
	n := 2
	for _, m := range msgs {
		n += len(m.raw) + 1
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '[')
	for i, m := range msgs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, m.raw...)
	}
	return append(buf, ']')
}

// subscriptions reads a subscription field: a channel name or an array of them.
func subscriptions(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, one != ""
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, false
	}
	for _, s := range many {
		if s == "" {
			return nil, false
		}
	}
	return many, true
}

// validChannel reports whether name is an absolute channel name or pattern.
func validChannel(name string) bool {
	if !strings.HasPrefix(name, "/") || name == "/" || strings.Contains(name, "//") {
		return false
	}
	segs := strings.Split(name[1:], "/")
	for i, s := range segs {
		if s == "" {
			return false
		}
		if (s == "*" || s == "**") && i != len(segs)-1 {
			return false
		}
	}
	return true
}

// matches reports whether the channel name matches the pattern (a name, /a/* or /a/**).
func matches(pattern, name string) bool {
	if pattern == name {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/**"); ok {
		return strings.HasPrefix(name, prefix+"/")
	}
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		rest, ok := strings.CutPrefix(name, prefix+"/")
		return ok && rest != "" && !strings.Contains(rest, "/")
	}
	return false
}

// IsService reports whether the channel is a /service/ channel.
func IsService(channel string) bool { return strings.HasPrefix(channel, "/service/") }

// IsMeta reports whether the channel is a /meta/ channel.
func IsMeta(channel string) bool { return strings.HasPrefix(channel, "/meta/") }
