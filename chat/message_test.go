package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartCandidate: the vendor-neutral form of a start message. Which tokens a vendor accepts
// (nine digits for Genesys) is the vendor's test.
func TestStartCandidate(t *testing.T) {
	tests := []struct {
		text  string
		token string // "" = not a start message
	}{
		{"{start:123456789}", "123456789"},
		{"<start:123456789>", "123456789"},
		{"{start:000000001}", "000000001"},
		{"<start:000000000>", "000000000"},
		{"  {start:123456789}  ", "123456789"},
		{"\t\r\n\f<start:987654321> \n", "987654321"},
		{"\n\n{start:555555555}\r\n", "555555555"},

		{"", ""},
		{"   ", ""},
		{"{start:123456789} hi", ""},
		{"hi {start:123456789}", ""},
		{"please {start:123456789}", ""},
		{"{start: 123456789}", ""},
		{"{start:123456789 }", ""},
		{"{ start:123456789}", ""},
		{"{START:123456789}", ""},
		{"{Start:123456789}", ""},
		{"<START:123456789>", ""},
		{"{start:1234567890}", "1234567890"}, // the vendor decides: not nine digits, not Genesys
		{"{start:12345678}", "12345678"},
		{"{start:AB12cd}", "AB12cd"}, // a Zoom BYOP PIN, as written
		{"{start:" + strings.Repeat("9", 64) + "}", strings.Repeat("9", 64)},
		{"{start:" + strings.Repeat("9", 65) + "}", ""},
		{"{start:}", ""},
		{"{start:123456789>", ""},
		{"<start:123456789}", ""},
		{"[start:123456789]", ""},
		{"(start:123456789)", ""},
		{"{start:123456789}}", ""},
		{"{{start:123456789}", ""},
		{"{start:123456789}{start:123456789}", ""},
		{"{start=123456789}", ""},
		{"{start 123456789}", ""},
		{"{start:12345678a}", "12345678a"},
		{"{start:1234-5678}", ""},
		{"{start:1234_5678}", ""},
		{"{start:+12345678}", ""},
		{"{start:-12345678}", ""},
		{"{start:1234 5678}", ""},
		{"{start:12345678٣}", ""},       // ARABIC-INDIC DIGIT THREE is a Unicode digit, not ASCII
		{"{start:１２３４５６７８９}", ""},       // fullwidth digits
		{"\v{start:123456789}", ""},     // vertical tab is not in the whitespace set
		{"\u00a0{start:123456789}", ""}, // nor is NBSP
		{"{start:123456789}\u2028", ""}, // nor LINE SEPARATOR
		{"{start:123456789}\x00", ""},   // NUL
		{"\ufeff{start:123456789}", ""}, // BOM
		{"{start:123456789}\u200b", ""}, // zero-width space
		{"{start:123456789}.", ""},      // trailing punctuation
		{"start:123456789", ""},         // no brackets
		{"{start:123456789", ""},        // no closer
		{"<start:123456789>\n.", ""},    // something after the newline
		{"{sta rt:123456789}", ""},      // broken keyword
		{"x", ""},
	}
	for _, tc := range tests {
		token, ok := StartCandidate(tc.text)
		if ok != (tc.token != "") || token != tc.token {
			t.Errorf("StartCandidate(%q) = %q, %v; want %q, %v", tc.text, token, ok, tc.token, tc.token != "")
		}
	}
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		prefix, subject string
		kind            subjectKind
		id, source      string
	}{
		{"cc", "cc.signal.I1.zoom", subjectSignal, "I1", "zoom"},
		{"cc", "cc.signal.I1.anything", subjectSignal, "I1", "anything"}, // the decoder refuses unknown sources
		{"cc", "cc.signal.I1", subjectNone, "", ""},
		{"cc", "cc.signal.I1.zoom.x", subjectNone, "", ""},
		{"cc", "cc.signal..zoom", subjectNone, "", ""},
		{"cc", "cc.chat.I1.message", subjectChat, "I1", ""},
		{"cc", "cc.interaction.I-2_x.event", subjectEvent, "I-2_x", ""},
		{"acme.cc", "acme.cc.chat.I1.message", subjectChat, "I1", ""},
		{"acme.cc", "cc.chat.I1.message", subjectNone, "", ""},
		{"cc", "cc.chat.I1.event", subjectNone, "", ""},
		{"cc", "cc.interaction.I1.message", subjectNone, "", ""},
		{"cc", "cc.chat.I1.message.extra", subjectNone, "", ""},
		{"cc", "cc.chat.message", subjectNone, "", ""},
		{"cc", "cc.chat..message", subjectNone, "", ""},
		{"cc", "cc.chat.*.message", subjectNone, "", ""},
		{"cc", "ccx.chat.I1.message", subjectNone, "", ""},
		{"cc", "other.chat.I1.message", subjectNone, "", ""},
		{"cc", "cc.interaction.I1.attach", subjectNone, "", ""},
	}
	for _, tc := range tests {
		kind, id, source := parseSubject(tc.prefix, tc.subject)
		if kind != tc.kind || id != tc.id || source != tc.source {
			t.Errorf("parseSubject(%q, %q) = %v, %q, %q; want %v, %q, %q", tc.prefix, tc.subject, kind, id, source, tc.kind, tc.id, tc.source)
		}
	}
	if got := ChatSubject("", "I1"); got != "cc.chat.I1.message" {
		t.Errorf("ChatSubject = %q", got)
	}
	if got := EventSubject("acme.cc", "I1"); got != "acme.cc.interaction.I1.event" {
		t.Errorf("EventSubject = %q", got)
	}
}

