package attach

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// HandoffKind names what a page message asks of its recipient's page.
type HandoffKind string

// The kinds of page messages.
const (
	// HandoffView: what the recipient opens or uses to see or join the session (Genesys: the
	// slave.html URL; Zoom: the desk URL, a PIN; CEC: the room and its connection parameters).
	HandoffView HandoffKind = "view"
	// HandoffStart: what the customer's page needs to start a session the daemon created (Zoom:
	// the customer's JWT and a BYOP PIN). To the customer only.
	HandoffStart HandoffKind = "start"
	// HandoffEnd: asks the page to end the session. It carries none of the vendor's fields.
	HandoffEnd HandoffKind = "end"
)

// Valid reports whether k is one of the kinds.
func (k HandoffKind) Valid() bool {
	switch k {
	case HandoffView, HandoffStart, HandoffEnd:
		return true
	}
	return false
}

// Handoff is one page message ("handoff"): what the agent's or the customer's page needs to see,
// join, start or end a co-browse session. Subject <prefix>.agent.<agentId>.cobrowse (to an agent)
// or <prefix>.customer.<interactionId>.cobrowse (to the customer); Nats-Msg-Id
// "<interactionId>.<sessionId>.<kind>.<recipient>", recipient "agent:<agentId>" or "customer".
//
// The vendor's fields (URL, Token, PIN, RoomID, WSSURL, ConnectParam) may carry credentials: its
// JSON (MarshalJSON, the wire form) has them in full, for the page; its LogValue, String and
// GoString mask them. Never log the JSON.
type Handoff struct {
	Kind HandoffKind `json:"kind"`
	// ToCustomer sends it to the interaction's customer page; else to the agent AgentID. Not on
	// the wire: the subject says it, and agentId is there only for an agent (UnmarshalJSON sets
	// ToCustomer when agentId is absent).
	ToCustomer    bool   `json:"-"`
	InteractionID string `json:"interactionId"`
	SessionID     string `json:"sessionId"` // the session's id, as the lifecycle events and the attach carry it
	Vendor        string `json:"vendor"`    // genesys, zoom, cec
	AgentID       string `json:"agentId,omitempty"`
	// The vendor's fields, each omitted when empty.
	URL          string    `json:"url,omitempty"`          // Genesys slave.html URL (session token in the fragment); Zoom desk URL (agent JWT in access_token)
	Token        string    `json:"token,omitempty"`        // a Zoom JWT
	PIN          string    `json:"pin,omitempty"`          // a Zoom PIN
	RoomID       string    `json:"roomId,omitempty"`       // CEC
	WSSURL       string    `json:"wssUrl,omitempty"`       // CEC
	ConnectParam string    `json:"connectParam,omitempty"` // CEC connection info, opaque
	At           time.Time `json:"at"`
}

// Recipient names who the message is for, as its msg id does: "agent:<agentId>" or "customer".
func (h Handoff) Recipient() string {
	if h.ToCustomer {
		return "customer"
	}
	return "agent:" + h.AgentID
}

// Subject is the subject the message is published on.
func (h Handoff) Subject(prefix string) string {
	if h.ToCustomer {
		return CustomerSubject(prefix, h.InteractionID)
	}
	return AgentSubject(prefix, h.AgentID)
}

// MsgID is the message's Nats-Msg-Id: "<interactionId>.<sessionId>.<kind>.<recipient>". A msg id
// is a header value, not a subject: ':' is allowed in it (the failed events' ids use it too), and
// the agent id, a subject token, holds no '.', so the recipient stays one '.'-separated part.
func (h Handoff) MsgID() string {
	return h.InteractionID + "." + h.SessionID + "." + string(h.Kind) + "." + h.Recipient()
}

// vendorFields are the vendor's fields by wire name, in wire order.
func (h Handoff) vendorFields() [6][2]string {
	return [6][2]string{
		{"url", h.URL}, {"token", h.Token}, {"pin", h.PIN},
		{"roomId", h.RoomID}, {"wssUrl", h.WSSURL}, {"connectParam", h.ConnectParam},
	}
}

func (h Handoff) validate() error {
	if !h.Kind.Valid() {
		return invalid("page message kind %q is unknown", h.Kind)
	}
	if err := checkToken("interactionId", h.InteractionID); err != nil {
		return err
	}
	if h.ToCustomer {
		if h.AgentID != "" {
			return invalid("%s page message of %s to the customer names agent %q", h.Kind, h.InteractionID, h.AgentID)
		}
	} else if err := checkToken("agentId", h.AgentID); err != nil {
		return err
	}
	if h.SessionID == "" {
		return invalid("%s page message of %s without a sessionId", h.Kind, h.InteractionID)
	}
	switch connector.Vendor(h.Vendor) {
	case connector.Genesys, connector.Zoom, connector.CEC:
	default:
		return invalid("%s page message of %s: vendor %q is not one of genesys, zoom, cec", h.Kind, h.InteractionID, h.Vendor)
	}
	var set []string
	for _, f := range h.vendorFields() {
		if f[1] != "" {
			set = append(set, f[0])
		}
	}
	switch h.Kind {
	case HandoffStart:
		if !h.ToCustomer {
			return invalid("start page message of %s to agent %q: a start goes to the customer", h.InteractionID, h.AgentID)
		}
		fallthrough
	case HandoffView:
		if len(set) == 0 {
			return invalid("%s page message of %s to %s carries none of url, token, pin, roomId, wssUrl, connectParam",
				h.Kind, h.InteractionID, h.Recipient())
		}
	case HandoffEnd:
		if len(set) > 0 {
			return invalid("end page message of %s to %s carries %s: an end carries no credentials",
				h.InteractionID, h.Recipient(), strings.Join(set, ", "))
		}
	}
	if err := checkURL("url", h.URL, "https", "http"); err != nil {
		return err
	}
	if err := checkURL("wssUrl", h.WSSURL, "wss", "ws"); err != nil {
		return err
	}
	return checkHeaderValue("msg id", h.MsgID())
}

