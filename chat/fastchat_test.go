package chat

import (
	"regexp"
	"testing"
	"unsafe"
)

// TestFastChatTakesTheUsualShapes: the one-pass decoder must take what platforms send, or the
// consumer falls back to the slow path for every line without anyone noticing.
func TestFastChatTakesTheUsualShapes(t *testing.T) {
	for _, data := range []string{
		`{"id":"m1","interactionId":"I1","from":{"role":"customer","id":"c1","name":"Ann"},"text":"hello","sentAt":"2026-12-01T10:00:00Z"}`,
		`{"id":"m1","interactionId":"I1","from":{"role":"agent"},"text":"\u003cstart:123456789\u003e"}`,
		`{"id":"m1","interactionId":"I1","from":{"role":"bot"},"text":"line\nbreak \"quoted\" café 😀","channel":"web","seq":12}`,
	} {
		m, ok := fastChat("I1", []byte(data))
		if !ok {
			t.Errorf("fastChat refused %s", data)
			continue
		}
		ref, err := decodeChat("I1", []byte(data))
		if err != nil || ref.Text != m.Text || ref.From != m.From || !ref.SentAt.Equal(m.SentAt) {
			t.Errorf("fastChat %+v, decodeChat %+v (%v)", m, ref, err)
		}
	}
}

// FuzzRFC3339Form checks the hand-written form check against the regular expression it replaced.
func FuzzRFC3339Form(f *testing.F) {
	re := regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)
	for _, s := range []string{"2026-12-01T10:00:00Z", "2026-12-01t10:00:00.123+02:00", "2026-12-01T1:00:00Z", "2026-12-01T10:00:00.Z", "2026-12-01T10:00:00+0200", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := rfc3339Form(s), re.MatchString(s); got != want {
			t.Fatalf("rfc3339Form(%q) = %v, the expression says %v", s, got, want)
		}
	})
}

// TestKeptValuesHaveTheirOwnBytes: what outlives a message's handling (the start token, kept in the
// state for a session's life; an event's ids) does not share the message's bytes, which would keep
// the whole message alive with it (newScanner).
func TestKeptValuesHaveTheirOwnBytes(t *testing.T) {
	c := &Consumer{cfg: Config{Prefix: "cc", MaxPayload: 1 << 20}, triggers: map[Role]bool{RoleCustomer: true}}
	within := func(v string, data []byte) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(v))), uintptr(unsafe.Pointer(&data[0]))
		return p >= lo && p < lo+uintptr(len(data))
	}
	line := []byte(`{"id":"m-1","interactionId":"I-1","from":{"role":"customer"},"text":"{start:123456789}"}`)
	in, err := c.decode("cc.chat.I-1.message", line)
	if err != nil || in.StartToken != "123456789" {
		t.Fatalf("start line: token %q, error %v", in.StartToken, err)
	}
	// The line's values share one copy of it: the token, cut from the text, must not.
	text := in.Chat.Text
	textBytes := unsafe.Slice(unsafe.StringData(text), len(text))
	if within(in.StartToken, textBytes) {
		t.Error("the start token shares the message's bytes: it would keep the message alive")
	}
	ev := []byte(`{"id":"e-1","interactionId":"I-1","type":"assigned","agentId":"agent-7","at":"2026-03-14T09:26:51Z"}`)
	e, ok := fastEvent("I-1", ev)
	if !ok {
		t.Fatal("fastEvent refused a plain event")
	}
	for _, v := range []string{e.ID, e.AgentID} {
		if within(v, ev) {
			t.Errorf("event value %q shares the message's bytes", v)
		}
	}
}