// secret stands for customer data: it must never appear in a rejection reason.
const secret = "SECRET-CUSTOMER-TEXT"

func TestDecodeChat(t *testing.T) {
	sent := time.Date(2025, 3, 4, 5, 6, 7, 8000000, time.UTC)
	valid := []struct {
		name string
		data string
		want Message
	}{
		{"minimal", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"hi"}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "hi"}},
		{"full", `{"id":"m1","interactionId":"I1","from":{"role":"agent","id":"a7","name":"Ann"},"text":"hi","sentAt":"2025-03-04T06:06:07.008+01:00"}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleAgent, ID: "a7", Name: "Ann"}, Text: "hi", SentAt: sent}},
		{"unknown fields", `{"id":"m1","interactionId":"I1","from":{"role":"bot","avatar":{"x":1}},"text":"hi","channel":"web","meta":[1,2,{"a":null}]}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleBot}, Text: "hi"}},
		{"same key in different objects", `{"id":"m1","interactionId":"I1","from":{"role":"system","id":"s","text":"a"},"text":"b","meta":[{"id":1},{"id":2}]}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleSystem, ID: "s"}, Text: "b"}},
		{"sentAt at the edges of the range", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"hi","sentAt":"0001-01-01T00:00:01Z"}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "hi", SentAt: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)}},
		{"sentAt in year 9999", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"hi","sentAt":"9999-12-31T23:59:59+00:00"}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "hi", SentAt: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}},
		{"null optionals", `{"id":"m1","interactionId":"I1","from":{"role":"customer","id":null,"name":null},"text":"hi","sentAt":null}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "hi"}},
		{"empty text", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":""}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: ""}},
		{"whitespace around", " \n{\"id\":\"m1\",\"interactionId\":\"I1\",\"from\":{\"role\":\"customer\"},\"text\":\"x\"}\n ",
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "x"}},
		{"escapes", `{"id":"m\u0031","interactionId":"I1","from":{"role":"customer"},"text":"\u00e9\n"}`,
			Message{ID: "m1", InteractionID: "I1", From: Sender{Role: RoleCustomer}, Text: "é\n"}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeChat("I1", []byte(tc.data))
			if err != nil {
				t.Fatalf("decodeChat: %v", err)
			}
			if !got.SentAt.Equal(tc.want.SentAt) {
				t.Errorf("SentAt = %v, want %v", got.SentAt, tc.want.SentAt)
			}
			got.SentAt, tc.want.SentAt = time.Time{}, time.Time{}
			if *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}

	malformedCases := []struct {
		name, data, reason string
	}{
		{"not JSON", `{"id":"m1",` + secret, "invalid JSON"},
		{"trailing data", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x"} {}`, "invalid JSON"},
		{"array", `[1,2]`, "not a JSON object"},
		{"string", `"` + secret + `"`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"empty", ``, "invalid JSON"},
		{"invalid UTF-8", "{\"id\":\"m1\",\"interactionId\":\"I1\",\"from\":{\"role\":\"customer\"},\"text\":\"\xff\xfe\"}", "not valid UTF-8"},
		{"missing id", `{"interactionId":"I1","from":{"role":"customer"},"text":"` + secret + `"}`, "field id: missing"},
		{"empty id", `{"id":"","interactionId":"I1","from":{"role":"customer"},"text":"` + secret + `"}`, "field id: missing"},
		{"null id", `{"id":null,"interactionId":"I1","from":{"role":"customer"},"text":"` + secret + `"}`, "field id: missing"},
		{"numeric id", `{"id":7,"interactionId":"I1","from":{"role":"customer"},"text":"` + secret + `"}`, "field id: not a string"},
		{"id in other case", `{"ID":"m1","interactionId":"I1","from":{"role":"customer"},"text":"` + secret + `"}`, "field id: missing"},
		{"missing interactionId", `{"id":"m1","from":{"role":"customer"},"text":"` + secret + `"}`, "field interactionId: missing"},
		{"interactionId differs", `{"id":"m1","interactionId":"I2","from":{"role":"customer"},"text":"` + secret + `"}`, "field interactionId: differs"},
		{"interactionId differs in case", `{"id":"m1","interactionId":"i1","from":{"role":"customer"},"text":"` + secret + `"}`, "field interactionId: differs"},
		{"missing text", `{"id":"m1","interactionId":"I1","from":{"role":"customer"}}`, "field text: missing"},
		{"null text", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":null}`, "field text: missing"},
		{"numeric text", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":123456789}`, "field text: not a string"},
		{"object text", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":{"t":"` + secret + `"}}`, "field text: not a string"},
		{"missing from", `{"id":"m1","interactionId":"I1","text":"` + secret + `"}`, "field from: missing"},
		{"string from", `{"id":"m1","interactionId":"I1","from":"customer","text":"` + secret + `"}`, "field from: not a JSON object"},
		{"missing role", `{"id":"m1","interactionId":"I1","from":{"id":"c1"},"text":"` + secret + `"}`, "field from.role: missing"},
		{"unknown role", `{"id":"m1","interactionId":"I1","from":{"role":"admin"},"text":"` + secret + `"}`, "field from.role: not one of"},
		{"role in other case", `{"id":"m1","interactionId":"I1","from":{"role":"Customer"},"text":"` + secret + `"}`, "field from.role: not one of"},
		{"empty role", `{"id":"m1","interactionId":"I1","from":{"role":""},"text":"` + secret + `"}`, "field from.role: not one of"},
		{"numeric role", `{"id":"m1","interactionId":"I1","from":{"role":1},"text":"` + secret + `"}`, "field from.role: not a string"},
		{"numeric from.id", `{"id":"m1","interactionId":"I1","from":{"role":"customer","id":5},"text":"` + secret + `"}`, "field from.id: not a string"},
		{"numeric from.name", `{"id":"m1","interactionId":"I1","from":{"role":"customer","name":true},"text":"` + secret + `"}`, "field from.name: not a string"},
		{"bad sentAt", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"` + secret + `"}`, "field sentAt: not an RFC 3339 timestamp"},
		{"date-only sentAt", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-03-04"}`, "field sentAt: not an RFC 3339 timestamp"},
		{"no-zone sentAt", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-03-04T05:06:07"}`, "field sentAt: not an RFC 3339 timestamp"},
		{"empty sentAt", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":""}`, "field sentAt: not an RFC 3339 timestamp"},
		{"numeric sentAt", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":1741064767000}`, "field sentAt: not a string"},
		// Times whose UTC year is outside 1..9999 (time.Time.MarshalJSON cannot write them back).
		{"sentAt with a one-digit hour (fuzz)", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0000-01-01T0:00:00+01:00"}`, "field sentAt: not an RFC 3339 timestamp"},
		{"sentAt in UTC year -1", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0000-01-01T00:00:00+01:00"}`, "field sentAt: out of range (UTC year 1 to 9999)"},
		{"sentAt in UTC year 0", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0000-06-01T00:00:00Z"}`, "field sentAt: out of range (UTC year 1 to 9999)"},
		{"sentAt a minute before year 1", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0001-01-01T00:00:00+00:01"}`, "field sentAt: out of range (UTC year 1 to 9999)"},
		{"sentAt in UTC year 10000", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"9999-12-31T23:00:00-02:00"}`, "field sentAt: out of range (UTC year 1 to 9999)"},
		// Duplicate keys, at any depth, are malformed: the last one would win otherwise.
		{"duplicate text", `{"text":"hi","id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"{start:123456789}"}`, `chat message: duplicate key "text"`},
		{"duplicate id", `{"id":"m0","id":"m1","interactionId":"I1","from":{"role":"system"},"text":"` + secret + `"}`, `chat message: duplicate key "id"`},
		{"duplicate from.role", `{"id":"m1","interactionId":"I1","from":{"role":"agent","role":"customer"},"text":"` + secret + `"}`, `chat message: duplicate key "role" in from`},
		{"duplicate in an ignored value", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","meta":[1,{"a":{"b":"` + secret + `","b":"` + secret + `"}}]}`, `chat message: duplicate key "b" in meta[1].a`},
		{"duplicate after unescaping", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","text":"` + secret + `"}`, `chat message: duplicate key "text"`},
	}
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeChat("I1", []byte(tc.data))
			checkMalformed(t, m, err, tc.reason)
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	valid := []struct {
		name string
		data string
		want Event
	}{
		{"created", `{"id":"e1","interactionId":"I1","type":"created","agentId":"a1","at":"2025-03-04T05:06:07Z"}`,
			Event{ID: "e1", InteractionID: "I1", Type: EventCreated, AgentID: "a1", At: at}},
		{"transferred", `{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a1","toAgentId":"a2"}`,
			Event{ID: "e1", InteractionID: "I1", Type: EventTransferred, AgentID: "a1", ToAgentID: "a2"}},
		{"unknown type is valid", `{"id":"e1","interactionId":"I1","type":"sneezed"}`,
			Event{ID: "e1", InteractionID: "I1", Type: "sneezed"}},
		{"unknown fields and nulls", `{"id":"e1","interactionId":"I1","type":"closed","agentId":null,"reason":{"code":3},"at":null}`,
			Event{ID: "e1", InteractionID: "I1", Type: EventClosed}},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeEvent("I1", []byte(tc.data))
			if err != nil {
				t.Fatalf("decodeEvent: %v", err)
			}
			if !got.At.Equal(tc.want.At) {
				t.Errorf("At = %v, want %v", got.At, tc.want.At)
			}
			got.At, tc.want.At = time.Time{}, time.Time{}
			if *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
	malformedCases := []struct {
		name, data, reason string
	}{
		{"not JSON", `{"id":` + secret, "invalid JSON"},
		{"array", `[]`, "not a JSON object"},
		{"missing id", `{"interactionId":"I1","type":"closed"}`, "field id: missing"},
		{"missing interactionId", `{"id":"e1","type":"closed"}`, "field interactionId: missing"},
		{"interactionId differs", `{"id":"e1","interactionId":"I9","type":"closed"}`, "field interactionId: differs"},
		{"missing type", `{"id":"e1","interactionId":"I1"}`, "field type: missing"},
		{"empty type", `{"id":"e1","interactionId":"I1","type":""}`, "field type: missing"},
		{"numeric type", `{"id":"e1","interactionId":"I1","type":3}`, "field type: not a string"},
		{"numeric agentId", `{"id":"e1","interactionId":"I1","type":"assigned","agentId":3}`, "field agentId: not a string"},
		{"numeric toAgentId", `{"id":"e1","interactionId":"I1","type":"transferred","toAgentId":[]}`, "field toAgentId: not a string"},
		{"bad at", `{"id":"e1","interactionId":"I1","type":"closed","at":"yesterday ` + secret + `"}`, "field at: not an RFC 3339 timestamp"},
		{"out of range at", `{"id":"e1","interactionId":"I1","type":"closed","at":"2025-13-40T25:61:00Z"}`, "field at: not an RFC 3339 timestamp"},
		{"at in UTC year -1", `{"id":"e1","interactionId":"I1","type":"closed","at":"0000-01-01T00:30:00+01:00"}`, "field at: out of range (UTC year 1 to 9999)"},
		{"at in UTC year 10000", `{"id":"e1","interactionId":"I1","type":"closed","at":"9999-12-31T22:00:00-03:00"}`, "field at: out of range (UTC year 1 to 9999)"},
		{"duplicate type", `{"id":"e1","interactionId":"I1","type":"activity","type":"closed"}`, `event: duplicate key "type"`},
		{"duplicate agentId", `{"id":"e1","interactionId":"I1","type":"assigned","agentId":"a1","agentId":"a2"}`, `event: duplicate key "agentId"`},
		{"duplicate in an ignored object", `{"id":"e1","interactionId":"I1","type":"closed","reason":{"code":3,"code":4}}`, `event: duplicate key "code" in reason`},
	}
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := decodeEvent("I1", []byte(tc.data))
			checkMalformed(t, e, err, tc.reason)
		})
	}
}

// TestDecodeSubjectTokens: interactionId, agentId and toAgentId end up in subjects the daemon
// publishes on (<prefix>.interaction.<interactionId>.attach, <prefix>.agent.<agentId>.cobrowse),
// so a value that cannot be one NATS subject token makes the message malformed, with a reason
// that names the field and never quotes the value.
func TestDecodeSubjectTokens(t *testing.T) {
	bad := []struct {
		name, value, reason string
	}{
		{"separator", secret + ".x", "not a NATS subject token (a token separator '.' at byte offset 20)"},
		{"leading separator", "." + secret, "not a NATS subject token (a token separator '.' at byte offset 0)"},
		{"star", secret + "*", "not a NATS subject token (a wildcard at byte offset 20)"},
		{"greater than", ">" + secret, "not a NATS subject token (a wildcard at byte offset 0)"},
		{"space", secret + " x", "not a NATS subject token (whitespace at byte offset 20)"},
		{"tab", secret + "\t", "not a NATS subject token (whitespace"},
		{"line feed", secret + "\n", "not a NATS subject token (whitespace"},
		{"carriage return", secret + "\r", "not a NATS subject token (whitespace"},
		{"form feed", secret + "\f", "not a NATS subject token (whitespace"},
		{"vertical tab", secret + "\v", "not a NATS subject token (whitespace"},
		{"NBSP", secret + "\u00a0", "not a NATS subject token (whitespace"},
		{"NEL", secret + "\u0085", "not a NATS subject token (whitespace"},
		{"line separator", secret + "\u2028", "not a NATS subject token (whitespace"},
		{"ideographic space", secret + "\u3000", "not a NATS subject token (whitespace"},
		{"NUL", secret + "\x00", "not a NATS subject token (a control character at byte offset 20)"},
		{"escape", secret + "\x1b", "not a NATS subject token (a control character"},
		{"DEL", secret + "\x7f", "not a NATS subject token (a control character"},
		{"C1 control", secret + "\u0090", "not a NATS subject token (a control character"},
	}
	enc := func(fields map[string]any) []byte {
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			// interactionId, equal to the subject's token: the token rule, not the comparison, refuses it.
			m, err := decodeChat(tc.value, enc(map[string]any{"id": "m1", "interactionId": tc.value, "from": map[string]any{"role": "customer"}, "text": "x"}))
			checkMalformed(t, m, err, "field interactionId: "+tc.reason)
			e, err := decodeEvent(tc.value, enc(map[string]any{"id": "e1", "interactionId": tc.value, "type": "closed"}))
			checkMalformed(t, e, err, "field interactionId: "+tc.reason)
			// agentId and toAgentId, on every event type that carries them, and on an unknown one.
			for _, typ := range []string{"created", "assigned", "transferred", "sneezed"} {
				e, err = decodeEvent("I1", enc(map[string]any{"id": "e1", "interactionId": "I1", "type": typ, "agentId": tc.value}))
				checkMalformed(t, e, err, "field agentId: "+tc.reason)
				e, err = decodeEvent("I1", enc(map[string]any{"id": "e1", "interactionId": "I1", "type": typ, "agentId": "a1", "toAgentId": tc.value}))
				checkMalformed(t, e, err, "field toAgentId: "+tc.reason)
			}
		})
	}

	// Present but empty: the optional ids are absent only when missing or null.
	e, err := decodeEvent("I1", []byte(`{"id":"e1","interactionId":"I1","type":"assigned","agentId":""}`))
	checkMalformed(t, e, err, "field agentId: empty")
	e, err = decodeEvent("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a1","toAgentId":""}`))
	checkMalformed(t, e, err, "field toAgentId: empty")
	e, err = decodeEvent("", []byte(`{"id":"e1","interactionId":"","type":"closed"}`))
	checkMalformed(t, e, err, "field interactionId: missing")

	// Invalid UTF-8 cannot come out of the JSON decoder (the payload is checked first and escaped
	// lone surrogates become U+FFFD), so the rule is checked directly.
	if err := checkToken("agentId", "a\xffb"); err == nil || err.Error() != "field agentId: not a NATS subject token (not valid UTF-8)" {
		t.Errorf("checkToken of invalid UTF-8 = %v", err)
	}

	// What the rule lets through.
	for _, v := range []string{"a1", "I-2_x", "agent@example", "A:B/C", "ünïcødé", "\u200b", "\ufffd", "日本"} {
		e, err := decodeEvent(v, enc(map[string]any{"id": "e1", "interactionId": v, "type": "transferred", "agentId": v, "toAgentId": v}))
		if err != nil || e.InteractionID != v || e.AgentID != v || e.ToAgentID != v {
			t.Errorf("decodeEvent with ids %q = %+v, %v; want it accepted", v, e, err)
		}
		m, err := decodeChat(v, enc(map[string]any{"id": "m1", "interactionId": v, "from": map[string]any{"role": "customer"}, "text": "x"}))
		if err != nil || m.InteractionID != v {
			t.Errorf("decodeChat with interactionId %q = %+v, %v; want it accepted", v, m, err)
		}
	}
}

func checkMalformed[T any](t *testing.T, got *T, err error, reason string) {
	t.Helper()
	var me *malformedError
	if !errors.As(err, &me) {
		t.Fatalf("got %+v, %v; want a malformed error with reason %q", got, err, reason)
	}
	if got != nil {
		t.Errorf("got a value %+v with the error", got)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("reason %q, want it to contain %q", err, reason)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "yesterday") {
		t.Errorf("reason %q quotes the message content", err)
	}
}

func TestConsumerDecode(t *testing.T) {
	c := &Consumer{cfg: Config{Prefix: "cc", MaxPayload: 200}, triggers: map[Role]bool{RoleCustomer: true, RoleBot: true, RoleSystem: true}}
	chatMsg := func(role, text string) []byte {
		b, _ := json.Marshal(map[string]any{"id": "m1", "interactionId": "I1", "from": map[string]string{"role": role}, "text": text})
		return b
	}
	tests := []struct {
		name    string
		subject string
		data    []byte
		token   string
		reason  string
	}{
		{"customer start", "cc.chat.I1.message", chatMsg("customer", " {start:012345678}\n"), "012345678", ""},
		{"bot start", "cc.chat.I1.message", chatMsg("bot", "<start:012345678>"), "012345678", ""},
		{"system start", "cc.chat.I1.message", chatMsg("system", "<start:012345678>"), "012345678", ""},
		{"agent start does not trigger", "cc.chat.I1.message", chatMsg("agent", "{start:012345678}"), "", ""},
		{"not a start", "cc.chat.I1.message", chatMsg("customer", "{start:012345678} please"), "", ""},
		{"event", "cc.interaction.I1.event", []byte(`{"id":"e1","interactionId":"I1","type":"closed"}`), "", ""},
		{"at the size limit", "cc.chat.I1.message", chatMsg("customer", strings.Repeat("x", 200-len(chatMsg("customer", "")))), "", ""},
		{"over the size limit", "cc.chat.I1.message", chatMsg("customer", strings.Repeat("x", 201-len(chatMsg("customer", "")))), "", "payload of 201 bytes exceeds the limit of 200"},
		{"subject matches neither pattern", "cc.chat.I1.other", chatMsg("customer", "x"), "", "subject matches neither"},
		{"subject token differs", "cc.chat.I2.message", chatMsg("customer", "x"), "", "field interactionId: differs"},
		{"subject token is not a token", "cc.interaction.I\v1.event", []byte(`{"id":"e1","interactionId":"I\u000b1","type":"closed"}`), "", "field interactionId: not a NATS subject token (whitespace at byte offset 1)"},
		{"agentId is not a token", "cc.interaction.I1.event", []byte(`{"id":"e1","interactionId":"I1","type":"assigned","agentId":"a.b"}`), "", "field agentId: not a NATS subject token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := c.decode(tc.subject, tc.data)
			if tc.reason != "" {
				if err == nil || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("decode error %v, want %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if in.InteractionID != "I1" || (in.Chat == nil) == (in.Event == nil) {
				t.Fatalf("decoded %+v", in)
			}
			if in.StartToken != tc.token {
				t.Errorf("StartToken = %q, want %q", in.StartToken, tc.token)
			}
		})
	}
}

func TestSubjectCovers(t *testing.T) {
	tests := []struct {
		filter, pattern string
		want            bool
	}{
		{"cc.chat.*.message", "cc.chat.*.message", true},
		{"cc.>", "cc.chat.*.message", true},
		{">", "cc.chat.*.message", true},
		{"cc.*.*.*", "cc.chat.*.message", true},
		{"cc.chat.>", "cc.chat.*.message", true},
		{"cc.chat.*.>", "cc.chat.*.message", true},
		{"cc.chat.*.message.>", "cc.chat.*.message", false},
		{"cc.chat.I1.message", "cc.chat.*.message", false},
		{"cc.chat.*", "cc.chat.*.message", false},
		{"cc.chat.*.*.*", "cc.chat.*.message", false},
		{"cc.interaction.*.event", "cc.chat.*.message", false},
		{"dd.>", "cc.chat.*.message", false},
	}
	for _, tc := range tests {
		if got := subjectCovers(tc.filter, tc.pattern); got != tc.want {
			t.Errorf("subjectCovers(%q, %q) = %v, want %v", tc.filter, tc.pattern, got, tc.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "cc" || cfg.Stream != "CC_INBOUND" || cfg.Durable != "cobrowse-connector" ||
		cfg.MaxPayload != 64*1024 || cfg.AckWait != 30*time.Second || cfg.MaxDeliver != 6 ||
		cfg.MaxAckPending != 20000 || cfg.FetchBatch != 2000 || cfg.Logger == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	if want := []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}; !slices.Equal(cfg.Backoff, want) {
		t.Errorf("backoff %v, want %v", cfg.Backoff, want)
	}
	if want := []Role{RoleCustomer, RoleBot, RoleSystem}; !slices.Equal(cfg.TriggerRoles, want) {
		t.Errorf("trigger roles %v, want %v", cfg.TriggerRoles, want)
	}
	cfg, err = Config{Backoff: []time.Duration{}, TriggerRoles: []Role{}}.withDefaults()
	if err != nil || len(cfg.Backoff) != 0 || len(cfg.TriggerRoles) != 0 {
		t.Errorf("explicit empty lists: %v, %v, %v", cfg.Backoff, cfg.TriggerRoles, err)
	}

	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Prefix: "cc.*"}, `chat: prefix "cc.*"`},
		{Config{Prefix: "cc."}, `chat: prefix "cc."`},
		{Config{Stream: "A.B"}, `chat: stream "A.B"`},
		{Config{Durable: "a b"}, `chat: durable "a b"`},
		{Config{MaxPayload: -1}, "chat: max payload -1"},
		{Config{AckWait: -time.Second}, "chat: ack wait -1s"},
		{Config{MaxDeliver: -2}, "chat: max deliver -2"},
		{Config{Backoff: []time.Duration{time.Second, 0}}, "chat: backoff [1s 0s]"},
		{Config{MaxDeliver: 2, Backoff: []time.Duration{1, 2, 3}}, "chat: backoff has 3 values: want at most max deliver (2)"},
		{Config{MaxAckPending: -5}, "chat: max ack pending -5"},
		{Config{FetchBatch: -1}, "chat: fetch batch -1"},
		{Config{TriggerRoles: []Role{"admin"}}, `chat: trigger role "admin"`},
	}
	for _, tc := range bad {
		if _, err := tc.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("withDefaults(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestDeadlineFor(t *testing.T) {
	bo := []time.Duration{1, 5, 15}
	for attempt, want := range map[int]time.Duration{1: 1, 2: 5, 3: 15, 4: 15, 9: 15} {
		if got := deadlineFor(30, bo, attempt); got != want {
			t.Errorf("deadlineFor(attempt %d) = %v, want %v", attempt, got, want)
		}
	}
	if got := deadlineFor(30, nil, 3); got != 30 {
		t.Errorf("without backoff: %v, want the ack wait", got)
	}
}

func TestDuplicateKey(t *testing.T) {
	tests := []struct {
		data, key, path string // key "": no duplicate
	}{
		{`{}`, "", ""},
		{`[]`, "", ""},
		{`"a"`, "", ""},
		{`{"a":1,"b":2}`, "", ""},
		{`{"a":1,"a":2}`, "a", ""},
		{`{"a":{"a":1},"b":{"a":2}}`, "", ""},                    // the same key in different objects
		{`{"a":[{"k":1},{"k":2}]}`, "", ""},                      // in different array elements
		{`{"a":"a","b":"a"}`, "", ""},                            // a value equal to a key
		{`{"a":["a","a"]}`, "", ""},                              // strings in an array are not keys
		{`{"a":{"b":1,"b":2}}`, "b", "a"},                        // nested
		{`{"x":[0,{"y":{"z":1,"z":null}}]}`, "z", "x[1].y"},      // deep, in an ignored value
		{`[{"a":1},{"b":1,"b":2}]`, "b", "[1]"},                  // a top-level array
		{`[[[{"k":1,"k":1}]]]`, "k", "[0][0][0]"},                // arrays in arrays
		{`{"text":"hi","text":"{start:123456789}"}`, "text", ""}, // the case that started it
		{`{"\u0074ext":1,"text":2}`, "text", ""},                 // compared after unescaping
		{`{"a\"b":1,"a\u0022b":2}`, `a"b`, ""},                   // an escaped quote
		{`{"\ud800":1,"\udfff":2}`, "\ufffd", ""},                // lone surrogates both decode to U+FFFD
		{`{"\ud83d\ude00":1,"😀":2}`, "😀", ""},                    // a surrogate pair
		{`{"é":1,"e\u0301":2}`, "", ""},                          // no Unicode normalization
		{`{"A":1,"a":2}`, "", ""},                                // case-sensitive
		{`{ "a" : 1 , "b" : { "c" : [ ] } , "a" : 3 }`, "a", ""}, // whitespace everywhere
		{`{"a":"}","a":"{"}`, "a", ""},                           // brackets inside strings
		{`{"a":"\\","b":"\\\"","a":0}`, "a", ""},                 // backslashes before the closing quote
		{`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k9":0,"k10":0,"k11":0,"k12":0,"k13":0,"k14":0,"k15":0,"k16":0,"k17":0,"k3":1}`, "k3", ""}, // past manyKeys
		{`{"a":{"b":1},"c":{"b":2,"d":{"b":3}},"e":1,"e":2}`, "e", ""}, // the frame after a closed child
	}
	for _, tc := range tests {
		if !json.Valid([]byte(tc.data)) {
			t.Fatalf("test input %s is not valid JSON", tc.data)
		}
		key, path, found := duplicateKey([]byte(tc.data))
		if found != (tc.key != "") {
			t.Errorf("duplicateKey(%s) found=%v, want %v", tc.data, found, tc.key != "")
			continue
		}
		if key != tc.key || path != tc.path {
			t.Errorf("duplicateKey(%s) = %q in %q, want %q in %q", tc.data, key, path, tc.key, tc.path)
		}
		// The oracle agrees.
		okey, opath, ofound := duplicateKeyOracle([]byte(tc.data))
		if ofound != found || okey != key || opath != path {
			t.Errorf("oracle(%s) = %q in %q (%v), scanner %q in %q (%v)", tc.data, okey, opath, ofound, key, path, found)
		}
	}
	// The empty key twice is a duplicate too.
	if key, path, found := duplicateKey([]byte(`{"":1,"":2}`)); !found || key != "" || path != "" {
		t.Errorf(`duplicateKey({"":1,"":2}) = %q, %q, %v`, key, path, found)
	}

	// The reason names the key, shortened and without control characters, never a value.
	for _, tc := range []struct{ data, reason string }{
		{`{"a":1,"a":"` + secret + `"}`, `event: duplicate key "a"`},
		{`{"from":{"role":"` + secret + `","role":"agent"}}`, `event: duplicate key "role" in from`},
		{`{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`, `event: duplicate key "` + strings.Repeat("k", 40) + `…"`},
		{`{"a\u001bb":1,"a\u001bb":2}`, `event: duplicate key "a?b"`},
	} {
		err := checkDuplicateKeys([]byte(tc.data), "event")
		if err == nil || err.Error() != tc.reason {
			t.Errorf("checkDuplicateKeys(%s) = %v, want %q", tc.data, err, tc.reason)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("reason %q quotes a value", err)
		}
	}
	// Invalid JSON still says where it breaks (the duplicate check runs on valid JSON only).
	m, err := decodeChat("I1", []byte(`{"text":"a","text":"b",`))
	checkMalformed(t, m, err, "chat message: invalid JSON at offset")
}

// duplicateKeyOracle is duplicateKey written independently, on encoding/json's Decoder.Token
// walk: valid JSON only.
func duplicateKeyOracle(data []byte) (key, path string, found bool) {
	type frame struct {
		object  bool
		keys    map[string]bool
		wantKey bool
		last    string
		index   int
	}
	pathOf := func(stack []*frame) string {
		var b strings.Builder
		for _, f := range stack {
			if f.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(shortKey([]byte(f.last)))
			} else {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			}
		}
		return b.String()
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	// valueDone moves the parent on after one of its values.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if top := stack[n-1]; top.object {
				top.wantKey = true
			} else {
				top.index++
			}
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k := tok.(string)
			top := stack[n-1]
			if top.keys[k] {
				return k, pathOf(stack[:n-1]), true
			}
			top.keys[k] = true
			top.last, top.wantKey = k, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
		if len(stack) == 0 && !dec.More() {
			return "", "", false
		}
	}
}

// BenchmarkDecodeChat measures a typical chat message through decodeChat, the duplicate-key check
// included, through the one-pass fastChat, and the check alone.
func BenchmarkDecodeChat(b *testing.B) {
	data := []byte(`{"id":"m-7f3a","interactionId":"I-20260314-0042","from":{"role":"customer","id":"c-981","name":"Ann Example"},"text":"Could you show me where to change my delivery address?","sentAt":"2026-03-14T09:26:51.204Z","channel":"web","meta":{"locale":"en-GB","tags":["billing","vip"]}}`)
	b.Run("decodeChat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeChat("I-20260314-0042", data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastChat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := fastChat("I-20260314-0042", data); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("duplicateKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, found := duplicateKey(data); found {
				b.Fatal("duplicate")
			}
		}
	})
}
