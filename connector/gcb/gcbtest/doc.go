// Package gcbtest is an in-process Genesys-style Co-browse Server (GCB 8.5/9.0 as seen by a
// third-party Controller), like net/http/httptest: a cluster of nodes behind a front (the load
// balancer), each node serving CometD (Bayeux, CometD 3.1 behaviour) and the Live Session REST
// API on 127.0.0.1. Tests and demos play the customer (CreateSession, CustomerExit) and the
// agent (AgentJoin, AgentExit) from Go, and a Controller under test joins over the wire.
//
//	c := gcbtest.NewCluster(gcbtest.Options{Nodes: 2, ConnectTimeout: time.Second})
//	defer c.Close()
//	s, _ := c.CreateSession(1)       // a live idle session on node-2, the customer present
//	// ... the Controller under test: Get Session on c.URL(), CometD, join as role 3 ...
//	s.WaitUser(ctx, 3)               // the Controller joined
//	s.AgentJoin("agent-7", "Bob")    // joined + activated go to the Controller
//	<-s.Done(); s.EndedBy()          // "controller", "controller-rest", "agent", ...
//
// It follows the public Genesys Co-browse documentation (the Live Session REST API, the CometD
// notifications, stickiness) and CometD 3.1. Where Genesys documents nothing, this package chose
// the most robust behaviour below; a Controller that works against gcbtest should say which of these it relies on.
//
// # URLs
//
// Path defaults to "/cobrowse". CometD answers at <Path>/cometd and at anything under it (the
// JS client appends /handshake, /connect, ...): long-polling (POST of a JSON array, or of one
// object, or form-encoded message=) and websocket (text frames of JSON arrays) on the same
// URL. REST: POST <Path>/rest/live/sessions, GET <Path>/rest/live/sessions/{token},
// GET <Path>/rest/live/users/{userToken}/session/stop. GET <Path>/health answers 200 with an
// empty body (also through the front). GET <Path>/slave.html is a placeholder agent view.
//
// # REST choices
//
//   - Errors are JSON: {"status":404,"error":"..."}.
//   - Get Session: any node (and the front) answers for any live session of the cluster. 200
//     {"sessionToken","sessionServerName"} plus "sessionServerUrl" (the owning node's URL, no
//     trailing slash) when Options.ServerURL is on. It sets the cookie gcbSessionServer=<the
//     owning node's sessionServerName>; Path=/. 404 for an unknown token, 410 for one whose
//     session ended. It needs an Origin header, or a Referer whose scheme://host is taken as the origin: neither is 403;
//     with AllowedOrigins set, an origin not on it (compared case-insensitively, trailing
//     slash ignored) is 403. An accepted origin is echoed in Access-Control-Allow-Origin.
//   - Create (POST) creates the session on the node that receives it (through the front:
//     the cookie's node, else round-robin), the customer present, and sets gcbSessionServer.
//   - Stop: only on the owning node (elsewhere 404, through the front route with the cookie).
//     200 {"activationTime":N,"deactivationTime":N}, epoch ms; activationTime is ABSENT when
//     no agent ever joined (the deactivated notification follows the same rule). 404 for a
//     token unknown on this node or whose session ended (so stopping twice is 404); 403 for
//     the token of a customer or an agent. The Controller's token keeps working for the REST
//     stop while the session is live, even after its Bayeux session expired or was dropped.
//   - No idle or inactivity expiry of co-browse sessions: a session lives until someone ends
//     it or its node dies (no such server option was found).
//
// # CometD envelope of the /service/session/* calls
//
// A handled publish (join, stop, exit, create) is answered with TWO messages that share the
// request's id and channel, in this order, in the same HTTP response or websocket frame:
//
//  1. the result: {"id","channel","successful":true,"data":{...}}: what the CometD JS
//     client's remoteCall reads, and what a client that matches replies by id or that
//     treats messages with data as deliveries sees;
//  2. the publish acknowledgement: {"id","channel","successful":true}, no data: what a
//     publish callback waits for, and what the JS websocket transport needs to clear its
//     per-message timer (a reply with data does not clear it, and after maxNetworkDelay the
//     transport would close the connection; the interop test proves this).
//
// A refusal is successful:false with "error" in both, and data {"error": ...} in the first.
// The error strings (code::text, as CometD words errors):
//
//	400::invalid join request, 400::sessionToken missing, 400::invalid role, 400::userToken missing
//	404::session not found            (unknown: never existed here)
//	410::session ended                (the session existed and has ended)
//	404::session not found on this node (the token lives on another node: wrong stickiness)
//	404::user not found               (stop/exit with an unknown or released user token)
//	403::already joined               (this Bayeux session is already a member)
//	403::customer already joined, 403::agent already joined, 403::controller already joined
//	403::rejoin not allowed           (Options.RefuseControllerRejoin)
//	403::agent busy                   (one live session per agent, below)
//	403::user token not bound to this client (a token used from another Bayeux session)
//	403::only the controller may stop the session
//
// Join data: {"sessionToken","role","name"}; sessionToken may be a string or a number, role a
// number or a numeric string. Result: {"userToken","userId":N,"users":[...],"sessionHistoryId"}
// where userId is a NUMBER and users lists the users present before the joiner, each
// {"userId":"1","role":1,"name":"Customer"} with userId a STRING, as in the Genesys samples.
// userIds count from 1 in join order (the customer of CreateSession is "1"). Stop and exit
// answer data {}.
//
// # Notifications
//
// /service/session/joined {"userId":"3","role":2,"name":"Bob"} goes to the users already
// present (not the joiner). /service/session/activated {"activationTime":N} and
// /service/session/deactivated {"activationTime":N,"deactivationTime":N} (activationTime
// absent if never active) go to every present user. They are server delivers: a client gets
// them without subscribing; a /meta/subscribe to a /service/ channel is answered successful
// and not recorded (as CometD does). No reason is given in deactivated. When a node dies no
// notification is sent (the node is gone). Order between a call's reply and a notification
// it causes (stop's reply and deactivated) is not fixed: over long-polling they travel in two
// responses, over websocket in two frames.
//
// # Session rules
//
//   - Tokens: 9 random digits, a string, may start with 0, unique among live sessions.
//     sessionHistoryId: a random UUID (version 4).
//   - A session is idle until an agent (role 2) joins, then active; a Controller (role 3)
//     joining, on an idle or an active session, does not activate it. It ends when the
//     customer or the agent leaves (CustomerExit, AgentExit, /service/session/exit, or the
//     loss of their Bayeux session), when the Controller stops it (CometD or REST), or when
//     its node dies.
//   - One user per role at a time. One membership per Bayeux session per co-browse session.
//   - A member's userToken is bound to the Bayeux session that joined. When that Bayeux session
//     goes (expired after MaxInterval, /meta/disconnect, ExpireBayeuxSessions), a Controller
//     loses its membership (not in Users, no more notifications, its token refused over
//     CometD) but its token still works for the REST stop while the session is live; a
//     customer or an agent losing theirs ends the session. Nothing is ever re-joined with an
//     old token.
//   - Controller re-join: a new Bayeux session may join a live session as Controller when no
//     Controller is present (after the previous one lost its membership or exited): allowed
//     by default, refused with "403::rejoin not allowed" under Options.RefuseControllerRejoin,
//     so both branches of a connector's recovery can be tested. A second Controller while
//     one is present is refused ("403::controller already joined"); under
//     Options.HoldController a Controller whose Bayeux session went stays present that long. A Controller's /service/session/exit leaves the session
//     (which goes on) and releases its token.
//   - Only the Controller stops, with its own token, from its own Bayeux session (CometD) or
//     by the REST stop. A join or a stop on an ended session is refused (404).
//   - One live session per agent, across the cluster: the agent's identity is AgentJoin's
//     agentID, a CometD agent join's name, and a Controller join's name when given (the
//     Controller acts for that agent). A join naming an agent bound to another live session
//     is refused: ErrAgentBusy from AgentJoin, "403::agent busy" over CometD. The binding is
//     released when the session ends. An empty name binds nobody.
//   - /service/session/create {} (customer side) creates a session on the node without a
//     customer; the creator then joins as role 1. CreateSession and the REST create put the
//     customer in at once.
//   - The cluster remembers up to 10,000 ended sessions for Session and Sessions.
//
// # Bayeux (CometD 3.1 behaviour)
//
//   - Handshake reply: version 1.0, supportedConnectionTypes [websocket, long-polling], advice
//     {reconnect:"retry", interval:0, timeout:ConnectTimeout ms, maxInterval:MaxInterval ms}.
//     The first /meta/connect is answered at once with the same advice; later ones carry none.
//   - /meta/connect is held up to ConnectTimeout (or less if the client's advice.timeout asks
//     for less; 0 answers at once) and released early when messages are queued (long-polling).
//     Over websocket, queued messages are written at once in their own frame and the held
//     connect stays held until its timeout, as CometD does. A newer connect of the same
//     session answers the held one.
//   - Long-polling sessions are bound to the BAYEUX_BROWSER cookie (HttpOnly, Path=/) set by
//     the handshake reply when the request has none (a request's existing value is reused).
//     A request without the matching cookie is an unknown client. Any number of sessions may
//     share a browser (no multiple-clients advice). Websocket sessions are bound to their
//     connection; a new connection that names the clientId takes the session over. A
//     long-polling session cannot be used over websocket, nor the reverse.
//   - A session expires when no /meta/connect is held and none arrived within MaxInterval of
//     the last connect reply (or of the handshake). Unknown, expired, dropped or foreign
//     sessions get 402::Unknown client; handshake and connect replies add advice
//     {reconnect:"handshake", interval:0}. A connect held when its session is dropped
//     (ExpireBayeuxSessions) is answered the same way; after /meta/disconnect, with
//     successful:true and advice reconnect:"none".
//   - A batch is processed in order and answered in one array: the replies in request order,
//     then (when the batch has a /meta/connect) the queued messages and the connect reply.
//   - Broadcast channels work (subscribe, unsubscribe, publish; /a/* and /a/** patterns) among
//     the Bayeux sessions of one node. No ack extension (ext.ack is not echoed).
//
// # Cluster and front
//
// The front routes each request on its gcbSessionServer cookie to the node of that name; if
// that node is down it answers 503. Without the cookie, or with an unknown value, it takes
// the next live node in turn (round-robin). So a CometD exchange without stickiness lands on
// alternate nodes: the handshake on one, the connect on the other (402::Unknown client), and
// a join for a session owned by another node is refused (404::session not found on this
// node). The front hands the request to the node in-process (no second socket): a websocket
// upgrade is routed on the upgrade request's cookie and accepted by the node on the front's
// connection. A request in flight through the front when its node dies gets 502; straight to
// the node, its connection is aborted. Kill closes the node's listener (connections
// refused), its connections and websockets; its sessions end with EndedBy "node". Restart
// comes back on the same address, empty. Nodes share the session directory and the agent
// bindings; Bayeux sessions are per node.
//
// Cluster.Transport serves the cluster's URLs in-process without sockets, for load tests
// holding thousands of sessions in one process (20,000 open files per process here).
//
// # Faults
//
// Node.SetFault affects the replies on one channel ("" = every Bayeux channel and REST
// route but /health; REST routes are named by path prefix: "/rest", "/rest/live/sessions",
// "/rest/live/users"). Delay delays the HTTP response or websocket frame that carries a
// matching message. Drop withholds the response that carries a matching reply (the request
// is processed; an HTTP request then hangs until the client gives up or the node dies; a
// websocket frame is lost) and discards matching pushed messages (a notification dropped
// from its frame or connect response, the others kept). Over websocket a delay is served by
// the goroutine that writes: a delayed frame also delays later frames of that node.
//
// # Costs
//
// No goroutine exists per co-browse session or per Bayeux session: state is a few small
// structs in maps (about 1.2 KB per live session with a Controller joined; see
// BenchmarkLiveSessionMemory). Goroutines: per node one HTTP accept loop and one housekeeper
// (expiry sweep, held websocket connect timeouts, websocket writes); the front one accept
// loop; then net/http's goroutine per open connection, which is also the one that holds a
// long-poll /meta/connect or reads a websocket. Timers: the housekeeper ticks every
// min(ConnectTimeout, MaxInterval)/10, within [5 ms, 250 ms]. Every goroutine ends in
// Cluster.Close (and the node's in Kill).
package gcbtest
