package chat

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// isSubjectToken is the contract's subject-token rule, written out independently of checkToken:
// non-empty valid UTF-8 with no '.', '*', '>', whitespace or control character.
func isSubjectToken(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// startOracle is the specification of DetectStart as a regexp. RE2's \s is [\t\n\f\r ], which is
// exactly startWhitespace; [0-9] is ASCII only.
var startOracle = regexp.MustCompile(`^\s*(\{start:[0-9]{9}\}|<start:[0-9]{9}>)\s*$`)

func FuzzDetectStart(f *testing.F) {
	for _, s := range []string{
		"{start:123456789}", "<start:000000000>", " \t\n\r\f{start:123456789}\f\r\n\t ",
		"{start:123456789} hi", "{start: 123456789}", "{START:123456789}", "{start:1234567890}",
		"{start:123456789>", "\v<start:123456789>", "{start:12345678٣}", "", "{}", "<start:>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		token, ok := DetectStart(text)
		m := startOracle.FindStringSubmatch(text)
		if ok != (m != nil) {
			t.Fatalf("DetectStart(%q) ok=%v, oracle says %v", text, ok, m != nil)
		}
		if !ok {
			if token != "" {
				t.Fatalf("DetectStart(%q) returned token %q with ok=false", text, token)
			}
			return
		}
		if want := m[1][7:16]; token != want {
			t.Fatalf("DetectStart(%q) = %q, oracle token %q", text, token, want)
		}
	})
}

func FuzzDecodeChat(f *testing.F) {
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"customer","id":"c","name":"n"},"text":"{start:123456789}","sentAt":"2025-01-02T03:04:05.678+02:00"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"agent"},"text":"","extra":[1,{"a":null}]}`))
	f.Add("I1", []byte(`{"id":"m1","id":"m2","interactionId":"I1","from":{"role":"bot"},"text":"\u0000\ud800"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I2","from":{"role":"customer"},"text":"x"}`))
	f.Add("", []byte(`{"id":"m1","interactionId":"","from":{"role":"customer"},"text":"x"}`))
	f.Add("I1", []byte(`[]`))
	f.Add("I1", []byte(`null`))
	f.Add("I1", []byte("\xff"))
	f.Add("I*", []byte(`{"id":"m1","interactionId":"I*","from":{"role":"customer"},"text":"x"}`))
	f.Add("I\f1", []byte(`{"id":"m1","interactionId":"I\f1","from":{"role":"customer"},"text":"x"}`))
	f.Add("I\u00851", []byte(`{"id":"m1","interactionId":"I\u00851","from":{"role":"customer"},"text":"x"}`))
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		m, err := decodeChat(token, data)
		if err != nil {
			if m != nil {
				t.Fatalf("value %+v returned with error %v", m, err)
			}
			return
		}
		if m.ID == "" || m.InteractionID != token || !m.From.Role.Valid() {
			t.Fatalf("accepted an invalid message: %+v", m)
		}
		if !isSubjectToken(m.InteractionID) {
			t.Fatalf("accepted interactionId %q, not a NATS subject token", m.InteractionID)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "interactionId", "text", "from"} {
			if _, ok := fields[k]; !ok {
				t.Fatalf("re-encoding %s lacks %q", out, k)
			}
		}
		if fields["interactionId"] != token {
			t.Fatalf("re-encoding %s: interactionId differs from %q", out, token)
		}
		again, err := decodeChat(token, out)
		if err != nil {
			t.Fatalf("re-encoding %s rejected: %v", out, err)
		}
		if again.ID != m.ID || again.Text != m.Text || again.From != m.From || !again.SentAt.Equal(m.SentAt) {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a","toAgentId":"b","at":"2025-01-02T03:04:05Z"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"something-new","more":{}}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"closed","at":"2025-01-02"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1"}`))
	f.Add("I1", []byte(`{`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"assigned","agentId":"a.b"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"assigned","agentId":""}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a","toAgentId":"b\u000b"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","toAgentId":"b\u2028c"}`))
	f.Add("I\u00a01", []byte(`{"id":"e1","interactionId":"I\u00a01","type":"closed"}`))
	f.Add("I>", []byte(`{"id":"e1","interactionId":"I>","type":"closed"}`))
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		e, err := decodeEvent(token, data)
		if err != nil {
			if e != nil {
				t.Fatalf("value %+v returned with error %v", e, err)
			}
			return
		}
		if e.ID == "" || e.InteractionID != token || e.Type == "" {
			t.Fatalf("accepted an invalid event: %+v", e)
		}
		if !isSubjectToken(e.InteractionID) {
			t.Fatalf("accepted interactionId %q, not a NATS subject token", e.InteractionID)
		}
		// agentId and toAgentId are optional: absent ("") or a subject token.
		if e.AgentID != "" && !isSubjectToken(e.AgentID) {
			t.Fatalf("accepted agentId %q, not a NATS subject token", e.AgentID)
		}
		if e.ToAgentID != "" && !isSubjectToken(e.ToAgentID) {
			t.Fatalf("accepted toAgentId %q, not a NATS subject token", e.ToAgentID)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "interactionId", "type"} {
			if _, ok := fields[k]; !ok {
				t.Fatalf("re-encoding %s lacks %q", out, k)
			}
		}
		if fields["interactionId"] != token {
			t.Fatalf("re-encoding %s: interactionId differs from %q", out, token)
		}
		again, err := decodeEvent(token, out)
		if err != nil {
			t.Fatalf("re-encoding %s rejected: %v", out, err)
		}
		if again.ID != e.ID || again.Type != e.Type || again.AgentID != e.AgentID || again.ToAgentID != e.ToAgentID || !again.At.Equal(e.At) {
			t.Fatalf("round trip changed %+v into %+v", e, again)
		}
	})
}

func FuzzParseSubject(f *testing.F) {
	f.Add("cc", "cc.chat.I1.message")
	f.Add("acme.cc", "acme.cc.interaction.I1.event")
	f.Add("cc", "cc.chat..message")
	f.Add("cc", "cc.chat.a.b.message")
	f.Fuzz(func(t *testing.T, prefix, subject string) {
		kind, id := parseSubject(prefix, subject)
		switch kind {
		case subjectNone:
			if id != "" {
				t.Fatalf("no match but id %q", id)
			}
		case subjectChat:
			if got := prefix + ".chat." + id + ".message"; got != subject {
				t.Fatalf("parsed %q as chat %q of prefix %q", subject, id, prefix)
			}
		case subjectEvent:
			if got := prefix + ".interaction." + id + ".event"; got != subject {
				t.Fatalf("parsed %q as event %q of prefix %q", subject, id, prefix)
			}
		}
		if kind != subjectNone && (id == "" || strings.ContainsAny(id, ".*> \t\r\n")) {
			t.Fatalf("parsed %q into a bad token %q", subject, id)
		}
	})
}
