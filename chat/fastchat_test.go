package chat

import (
	"regexp"
	"testing"
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
