// Package zoomtest is an in-process Zoom for tests, like net/http/httptest: the Server-to-Server
// OAuth token endpoint, the Cobrowse SDK REST API and a webhook sender, on 127.0.0.1:0. Tests play
// the browsers (the customer page, the agent desk) with Go methods; the code under test talks to
// the server over HTTP and receives its signed webhooks.
//
//	z := zoomtest.New(zoomtest.Options{WebhookURL: receiver.URL})
//	defer z.Close()
//	s, _ := z.CustomerStart(customerJWT, "")   // session_started; s.PIN is 6 digits
//	a, _ := z.AgentJoin(agentJWT, s.PIN)        // session_user_joined
//	_ = z.End(s.ID)                             // session_ended
//	_ = z.WaitWebhooks(ctx)                     // every delivery answered or given up
//
// The REST API is Zoom's four read-only Cobrowse operations (live sessions, past sessions, one
// session, its users); Zoom has no call that creates or ends a session, and neither has this
// server.
//
// It follows what Zoom documents; where Zoom is silent it makes the choice listed here, usually
// the one that is harder on a client (so that a client that works here relies on less). A client
// should say which of these it depends on.
//
// # OAuth token endpoint
//
//   - POST {URL}/oauth/token?grant_type=account_credentials&account_id=... with HTTP basic
//     authentication client_id:client_secret (Options.ClientID, ClientSecret, AccountID).
//   - 200 {"access_token","token_type":"bearer","expires_in":seconds,"scope","api_url"}; the
//     token is random and lives Options.TokenTTL (expires_in is that, rounded up to seconds).
//     api_url is an extra field a client must ignore.
//   - Errors are {"reason","error"}: bad or missing basic authentication 401 invalid_client;
//     another grant_type 400 unsupported_grant_type; another account_id 400 invalid_request;
//     another method 405. (Zoom's exact statuses and words for each are not documented.)
//   - A new token does not revoke the older ones. RevokeTokens forgets every token.
//
// # REST API ({URL}/v2)
//
//   - Every call needs Authorization: Bearer <token>: an unknown (or revoked) token is 401
//     {"code":124,"message":"Invalid access token."}, an expired one 401 with "Access token is
//     expired.".
//   - GET /cobrowsesdk/live_sessions: page_size (default 30; outside 1..300 or not a number is
//     400 code 300), next_page_token (opaque; a bad one is 400 code 300), and the PIN filter on
//     the parameter Options.PINParam (default "pin_code", the name in Zoom's changelog; another
//     source says "session_pin"), compared case-insensitively. Options.IgnorePINFilter ignores
//     the filter and lists every live session, as Zoom would if the name were wrong. Reply
//     {"page_size","next_page_token" ("" on the last page),"sessions":[{"session_id",
//     "start_time","session_pin","users":[{"user_id","user_name","role_type"}]}]}, oldest first;
//     users are the users present (a disconnected one included); role_type is "customer" or
//     "agent". No from/to range is needed or checked.
//   - GET /cobrowsesdk/past_sessions: the ended sessions remembered, oldest first, paged like
//     live_sessions, filtered by from and to (dates yyyy-mm-dd, UTC, inclusive, on the start
//     time; a bad date is 400 code 300), session_id and session_pin (any case). Without from and
//     to every remembered session is listed (Zoom's default range is not documented). Reply
//     {"from","to" (when given),"page_size","next_page_token","sessions":[{"session_id",
//     "start_time","end_time","duration","user_count","session_pin","users":[...]}]}, users
//     being everyone who joined.
//   - GET /cobrowsesdk/sessions/{id}: a live or ended session: {"session_id","start_time",
//     "session_pin","user_count"} plus "end_time" and "duration" ("HH:MM:SS") once ended.
//     user_count counts the distinct user ids that joined. Unknown: 404 {"code":404,...}.
//   - GET /cobrowsesdk/sessions/{id}/users: every connection, in join order, paged like
//     live_sessions: {"user_connection_id","user_id","user_name","role_type","ip_address",
//     "data_center","join_time"} plus "leave_time" and "duration" once left.
//   - Times are RFC 3339, UTC, whole seconds ("2025-05-29T12:00:00Z").
//   - Session ids are 16 random bytes in standard base64 with padding (24 characters, like Zoom's
//     meeting UUIDs), so they hold "/", "+" and "=": a client must path-escape them. (Zoom's
//     session_id format is not documented.)
//   - Other paths: 404.
//
// # The browsers' JWTs
//
// CustomerStart and AgentJoin check the JWT without a JWT library (the code that mints them should
// not be checked by the same code): three unpadded base64url parts; header alg "HS256" and typ
// "JWT"; HMAC-SHA256 signature with Options.SDKSecret; the payload one JSON object with no claim
// but app_key, role_type, iat, exp, user_id, user_name and enable_byop (Zoom's validator is said to
// be strict about names; an unknown claim is refused here); app_key equal to Options.SDKKey;
// role_type the JSON integer 1 (customer) or 2 (agent), never a string; iat and exp JSON integers
// with exp - iat within [1800, 172800] and exp in the future (iat is not compared with the clock);
// user_id and user_name non-empty strings of at most 35 characters as JavaScript counts them
// (UTF-16 code units); enable_byop, when present, the JSON integer 0 or 1. Any failure is SDK error
// 2001 TOKEN_INVALID, with the rule in Reason.
//
// # Sessions
//
//   - CustomerStart(jwt, customPIN) starts a session with the customer in it. Without a custom PIN
//     (and without enable_byop) the PIN is 6 random digits, unique among live sessions. With one:
//     the token must have enable_byop 1 (else 2001: whether Zoom refuses or ignores the PIN is not
//     documented; refusing is the visible choice), the PIN must be 1 to 10 ASCII letters and
//     digits (else 1008), and it is stored upper-cased; a PIN a live session has is 1010. A token
//     with enable_byop 1 and no custom PIN is 1009.
//   - AgentJoin(jwt, pin) adds an agent: the PIN in any case; no live session with it is 1006; at
//     most Options.MaxAgents (5) agents present, else 1013; a present user (of either role) with
//     the same JWT user_id is 1015. An agent may join while the customer is away.
//   - User ids in REST and webhooks: by default a per-session id of the server's own (8 digits,
//     unique in the session, new on every join), unrelated to the JWT's user_id: Zoom documents no
//     relation between the two. Options.EchoUserIDs uses the JWT's user_id instead. user_name is
//     always the JWT's.
//   - AgentLeave(sessionID, userID): the agent leaves; the session goes on (the customer may wait
//     for another agent), unless the customer had left and this was the last agent (EndedBy
//     "agents_left").
//   - CustomerLeave(sessionID): the customer's page goes away for good. With no agent present the
//     session ends at once ("customer_left"); otherwise the agents wait Options.CustomerWait
//     (default 3m, Zoom's "agent waiting for the customer" limit), then it ends
//     ("customer_wait"). The customer never comes back to that session.
//   - Disconnect(sessionID, userID) / Reconnect: a page refresh. The user stays present (and
//     listed), no webhook is sent; if it does not reconnect within Options.ReconnectWindow
//     (default 2m, Zoom's reconnection limit) the session ends ("reconnect_timeout"). Zoom's
//     "two reconnection attempts" rule is not modelled.
//   - End(sessionID): session.end() from either browser ("end").
//   - There is no other expiry: a session with a customer and no agent lives until someone ends it
//     (Zoom documents no such limit).
//   - Zoom has no REST call that ends a session, and neither has this server.
//   - Session, SessionByPIN and WaitEnded let a test inspect sessions; the last 10,000 ended
//     sessions are remembered (REST included).
//
// # Webhooks
//
//   - Sent to Options.WebhookURL (none when empty) as POST application/json with
//     x-zm-request-timestamp (epoch seconds) and x-zm-signature = "v0=" + hex
//     HMAC-SHA256(Options.WebhookSecret, "v0:" + timestamp + ":" + body); each attempt is signed
//     anew (a new timestamp), the body stays the same.
//   - Envelope {"event","event_ts" (epoch ms),"payload":{"account_id","object":{...}}}. Objects:
//     session_started {session_id, start_time, role_type "customer", user_id, user_name} (Zoom's
//     documented fields but start_url, which the server does not know); session_user_joined
//     {session_id, user_id, user_name, role_type, join_time}; session_user_left {session_id,
//     user_id, user_name, role_type, leave_time}; session_ended {session_id, start_time,
//     end_time}. The last three are Zoom's undocumented payloads as inferred. No session_pin is
//     sent: none is documented.
//   - When: CustomerStart sends session_started (no session_user_joined for the customer);
//     AgentJoin session_user_joined; AgentLeave and CustomerLeave session_user_left; any end
//     session_ended only (no session_user_left for the users still present). Disconnect and
//     Reconnect send nothing.
//   - One goroutine sends them, in the order of the state changes, from a queue of
//     Options.WebhookQueue (default 1024; when full a delivery is dropped and counted). A delivery
//     not answered 2xx within Options.WebhookTimeout (3s) is tried again after
//     Options.WebhookRetryDelay, Options.WebhookAttempts times in all (default 3), then given up.
//     (Zoom's own retry schedule is longer and not relied on.) Real Zoom may also reorder
//     deliveries; this server does not.
//   - ValidateURL sends endpoint.url_validation {"payload":{"plainToken"}} (signed like the
//     others) on the caller's goroutine and checks the answer: 200, JSON {"plainToken",
//     "encryptedToken" = hex HMAC-SHA256(secret, plainToken)}.
//   - WaitWebhooks waits until the queue is empty and nothing is in flight; WebhookStats counts.
//
// # Faults
//
// SetFault(route, Fault) makes a route (RouteOAuth, RouteLiveSessions, RoutePastSessions,
// RouteSession, RouteSessionUsers, or RouteAll) answer Status (a Zoom-style JSON error, with Retry-After when
// set: 429 and 5xx are the useful ones) or Hang (no answer until the client gives up or the server
// closes), for the next Times requests or until ClearFaults. A fault is applied before
// authentication. Requests counts the requests per route, faulted ones included; WaitRequests
// waits for a count (a test that hangs a route learns its request arrived). DropWebhooks(n)
// loses the next n deliveries; DuplicateWebhooks(n) sends each of the next n twice (same body).
//
// # Goroutines
//
// net/http's (the listener and one per connection), one webhook sender when WebhookURL is set,
// and the auto-end timers (time.AfterFunc). Close releases hung requests, stops the timers and
// waits for any that runs, discards the queued webhooks, waits for the sender and closes the
// listener: every goroutine the server started has ended when Close returns. A delivery in
// flight at Close is abandoned.
package zoomtest
