// Package cometd is a Bayeux 1.0 client (CometD protocol) of our own: handshake, the
// /meta/connect loop with the server's advice, subscribe, unsubscribe, publish, remote calls,
// batches and disconnect, over long-polling or websocket. Both transports are written here, on
// connections the client dials itself: a small HTTP/1.1 client for long-polling and a small
// RFC 6455 client for websocket (no net/http, no websocket library), so that a session that only
// waits costs little (see Resources per session).
//
// # Using it
//
// New builds a Client for one Bayeux session, Start handshakes and runs the connect loop,
// Disconnect or Close stop it. The owner learns what happens through Options.OnState:
// StateConnected, StateDisconnected (connects failing, retrying with backoff),
// StateReestablished (a new session after a re-handshake: anything joined on the old one, such
// as a Genesys Co-browse join, is gone) and StateTerminated (last). Deliveries go to
// Options.OnMessage. Both callbacks run one at a time, in order, on a goroutine of the Client's
// that exists only while callbacks are queued (never on a network reader), so they may call the
// Client and may block (what comes next waits for them).
//
// Close and Disconnect return only when no callback is running and none will run. A callback
// therefore stops its own client with Stop (Close or Disconnect there would wait for itself):
// Stop does everything Close or Disconnect does but that last wait; the callbacks still queued,
// StateTerminated last, run once the calling callback returns. Post runs a function of the
// owner's in the callbacks' order, on their goroutine (a timer's work, say); once the client has
// stopped and its last callback has run, Post runs it on the caller's goroutine instead. No
// goroutine ids are involved: which goroutine calls is never asked.
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
// StartCall sends its call beside the first /meta/connect, in the same HTTP request or websocket
// frame (Bayeux lets other messages share a connect's request; the first connect's advice timeout 0
// keeps a server that answers a request with its connect from holding the call's reply): the
// Genesys connector's join thus takes one round trip less than a Call after Start
// (BenchmarkJoinLatency: startcall/start-then-join 0.84-0.92 against gcbtest in process).
//
// The second /meta/connect (the first one the server holds) is sent as soon as the first one is
// answered, while Start returns: BenchmarkJoinLatency measured the owner's first call (the
// Genesys join against gcbtest) no slower for it than with that connect held back until the call
// was sent (a variant measured and dropped). Long-polling gives the call a connection of its own
// (see Transports): through net/http's pool, the held connect took the pooled connection and the
// first call waited for a new one (about twice as slow on loopback).
//
// # Transports
//
// Long-polling keeps two HTTP/1.1 keep-alive connections per client: one carries the held
// /meta/connect, one every other request (a third is dialed only for a request made while that
// one is busy, and closed after it). So a session's connect loop opens no connection and leaves
// no TIME_WAIT behind. Replies may be framed by Content-Length, chunked, or the end of the
// connection; the client sends neither Expect nor Accept-Encoding. Redirects are not followed: a
// status other than 2xx is *HTTPError. Time-outs are deadlines on the connection, and a
// request's context cancels by moving the deadline (no goroutine per request). A kept
// connection the server closed while idle is found before use (a non-blocking peek at the
// socket) or, if the server closes it as the request goes out, the request is sent once more on
// a new connection, provided no byte of a reply came (Node's HTTP server, under
// cometd-nodejs-server and faye, closes an idle keep-alive connection after 5 s). The connection
// for other requests is closed once idle for 2 s (a timer that exists only while it is idle): it
// serves a burst (the handshake, then the join), and a session that only waits holds one file.
//
// Websocket dials, sends the HTTP/1.1 upgrade with Options.Header and the jar's cookies, checks
// the 101 (Upgrade, Connection, Sec-WebSocket-Accept; no extension or subprotocol accepted) and
// keeps cookies the 101 sets. A reply other than 101 is *HTTPError (the fallback to the next
// transport, and WebSocketRefused). Client frames are masked; text, binary and continuation
// frames are read, a message over MaxMessageSize closes the connection (1009), a ping is
// answered with a pong, a close frame is answered with the same code, and the client's own close
// sends 1000 and waits (at most 1 s) for the server's. Writes happen on the caller's goroutine
// under a mutex, with a write deadline. The connection's reader is its only goroutine. The
// /meta/connect held on a websocket is timed out by the reader's read deadline, not a timer.
//
// TLS (https, wss) uses Options.TLSConfig, nil for the system roots; the client keeps no copy of
// its own (one clone per base config and server name is shared by the process, speaking
// HTTP/1.1 only). Options.Dial dials both transports; nil is a net.Dialer.
//
// Options.RoundTripper is an explicit opt-in: when set, long-polling goes through net/http with
// that RoundTripper (an HTTP proxy, or a test's transport such as gcbtest's in-process one),
// with the client's own cookie jar and no redirects followed, at net/http's cost per connection
// (a read and a write goroutine, 4 KiB buffers). Websocket always dials with Dial and TLSConfig:
// it does not go through a proxy. NewSharedTransport is gone: the lean transport needs no shared
// net/http transport.
//
// # Cookies
//
// Each client has its own small cookie jar (CometD ties a long-polling session to the
// BAYEUX_BROWSER cookie its handshake sets). It keeps a cookie's name, value, path and expiry
// (Expires, Max-Age; Max-Age <= 0 or a past Expires deletes), sends the cookies whose path covers
// the request's (longer paths first) on every request and on the upgrade, and keeps what
// Options.Cookies seeds (a Genesys gcbSessionServer stickiness cookie). It ignores Domain (a
// client talks to its one server), Secure (the client never changes scheme), HttpOnly, SameSite
// and Partitioned, and any other attribute; it keeps at most 32 cookies of at most 4 KiB each.
//
// # Resources per session
//
// BenchmarkLiveSessions (here, and one level up in connector/gcb with the Genesys session)
// measures a live, waiting session. A waiting websocket session keeps one goroutine, its
// connection's reader, parked in a one-byte read with the minimum stack (2 KiB): it reads each
// frame and runs the dispatch on a short-lived goroutine (deep), so that the stack JSON and
// callbacks need is not kept while waiting; no bufio buffer, no timer. A waiting long-polling
// session keeps one goroutine, its connect loop, parked in the read of its held /meta/connect's
// reply (its buffer comes from a shared pool once the reply arrives), and two kept connections;
// the loop runs each renewal on its own stack, which costs about 2 KiB of stack per session and
// saves a third of a waiting session's CPU (runLoop says how that was measured). The Client struct is about 480 bytes; what the clients of one URL share (its
// parts, the transport list) is kept once. The client's lifetime is a context of its own (no
// children map, no channel); Done's channel is made only when asked for. Callbacks run on a
// goroutine that exists only while events are queued. Message ids are a per-client counter.
//
// A body of the usual shape (a connect reply, a join reply, an event) is decoded in one pass
// without reflection (fastmessage.go); encoding/json decodes anything else, and
// FuzzFastMessages checks that the two agree on every body the fast one takes. A held connect's
// renewal, most of what a waiting session does, then decodes in about a seventh of the time and
// a third of the memory.
//
// Measured by BenchmarkLiveSessions (2,000 sessions, medians of three runs): websocket about
// 1.3 KiB of heap and 1.9 KiB of stack per session, 5 KiB of resident memory with no GC forced,
// 1 goroutine; long-polling about 2.7 KiB of heap and 3.9 KiB of stack (2.0 KiB when its
// renewals ran on short-lived goroutines), about 11 KiB resident (9.3 before), 1 goroutine.
// With the Genesys session on top (connector/gcb's benchmark): websocket 1.9 KiB of heap, 6 KiB
// resident; long-polling 3.1 KiB of heap, 4.1 KiB of stack, 11.6 KiB resident (10.7 before).
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
//   - One cookie jar per Bayeux session: CometD ties long-polling sessions to the BAYEUX_BROWSER
//     cookie and throttles several sessions sharing one ("multiple-clients"). The jar's cookies
//     (and Options.Header) also go on the websocket upgrade, for load-balancer stickiness.
//   - A reply body may be a single JSON object instead of an array.
//   - Advice durations may be written as JSON floats; they are read as whole milliseconds.
package cometd
