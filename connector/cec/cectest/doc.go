// Package cectest is an in-process Huawei CEC for tests, like net/http/httptest: API Fabric's
// tokenByAkSk and getConnectionInfo, and the web adapter's releaseConnection, on 127.0.0.1:0.
// Tests and demos play the pages (the customer's recorder, the agent's replayer) with Go methods;
// the code under test talks to the server over HTTP.
//
//	s := cectest.New(cectest.Options{})
//	defer s.Close()
//	// a client: Domain s.URL(), AppKey/AppSecret/TenantSpaceID from s.Options(), ReleaseURL s.ReleaseURL()
//	_ = s.Connect(cectest.RoleRecorder, roomID, wssURL, connectParam) // the customer's page opens the room
//	_ = s.Connect(cectest.RoleReplayer, roomID, wssURL, connectParam) // the agent's view
//	r, _ := s.Room(roomID)                                            // what was handed out, who is connected, released or not
//
// It follows what CEC documents; where CEC is silent it makes the choice listed here, usually the
// one that is harder on a client (so that a client that works here relies on less).
//
// # tokenByAkSk (POST {URL}/apigovernance/api/oauth/tokenByAkSk)
//
//   - Content-Type must be application/json; X-Token-Expire must be a whole number of seconds
//     from 1 to 3600 (CEC's maximum), else 400. (Whether CEC refuses or clips a larger value, or
//     has a default when the header is missing, is not documented: refused here.)
//   - Body {"app_key","app_secret"}: both must equal Options.AppKey and AppSecret, else 401.
//   - 200 {"AccessToken","ApplyType":"Bearer","CreateTime" (epoch seconds, a string),"Expires"
//     (seconds, a string),"Scope","AppKey","UserID":"Anonymous"}, as documented. The token is 64
//     hex characters and lives what was asked, at most Options.TokenTTL when set.
//   - Errors are {"error_code","error_msg"}: CEC documents no error body for this call; this is
//     the form of Huawei's API gateway, which a client must read as well as the documented ones.
//   - A new token does not revoke older ones. ExpireTokens makes every token issued so far
//     expired; RevokeTokens forgets them; TokenValid and TokensIssued inspect them.
//
// # getConnectionInfo (POST {URL}/apiaccess/api/cobrowse/getConnectionInfo)
//
//   - Headers: x-app-key must be Options.AppKey; Authorization must be "Bearer " and a token
//     issued to that app key, not expired ("invalid token", "token expired": 401);
//     X-TenantSpaceID must be Options.TenantSpaceID (403: CEC documents only 401, 404 and 500;
//     which status a wrong tenant space gets is not documented). Content-Type is not checked (not
//     documented).
//   - Body {"roomId","userId","userName","workNo","role"}, strings: role must be recorder or
//     replayer (400 success:false otherwise); no roomId: a UUID is made, as documented; a roomId
//     over Options.MaxRoomID bytes (default 64; CEC documents no limit) is 200 success:false
//     errorCode 1; a room already released is 200 success:false errorCode 2.
//   - 200 {"success":true,"data":{"roomId","wssUrl","wssUrlOut","connectParam"},"errorCode":null,
//     "errorReason":null}, as documented. Every call hands out a new connectParam: 30 random bytes
//     in standard base64 (it holds '+', '/' and '='; CEC's format is not documented). wssUrlOut
//     is Options.WSSURLOut, wssUrl Options.WSSURL (an address no page can reach).
//   - Errors: the documented body {"success":false,"data":null,"errorCode" (a number),
//     "errorReason"} with the HTTP status (401, 403, 400), or with 200 for a business failure.
//   - A second call for a side of a room is answered (a new connectParam, the old one stays
//     valid): CEC does not say it refuses one.
//
// # releaseConnection (POST {URL}/service-cloud/rest/webadapter/v1/connectionInfo/releaseConnection)
//
//   - The web adapter authenticates a browser by its ccmessaging-token cookie, which a daemon
//     does not have; this server checks API Fabric's three headers instead (as getConnectionInfo
//     does, 401 and 403 alike), the deployment a daemon-side release needs (see docs/cec.md).
//   - Body {"callId"}: the room. 200 {"retCode":"0","retMsg":"success"}, as documented; the room
//     is released (its pages disconnected, no more connection info for it). Releasing it again
//     answers "0" too (whether CEC does is not documented); a callId no connection info was
//     issued for is 200 retCode "1"; no callId is 400. Errors are {"retCode","retMsg"}.
//
// # The pages
//
// Connect(role, roomID, wssURL, connectParam) plays a page opening the WebSocket with what it was
// handed, and checks it as far as can be guessed: the room was issued connection info and is not
// released, wssURL is the external address (pages are on the Internet), and connectParam was
// handed out for that room and that role (ErrUnknownRoom, ErrReleased, ErrWrongURL,
// ErrBadConnectParam). Disconnect plays the page closing it. The WebSocket itself is not served:
// its protocol is not public. Room and Rooms show every room: the connection infos handed out
// (Issue: role, workNo, userId, userName, the addresses, the connectParam), which sides are
// connected, whether and when it was released. WaitRoom waits for a room that satisfies a condition (a
// room of an interaction: its id starts with "<interactionId>-"), WaitReleased for a release.
//
// # Faults
//
// SetFault(route, Fault) makes a route (RouteToken, RouteConnectionInfo, RouteRelease, or
// RouteAll) answer an HTTP Status with the route's error body, a business failure with 200
// (Refuse: success:false, a retCode other than "0", a token reply without a token), or nothing
// (Hang, until the client gives up or the server closes), for the next Times requests or until
// ClearFaults; ErrorCode and ErrorReason choose the words. A fault is applied before any check.
// Requests counts the requests per route, faulted ones included; WaitRequests waits for a count
// (a test that hangs a route learns that its request arrived).
//
// # Goroutines
//
// net/http's only (the listener and one per connection). Close releases hung requests and closes
// the listener: every goroutine the server started has ended when it returns.
package cectest
