//go:build !unix

package cometd

import "net"

// peerClosed cannot look at the socket here: a connection the server closed is found when it
// is used, and the request is sent again once (see longPolling.roundTrip).
func peerClosed(net.Conn, bool) bool { return false }
