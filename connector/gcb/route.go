package gcb

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// StickyCookie is the cookie the Co-browse load balancer routes on.
const StickyCookie = "gcbSessionServer"

// ErrInvalidToken is the cause when a session token is not exactly nine ASCII digits. No call is
// made for such a token; the error also wraps connector.ErrNotFound.
var ErrInvalidToken = errors.New("gcb: session token is not 9 ASCII digits")

// validToken reports whether tok is exactly nine ASCII digits (leading zeros allowed).
func validToken(tok string) bool {
	if len(tok) != 9 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return false
		}
	}
	return true
}

// route is where every later call for one co-browse session goes.
type route struct {
	NodeURL string // sessionServerUrl, or the cluster URL under cookie stickiness
	Sticky  string // the gcbSessionServer cookie value; "" when not used or not known
	// Why says how the route was chosen, for logs: "server-url", "cookie", "no-cookie",
	// "bad-server-url+cookie", "bad-server-url+no-cookie".
	Why string
}

// chooseRoute is the stickiness decision. With a usable sessionServerUrl the session talks to
// that node directly (URL stickiness; no cookie). Otherwise it stays on the cluster URL and sends
// the gcbSessionServer cookie that Get Session set, if it set one: the cookie is never made up,
// since its format is not documented.
func chooseRoute(clusterURL, serverURL, cookie string) route {
	serverURL = strings.TrimRight(strings.TrimSpace(serverURL), "/")
	prefix := ""
	if serverURL != "" {
		if connector.CheckBaseURL(serverURL) == nil {
			return route{NodeURL: serverURL, Why: "server-url"}
		}
		prefix = "bad-server-url+"
	}
	if cookie != "" {
		return route{NodeURL: clusterURL, Sticky: cookie, Why: prefix + "cookie"}
	}
	return route{NodeURL: clusterURL, Why: prefix + "no-cookie"}
}

// stickyCookies returns the cookies a route sends, for the CometD client's jar.
func (r route) stickyCookies() []*http.Cookie {
	if r.Sticky == "" {
		return nil
	}
	return []*http.Cookie{{Name: StickyCookie, Value: r.Sticky, Path: "/"}}
}

// agentViewURL builds the agent view: <node>/slave.html#<fragment>, from the node the Controller
// used, with the parameters in the fragment (never the query).
func agentViewURL(nodeURL, path, fragment, token, sessionID string) string {
	frag := strings.NewReplacer(
		"{token}", url.QueryEscape(token),
		"{sessionId}", url.QueryEscape(sessionID),
	).Replace(fragment)
	return strings.TrimRight(nodeURL, "/") + path + "#" + frag
}
