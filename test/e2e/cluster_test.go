package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// newClusterEnv is newEnv on a 3-node NATS JetStream cluster instead of one server: the daemon
// gets every node's URL and replicas 3, the test's connection reaches the cluster. The single
// server newEnv starts is shut down at once (e.ns is nil), so that the config stays newEnv's.
// Start the daemon with startClusterDaemon: it watches the outbound streams with quick
// heartbeats.
func newClusterEnv(t *testing.T, gopts gcbtest.Options, mutate func(*configs.Config)) (*env, *natstest.Cluster) {
	t.Helper()
	ncl := natstest.StartCluster(t, 3)
	e := newEnv(t, gopts, mutate)
	// A lost node may take the leader of the consumer group's stream, or of the inbound stream it
	// sources, with it: the server notices a stalled source after its health check interval
	// (10s) and sources again, so inbound messages may wait up to about twice that.
	e.outWait = 45 * time.Second
	e.nc.Close()
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	e.ns = nil
	e.nc = ncl.Connect(t)
	var err error
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	e.cfg.NATS.URL = ncl.URLs()
	e.cfg.NATS.Replicas = 3
	e.watching = true // startClusterDaemon's watchers, not the harness's
	return e, ncl
}

// startClusterDaemon is startDaemon with watchers of the outbound streams that notice a lost
// node within seconds. The harness's ordered consumers keep the default idle heartbeat (5s, a
// reset after two missed), and when the node that held one stops, the reporting messages
// published meanwhile show ~10s late: half of wait.
func (e *env) startClusterDaemon() {
	e.t.Helper()
	e.startDaemon()
	e.watchQuick(e.cfg.NATS.Outbound.Stream, &e.out)
	e.watchQuick(e.cfg.NATS.Outbound.HandoffStream, &e.pages)
}

// watchQuick is the harness's watch with a 1s heartbeat.
func (e *env) watchQuick(stream string, into *[]outMsg) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		e.outMu.Lock()
		*into = append(*into, outMsg{subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader), data: m.Data()})
		e.outMu.Unlock()
		select {
		case e.outC <- struct{}{}:
		default:
		}
	}, jetstream.PullHeartbeat(time.Second))
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Stop(); cancel() })
}

// TestDaemonOnAClusterR3: on a 3-node cluster with nats.replicas 3, every stream and the bucket
// the daemon creates has three replicas, and a session ends while a NATS node is down: first a
// node that is not the meta leader, then the node the daemon is connected to.
func TestDaemonOnAClusterR3(t *testing.T) {
	began := time.Now()
	e, ncl := newClusterEnv(t, gcbtest.Options{}, nil)
	e.startClusterDaemon()
	t.Logf("cluster and daemon up in %v", time.Since(began).Round(time.Millisecond))
	assets := []string{e.cfg.NATS.Inbound.Stream, e.cfg.NATS.Outbound.Stream, e.cfg.NATS.Outbound.HandoffStream, "KV_" + e.cfg.NATS.KVBucket,
		chat.GroupStreamName(e.cfg.NATS.Inbound.Stream, e.cfg.Cluster.Group), "KV_" + chat.GroupBucket}
	for _, name := range assets {
		info := e.streamInfo(name)
		if info.Config.Replicas != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", name, info.Config.Replicas)
		}
	}
	e.waitAllCurrent(assets)
	// The member's consumer on three nodes: a leader and two followers. Its info is asked again
	// while the consumer elects its leader (a request then may go unanswered).
	e.waitCluster("the member's consumer on three nodes", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		ci, err := e.js.Consumer(ctx, chat.GroupStreamName(e.cfg.NATS.Inbound.Stream, e.cfg.Cluster.Group), e.cfg.Cluster.Member)
		if err != nil {
			return err
		}
		if cl := ci.CachedInfo().Cluster; cl == nil || cl.Leader == "" || len(cl.Replicas) != 2 {
			return fmt.Errorf("not a leader and two followers: %+v", cl)
		}
		return nil
	})

	// Round 1: a node that is not the meta leader, the daemon's own if it is one of those.
	leader, daemonAt := ncl.MetaLeader(), e.daemonNode(ncl)
	down := daemonAt
	if down == leader {
		down = (leader + 1) % ncl.N()
	}
	e.sessionAcrossLostNode(ncl, "i-1", down, leader, daemonAt, assets)

	// Round 2: the node the daemon is connected to now (the meta leader, maybe).
	leader, daemonAt = ncl.MetaLeader(), e.daemonNode(ncl)
	e.sessionAcrossLostNode(ncl, "i-2", daemonAt, leader, daemonAt, assets)

	// And one more interaction from start to end with every node up.
	s := e.joinSession("i-3", "", 1)
	e.activate("i-3", s, "agent-1")
	e.event("i-3", chat.EventClosed, "")
	e.expectEnd("i-3", "interaction_closed")
	e.waitEnded(s)
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// sessionAcrossLostNode starts and activates interaction iid, stops NATS node down, closes the
// interaction and sees it end (in the reporting stream and at the Co-browse Server) while the
// node is down, then restarts the node and waits until every replica is current.
func (e *env) sessionAcrossLostNode(ncl *natstest.Cluster, iid string, down, leader, daemonAt int, assets []string) {
	e.t.Helper()
	s := e.joinSession(iid, "", 1)
	e.activate(iid, s, "agent-1")
	stopped := time.Now()
	ncl.Stop(down)
	e.t.Logf("%s: stopped n%d (meta leader n%d, daemon on n%d, test on %s)", iid, down+1, leader+1, daemonAt+1, e.nc.ConnectedServerName())
	e.closeEvent(iid)
	e.t.Logf("%s: close event stored after %v", iid, time.Since(stopped).Round(time.Millisecond))
	e.expectEnd(iid, "interaction_closed")
	e.waitEnded(s)
	if s.EndedBy() != gcbtest.EndedByController {
		e.t.Fatalf("%s ended by %q", iid, s.EndedBy())
	}
	e.t.Logf("%s: ended with n%d down in %v (daemon now on n%d, meta leader n%d)", iid, down+1,
		time.Since(stopped).Round(time.Millisecond), e.daemonNode(ncl)+1, ncl.MetaLeader()+1)
	restarted := time.Now()
	ncl.Restart(down)
	e.waitAllCurrent(assets)
	e.t.Logf("%s: n%d back, every replica current in %v", iid, down+1, time.Since(restarted).Round(time.Millisecond))
}

