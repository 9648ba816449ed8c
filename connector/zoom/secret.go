package zoom

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Secret is a credential: the SDK secret that signs the JWTs, the OAuth client secret, a webhook
// secret token. Every way of printing it (String, GoString, LogValue, MarshalText, hence JSON and
// YAML) shows "[redacted]" (or "[unset]" when empty), so that a config holding one can be logged or
// dumped whole without leaking it. Only the code that signs or authenticates reads the value, by
// converting it back to a string. (fmt cannot call methods on a struct's unexported fields: a
// Secret kept in an unexported field of another package's struct is printed raw if that struct is
// printed with %v. This package's own types print themselves.)
type Secret string

const (
	redacted = "[redacted]"
	unset    = "[unset]"
)

func (s Secret) String() string {
	if s == "" {
		return unset
	}
	return redacted
}

// Format prints String for every verb (%v, %#v, %d, %x, ...): some verbs skip String.
func (s Secret) Format(f fmt.State, verb rune) { formatAs(f, verb, s.String()) }

// LogValue keeps slog from showing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML, text) from showing the value. A config written out this
// way cannot be read back with its secrets: that is the point.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// formatAs prints a value that holds a secret as text, whatever the verb: fmt uses String only
// for some verbs (not %d, for one), and prints a struct's unexported fields raw otherwise.
func formatAs(f fmt.State, verb rune, text string) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", text)
		return
	}
	_, _ = io.WriteString(f, text)
}

// maskAll masks every non-empty secret in s: a server may echo what it was sent.
func maskAll(s string, secrets ...string) string {
	for _, t := range secrets {
		if len(t) >= 4 { // a one-to-three-character "secret" would mask half of any text
			s = strings.ReplaceAll(s, t, redacted)
		}
	}
	return s
}

// utf16Len is the length of s as JavaScript's String.length counts it (UTF-16 code units). Zoom's
// own token sample checks user_id and user_name with .length <= 35, so this is the count that
// matches Zoom's; it is never smaller than the number of runes.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// clipUTF16 cuts s to at most max UTF-16 code units, on a rune boundary.
func clipUTF16(s string, max int) string {
	n := 0
	for i, r := range s {
		n += utf16.RuneLen(r)
		if n > max {
			return s[:i]
		}
	}
	return s
}

// clip shortens a server's text kept as a Reason.
func clip(s string) string {
	const maxReason = 512
	s = strings.TrimSpace(s)
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
