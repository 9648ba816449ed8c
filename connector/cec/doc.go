// Package cec is the Huawei Cloud Customer Engagement Center (CEC) co-browse connector: Connector
// (New) implements connector.Connector for CEC's co-browse ("web collaboration"), in which the
// customer's page records its DOM (role recorder) and the agent's view replays it (role
// replayer), both over CEC's WebSocket. The daemon never opens that WebSocket: it only brokers
// the connection info of both sides, which API Fabric's getConnectionInfo hands out, to the pages.
//
//   - Sessions are made by the daemon on request (a trigger without a token: cobrowse_requested);
//     MatchStart accepts nothing (CEC has no start token a customer types).
//   - Join gets the tenant's access token (tokenByAkSk: cached, shared by every session, one
//     request in flight, renewed before it expires and once on a 401), then the connection info
//     of the customer's side and of the agent's side (workNo: the agent) of a new room,
//     NewRoomID(interaction). The handle's SessionID is the room id; its Data holds the room and
//     both sides' connection info.
//   - The Session has no connection (Events is nil). The pages' signals (cc.signal.<interaction>
//     .customer and .agent: user_joined, user_left, session_ended) become its events; Handoffs
//     gives the customer its start (the recorder's roomId, wssUrlOut, connectParam) and the agent
//     its view (the replayer's), and both pages an end.
//   - Stop and StopHandle release the room through the web adapter's releaseConnection when
//     Config.ReleaseURL is set; otherwise the pages end the session (EndHandoffs).
//   - Rejoin rebuilds a session from its handle without a network call: CEC has no call that
//     finds a room.
//
// Errors are *connector.ServerError wrapping connector.ErrRefused, ErrUnavailable, ErrUnsupported
// or ErrNotFound, with CEC's errorCode and errorReason in Reason. The app secret is of type Secret
// and never printed; access tokens and connectParams reach logs only through connector.MaskToken,
// and errors never carry them. Package cectest is an in-process CEC for tests.
//
// Where CEC's public documentation is silent (error codes, the error body of tokenByAkSk, the
// release's authentication from a server, a room id's limits, any event CEC could push), the
// decoders accept every plausible form and the code takes the choice that fails visibly;
// docs/cec.md lists these points and what the code does about each.
package cec
