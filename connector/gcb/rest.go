package gcb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

const (
	opGetSession = "get session"
	opJoin       = "join"
	opRejoin     = "rejoin"
	opStop       = "stop"
	opRESTStop   = "rest stop"

	maxBody   = 64 << 10 // largest REST body read
	maxReason = 512      // longest server text kept as a Reason
)

// sessionInfo is what Get Session tells about a live session.
type sessionInfo struct {
	ServerName string
	ServerURL  string
	Cookie     string // the gcbSessionServer cookie Get Session set, if any
}

// getSession asks the cluster which node owns token: GET <cluster>/rest/live/sessions/{token},
// with an Origin header, through the cluster URL's breaker.
func (c *Connector) getSession(ctx context.Context, token string) (sessionInfo, error) {
	node := c.cfg.ClusterURL
	info, err := connector.Execute(c.breakers, node, opGetSession, func() (sessionInfo, error) {
		u := node + "/rest/live/sessions/" + url.PathEscape(token)
		status, hdr, body, err := c.restGET(ctx, u, "")
		if err != nil {
			return sessionInfo{}, &connector.ServerError{Op: opGetSession, Node: node, Kind: connector.ErrUnavailable, Err: err}
		}
		if status < 200 || status > 299 {
			return sessionInfo{}, &connector.ServerError{Op: opGetSession, Node: node,
				Kind: statusKind(status, connector.ErrNotFound), Reason: reasonText(status, body)}
		}
		var r getSessionReply
		if err := json.Unmarshal(body, &r); err != nil {
			// A 2xx that is not JSON is a proxy or a broken node answering, not the Co-browse
			// server saying "no such session": transient.
			return sessionInfo{}, &connector.ServerError{Op: opGetSession, Node: node,
				Kind: connector.ErrUnavailable, Reason: reasonText(status, body), Err: fmt.Errorf("decoding reply: %w", err)}
		}
		if strings.TrimSpace(r.SessionServerName) == "" {
			// [INFERRED] (Genesys documents no error replies): a reply that names no owning
			// node means the session is not live.
			return sessionInfo{}, &connector.ServerError{Op: opGetSession, Node: node,
				Kind: connector.ErrNotFound, Reason: "no sessionServerName in reply: " + clip(string(body))}
		}
		info := sessionInfo{ServerName: r.SessionServerName, ServerURL: r.SessionServerURL}
		for _, ck := range hdr.cookies {
			if ck.Name == StickyCookie && ck.Value != "" {
				info.Cookie = ck.Value
			}
		}
		return info, nil
	})
	return info, redact(err, token)
}

// restStop stops a session through REST with the Controller's user token:
// GET <node>/rest/live/users/{userToken}/session/stop, with the stickiness cookie when the route
// has one. It returns the times of the reply. It does not go through the node's breaker: a stop
// belongs to a live session, which other sessions' failures must not refuse.
func (c *Connector) restStop(ctx context.Context, r route, userToken string) (connector.Times, error) {
	node := r.NodeURL
	if userToken == "" {
		return connector.Times{}, &connector.ServerError{Op: opRESTStop, Node: node, Kind: connector.ErrNotFound,
			Reason: "no user token to stop with"}
	}
	t, err := func() (connector.Times, error) {
		u := node + "/rest/live/users/" + url.PathEscape(userToken) + "/session/stop"
		status, _, body, err := c.restGET(ctx, u, r.Sticky)
		if err != nil {
			return connector.Times{}, &connector.ServerError{Op: opRESTStop, Node: node, Kind: connector.ErrUnavailable, Err: err}
		}
		if status < 200 || status > 299 {
			return connector.Times{}, &connector.ServerError{Op: opRESTStop, Node: node,
				Kind: statusKind(status, connector.ErrRefused), Reason: reasonText(status, body)}
		}
		t, err := decodeTimes(body)
		if err != nil {
			// The stop went through (2xx); only its times are unreadable.
			c.log.WarnContext(ctx, "REST stop reply has unreadable times", "node", r.node(), "error", err)
			return connector.Times{}, nil
		}
		return t, nil
	}()
	return t, redact(err, userToken)
}

// replyHeader is what restGET keeps of a reply's header.
type replyHeader struct {
	cookies []*http.Cookie
}

// restGET sends one GET with the Origin header (and the stickiness cookie when sticky is set),
// bounded by RequestTimeout, and reads at most maxBody of the reply.
func (c *Connector) restGET(ctx context.Context, u, sticky string) (int, replyHeader, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, replyHeader{}, nil, err
	}
	req.Header.Set("Origin", c.cfg.Origin)
	req.Header.Set("Accept", "application/json")
	if sticky != "" {
		req.AddCookie(&http.Cookie{Name: StickyCookie, Value: sticky})
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, replyHeader{}, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, replyHeader{}, nil, fmt.Errorf("reading reply: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // let the connection be reused
	return resp.StatusCode, replyHeader{cookies: resp.Cookies()}, body, nil
}

// statusKind maps a non-2xx REST status to a sentinel. Genesys documents no error statuses
// ([NOT FOUND]); the mapping follows HTTP: 404 not found, 410 (Gone) not live, 401/403 refused
// (403 is also the CORS refusal), 408/429/5xx (and anything not 4xx) unavailable, any other 4xx
// otherwise.
func statusKind(status int, other4xx error) error {
	switch {
	case status == http.StatusGone:
		return connector.ErrNotLive
	case status == http.StatusNotFound:
		return connector.ErrNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return connector.ErrRefused
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		return connector.ErrUnavailable
	case status >= 400 && status <= 499:
		return other4xx
	}
	return connector.ErrUnavailable
}

// reasonText is the server's words for a Reason: the body, clipped, or the status text.
func reasonText(status int, body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	}
	return clip(s)
}

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

// isNotFound reports whether err says the session is no longer there.
func isNotFound(err error) bool { return errors.Is(err, connector.ErrNotFound) }

// redact masks the given tokens (session token, user token) wherever a *connector.ServerError
// could show them: its Reason (a server may echo a token) and its cause's text (a *url.Error
// names the request URL, which holds the token). errors.Is and errors.As still see the cause.
func redact(err error, tokens ...string) error {
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || err != error(se) { //nolint:errorlint // only a ServerError returned as it is, not one wrapped by another error
		return err
	}
	out := *se
	out.Reason = maskAll(out.Reason, tokens)
	if out.Err != nil && maskAll(out.Err.Error(), tokens) != out.Err.Error() {
		out.Err = &maskedError{err: out.Err, tokens: tokens}
	}
	return &out
}

func maskAll(s string, tokens []string) string {
	for _, t := range tokens {
		if t != "" {
			s = strings.ReplaceAll(s, t, connector.MaskToken(t))
		}
	}
	return s
}

// maskedError shows its cause's text with tokens masked.
type maskedError struct {
	err    error
	tokens []string
}

func (e *maskedError) Error() string { return maskAll(e.err.Error(), e.tokens) }
func (e *maskedError) Unwrap() error { return e.err }
