//go:build unix

package cometd

import (
	"net"
	"syscall"
)

// peerClosed reports whether an idle kept connection was closed by the server (or has bytes
// waiting that no request asked for), without blocking: such a connection is not reused. For a
// TLS connection (tls set) only the end of the TCP stream counts, since waiting bytes may be a
// TLS record the server sent after its reply.
func peerClosed(raw net.Conn, tls bool) bool {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		case err != nil || n == 0:
			closed = true
		default:
			closed = !tls
		}
		return true
	})
	return closed || err != nil
}
