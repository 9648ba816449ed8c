// Package cometd is a Bayeux 1.0 client (CometD protocol) of our own: handshake, the
// /meta/connect loop with the server's advice, subscribe, unsubscribe, publish, remote calls,
// batches and disconnect, over long-polling or websocket (github.com/coder/websocket).
//
// # Using it
//
// New builds a Client for one Bayeux session, Start handshakes and runs the connect loop,
// Disconnect or Close stop it. The owner learns what happens through Options.OnState:
// StateConnected, StateDisconnected (connects failing, retrying with backoff),
// StateReestablished (a new session after a re-handshake: anything joined on the old one, such
// as a Genesys Co-browse join, is gone) and StateTerminated (last). Deliveries go to
// Options.OnMessage. Both callbacks run one at a time, in order, on a goroutine of the Client's
// (never on a network reader), so they may call the Client, even Close.
//
// # Advice
//
// The last advice seen is kept field by field (servers send advice only when it changes).
// reconnect "retry" waits `interval` then connects again; "handshake" handshakes again with
// backoff (BackoffIncrement growing to MaxBackoff), restores the subscriptions, then says
// StateReestablished; "none", or a negative interval, terminates. A /meta/connect is waited for
// advice.timeout + MaxNetworkDelay; other requests for MaxNetworkDelay. The first /meta/connect
// after every handshake asks for advice {timeout: 0}. A 402 or 401 error (unknown session)
// re-handshakes whatever the advice says. Network and HTTP failures keep the session and retry
// the connect with backoff: the server says with 402 whether the session outlived the outage.
//
// # Resources per session
//
// Each Client has its own cookie jar and http.Client; the RoundTripper may be shared (see
// NewSharedTransport). On long-polling a session keeps one goroutine parked in its /meta/connect
// POST, besides net/http's two per connection. On websocket it keeps one: the frame reader,
// which also sends the next /meta/connect when a reply comes; a goroutine for the connect loop
// exists only while starting, backing off, re-handshaking or waiting an advised interval.
// Callbacks run on a goroutine that exists only while events are queued. Message ids are a
// per-client counter. BenchmarkLiveSessions measures the memory per live session.
//
// # Interop facts learned the hard way (each is covered by a test here or in test/interop)
//
//   - cometd-nodejs-server 1.2.1 speaks long-polling only: it answers a websocket upgrade with
//     HTTP 400, so the client falls back to long-polling, and remembers the refusal so that later
//     re-handshakes do not try again. It finds sessions through the BAYEUX_BROWSER cookie its
//     handshake reply sets: a client without a cookie jar gets "402::session_unknown". Its reply
//     bodies put queued deliveries before the replies, so a remote call's result may arrive
//     before the call's own reply, and deliveries may come in the reply to a publish. It echoes
//     `subscription` as the request sent it (string or array). Its sweeper, on expiry, answers a
//     held /meta/connect with HTTP 500 and forgets the session: the next connect gets 402.
//   - faye 1.4.3 serves long-polling and websocket on one path; an unknown client is
//     "401:<clientId>:Unknown client" with advice reconnect "handshake" (402 means a missing
//     parameter there). It pushes messages carrying the publisher's `id` (our own publishes come
//     back with our ids), so replies and deliveries are told apart by `successful`, never by `id`.
//     A handshake over websocket is fine with it. When its engine destroys a client (timeout), it
//     closes that client's websocket; the 401 comes on the next connection.
//   - Send advice {timeout: 0} on the first /meta/connect, or some servers hold it for the whole
//     timeout before the session is usable.
//   - One HTTP client and cookie jar per Bayeux session: CometD ties long-polling sessions to
//     the BAYEUX_BROWSER cookie and throttles several sessions sharing one ("multiple-clients").
//     The jar's cookies (and Options.Header) also go on the websocket upgrade, for load-balancer
//     stickiness.
//   - A reply body may be a single JSON object instead of an array.
//   - Advice durations may be written as JSON floats; they are read as whole milliseconds.
package cometd
