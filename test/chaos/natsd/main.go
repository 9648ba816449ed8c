// Command natsd runs a NATS server with JetStream on a file store, in a process of its own, for
// the chaos harness (test/chaos): the harness kills it (SIGKILL) and starts it again on the same
// port and store, as a crashed NATS server comes back, which an in-process server cannot show.
//
// With -cluster-port and -routes it is one node of a JetStream cluster (the harness's replicas
// mode runs three): it then says it is ready only once it has routes to every other node, knows
// the JetStream meta leader and is current with it, so that a node started again after a kill is
// back in the cluster, not merely listening, when the harness goes on.
//
// Once it accepts connections (and, in a cluster, has joined it) it writes "ready <client URL>"
// on stdout; SIGINT or SIGTERM shuts it down cleanly.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
	"github.com/nats-io/nats-server/v2/server"
)

// clusterWait bounds the wait for a cluster node to join: a store recovered after a kill, three
// servers and the daemons on a loaded 2-core machine. The harness waits a little longer itself.
const clusterWait = 45 * time.Second

func main() {
	port := flag.Int("port", 0, "client port on 127.0.0.1 (required: the same on every restart)")
	store := flag.String("store", "", "JetStream store directory (required: the same on every restart)")
	logPath := flag.String("log", "", "server log file; empty: no log")
	name := flag.String("name", "chaos-natsd", "server name (a cluster node's must be unique and the same on every restart)")
	clusterName := flag.String("cluster-name", "chaos", "cluster name, with -cluster-port")
	clusterPort := flag.Int("cluster-port", 0, "cluster (route) port on 127.0.0.1; 0: a server on its own")
	routes := flag.String("routes", "", "the other nodes' route URLs, comma-separated (nats-route://127.0.0.1:PORT), with -cluster-port")
	flag.Parse()
	if *port <= 0 || *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: -port and -store are required")
		os.Exit(2)
	}
	if (*clusterPort > 0) != (*routes != "") {
		fmt.Fprintln(os.Stderr, "natsd: -cluster-port and -routes go together")
		os.Exit(2)
	}
	opts := &server.Options{
		ServerName: *name,
		Host:       "127.0.0.1",
		Port:       *port,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		NoLog:      *logPath == "",
		LogFile:    *logPath,
	}
	var peers int
	if *clusterPort > 0 {
		opts.Cluster = server.ClusterOpts{Name: *clusterName, Host: "127.0.0.1", Port: *clusterPort}
		opts.Routes = server.RoutesFromStr(*routes)
		peers = len(strings.Split(*routes, ","))
	}
	// Recovering a store after a kill can take a moment; the harness bounds its own wait too.
	ns, err := natstest.Run(opts, 30*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natsd: %v\n", err)
		os.Exit(1)
	}
	if peers > 0 {
		if err := joined(ns, peers); err != nil {
			fmt.Fprintf(os.Stderr, "natsd: %s did not join the cluster within %v: %v\n", *name, clusterWait, err)
			ns.Shutdown()
			os.Exit(1)
		}
	}
	fmt.Println("ready", ns.ClientURL())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
}

// joined polls, within clusterWait, until the node has routes to its peers, knows the JetStream
// meta leader and is current with it (the conditions test/natstest's in-process cluster waits
// for, seen from one node).
func joined(ns *server.Server, peers int) error {
	deadline := time.Now().Add(clusterWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := notJoined(ns, peers)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

func notJoined(ns *server.Server, peers int) error {
	rz, err := ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return err
	}
	// Route pooling opens several connections per remote: count the remotes.
	remotes := make(map[string]bool)
	for _, r := range rz.Routes {
		remotes[r.RemoteName] = true
	}
	if len(remotes) < peers {
		return fmt.Errorf("routes to %d of %d peers", len(remotes), peers)
	}
	jsz, err := ns.Jsz(&server.JSzOptions{})
	if err != nil {
		return err
	}
	if jsz.Meta == nil || jsz.Meta.Leader == "" {
		return errors.New("no JetStream meta leader")
	}
	if !ns.JetStreamIsCurrent() {
		return errors.New("not current with the JetStream meta leader")
	}
	return nil
}
