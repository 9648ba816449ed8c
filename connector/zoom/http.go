package zoom

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// errBodyTooLarge is the cause of a failed call whose reply was larger than allowed.
var errBodyTooLarge = errors.New("reply body too large")

// readBody reads at most max bytes of a reply; a longer one is errBodyTooLarge. The rest is
// drained a little so the connection can be reused.
func readBody(r io.Reader, max int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w (more than %d bytes)", errBodyTooLarge, max)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	return body, nil
}

// noRedirects keeps a client from following a redirect: Zoom's token endpoint and API do not
// redirect, and a followed redirect would carry the request (and, to the same host, its
// credentials) somewhere unplanned. The 3xx itself comes back and is reported as a refusal.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// zoomReason is Zoom's words for a failed call: the REST API answers {"code":N,"message":"..."},
// the OAuth endpoint {"reason":"...","error":"..."}; anything else is kept clipped, and an empty
// body is the status line.
func zoomReason(status int, body []byte) string {
	var e struct {
		Code    json.Number `json:"code"`
		Message string      `json:"message"`
		Reason  string      `json:"reason"`
		Error   string      `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		var parts []string
		if e.Code != "" {
			parts = append(parts, "code "+e.Code.String())
		}
		for _, s := range []string{e.Message, e.Reason} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		if e.Error != "" {
			parts = append(parts, "("+e.Error+")")
		}
		if len(parts) > 0 {
			return clip(fmt.Sprintf("HTTP %d: %s", status, strings.Join(parts, " ")))
		}
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return clip(fmt.Sprintf("HTTP %d: %s", status, s))
	}
	return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
}

// redact masks values (a PIN, a secret) wherever a *connector.ServerError could show them: its
// Reason (a server may echo what it was sent) and its cause's text (a *url.Error names the request
// URL). errors.Is and errors.As still see the cause.
func redact(err error, mask func(string) string) error {
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || err != error(se) { //nolint:errorlint // only a ServerError returned as it is, not one wrapped by another error
		return err
	}
	out := *se
	out.Reason = mask(out.Reason)
	if out.Err != nil && mask(out.Err.Error()) != out.Err.Error() {
		out.Err = &maskedError{err: out.Err, mask: mask}
	}
	return &out
}

// maskedError shows its cause's text masked.
type maskedError struct {
	err  error
	mask func(string) string
}

func (e *maskedError) Error() string { return e.mask(e.err.Error()) }
func (e *maskedError) Unwrap() error { return e.err }

// parseSeconds reads a non-negative decimal integer of at most 18 digits.
func parseSeconds(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
