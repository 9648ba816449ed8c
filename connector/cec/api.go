package cec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// The paths of API Fabric's calls under the domain.
const (
	PathToken          = "/apigovernance/api/oauth/tokenByAkSk"
	PathConnectionInfo = "/apiaccess/api/cobrowse/getConnectionInfo"
)

// The operations, as errors name them: the connector's own (Op of the errors its methods return)
// and CEC's calls (named at the start of those errors' Reason).
const (
	opJoin    = "join"
	opRejoin  = "rejoin"
	opStop    = "stop"
	opToken   = "tokenByAkSk"
	opConnect = "getConnectionInfo"
	opRelease = "releaseConnection"
)

// The co-browse roles of getConnectionInfo.
const (
	RoleRecorder = "recorder" // the customer's page, whose DOM is shared
	RoleReplayer = "replayer" // the agent's view
)

const (
	// maxBody bounds a reply of getConnectionInfo or releaseConnection.
	maxBody = 64 << 10
	// maxRoomID bounds a room id, ours or the server's. CEC documents no limit; 64 bytes is the
	// longest id its multimedia library documents, and what the connector makes fits in it.
	maxRoomID = 64
)

// client is the connector's HTTP side: the token cache and the calls that carry the token.
type client struct {
	cfg      Config
	node     string // the domain: Node of the errors, the breaker's key
	tokenURL string
	infoURL  string
	http     *http.Client
	log      *slog.Logger
	now      func() time.Time
	tokens   *tokens
	// secret is the app secret the next token request sends, and the one it replaced (still
	// masked in what a reply may echo); SetAppSecret swaps them.
	secret atomic.Pointer[appSecrets]
}

type appSecrets struct{ current, replaced Secret }

func newClient(cfg Config, rt http.RoundTripper, log *slog.Logger) *client {
	c := &client{
		cfg:      cfg,
		node:     cfg.Domain,
		tokenURL: cfg.Domain + PathToken,
		infoURL:  cfg.Domain + PathConnectionInfo,
		http:     &http.Client{Transport: rt, CheckRedirect: noRedirects},
		log:      log,
		now:      cfg.Now,
	}
	c.tokens = &tokens{c: c}
	c.secret.Store(&appSecrets{current: cfg.AppSecret})
	return c
}

// setAppSecret makes the next token request send secret.
func (c *client) setAppSecret(secret Secret) {
	old := c.secret.Load()
	if secret != old.current {
		c.secret.Store(&appSecrets{current: secret, replaced: old.current})
	}
}

// noRedirects keeps the client from following a redirect: CEC's APIs do not redirect, and a
// followed redirect would carry the request (and, to the same host, its credentials) somewhere
// unplanned. The 3xx itself comes back and is reported as a refusal.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// post sends one JSON POST, bounded by RequestTimeout, and reads at most limit bytes of the reply.
func (c *client) post(ctx context.Context, u string, hdr http.Header, body []byte, limit int64) (int, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading reply: %w", err)
	}
	if int64(len(reply)) > limit {
		return 0, nil, fmt.Errorf("reply body over %d bytes", limit)
	}
	return resp.StatusCode, reply, nil
}

// statusKind maps an HTTP status onto a sentinel: nil for 2xx; ErrUnavailable for 408, 429, 5xx
// and anything below 200 (the server failed or asks to wait); ErrRefused for 3xx and the other
// 4xx (the server answered and refused: bad credentials, a bad request, a wrong path).
func statusKind(status int) error {
	switch {
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500, status < 200:
		return connector.ErrUnavailable
	}
	return connector.ErrRefused
}

// authorized sends one API Fabric call with the access token (x-app-key, Authorization: Bearer,
// X-TenantSpaceID). A 401 renews the token once and sends the call again; the second answer is
// returned whatever it is. A failure to get a token is returned as it is (op tokenByAkSk).
func (c *client) authorized(ctx context.Context, op, node, u string, body []byte) (int, []byte, error) {
	for attempt := 1; ; attempt++ {
		tok, err := c.tokens.token(ctx)
		if err != nil {
			return 0, nil, err
		}
		hdr := http.Header{}
		hdr.Set("x-app-key", c.cfg.AppKey)
		hdr.Set("Authorization", "Bearer "+tok)
		hdr.Set("X-TenantSpaceID", c.cfg.TenantSpaceID)
		status, reply, err := c.post(ctx, u, hdr, body, maxBody)
		if err != nil {
			return 0, nil, c.redact(&connector.ServerError{Op: op, Node: node, Kind: connector.ErrUnavailable, Err: err})
		}
		if status == http.StatusUnauthorized && attempt == 1 {
			c.log.InfoContext(ctx, "cec answered 401; renewing the access token once", "node", node, "op", op,
				"token", connector.MaskToken(tok), "reason", c.mask(serverReason(status, reply)))
			c.tokens.invalidate(tok)
			continue
		}
		return status, reply, nil
	}
}

