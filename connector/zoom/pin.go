package zoom

import (
	"crypto/rand"
	"strings"
)

// The PIN formats. Zoom makes a 6-digit PIN unless the customer's token has enable_byop: 1 and
// the page starts the session with a PIN of its own (Bring Your Own PIN): ASCII letters and digits,
// at most 10, letters in any case, which Zoom stores upper-cased.
const (
	AutoPINLength = 6  // Zoom's own PINs: 6 digits
	MaxPINLength  = 10 // a BYOP PIN: 1 to 10 ASCII letters and digits
	BYOPPINLength = 10 // the length of the PINs NewBYOPPIN makes
)

// pinAlphabet is what NewBYOPPIN draws from: upper-case letters and digits, 36 symbols.
const pinAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// NewBYOPPIN returns a fresh BYOP PIN: 10 characters from [A-Z0-9] drawn with crypto/rand, about
// 51.7 bits, so that a PIN cannot be guessed to join someone else's session. It is already in the
// form Zoom stores (upper case), and its length keeps it apart from Zoom's 6-digit PINs.
func NewBYOPPIN() string {
	// Rejection sampling: a byte below 252 (7 x 36) maps evenly onto the 36 symbols.
	var out [BYOPPINLength]byte
	var buf [2 * BYOPPINLength]byte
	n := 0
	for n < len(out) {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails (it crashes the program instead)
		for _, b := range buf {
			if b < 252 && n < len(out) {
				out[n] = pinAlphabet[b%36]
				n++
			}
		}
	}
	return string(out[:])
}

// NormalizePIN returns pin in the form Zoom stores, upper case, when it is a valid Cobrowse PIN:
// 1 to 10 ASCII letters and digits (Zoom's 6-digit PINs are among them). Nothing is trimmed: a
// caller that means to accept spaces trims first.
func NormalizePIN(pin string) (string, bool) {
	if len(pin) == 0 || len(pin) > MaxPINLength {
		return "", false
	}
	for i := 0; i < len(pin); i++ {
		c := pin[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", false
		}
	}
	return strings.ToUpper(pin), true
}

// IsAutoPIN reports whether pin has the form of a PIN Zoom made: exactly 6 ASCII digits.
func IsAutoPIN(pin string) bool {
	if len(pin) != AutoPINLength {
		return false
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return false
		}
	}
	return true
}

// MatchStart reports whether the token of a chat start message (the X of {start:X}, which the
// chat side finds without knowing any vendor) is a Cobrowse PIN on a Zoom interaction, and
// returns it normalized (upper case): Zoom's 6-digit PIN or a BYOP PIN of 1 to 10 ASCII letters
// and digits, in any case (see NormalizePIN). It is the Zoom connector's connector.Connector
// MatchStart.
func MatchStart(token string) (pin string, ok bool) { return NormalizePIN(token) }
