// Command natsd runs a NATS server with JetStream on a file store, in a process of its own, for
// the chaos harness (test/chaos): the harness kills it (SIGKILL) and starts it again on the same
// port and store, as a crashed NATS server comes back, which an in-process server cannot show.
//
// Once it accepts connections it writes "ready <client URL>" on stdout; SIGINT or SIGTERM shuts
// it down cleanly.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	port := flag.Int("port", 0, "client port on 127.0.0.1 (required: the same on every restart)")
	store := flag.String("store", "", "JetStream store directory (required: the same on every restart)")
	logPath := flag.String("log", "", "server log file; empty: no log")
	flag.Parse()
	if *port <= 0 || *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: -port and -store are required")
		os.Exit(2)
	}
	opts := &server.Options{
		ServerName: "chaos-natsd",
		Host:       "127.0.0.1",
		Port:       *port,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		NoLog:      *logPath == "",
		LogFile:    *logPath,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natsd: %v\n", err)
		os.Exit(1)
	}
	if *logPath != "" {
		ns.ConfigureLogger()
	}
	ns.Start()
	// Recovering a store after a kill can take a moment; the harness bounds its own wait too.
	if !ns.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "natsd: not ready within 30s")
		ns.Shutdown()
		os.Exit(1)
	}
	fmt.Println("ready", ns.ClientURL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
}
