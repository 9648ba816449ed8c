package zoom

import (
	"unicode/utf16"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Secret is a credential (the SDK secret, the OAuth client secret, a webhook secret token):
// connector.Secret, which never prints its value.
type Secret = connector.Secret

// redacted is what a set Secret shows.
const redacted = connector.Redacted

// The printing and masking helpers every vendor shares.
var (
	formatAs = connector.FormatAs
	maskAll  = connector.MaskAll
	clip     = connector.ClipReason
)

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
