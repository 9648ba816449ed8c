package cec

import (
	"strings"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Secret is a credential (the API Fabric app secret, SK): connector.Secret, which never prints
// its value.
type Secret = connector.Secret

// redacted is what a set Secret shows.
const redacted = connector.Redacted

// The printing and masking helpers every vendor shares.
var (
	formatAs = connector.FormatAs
	maskAll  = connector.MaskAll
	clip     = connector.ClipReason
)

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
