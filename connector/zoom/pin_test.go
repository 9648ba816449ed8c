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
		text, pin string // pin "" = not a start message
	}{
		{"{start:123456}", "123456"},
		{"<start:123456>", "123456"},
		{"{start:abc123XYZ}", "ABC123XYZ"},
		{"<start:a>", "A"},
		{"{start:0123456789}", "0123456789"},
		{"  \t\r\n\f{start:987654}\n ", "987654"},
		{"{start:12345678901}", ""},
		{"{start:}", ""},
		{"{start: 123456}", ""},
		{"{start:123456 }", ""},
		{"{START:123456}", ""},
		{"{start:123456>", ""},
		{"<start:123456}", ""},
		{"{start:123456} hi", ""},
		{"hi {start:123456}", ""},
		{"{start:12-456}", ""},
		{"{start:ÄBC}", ""},
		{"\v{start:123456}", ""},
		{"\u00a0{start:123456}", ""},
		{"{{start:123456}}", ""},
		{"", ""},
		{"{start:123456}{start:123456}", ""},
	} {
		pin, ok := MatchStart(tc.text)
		if pin != tc.pin || ok != (tc.pin != "") {
			t.Errorf("MatchStart(%q) = %q, %v; want %q", tc.text, pin, ok, tc.pin)
		}
	}
}

// startOracle is MatchStart's specification; RE2's \s is exactly " \t\n\r\f".
var startOracle = regexp.MustCompile(`^\s*(?:\{start:([A-Za-z0-9]{1,10})\}|<start:([A-Za-z0-9]{1,10})>)\s*$`)

func FuzzMatchStart(f *testing.F) {
	for _, s := range []string{
		"{start:123456}", "<start:abcDEF1234>", " \t\n\r\f{start:1}\f\r\n\t ", "{start:12345678901}",
		"{start:123456> ", "\v<start:1>", "{start:١٢٣}", "", "{}", "<start:>", "{start:a\x00}", "{start:ß}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		pin, ok := MatchStart(text)
		m := startOracle.FindStringSubmatch(text)
		if ok != (m != nil) {
			t.Fatalf("MatchStart(%q) ok=%v, oracle %v", text, ok, m != nil)
		}
		if !ok {
			if pin != "" {
				t.Fatalf("MatchStart(%q) = %q with ok=false", text, pin)
			}
			return
		}
		if want := strings.ToUpper(m[1] + m[2]); pin != want {
			t.Fatalf("MatchStart(%q) = %q, oracle %q", text, pin, want)
		}
		if again, ok := NormalizePIN(pin); !ok || again != pin {
			t.Fatalf("the PIN %q is not normalized", pin)
		}
	})
}
