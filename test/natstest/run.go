package natstest

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Run starts a NATS server with opts (its logger set up unless NoLog) and waits up to ready for it
// to take connections; a server that does not is shut down and its error returned. The tests'
// servers and the harnesses' NATS processes (test/chaos/natsd, test/load) start through it.
func Run(opts *server.Options, ready time.Duration) (*server.Server, error) {
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	if !opts.NoLog {
		ns.ConfigureLogger()
	}
	ns.Start()
	if !ns.ReadyForConnections(ready) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("not ready for connections within %v", ready)
	}
	return ns, nil
}
