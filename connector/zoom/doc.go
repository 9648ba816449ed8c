// Package zoom is the Zoom Cobrowse connector: Connector (New) implements connector.Connector for
// the customer-PIN flow, on building blocks for what the daemon needs to take part in Zoom
// Cobrowse SDK sessions without ever joining one itself (the SDK runs only in browsers; the daemon
// mints their tokens, matches PINs, reads Zoom's REST API and receives its webhooks). It speaks no
// NATS: the daemon's webhook intake and router turn Zoom's webhooks into signals (SignalOf), which
// the controller hands to the interaction's session.
//
//   - Minter mints the browsers' JWTs (HS256 with the SDK secret; claims app_key, role_type, iat,
//     exp, user_id, user_name and, on request, enable_byop). DeriveUserID makes the user_id of a
//     role on an interaction; FitUserName makes a display name fit user_name.
//   - NewBYOPPIN makes a PIN of our own (Bring Your Own PIN); NormalizePIN, IsAutoPIN and
//     MatchStart read PINs (MatchStart takes the X of a chat start message {start:X}).
//   - TokenSource gets and caches a Server-to-Server OAuth access token (one request in flight,
//     renewed before expiry, renewed once on a 401).
//   - API reads the Cobrowse REST API: LiveSessionByPIN, Session, SessionUsers.
//   - Webhook verifies (x-zm-signature, x-zm-request-timestamp) and decodes Zoom's webhook
//     deliveries (the four cobrowse.* events and endpoint.url_validation); DedupeID names one.
//
// Errors of calls to Zoom are *connector.ServerError wrapping connector.ErrNotFound, ErrRefused or
// ErrUnavailable. Secrets (the SDK secret, the OAuth client secret, the webhook secret tokens) are
// of type Secret and never printed; tokens (JWTs, access tokens) and PINs reach logs only through
// connector.MaskToken. Package zoomtest is an in-process Zoom for tests.
//
// Where Zoom's documentation is silent (the payloads of three of the four webhooks, the PIN
// filter's parameter name, how a REST user_id relates to the JWT's user_id), the decoders accept
// every plausible form and the client checks what it can on its own side; docs/zoom.md lists these
// points and what the code does about each.
package zoom
