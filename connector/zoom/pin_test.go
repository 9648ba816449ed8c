package zoom

import (
	"regexp"
	"strings"
	"testing"
)

func TestNewBYOPPIN(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Z0-9]{10}$`)
	seen := map[string]bool{}
	counts := map[rune]int{}
	const n = 5000
	for range n {
		p := NewBYOPPIN()
		if !valid.MatchString(p) {
			t.Fatalf("PIN %q", p)
		}
		if seen[p] {
			t.Fatalf("PIN %q drawn twice", p)
		}
		seen[p] = true
		if norm, ok := NormalizePIN(p); !ok || norm != p {
			t.Fatalf("NormalizePIN(%q) = %q, %v", p, norm, ok)
		}
		if IsAutoPIN(p) {
			t.Fatalf("a BYOP PIN looks like a Zoom PIN: %q", p)
		}
		for _, r := range p {
			counts[r]++
		}
	}
	// Every symbol is drawn, none far from its share (50,000 draws, 1,389 expected each).
	if len(counts) != 36 {
		t.Fatalf("%d symbols drawn", len(counts))
	}
	for r, c := range counts {
		if c < 1100 || c > 1700 {
			t.Fatalf("symbol %q drawn %d times", r, c)
		}
	}
}

func TestNormalizePIN(t *testing.T) {
	for in, want := range map[string]string{
		"123456": "123456", "abc": "ABC", "aB3": "AB3", "A": "A", "0123456789": "0123456789", "caseID42x": "CASEID42X",
		"": "", "12345678901": "", " 123456": "", "123 456": "", "12-34": "", "ÄBC": "", "１２３": "", "abc\n": "",
	} {
		got, ok := NormalizePIN(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizePIN(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for in, want := range map[string]bool{"123456": true, "012345": true, "12345": false, "1234567": false, "12345a": false, "１２３４５６": false} {
		if IsAutoPIN(in) != want {
			t.Errorf("IsAutoPIN(%q) != %v", in, want)
		}
	}
}

func TestMatchStart(t *testing.T) {
	for _, tc := range []struct {
		token, pin string // pin "" = not a PIN
	}{
		{"123456", "123456"},
		{"abc123XYZ", "ABC123XYZ"},
		{"a", "A"},
		{"0123456789", "0123456789"},
		{"12345678901", ""},
		{"", ""},
		{" 123456", ""},
		{"12-456", ""},
		{"ÄBC", ""},
		{"１２３４５６", ""},
	} {
		pin, ok := MatchStart(tc.token)
		if pin != tc.pin || ok != (tc.pin != "") {
			t.Errorf("MatchStart(%q) = %q, %v; want %q", tc.token, pin, ok, tc.pin)
		}
	}
}

// pinOracle is MatchStart's specification, before upper-casing.
var pinOracle = regexp.MustCompile(`^[A-Za-z0-9]{1,10}$`)

func FuzzMatchStart(f *testing.F) {
	for _, s := range []string{"123456", "abcDEF1234", "1", "12345678901", "", "١٢٣", "a\x00", "ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		pin, ok := MatchStart(token)
		if ok != pinOracle.MatchString(token) {
			t.Fatalf("MatchStart(%q) ok=%v, oracle %v", token, ok, !ok)
		}
		if !ok {
			if pin != "" {
				t.Fatalf("MatchStart(%q) = %q with ok=false", token, pin)
			}
			return
		}
		if want := strings.ToUpper(token); pin != want {
			t.Fatalf("MatchStart(%q) = %q, want %q", token, pin, want)
		}
	})
}
