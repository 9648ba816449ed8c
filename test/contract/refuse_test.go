package contract

import (
	"encoding/json"
	"strings"
	"testing"
)

// A valid message of each channel, as a map that a case changes.
func base(kind string) map[string]any {
	switch kind {
	case "chat":
		return map[string]any{"id": "m-1", "interactionId": "i-1", "from": map[string]any{"role": "customer"}, "text": "{start:123456789}"}
	case "event":
		return map[string]any{"id": "e-1", "interactionId": "i-1", "type": "assigned", "agentId": "agent-1", "at": "2026-03-14T09:19:02.731Z"}
	case "signal":
		return map[string]any{"id": "s-1", "interactionId": "i-1", "source": "operator", "type": "stop"}
	case "attach":
		return map[string]any{"v": 1, "interactionId": "i-1", "seq": 1, "sessionId": "s-1", "vendor": "genesys",
			"data":    map[string]any{"CoBrowseAssociated": "Yes", "CoBrowseSessionsQuantity": 1, "CoBrowseSessionId": "s-1"},
			"changed": []any{"CoBrowseAssociated", "CoBrowseSessionsQuantity", "CoBrowseSessionId"}, "at": "2026-03-14T09:26:53.589Z"}
	case "deactivated":
		return map[string]any{"v": 1, "event": "deactivated", "interactionId": "i-1", "sessionId": "s-1", "sessionToken": "******834",
			"vendor": "genesys", "reason": "interaction_closed", "deactivationTime": 1773481292907, "at": "2026-03-14T09:41:33.002Z"}
	case "failed":
		return map[string]any{"v": 1, "event": "failed", "interactionId": "i-1", "sessionId": "", "vendor": "genesys",
			"reason": "join_failed", "detail": "HTTP 404 Not Found", "at": "2026-03-14T09:25:06.118Z"}
	case "view":
		return map[string]any{"v": 1, "kind": "view", "interactionId": "i-1", "sessionId": "s-1", "vendor": "genesys", "agentId": "agent-1",
			"url": "https://gcb.example/cobrowse/slave.html#nosidinput=1&sid=535176834", "at": "2026-03-14T09:26:53.602Z"}
	case "start":
		return map[string]any{"v": 1, "kind": "start", "interactionId": "i-1", "sessionId": "pending-1", "vendor": "zoom",
			"token": "eyJ.x.y", "pin": "K7Q2M9X4TB", "at": "2026-03-14T10:02:11.305Z"}
	case "webhook":
		return map[string]any{"event": "cobrowse.session_started", "event_ts": 1773480430412, "payload": map[string]any{"object": map[string]any{"session_id": "z-1"}}}
	}
	panic(kind)
}

// The subject and the msg id of each kind's base message.
var bases = map[string][2]string{
	"chat":        {"cc.chat.i-1.message", ""},
	"event":       {"cc.interaction.i-1.event", ""},
	"signal":      {"cc.signal.i-1.operator", ""},
	"attach":      {"cc.interaction.i-1.attach", "i-1.attach.1"},
	"deactivated": {"cc.cobrowse.i-1.deactivated", "i-1.s-1.deactivated"},
	"failed":      {"cc.cobrowse.i-1.failed", "i-1.failed.c:m-1"},
	"view":        {"cc.agent.agent-1.cobrowse", "i-1.s-1.view.agent:agent-1"},
	"start":       {"cc.customer.i-1.cobrowse", "i-1.pending-1.start.customer"},
	"webhook":     {"cc.webhook.zoom", "zoom.0123abcd"},
}

type change func(m map[string]any)

func set(key string, v any) change { return func(m map[string]any) { m[key] = v } }
func del(key string) change        { return func(m map[string]any) { delete(m, key) } }
func setIn(obj, key string, v any) change {
	return func(m map[string]any) { m[obj].(map[string]any)[key] = v }
}

type contractCase struct {
	name    string
	kind    string
	changes []change
	subject string // "" for the base's
	msgID   string // "" for the base's; "-" for none
}

