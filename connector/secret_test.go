package connector

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestSecretNeverPrints: under every verb, in JSON, and inside a struct, a Secret shows Redacted.
func TestSecretNeverPrints(t *testing.T) {
	const value = "s3cr3t-value"
	s := Secret(value)
	cfg := struct{ Key Secret }{s}
	j, _ := json.Marshal(cfg)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x %d", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v", cfg, cfg), string(j)} {
		if strings.Contains(out, value) || !strings.Contains(out, Redacted) {
			t.Fatalf("printed %q", out)
		}
	}
	if Secret("").String() != "[unset]" {
		t.Fatal("an empty secret shows as set")
	}
}

func TestMaskAllAndClipReason(t *testing.T) {
	if got := MaskAll("bad secret abcd1234 and abc", "abcd1234", "abc"); got != "bad secret "+Redacted+" and abc" {
		t.Fatalf("MaskAll: %q", got)
	}
	long := strings.Repeat("é", 400) // 800 bytes
	got := ClipReason("  " + long)
	if len(got) > 515 || !strings.HasSuffix(got, "...") || !strings.HasPrefix(got, "é") {
		t.Fatalf("ClipReason: %d bytes", len(got))
	}
	if ClipReason(" short ") != "short" {
		t.Fatal("a short reason is only trimmed")
	}
}
