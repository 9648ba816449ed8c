// Package natstest starts a real NATS server for tests: embedded from nats-server, JetStream on,
// a random loopback port and a temporary store that the test cleans up.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is a running embedded NATS server and the options it was started with.
type Server struct {
	*server.Server
	opts server.Options
}

// Start runs a NATS server with JetStream for the length of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith runs a NATS server with JetStream for the length of the test, its options first
// changed by configure (nil: none): TLS (TLSConfig, TLS, TLSVerify), users or NKeys, for a test of
// the client's side of them.
func StartWith(tb testing.TB, configure func(*server.Options)) *Server {
	tb.Helper()
	opts := server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if configure != nil {
		configure(&opts)
	}
	return start(tb, opts)
}

// Restart shuts s down if it still runs and starts a new server on the same port and store, as a
// restarted NATS server would come back: streams, consumers and buckets survive.
func (s *Server) Restart(tb testing.TB) *Server {
	tb.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	return start(tb, s.opts)
}

func start(tb testing.TB, opts server.Options) *Server {
	tb.Helper()
	o := opts
	ns, err := Run(&o, 10*time.Second)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	// Pin the port the server picked so that Restart comes back on the same address.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		opts.Port = addr.Port
	}
	return &Server{Server: ns, opts: opts}
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(tb testing.TB, s *Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(tb.Name()))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
