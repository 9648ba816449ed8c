package chat

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// isSubjectToken is the contract's subject-token rule, written out independently of checkToken:
// non-empty valid UTF-8 with no '.', '*', '>', whitespace or control character.
func isSubjectToken(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// startOracle is the specification of StartCandidate as a regexp. RE2's \s is [\t\n\f\r ], which
// is exactly startWhitespace; the classes are ASCII only.
var startOracle = regexp.MustCompile(`^\s*(?:\{start:([A-Za-z0-9]{1,64})\}|<start:([A-Za-z0-9]{1,64})>)\s*$`)

func FuzzStartCandidate(f *testing.F) {
	for _, s := range []string{
		"{start:123456789}", "<start:000000000>", " \t\n\r\f{start:123456789}\f\r\n\t ",
		"{start:123456789} hi", "{start: 123456789}", "{START:123456789}", "{start:1234567890}",
		"{start:123456789>", "\v<start:123456789>", "{start:12345678٣}", "", "{}", "<start:>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		token, ok := StartCandidate(text)
		m := startOracle.FindStringSubmatch(text)
		if ok != (m != nil) {
			t.Fatalf("StartCandidate(%q) ok=%v, oracle says %v", text, ok, m != nil)
		}
		if !ok {
			if token != "" {
				t.Fatalf("StartCandidate(%q) returned token %q with ok=false", text, token)
			}
			return
		}
		if want := m[1] + m[2]; token != want {
			t.Fatalf("StartCandidate(%q) = %q, oracle token %q", text, token, want)
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
	f.Add("I1", []byte(`{"text":"hi","id":"m1","interactionId":"I1","from":{"role":"customer"},"text":"{start:123456789}"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"customer","r\u006fle":"agent"},"text":"x"}`))
	// testdata/fuzz/FuzzDecodeChat holds the inputs the fuzzer found (sentAt in UTC year -1).
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		m, err := decodeChat(token, data)
		if err != nil {
			if m != nil {
				t.Fatalf("value %+v returned with error %v", m, err)
			}
			return
		}
		if key, path, dup := duplicateKeyOracle(data); dup {
			t.Fatalf("accepted a message with the duplicate key %q in %q", key, path)
		}
		if y := m.SentAt.Year(); !m.SentAt.IsZero() && (y < 1 || y > 9999 || m.SentAt.Location() != time.UTC) {
			t.Fatalf("accepted sentAt %v", m.SentAt)
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
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"activity","type":"closed"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"closed","at":"0000-01-01T00:00:00+01:00"}`))
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		e, err := decodeEvent(token, data)
		if err != nil {
			if e != nil {
				t.Fatalf("value %+v returned with error %v", e, err)
			}
			return
		}
		if key, path, dup := duplicateKeyOracle(data); dup {
			t.Fatalf("accepted an event with the duplicate key %q in %q", key, path)
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

// FuzzDuplicateKey: duplicateKey never panics, on any input; on valid JSON it finds the same
// first duplicate (key and path) as duplicateKeyOracle, the Decoder.Token walk.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"a":2}`, `{"a":{"b":1},"b":{"b":2}}`, `[{"k":1},{"k":[{"k":1,"k":2}]}]`,
		`{"\u0074ext":1,"text":2}`, `{"\ud800":1,"\udfff":2}`, `{"a\\":1,"a\\":2}`, `{"a":"\"}","a":0}`,
		`{"a":1,"a":2`, `{"a`, `"`, `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":0}`,
		"{\"\xff\":1,\"\xfe\":2}", `{} {"a":1,"a":1}`, `]]]}}}{"a":0,"a":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, path, found := duplicateKey(data)
		if !json.Valid(data) {
			return // anything but a panic
		}
		okey, opath, ofound := duplicateKeyOracle(data)
		if found != ofound || key != okey || path != opath {
			t.Fatalf("duplicateKey(%q) = %q in %q (%v); the Token walk finds %q in %q (%v)", data, key, path, found, okey, opath, ofound)
		}
		// Through the decoders: a payload with a duplicate key is malformed, with its name.
		if found {
			if _, err := decodeChat("I1", data); err == nil || !strings.Contains(err.Error(), "duplicate key "+quoteKey(key)) {
				if utf8.Valid(data) {
					t.Fatalf("decodeChat(%q) = %v, want the duplicate key %q", data, err, key)
				}
			}
		}
	})
}

func FuzzParseSubject(f *testing.F) {
	f.Add("cc", "cc.chat.I1.message")
	f.Add("acme.cc", "acme.cc.interaction.I1.event")
	f.Add("cc", "cc.chat..message")
	f.Add("cc", "cc.chat.a.b.message")
	f.Fuzz(func(t *testing.T, prefix, subject string) {
		kind, id, source := parseSubject(prefix, subject)
		switch kind {
		case subjectNone:
			if id != "" || source != "" {
				t.Fatalf("no match but id %q, source %q", id, source)
			}
		case subjectSignal:
			if got := prefix + ".signal." + id + "." + source; got != subject {
				t.Fatalf("parsed %q as signal %q from %q of prefix %q", subject, id, source, prefix)
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

func FuzzDecodeSignal(f *testing.F) {
	f.Add("I1", "zoom", []byte(`{"id":"s1","interactionId":"I1","source":"zoom","type":"user_joined","role":"agent","sessionId":"z","at":"2025-01-02T03:04:05Z","raw":{"a":[1,2]}}`))
	f.Add("I1", "operator", []byte(`{"id":"s1","interactionId":"I1","source":"operator","type":"stop"}`))
	f.Add("I1", "agent", []byte(`{"id":"s1","interactionId":"I1","source":"zoom","type":"stop"}`))
	f.Add("I1", "nobody", []byte(`{"id":"s1","interactionId":"I1","source":"nobody","type":"stop"}`))
	f.Add("I1", "customer", []byte(`{"id":"s1","interactionId":"I1","source":"customer","type":"user_left","role":"bot"}`))
	f.Add("I1", "zoom", []byte(`{"id":"s1","interactionId":"I1","source":"zoom","type":"stop","raw":{"x":1,"x":2}}`))
	f.Fuzz(func(t *testing.T, token, source string, data []byte) {
		g, err := decodeSignal(token, source, data)
		if err != nil {
			if g != nil {
				t.Fatalf("value %+v returned with error %v", g, err)
			}
			return
		}
		if key, path, dup := duplicateKeyOracle(data); dup {
			t.Fatalf("accepted a signal with the duplicate key %q in %q", key, path)
		}
		if g.ID == "" || g.InteractionID != token || g.Source != source || !knownSource(source) || g.Type == "" {
			t.Fatalf("accepted an invalid signal: %+v", g)
		}
		if g.Role != "" && g.Role != RoleCustomer && g.Role != RoleAgent {
			t.Fatalf("accepted role %q", g.Role)
		}
		if g.Raw != nil && !json.Valid(g.Raw) {
			t.Fatalf("kept raw %q, not JSON", g.Raw)
		}
	})
}

// FuzzFastChat checks the one-pass decoder against the reference: whatever fastChat accepts,
// decodeChat accepts with the same message (fastChat only ever accepts; the reference words every
// refusal). The seeds are the usual shapes, escapes of every kind, and near misses of each rule.
func FuzzFastChat(f *testing.F) {
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"customer","id":"c","name":"n"},"text":"hello there","sentAt":"2025-01-02T03:04:05.678+02:00"}`))
	f.Add("I1", []byte(` { "id" : "m1" , "interactionId":"I1","from":{"role":"agent","x":1.5e3},"text":"","n":-0,"b":true,"z":null} `))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"\u003cstart:1\u003e \ud83d\ude00 \ud800 \"q\" \\ \/ \b\f\n\r\t"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"\ud800\u0041"}`))
	f.Add("I1", []byte(`{"id":"m1","id":"m2","interactionId":"I1","from":{"role":"bot"},"text":"x"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot","role":"agent"},"text":"x"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"boss"},"text":"x"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"x","sentAt":"2025-01-02T3:04:05Z"}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"x","extra":01}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"x","meta":{"a":[1,{"b":null,"b":2}]}}`))
	f.Add("I1", []byte(`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"x"}x`))
	f.Add("I1", []byte("{\"id\":\"m1\",\"interactionId\":\"I1\",\"from\":{\"role\":\"bot\"},\"text\":\"a\tb\"}"))
	f.Add("I1", []byte(`{"id":"","interactionId":"I1","from":{"role":"bot"},"text":"x"}`))
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		fast, ok := fastChat(token, data)
		if !ok {
			return
		}
		ref, err := decodeChat(token, data)
		if err != nil {
			t.Fatalf("fastChat accepted what decodeChat refuses (%v): %q", err, data)
		}
		if fast.ID != ref.ID || fast.InteractionID != ref.InteractionID || fast.Text != ref.Text ||
			fast.From != ref.From || !fast.SentAt.Equal(ref.SentAt) || fast.SentAt.Location() != ref.SentAt.Location() {
			t.Fatalf("fastChat %+v, decodeChat %+v, for %q", fast, ref, data)
		}
	})
}

