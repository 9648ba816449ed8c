package controller

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestOperatorOf: an operator's stop signal's raw field gives who asked, why and through which
// replica, one line each and bounded; anything else gives nothing.
func TestOperatorOf(t *testing.T) {
	for raw, want := range map[string]Operator{
		`{"requestedBy":"ops:ann","reason":"customer asked","via":"r2"}`: {RequestedBy: "ops:ann", Reason: "customer asked", Via: "r2"},
		`{"reason":"two\nlines\u0000"}`:                                  {Reason: "twolines"},
		`{"requestedBy":7}`:                                              {},
		`"a string"`:                                                     {},
		`{"session_id":"zoom's payload"}`:                                {},
		``:                                                               {},
	} {
		if got := OperatorOf(json.RawMessage(raw)); got != want {
			t.Errorf("OperatorOf(%s) = %+v, want %+v", raw, got, want)
		}
	}
	long := OperatorOf(json.RawMessage(`{"reason":"` + strings.Repeat("é", 300) + `"}`))
	if utf8.RuneCountInString(long.Reason) != maxOperatorText {
		t.Fatalf("a long reason is cut to %d characters", utf8.RuneCountInString(long.Reason))
	}
}

// FuzzOperatorOf: any raw field gives bounded, one-line, valid UTF-8 fields, without a panic.
func FuzzOperatorOf(f *testing.F) {
	f.Add([]byte(`{"requestedBy":"ops:ann","reason":"customer asked","via":"r2"}`))
	f.Add([]byte(`{"reason":"a\u2028b\r\n"}`))
	f.Add([]byte(`{"via":"\xff\xfe"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := OperatorOf(b)
		for _, s := range []string{o.RequestedBy, o.Reason, o.Via} {
			if utf8.RuneCountInString(s) > maxOperatorText || !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
				t.Fatalf("field %q", s)
			}
		}
	})
}
