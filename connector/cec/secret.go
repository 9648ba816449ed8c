package cec

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Secret is a credential: the API Fabric app secret (SK). Every way of printing it (String,
// GoString, LogValue, MarshalText, hence JSON and YAML) shows "[redacted]" (or "[unset]" when
// empty), so that a config holding one can be logged or dumped whole without leaking it. Only the
// code that asks for the access token reads the value, by converting it back to a string. (fmt
// cannot call methods on a struct's unexported fields: a Secret kept in an unexported field of
// another package's struct is printed raw if that struct is printed with %v. This package's own
// types print themselves.)
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
// way cannot be read back with its secret: that is the point.
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

// maskAll replaces every occurrence of the values in s: a server may echo what it was sent (the
// app secret in an error text, an access token in a reason).
func maskAll(s string, values ...string) string {
	for _, v := range values {
		if len(v) >= 4 { // a one-to-three-character value would mask half of any text
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}

// maxReason bounds a server's text kept as a Reason.
const maxReason = 512

// clip shortens a server's text kept as a Reason, on a character boundary.
func clip(s string) string {
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

// headerSafe reports whether v can be sent as an HTTP header value as it is: printable ASCII, no
// leading or trailing space. The app key, the tenant space id and the access token go in headers.
func headerSafe(v string) bool {
	if v == "" || strings.TrimSpace(v) != v {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