// FuzzFastEvent checks the one-pass event decoder against the reference, as FuzzFastChat does.
func FuzzFastEvent(f *testing.F) {
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"assigned","agentId":"a-1","cobrowseVendor":"genesys","at":"2026-12-01T10:00:00Z"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"closed"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","agentId":"a 1"}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"transferred","toAgentId":""}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"","at":null}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"x","meta":{"a":1,"a":2}}`))
	f.Add("I1", []byte(`{"id":"e1","interactionId":"I1","type":"cobrowse_requested","requestedBy":{"role":"bot"}}`))
	f.Fuzz(func(t *testing.T, token string, data []byte) {
		fast, ok := fastEvent(token, data)
		if !ok {
			return
		}
		ref, err := decodeEvent(token, data)
		if err != nil {
			t.Fatalf("fastEvent accepted what decodeEvent refuses (%v): %q", err, data)
		}
		if fast.ID != ref.ID || fast.InteractionID != ref.InteractionID || fast.Type != ref.Type || fast.AgentID != ref.AgentID ||
			fast.ToAgentID != ref.ToAgentID || fast.Vendor != ref.Vendor || ref.RequestedBy != nil ||
			!fast.At.Equal(ref.At) || fast.At.Location() != ref.At.Location() {
			t.Fatalf("fastEvent %+v, decodeEvent %+v, for %q", fast, ref, data)
		}
	})
}

