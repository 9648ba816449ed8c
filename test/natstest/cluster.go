package natstest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ClusterWait bounds every wait of a Cluster: starting a node, electing a JetStream meta leader,
// a restarted node catching up. It is generous: a loaded 2-core machine runs three servers.
const ClusterWait = 30 * time.Second

// LogEnv names the environment variable that turns the embedded servers' logs on (to stderr):
// "1" for notices, "debug" for debug lines too.
const LogEnv = "NATSTEST_LOG"

// Cluster is a JetStream cluster of embedded NATS servers in this process, on loopback, for the
// length of a test. Nodes are indexed from 0; node i is named "n<i+1>". Methods that fail call
// Fatal on the test that started the cluster, so call them from its goroutine.
type Cluster struct {
	tb    testing.TB
	base  string // the nodes' stores are made in it
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	opts server.Options // the ports are pinned once the node has run: a restart comes back on them
	srv  *server.Server // nil while stopped
}

// StartCluster runs n servers (n >= 3 for a quorum that survives one lost node) forming the
// JetStream cluster "natstest", and waits until it has a meta leader that knows every node.
// Each node has a random client port, a cluster port picked free beforehand (the routes must
// know them all), and its own store in a temporary directory.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: cluster of %d nodes", n)
	}
	// The stores' directory is made before the shutdown is registered, so that it is removed
	// after the nodes stopped writing to it (cleanups run last first).
	c := &Cluster{tb: tb, base: tb.TempDir()}
	tb.Cleanup(c.shutdown)
	// A free port picked by listening and closing may be taken again before the node binds it:
	// start over on new ports (and stores) when a node does not come up.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.startAll(tb, n); err == nil {
			break
		}
		c.shutdown()
	}
	if err != nil {
		tb.Fatalf("natstest: cluster: %v", err)
	}
	if err := c.waitReady(); err != nil {
		tb.Fatalf("natstest: cluster: %v", err)
	}
	return c
}

func (c *Cluster) startAll(tb testing.TB, n int) error {
	ports, err := procs.FreePorts(n)
	if err != nil {
		return err
	}
	logs := os.Getenv(LogEnv)
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		store, err := os.MkdirTemp(c.base, "n")
		if err != nil {
			return err
		}
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
			}
		}
		nodes[i] = &clusterNode{opts: server.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			Cluster:    server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			JetStream:  true,
			StoreDir:   store,
			NoLog:      logs == "",
			Debug:      logs == "debug",
			NoSigs:     true,
		}}
	}
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
	for i := range nodes {
		if err := c.startNode(i); err != nil {
			return err
		}
	}
	return nil
}

// startNode starts node i from its options and waits until it listens; its client port is then
// pinned.
func (c *Cluster) startNode(i int) error {
	c.mu.Lock()
	nd := c.nodes[i]
	o := nd.opts
	c.mu.Unlock()
	ns, err := Run(&o, ClusterWait)
	if err != nil {
		return fmt.Errorf("%s: %w", o.ServerName, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	nd.srv = ns
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		nd.opts.Port = addr.Port
	}
	return nil
}

func (c *Cluster) shutdown() {
	c.mu.Lock()
	nodes := c.nodes
	c.mu.Unlock()
	for _, nd := range nodes {
		if s := c.take(nd); s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
}

func (c *Cluster) take(nd *clusterNode) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := nd.srv
	nd.srv = nil
	return s
}

// running returns the servers that run, by index (nil for a stopped node).
func (c *Cluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*server.Server, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.srv
	}
	return out
}

// waitReady waits until every running node has its routes to the other running nodes, one of
// them is the meta leader and knows every node of the cluster as a peer, and every running node
// is current with the meta group.
func (c *Cluster) waitReady() error {
	deadline := time.Now().Add(ClusterWait)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		why := c.notReady()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %s", ClusterWait, why)
		}
		<-tick.C
	}
}

func (c *Cluster) notReady() string {
	srvs := c.running()
	up := 0
	for _, s := range srvs {
		if s != nil {
			up++
		}
	}
	leader := false
	for _, s := range srvs {
		if s == nil {
			continue
		}
		if s.NumRoutes() < up-1 {
			return s.Name() + " has not routed to every running node"
		}
		if s.JetStreamIsLeader() {
			if peers := len(s.JetStreamClusterPeers()); peers < len(srvs) {
				return fmt.Sprintf("meta leader %s knows %d of %d peers", s.Name(), peers, len(srvs))
			}
			leader = true
		}
	}
	if !leader {
		return "no JetStream meta leader"
	}
	for _, s := range srvs {
		if s != nil && !s.JetStreamIsCurrent() {
			return s.Name() + " is not current with the meta leader"
		}
	}
	return ""
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// URLs returns the client URLs of every node, comma-separated (stopped ones included: they
// come back on the same port).
func (c *Cluster) URLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(nd.opts.Port)
	}
	return strings.Join(urls, ",")
}

// Server returns node i's running server; nil while it is stopped.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// MetaLeader returns the index of the node that is the JetStream meta leader now, or -1.
func (c *Cluster) MetaLeader() int {
	for i, s := range c.running() {
		if s != nil && s.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// Stop shuts node i down and waits until it is down. Its store stays for Restart.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	nd := c.nodes[i]
	c.mu.Unlock()
	if s := c.take(nd); s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again (stopping it first if it runs) on the same ports and store, and
// waits until it has rejoined: routed to the running nodes, a meta leader, and current.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	c.Stop(i)
	if err := c.startNode(i); err != nil {
		c.tb.Fatalf("natstest: restart: %v", err)
	}
	if err := c.waitReady(); err != nil {
		c.tb.Fatalf("natstest: restart n%d: %v", i+1, err)
	}
}

// WaitReady waits until the running nodes have a meta leader and are current with it (after a
// Stop, say); the test fails after ClusterWait.
func (c *Cluster) WaitReady(tb testing.TB) {
	tb.Helper()
	if err := c.waitReady(); err != nil {
		tb.Fatalf("natstest: cluster: %v", err)
	}
}

// Connect opens a client connection to the cluster (every URL, reconnecting without end),
// closed when the test ends.
func (c *Cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(c.URLs(), nats.Name(tb.Name()), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
