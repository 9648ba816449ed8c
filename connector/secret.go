package connector

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Redacted is what a set Secret shows in place of its value.
const Redacted = "[redacted]"

// Secret is a vendor credential: an SDK secret that signs JWTs, an OAuth client secret, a webhook
// secret token, an app secret. Every way of printing it (String, Format under every verb,
// LogValue, MarshalText, hence JSON and YAML) shows Redacted (or "[unset]" when empty), so that a
// config holding one can be logged or dumped whole without leaking it. Only the code that signs or
// authenticates reads the value, by converting it back to a string. (fmt cannot call methods on a
// struct's unexported fields: a Secret kept in an unexported field of another package's struct is
// printed raw if that struct is printed with %v. The vendors' own types print themselves.)
type Secret string

func (s Secret) String() string {
	if s == "" {
		return "[unset]"
	}
	return Redacted
}

// Format prints String for every verb (%v, %#v, %d, %x, ...): some verbs skip String.
func (s Secret) Format(f fmt.State, verb rune) { FormatAs(f, verb, s.String()) }

// LogValue keeps slog from showing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, YAML, text) from showing the value. A config written out this
// way cannot be read back with its secrets: that is the point.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// FormatAs prints a value that holds a secret as text, whatever the verb: fmt uses String only
// for some verbs (not %d, for one), and prints a struct's unexported fields raw otherwise. A
// type's Format method calls it with the type's String.
func FormatAs(f fmt.State, verb rune, text string) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", text)
		return
	}
	_, _ = io.WriteString(f, text)
}

// MaskAll replaces every occurrence of the values in s with Redacted: a server may echo what it
// was sent (a secret in an error text, a token in a reason). Values shorter than four characters
// are left alone: masking them would mask half of any text.
func MaskAll(s string, values ...string) string {
	for _, v := range values {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// maxReason bounds a server's text kept as a ServerError's Reason.
const maxReason = 512

// ClipReason shortens a server's text kept as a Reason to 512 bytes, on a character boundary.
func ClipReason(s string) string {
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