// connectionInfo calls getConnectionInfo for one side of room: role recorder (the customer) or
// replayer (the agent, workNo set). It returns that side's connection info; the room is the
// server's (its echo of roomId; room when it gives none).
//
// Errors are *connector.ServerError for op getConnectionInfo: 401 after one renewal, 3xx and other
// 4xx ErrRefused; 200 with success false ErrRefused with errorCode and errorReason; 408, 429, 5xx,
// a network failure or a time-out ErrUnavailable; a 200 that cannot be used (not JSON, success
// without a ws(s) address or a connectParam, a room id unfit to carry) ErrUnavailable too: a
// proxy or a broken server, not a refusal.
func (c *client) connectionInfo(ctx context.Context, room, role, workNo string) (connInfo, error) {
	fail := func(kind error, reason string, cause error) (connInfo, error) {
		return connInfo{}, c.redact(&connector.ServerError{Op: opConnect, Node: c.node, Kind: kind,
			Reason: clip(role + ": " + reason), Err: cause})
	}
	req := map[string]string{"roomId": room, "role": role}
	if workNo != "" {
		req["workNo"] = workNo
	}
	body, _ := json.Marshal(req) // strings only: cannot fail
	status, reply, err := c.authorized(ctx, opConnect, c.node, c.infoURL, body)
	if err != nil {
		return connInfo{}, err
	}
	if kind := statusKind(status); kind != nil {
		return fail(kind, serverReason(status, reply), nil)
	}
	r, err := decodeConnInfo(reply)
	if err != nil {
		return fail(connector.ErrUnavailable, "reply is not JSON", err)
	}
	if !r.Success {
		reason := r.Failure
		if reason == "" {
			reason = "success is false"
		}
		return fail(connector.ErrRefused, reason, nil)
	}
	info := r.Info
	if info.RoomID == "" {
		info.RoomID = room
	}
	if info.WSSURL == "" && info.WSSURLIn != "" {
		// No external address: the internal one is all there is. A page outside CEC's network may
		// not reach it; logged so that it shows.
		c.log.WarnContext(ctx, "getConnectionInfo gave no wssUrlOut; the pages get wssUrl, which may be internal",
			"node", c.node, "session_id", info.RoomID, "role", role)
		info.WSSURL = info.WSSURLIn
	}
	switch {
	case !validWSS(info.WSSURL):
		return fail(connector.ErrUnavailable, "reply has no ws(s) address in wssUrlOut or wssUrl", nil)
	case info.ConnectParam == "":
		return fail(connector.ErrUnavailable, "reply has no connectParam", nil)
	case !validRoomID(info.RoomID):
		return fail(connector.ErrUnavailable, "reply's roomId is empty, too long or holds control characters", nil)
	}
	if info.WSSURLIn != "" && !validWSS(info.WSSURLIn) {
		info.WSSURLIn = "" // kept only for the record; an unusable one is dropped
	}
	c.log.DebugContext(ctx, "cec connection info", "node", c.node, "session_id", info.RoomID, "role", role,
		"wss_url", info.WSSURL, "connect_param", connector.MaskToken(info.ConnectParam))
	return info, nil
}

// release calls the web adapter's releaseConnection at Config.ReleaseURL with callId = room, with
// API Fabric's headers (the web adapter's own authentication is a browser's cookie the daemon does
// not have; see docs/cec.md). Success is retCode "0" (or an answer that says nothing of the
// outcome). Errors are *connector.ServerError for op releaseConnection on the release URL: 401
// after one renewal, 3xx and other 4xx, and a 200 with a retCode other than "0" ErrRefused; 408,
// 429, 5xx, a network failure, a time-out or a 2xx that is not JSON ErrUnavailable.
func (c *client) release(ctx context.Context, room string) error {
	node := c.cfg.ReleaseURL
	fail := func(kind error, reason string, cause error) error {
		return c.redact(&connector.ServerError{Op: opRelease, Node: node, Kind: kind, Reason: reason, Err: cause})
	}
	body, _ := json.Marshal(map[string]string{"callId": room})
	status, reply, err := c.authorized(ctx, opRelease, node, node, body)
	if err != nil {
		return err
	}
	if kind := statusKind(status); kind != nil {
		return fail(kind, serverReason(status, reply), nil)
	}
	r, err := decodeRelease(reply)
	if err != nil {
		return fail(connector.ErrUnavailable, "reply is not JSON", err)
	}
	if !r.OK {
		return fail(connector.ErrRefused, r.Failure, nil)
	}
	return nil
}

// mask hides the app secret and the cached access token in a text a server may have echoed.
func (c *client) mask(s string) string {
	sec := c.secret.Load()
	return maskAll(s, string(sec.current), string(sec.replaced), c.tokens.current())
}

// redact masks the app secret and the access token wherever a *connector.ServerError could show
// them: its Reason (a server may echo what it was sent) and its cause's text. errors.Is and
// errors.As still see the cause.
func (c *client) redact(err error) error {
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || err != error(se) { //nolint:errorlint // only a ServerError returned as it is, not one wrapped by another error
		return err
	}
	out := *se
	out.Reason = c.mask(out.Reason)
	if out.Err != nil && c.mask(out.Err.Error()) != out.Err.Error() {
		out.Err = &maskedError{err: out.Err, mask: c.mask}
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

// relabel makes a CEC call's error the connector operation's: the same kind, node and cause, the
// call named at the start of the reason.
func relabel(op string, err error) error {
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok {
		return &connector.ServerError{Op: op, Kind: connector.ErrUnavailable, Err: err}
	}
	reason := se.Op
	if se.Reason != "" {
		reason += ": " + se.Reason
	}
	return &connector.ServerError{Op: op, Node: se.Node, Kind: se.Kind, Reason: reason, Err: se.Err}
}

// validWSS reports whether s is an absolute ws:// or wss:// URL with a host: what the pages can
// open, and what the page messages accept.
func validWSS(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, "wss") || strings.EqualFold(u.Scheme, "ws")
}

// validRoomID reports whether id can be a session id: 1 to maxRoomID bytes of printable ASCII
// without space (it becomes CoBrowseSessionId and part of the page messages' ids).
func validRoomID(id string) bool {
	if id == "" || len(id) > maxRoomID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