func (tc contractCase) run(c *Contract) error {
	m := base(tc.kind)
	for _, ch := range tc.changes {
		ch(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	subject, msgID := bases[tc.kind][0], bases[tc.kind][1]
	if tc.subject != "" {
		subject = tc.subject
	}
	switch tc.msgID {
	case "":
	case "-":
		msgID = ""
	default:
		msgID = tc.msgID
	}
	return c.Check(subject, msgID, b)
}

// What the daemon accepts inbound, and every base message, passes.
func TestValidMessagesAccepted(t *testing.T) {
	c := load(t)
	for kind := range bases {
		if err := (contractCase{kind: kind}).run(c); err != nil {
			t.Errorf("base %s: %v", kind, err)
		}
	}
	for _, tc := range []contractCase{
		{name: "chat: unknown fields are ignored", kind: "chat", changes: []change{set("extra", []any{1, map[string]any{"a": nil}}), setIn("from", "avatar", "x")}},
		{name: "chat: empty text", kind: "chat", changes: []change{set("text", "")}},
		{name: "chat: null optional fields", kind: "chat", changes: []change{set("sentAt", nil), setIn("from", "id", nil), setIn("from", "name", nil)}},
		{name: "chat: sentAt with an offset and nine fraction digits", kind: "chat", changes: []change{set("sentAt", "2025-01-02T03:04:05.123456789+02:00")}},
		{name: "chat: sentAt offset +24:00, which the daemon's parser takes", kind: "chat", changes: []change{set("sentAt", "2025-01-02T03:04:05+24:00")}},
		{name: "chat: any role", kind: "chat", changes: []change{setIn("from", "role", "system")}},
		{name: "chat: unicode interaction id", kind: "chat", changes: []change{set("interactionId", "Ärger-1")}, subject: "cc.chat.Ärger-1.message"},
		{name: "event: unknown type", kind: "event", changes: []change{set("type", "something-new")}},
		{name: "event: unknown vendor name", kind: "event", changes: []change{set("cobrowseVendor", "acme")}},
		{name: "event: null agent", kind: "event", changes: []change{set("agentId", nil), set("toAgentId", nil), set("cobrowseVendor", nil), set("requestedBy", nil)}},
		{name: "event: requested by a bot", kind: "event", changes: []change{set("type", "cobrowse_requested"), set("requestedBy", map[string]any{"role": "bot", "id": "bot-1"})}},
		{name: "signal: empty role", kind: "signal", changes: []change{set("role", "")}},
		{name: "signal: raw of any JSON", kind: "signal", changes: []change{set("raw", []any{1, "x"}), set("sessionId", nil)}},
		{name: "signal: unknown type", kind: "signal", changes: []change{set("type", "page_hidden")}},
		{name: "signal from the router", kind: "signal", changes: []change{set("source", "zoom")}, subject: "cc.signal.i-1.zoom", msgID: "signal.zoom.zoom.0123abcd"},
		{name: "attach: changed empty, duration 0", kind: "attach", changes: []change{set("changed", []any{}), setIn("data", "CoBrowseDuration", 0)}},
		{name: "failed: vendor_unavailable names any vendor", kind: "failed", changes: []change{set("reason", "vendor_unavailable"), set("vendor", "acme")}},
		{name: "failed: msg id of a created session never started", kind: "failed", msgID: "i-1.failed.pending-1"},
		{name: "failed: msg id of an inbound id holding dots", kind: "failed", msgID: "i-1.failed.e:ev.1.2"},
		{name: "lifecycle: a whole masked short token", kind: "deactivated", changes: []change{set("sessionToken", "******")}},
		{name: "view: CEC fields, ws scheme in capitals", kind: "view", changes: []change{del("url"), set("vendor", "cec"), set("roomId", "r"), set("wssUrl", "WSS://cec.example/ws"), set("connectParam", "p")}},
		{name: "end to an agent", kind: "view", changes: []change{set("kind", "end"), del("url")}, msgID: "i-1.s-1.end.agent:agent-1"},
		{name: "view to the customer", kind: "start", changes: []change{set("kind", "view")}, msgID: "i-1.pending-1.view.customer"},
		{name: "webhook of another event, null payload", kind: "webhook", changes: []change{set("event", "cobrowse.other"), set("payload", nil)}},
	} {
		if err := tc.run(c); err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
	}
}

// What the daemon refuses inbound (where a schema can say it), and what it never publishes, is
// refused, and the error names the subject and the schema file.
func TestInvalidMessagesRefused(t *testing.T) {
	c := load(t)
	for _, tc := range []contractCase{
		{name: "chat: no id", kind: "chat", changes: []change{del("id")}},
		{name: "chat: empty id", kind: "chat", changes: []change{set("id", "")}},
		{name: "chat: no text", kind: "chat", changes: []change{del("text")}},
		{name: "chat: null text", kind: "chat", changes: []change{set("text", nil)}},
		{name: "chat: no from", kind: "chat", changes: []change{del("from")}},
		{name: "chat: from not an object", kind: "chat", changes: []change{set("from", "customer")}},
		{name: "chat: unknown role", kind: "chat", changes: []change{setIn("from", "role", "supervisor")}},
		{name: "chat: role in capitals", kind: "chat", changes: []change{setIn("from", "role", "Customer")}},
		{name: "chat: from.id a number", kind: "chat", changes: []change{setIn("from", "id", 7)}},
		{name: "chat: interactionId differs from the subject's", kind: "chat", changes: []change{set("interactionId", "i-2")}},
		{name: "chat: interactionId with a dot", kind: "chat", changes: []change{set("interactionId", "i.1")}, subject: "cc.chat.i-1.message"},
		{name: "chat: interactionId with a no-break space", kind: "chat", changes: []change{set("interactionId", "i\u00a01")}, subject: "cc.chat.i\u00a01.message"},
		{name: "chat: sentAt without seconds", kind: "chat", changes: []change{set("sentAt", "2025-01-02T03:04Z")}},
		{name: "chat: sentAt lower-case t", kind: "chat", changes: []change{set("sentAt", "2025-01-02t03:04:05Z")}},
		{name: "chat: sentAt hour 24", kind: "chat", changes: []change{set("sentAt", "2025-01-02T24:00:00Z")}},
		{name: "chat: sentAt month 13", kind: "chat", changes: []change{set("sentAt", "2025-13-02T03:04:05Z")}},
		{name: "chat: sentAt one-digit hour", kind: "chat", changes: []change{set("sentAt", "2025-01-02T3:04:05Z")}},
		{name: "chat: sentAt offset hour 25", kind: "chat", changes: []change{set("sentAt", "2025-01-02T03:04:05+25:00")}},
		{name: "chat: sentAt a number", kind: "chat", changes: []change{set("sentAt", 1773480430412)}},
		{name: "event: no type", kind: "event", changes: []change{del("type")}},
		{name: "event: empty type", kind: "event", changes: []change{set("type", "")}},
		{name: "event: empty agentId", kind: "event", changes: []change{set("agentId", "")}},
		{name: "event: agentId with a wildcard", kind: "event", changes: []change{set("agentId", "agent>")}},
		{name: "event: toAgentId with a line separator", kind: "event", changes: []change{set("toAgentId", "a\u2028b")}},
		{name: "event: cobrowseVendor not a token", kind: "event", changes: []change{set("cobrowseVendor", "zoom us")}},
		{name: "event: requestedBy without role", kind: "event", changes: []change{set("requestedBy", map[string]any{"id": "bot-1"})}},
		{name: "event: requestedBy a string", kind: "event", changes: []change{set("requestedBy", "bot")}},
		{name: "signal: unknown source", kind: "signal", changes: []change{set("source", "nobody")}, subject: "cc.signal.i-1.nobody"},
		{name: "signal: source differs from the subject's", kind: "signal", changes: []change{set("source", "agent")}},
		{name: "signal: role bot", kind: "signal", changes: []change{set("role", "bot")}},
		{name: "signal: no type", kind: "signal", changes: []change{del("type")}},
		{name: "attach: v 2", kind: "attach", changes: []change{set("v", 2)}},
		{name: "attach: no v", kind: "attach", changes: []change{del("v")}},
		{name: "attach: v a string", kind: "attach", changes: []change{set("v", "1")}},
		{name: "attach: seq 0", kind: "attach", changes: []change{set("seq", 0)}, msgID: "i-1.attach.0"},
		{name: "attach: msg id of another seq", kind: "attach", msgID: "i-1.attach.2"},
		{name: "attach: no msg id", kind: "attach", msgID: "-"},
		{name: "attach: unknown vendor", kind: "attach", changes: []change{set("vendor", "glance")}},
		{name: "attach: a field not in the contract", kind: "attach", changes: []change{set("agentId", "agent-1")}},
		{name: "attach: a data key not in the contract", kind: "attach", changes: []change{setIn("data", "CoBrowseAgent", "agent-1")}},
		{name: "attach: Associated yes", kind: "attach", changes: []change{setIn("data", "CoBrowseAssociated", "yes")}},
		{name: "attach: start time a number", kind: "attach", changes: []change{setIn("data", "CoBrowseStartTime", 1773480430412)}},
		{name: "attach: start time not digits", kind: "attach", changes: []change{setIn("data", "CoBrowseStartTime", "2026-03-14")}},
		{name: "attach: end reason not in the vocabulary", kind: "attach", changes: []change{setIn("data", "CoBrowseEndReason", "agent_left")}},
		{name: "attach: changed key twice", kind: "attach", changes: []change{set("changed", []any{"CoBrowseAssociated", "CoBrowseAssociated"})}},
		{name: "attach: changed unknown key", kind: "attach", changes: []change{set("changed", []any{"CoBrowseAgent"})}},
		{name: "attach: at without milliseconds", kind: "attach", changes: []change{set("at", "2026-03-14T09:26:53Z")}},
		{name: "attach: at not in UTC", kind: "attach", changes: []change{set("at", "2026-03-14T10:26:53.589+01:00")}},
		{name: "deactivated: no reason", kind: "deactivated", changes: []change{del("reason")}},
		{name: "deactivated: reason not an end reason", kind: "deactivated", changes: []change{set("reason", "processing_failed")}},
		{name: "deactivated: a detail", kind: "deactivated", changes: []change{set("detail", "x")}},
		{name: "deactivated: event differs from the subject's", kind: "deactivated", changes: []change{set("event", "activated")}},
		{name: "deactivated: token in full", kind: "deactivated", changes: []change{set("sessionToken", "535176834")}},
		{name: "deactivated: unknown vendor", kind: "deactivated", changes: []change{set("vendor", "acme")}},
		{name: "deactivated: msg id of another session", kind: "deactivated", msgID: "i-1.s-2.deactivated"},
		{name: "deactivated: no sessionId", kind: "deactivated", changes: []change{del("sessionId")}},
		{name: "joined: with a reason", kind: "deactivated", changes: []change{set("event", "joined"), del("deactivationTime")}, subject: "cc.cobrowse.i-1.joined", msgID: "i-1.s-1.joined"},
		{name: "activated: with a deactivation time", kind: "deactivated", changes: []change{set("event", "activated"), del("reason")}, subject: "cc.cobrowse.i-1.activated", msgID: "i-1.s-1.activated"},
		{name: "failed: reason not a failed reason", kind: "failed", changes: []change{set("reason", "interaction_closed")}},
		{name: "failed: no reason", kind: "failed", changes: []change{del("reason")}},
		{name: "failed: unknown vendor but another reason", kind: "failed", changes: []change{set("vendor", "acme")}},
		{name: "failed: v 0", kind: "failed", changes: []change{set("v", 0)}},
		{name: "failed: negative activation time", kind: "failed", changes: []change{set("activationTime", -1)}},
		{name: "view: no agentId", kind: "view", changes: []change{del("agentId")}},
		{name: "view: agentId differs from the subject's", kind: "view", changes: []change{set("agentId", "agent-2")}, msgID: "i-1.s-1.view.agent:agent-2"},
		{name: "view: nothing to open", kind: "view", changes: []change{del("url")}},
		{name: "view: url not absolute", kind: "view", changes: []change{set("url", "slave.html#sid=535176834")}},
		{name: "view: url of another scheme", kind: "view", changes: []change{set("url", "ftp://gcb.example/slave.html")}},
		{name: "view: empty pin", kind: "view", changes: []change{set("pin", "")}},
		{name: "view: unknown kind", kind: "view", changes: []change{set("kind", "join")}},
		{name: "view: empty sessionId", kind: "view", changes: []change{set("sessionId", "")}, msgID: "i-1..view.agent:agent-1"},
		{name: "view: msg id of the customer", kind: "view", msgID: "i-1.s-1.view.customer"},
		{name: "start: to an agent", kind: "start", changes: []change{set("agentId", "agent-1")}, subject: "cc.agent.agent-1.cobrowse", msgID: "i-1.pending-1.start.agent:agent-1"},
		{name: "start: to the customer naming an agent", kind: "start", changes: []change{set("agentId", "agent-1")}},
		{name: "start: nothing to start with", kind: "start", changes: []change{del("token"), del("pin")}},
		{name: "end: with a url", kind: "start", changes: []change{set("kind", "end"), del("token"), del("pin"), set("url", "https://x.example/")}, msgID: "i-1.pending-1.end.customer"},
		{name: "end: with a pin", kind: "start", changes: []change{set("kind", "end"), del("token")}, msgID: "i-1.pending-1.end.customer"},
		{name: "start: wssUrl of http", kind: "start", changes: []change{set("wssUrl", "https://cec.example/ws")}},
		{name: "webhook: no event", kind: "webhook", changes: []change{del("event")}},
		{name: "webhook: msg id of another vendor", kind: "webhook", msgID: "cec.0123abcd"},
	} {
		err := tc.run(c)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if subject := bases[tc.kind][0]; tc.subject == "" && !strings.Contains(err.Error(), "subject "+subject) {
			t.Errorf("%s: the error does not name the subject: %v", tc.name, err)
		}
	}
	// Not JSON, not an object, no channel.
	for _, tc := range []struct{ subject, payload string }{
		{"cc.chat.i-1.message", `{"id":`},
		{"cc.chat.i-1.message", `[]`},
		{"cc.chat.i-1.message", `null`},
		{"cc.chat.i-1.text", `{}`},
		{"cc.interaction.i-1.attach", `{"v":1}`},
	} {
		if err := c.Check(tc.subject, "", []byte(tc.payload)); err == nil {
			t.Errorf("%s %s: accepted", tc.subject, tc.payload)
		}
	}
}

// The error names the schema file and the field at fault.
func TestRefusalNamesFileAndField(t *testing.T) {
	c := load(t)
	err := contractCase{kind: "attach", changes: []change{set("v", 2)}}.run(c)
	if err == nil || !strings.Contains(err.Error(), "docs/schemas/attach.json") || !strings.Contains(err.Error(), "/v") {
		t.Fatalf("error %v", err)
	}
}