// FuzzParseTimestamp: the UTC fast path (utcTimestamp) reads every timestamp as time.Parse does:
// the same time, and it refuses what the reference refuses.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"2026-12-01T09:26:53.571Z", "2026-12-01T09:26:53Z", "2024-02-29T23:59:59.999999999z",
		"2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-04-31T00:00:00Z", "0000-01-01T00:00:00Z",
		"2026-12-01T24:00:00Z", "2026-12-01T23:60:00Z", "2026-12-01T23:59:60Z", "2026-12-01T09:26:53.1234567891Z",
		"2026-12-01t09:26:53.5Z", "2026-12-01T09:26:53+01:00", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, gerr := object{}.parseTimestamp("at", s)
		var want time.Time
		var werr error
		if !rfc3339Form(s) {
			werr = errors.New("form")
		} else if want, werr = time.Parse(time.RFC3339, s); werr == nil {
			want = want.UTC()
			if y := want.Year(); y < 1 || y > 9999 {
				werr = errors.New("range")
			}
		}
		if (gerr == nil) != (werr == nil) || (gerr == nil && !got.Equal(want)) || (gerr == nil && got.Location() != time.UTC) {
			t.Fatalf("%q: got %v (%v), time.Parse %v (%v)", s, got, gerr, want, werr)
		}
	})
}

// FuzzAckCounts: ackCounts reads a reply subject as nats.go's Msg.Metadata does, for every subject
// it takes.
func FuzzAckCounts(f *testing.F) {
	for _, s := range []string{"$JS.ACK.S.C.1.2.3.4.5", "$JS.ACK.D.H.S.C.3.42.7.1700000000000000000.0.r", "$JS.ACK._.H.S.C.3.42.7.1.0",
		"$JS.ACK.S.C.x.2.3.4.5", "$JS.ACK.S.C.1.2.3.4", "$JS.ACK.S.C.1.2.3.4.5.6", "$JS.ACK..C.1.2.3.4.5", "x.ACK.S.C.1.2.3.4.5",
		"$JS.ACK.S.C.1.99999999999999999999.3.4.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		delivered, seq, ok := ackCounts(reply)
		if !ok {
			return
		}
		meta, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata() // the legacy API reads it with the same parser as jetstream.Msg
		if err != nil {
			t.Fatalf("%q: ackCounts took it (%d, %d), Metadata: %v", reply, delivered, seq, err)
		}
		if meta.NumDelivered != delivered || meta.Sequence.Stream != seq {
			t.Fatalf("%q: ackCounts (%d, %d), Metadata (%d, %d)", reply, delivered, seq, meta.NumDelivered, meta.Sequence.Stream)
		}
	})
}

// FuzzPullStatus: every status the server may send ends the pull request or is a heartbeat; an
// unknown one ends it with an error that names it, and only 100 lets the request go on.
func FuzzPullStatus(f *testing.F) {
	for _, s := range [][2]string{{"100", "Idle Heartbeat"}, {"100", "FlowControl Request"}, {"404", "No Messages"},
		{"408", "Request Timeout"}, {"409", "Consumer Deleted"}, {"409", "Leadership Change"}, {"409", "Server Shutdown"},
		{"409", "Batch Completed"}, {"409", "Exceeded MaxWaiting"}, {"409", "Message Size Exceeds MaxBytes"},
		{"423", "Nats-Pin-Id mismatch"}, {"503", ""}, {"400", "Bad Request"}, {"500", "x"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, code, description string) {
		end, err := pullStatus(code, description)
		if code == "100" {
			if end || err != nil {
				t.Fatalf("heartbeat %q ended the request (%v, %v)", description, end, err)
			}
			return
		}
		if !end {
			t.Fatalf("status %q %q did not end the request", code, description)
		}
		switch code {
		case "404", "408", "409", "423", "503", "400":
			return
		}
		if err == nil || !strings.Contains(err.Error(), code) {
			t.Fatalf("unknown status %q %q: error %v, want one naming it", code, description, err)
		}
	})
}