// closeEvent publishes the closed event like e.event, but retried under its message ID: a
// publish that reaches a stream while it elects a new leader gets no reply, and the harness's
// publish would wait out its whole bound on that one attempt.
func (e *env) closeEvent(iid string) {
	e.t.Helper()
	ev := chat.Event{ID: e.nextID("ev"), InteractionID: iid, Type: chat.EventClosed, At: time.Now().UTC()}
	b, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	m := &nats.Msg{Subject: chat.EventSubject("cc", iid), Data: b, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	e.waitCluster("the close event stored", func() error {
		ctx, cancel := context.WithTimeout(e.t.Context(), 3*time.Second)
		defer cancel()
		_, err := e.js.PublishMsg(ctx, m)
		return err
	})
}

func (e *env) streamInfo(name string) *jetstream.StreamInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), wait)
	defer cancel()
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo()
}

// waitAllCurrent waits until each stream has a leader and two current, online followers.
func (e *env) waitAllCurrent(streams []string) {
	e.t.Helper()
	e.waitCluster("every replica current", func() error {
		for _, name := range streams {
			ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
			s, err := e.js.Stream(ctx, name)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			cl := s.CachedInfo().Cluster
			if cl == nil || cl.Leader == "" || len(cl.Replicas) != 2 {
				return fmt.Errorf("%s: no leader or not two followers: %+v", name, cl)
			}
			for _, r := range cl.Replicas {
				if !r.Current || r.Offline {
					return fmt.Errorf("%s: replica %s behind", name, r.Name)
				}
			}
		}
		return nil
	})
}

// daemonNode returns the index of the NATS node the daemon's connection is on.
func (e *env) daemonNode(ncl *natstest.Cluster) int {
	e.t.Helper()
	at := -1
	e.waitCluster("the daemon's connection", func() error {
		at = -1
		for i := range ncl.N() {
			s := ncl.Server(i)
			if s == nil {
				continue
			}
			cz, err := s.Connz(&server.ConnzOptions{})
			if err != nil {
				return err
			}
			for _, c := range cz.Conns {
				if c.Name == e.cfg.NATS.Name {
					if at >= 0 {
						return fmt.Errorf("the daemon is on n%d and n%d", at+1, i+1)
					}
					at = i
				}
			}
		}
		if at < 0 {
			return fmt.Errorf("no connection named %q", e.cfg.NATS.Name)
		}
		return nil
	})
	return at
}

// waitCluster polls check until it passes, failing after natstest.ClusterWait: a cluster takes
// longer than one server to settle.
func (e *env) waitCluster(what string, check func() error) {
	e.t.Helper()
	deadline := time.Now().Add(natstest.ClusterWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}