// checkURL refuses a non-empty value that is not an absolute URL of one of the schemes.
func checkURL(field, v string, schemes ...string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return invalid("%s is not an absolute URL", field)
	}
	for _, s := range schemes {
		if strings.EqualFold(u.Scheme, s) {
			return nil
		}
	}
	return invalid("%s scheme %q is not one of %s", field, u.Scheme, strings.Join(schemes, ", "))
}

type handoffWire struct {
	V             int         `json:"v"`
	Kind          HandoffKind `json:"kind"`
	InteractionID string      `json:"interactionId"`
	SessionID     string      `json:"sessionId"`
	Vendor        string      `json:"vendor"`
	AgentID       string      `json:"agentId,omitempty"`
	URL           string      `json:"url,omitempty"`
	Token         string      `json:"token,omitempty"`
	PIN           string      `json:"pin,omitempty"`
	RoomID        string      `json:"roomId,omitempty"`
	WSSURL        string      `json:"wssUrl,omitempty"`
	ConnectParam  string      `json:"connectParam,omitempty"`
	At            string      `json:"at"`
}

// MarshalJSON writes the message as the contract has it, credentials in full (the page needs
// them): "v" first, the agent id only for an agent, the vendor's fields only when set.
func (h Handoff) MarshalJSON() ([]byte, error) {
	agent := h.AgentID
	if h.ToCustomer {
		agent = ""
	}
	return encode(handoffWire{
		V:             ContractVersion,
		Kind:          h.Kind,
		InteractionID: h.InteractionID,
		SessionID:     h.SessionID,
		Vendor:        h.Vendor,
		AgentID:       agent,
		URL:           h.URL,
		Token:         h.Token,
		PIN:           h.PIN,
		RoomID:        h.RoomID,
		WSSURL:        h.WSSURL,
		ConnectParam:  h.ConnectParam,
		At:            FormatTime(h.At),
	})
}

// UnmarshalJSON reads the wire form; a message without agentId is the customer's.
func (h *Handoff) UnmarshalJSON(b []byte) error {
	type plain Handoff
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*h = Handoff(p)
	h.ToCustomer = h.AgentID == ""
	return nil
}

// LogValue shows the message without its credentials: token, pin and connectParam by their last
// characters, every parameter of url and wssUrl likewise (the JWT in a Zoom desk URL's
// access_token, the session token in a Genesys URL's fragment).
func (h Handoff) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("kind", string(h.Kind)),
		slog.String("to", h.Recipient()),
		slog.String("interaction", h.InteractionID),
		slog.String("session_id", h.SessionID),
		slog.String("vendor", h.Vendor),
	}
	for _, f := range h.maskedFields() {
		//logvocab:keys url token pin room_id wss_url connect_param
		attrs = append(attrs, slog.String(f[0], f[1]))
	}
	return slog.GroupValue(attrs...)
}

// String shows the message as LogValue does, on one line.
func (h Handoff) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s page message to %s: interaction=%s session_id=%s vendor=%s",
		h.Kind, h.Recipient(), h.InteractionID, h.SessionID, h.Vendor)
	for _, f := range h.maskedFields() {
		fmt.Fprintf(&b, " %s=%s", f[0], f[1])
	}
	if !h.At.IsZero() {
		b.WriteString(" at=" + FormatTime(h.At))
	}
	return b.String()
}

// GoString keeps %#v from printing the credentials.
func (h Handoff) GoString() string { return "attach.Handoff{" + h.String() + "}" }

// maskedFields are the vendor's fields that are set, by their log names, masked.
func (h Handoff) maskedFields() [][2]string {
	var out [][2]string
	add := func(name, v string, mask func(string) string) {
		if v != "" {
			out = append(out, [2]string{name, mask(v)})
		}
	}
	keep := func(s string) string { return s }
	add("url", h.URL, maskURL)
	add("token", h.Token, maskSecret)
	add("pin", h.PIN, maskSecret)
	add("room_id", h.RoomID, keep)
	add("wss_url", h.WSSURL, maskURL)
	add("connect_param", h.ConnectParam, maskSecret)
	return out
}

// maskSecret shows a credential by its last three characters at most: like connector.MaskToken,
// but a long one (a JWT, CEC's connection parameters) is shortened to a fixed width, so that the
// log shows neither the credential nor its length.
func maskSecret(s string) string {
	const keep, width = 3, 9
	if len(s) <= width {
		return connector.MaskToken(s)
	}
	return strings.Repeat("*", width-keep) + s[len(s)-keep:]
}

// maskURL masks the value of every query and fragment parameter of u (access_token=<JWT>,
// sid=<session token>, ...) with maskSecret; the scheme, host and path stay readable. Unknown
// parameter names are masked too: a URL handed to a page may carry credentials under any name.
func maskURL(u string) string {
	base, fragment, hasFragment := strings.Cut(u, "#")
	path, query, hasQuery := strings.Cut(base, "?")
	out := path
	if hasQuery {
		out += "?" + maskParams(query)
	}
	if hasFragment {
		out += "#" + maskParams(fragment)
	}
	return out
}

// maskParams masks the values of "a=1&b=2"; a part without '=' is masked whole.
func maskParams(s string) string {
	parts := strings.Split(s, "&")
	for i, p := range parts {
		if name, value, ok := strings.Cut(p, "="); ok {
			parts[i] = name + "=" + maskSecret(value)
		} else {
			parts[i] = maskSecret(p)
		}
	}
	return strings.Join(parts, "&")
}
