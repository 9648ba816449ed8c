package chat

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/test/contract"
)

// inboundTimeForm is the pattern of common.json's inboundTime: a time of this form that the
// daemon refuses can only be refused for what a pattern cannot say (the day of the month, the UTC
// year range).
var inboundTimeForm = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-4]):([0-5][0-9]|60))$`)

// FuzzInboundSchemasAgreeWithDecoder: the contract's inbound schemas (docs/asyncapi.yaml and
// docs/schemas) accept every message the consumer accepts, and refuse every message it refuses,
// save for the refusals a JSON Schema cannot state: a payload over the size limit, a key twice, a
// payload that is not UTF-8, and a time of the right form that is no date (2026-02-30) or lies
// outside the UTC years 1 to 9999.
func FuzzInboundSchemasAgreeWithDecoder(f *testing.F) {
	ct, err := contract.Load(DefaultPrefix)
	if err != nil {
		f.Fatal(err)
	}
	cons := &Consumer{cfg: Config{Prefix: DefaultPrefix, MaxPayload: DefaultMaxPayload}}
	for _, s := range []struct {
		kind          byte
		token, source string
		data          string
	}{
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer","id":"c","name":"n"},"text":"{start:123456789}","sentAt":"2025-01-02T03:04:05.678+02:00"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"agent","id":null},"text":"","extra":[1,{"a":null}],"sentAt":null}`},
		{0, "I1", "", `{"id":"m1","id":"m2","interactionId":"I1","from":{"role":"bot"},"text":"\u0000\ud800"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I2","from":{"role":"customer"},"text":"x"}`},
		{0, "I1", "", `{"id":"","interactionId":"I1","from":{"role":"customer"},"text":"x"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"Customer"},"text":"x"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":"customer","text":"x"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":null}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer","name":7},"text":"x"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2026-02-30T09:00:00Z"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0000-01-01T00:00:00Z"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"0000-12-31T23:00:00-02:00"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-01-02T03:04:05+24:00"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-01-02T03:04:05+25:00"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-01-02t03:04:05z"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-01-02T03:04:60Z"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x","sentAt":"2025-01-02T03:04:05.Z"}`},
		{0, "I\u00851", "", `{"id":"m1","interactionId":"I\u00851","from":{"role":"customer"},"text":"x"}`},
		{0, "I\f1", "", `{"id":"m1","interactionId":"I\f1","from":{"role":"customer"},"text":"x"}`},
		{0, "I*", "", `{"id":"m1","interactionId":"I*","from":{"role":"customer"},"text":"x"}`},
		{0, "I1", "", `[]`},
		{0, "I1", "", `null`},
		{0, "I1", "", "\xff"},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"` + "\xff" + `"}`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"x"} x`},
		{0, "I1", "", `{"id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"` + strings.Repeat("a", DefaultMaxPayload) + `"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a","toAgentId":"b","at":"2025-01-02T03:04:05Z"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"something-new","more":{}}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"closed","at":"2025-01-02"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"assigned","agentId":"a.b"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"assigned","agentId":""}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"assigned","agentId":null,"cobrowseVendor":"acme"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"assigned","cobrowseVendor":"zoom us"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"transferred","toAgentId":"b\u2028c"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"cobrowse_requested","requestedBy":{"role":"bot","id":"b"}}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"cobrowse_requested","requestedBy":{"id":"b"}}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"cobrowse_requested","requestedBy":"bot"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"cobrowse_requested","requestedBy":null}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":7}`},
		{1, "I\u00a01", "", `{"id":"e1","interactionId":"I\u00a01","type":"closed"}`},
		{1, "I1", "", `{"id":"e1","interactionId":"I1","type":"activity","type":"closed"}`},
		{2, "I1", "zoom", `{"id":"s1","interactionId":"I1","source":"zoom","type":"user_joined","role":"agent","sessionId":"z","at":"2025-01-02T03:04:05Z","raw":{"a":[1,2]}}`},
		{2, "I1", "operator", `{"id":"s1","interactionId":"I1","source":"operator","type":"stop"}`},
		{2, "I1", "agent", `{"id":"s1","interactionId":"I1","source":"zoom","type":"stop"}`},
		{2, "I1", "nobody", `{"id":"s1","interactionId":"I1","source":"nobody","type":"stop"}`},
		{2, "I1", "customer", `{"id":"s1","interactionId":"I1","source":"customer","type":"user_left","role":"bot"}`},
		{2, "I1", "customer", `{"id":"s1","interactionId":"I1","source":"customer","type":"user_left","role":""}`},
		{2, "I1", "customer", `{"id":"s1","interactionId":"I1","source":"customer","type":"user_left","role":null,"sessionId":null,"raw":null}`},
		{2, "I1", "customer", `{"id":"s1","interactionId":"I1","source":"customer","type":"user_left","sessionId":5}`},
		{2, "I1", "zoom", `{"id":"s1","interactionId":"I1","source":"zoom","type":"stop","raw":{"x":1,"x":2}}`},
	} {
		f.Add(s.kind, s.token, s.source, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, kind byte, token, source string, data []byte) {
		var subject string
		switch kind % 3 {
		case 0:
			subject = ChatSubject(DefaultPrefix, token)
		case 1:
			subject = EventSubject(DefaultPrefix, token)
		default:
			subject = SignalSubject(DefaultPrefix, token, source)
		}
		_, decErr := cons.decode(subject, data)
		schemaErr := ct.Check(subject, "", data)
		switch {
		case decErr == nil && schemaErr != nil:
			t.Fatalf("the consumer accepts what the contract refuses: %v", schemaErr)
		case decErr != nil && schemaErr == nil && !beyondSchemas(decErr, data):
			t.Fatalf("the contract accepts what the consumer refuses (%v): subject %q payload %q", decErr, subject, data)
		}
	})
}

// beyondSchemas reports whether the consumer's refusal is one a JSON Schema cannot state.
func beyondSchemas(err error, data []byte) bool {
	if me, ok := errors.AsType[*malformedError](err); ok {
		r := me.reason
		switch {
		case strings.Contains(r, "exceeds the limit"), strings.Contains(r, "duplicate key"), strings.Contains(r, "not valid UTF-8"):
			return true
		case strings.Contains(r, "out of range (UTC year"):
			return true
		case strings.Contains(r, "not an RFC 3339 timestamp"):
			// Only a time of the schema's form: the consumer refused it for its date.
			field, _, _ := strings.Cut(strings.TrimPrefix(r, "field "), ":")
			var obj map[string]json.RawMessage
			var s string
			return json.Unmarshal(data, &obj) == nil && json.Unmarshal(obj[field], &s) == nil && inboundTimeForm.MatchString(s)
		}
	}
	return false
}
