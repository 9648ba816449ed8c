package natstest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterRidesOverALostNode: an R3 stream and an R3 bucket take writes and serve reads while
// one node is down, and the node catches up when it comes back.
func TestClusterRidesOverALostNode(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("cluster up in %v, meta leader n%d", time.Since(start).Round(time.Millisecond), c.MetaLeader()+1)
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*ClusterWait)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"S", "KV_B"} {
		if n := replicas(ctx, t, js, name); n != 3 {
			t.Fatalf("%s has %d replicas", name, n)
		}
	}
	write := func(i int) {
		t.Helper()
		retry(t, "publish "+strconv.Itoa(i), func(ctx context.Context) error {
			_, err := js.Publish(ctx, "s."+strconv.Itoa(i), []byte(strconv.Itoa(i)))
			return err
		})
		retry(t, "put "+strconv.Itoa(i), func(ctx context.Context) error {
			_, err := kv.Put(ctx, "k"+strconv.Itoa(i), []byte(strconv.Itoa(i)))
			return err
		})
	}
	read := func(i int) {
		t.Helper()
		retry(t, "get "+strconv.Itoa(i), func(ctx context.Context) error {
			e, err := kv.Get(ctx, "k"+strconv.Itoa(i))
			if err == nil && string(e.Value()) != strconv.Itoa(i) {
				t.Fatalf("k%d = %q", i, e.Value())
			}
			return err
		})
		retry(t, "stream get "+strconv.Itoa(i), func(ctx context.Context) error {
			s, err := js.Stream(ctx, "S")
			if err != nil {
				return err
			}
			m, err := s.GetLastMsgForSubject(ctx, "s."+strconv.Itoa(i))
			if err == nil && string(m.Data) != strconv.Itoa(i) {
				t.Fatalf("s.%d = %q", i, m.Data)
			}
			return err
		})
	}
	write(1)

	// Stop a node that is not the meta leader, then (the harder case) the meta leader too after
	// the first comes back: the cluster keeps a quorum of two either way.
	for round, pick := range []func() int{
		func() int { return (c.MetaLeader() + 1) % 3 },
		c.MetaLeader,
	} {
		down := pick()
		if down < 0 {
			t.Fatal("no meta leader")
		}
		stopped := time.Now()
		c.Stop(down)
		if c.Server(down) != nil {
			t.Fatal("Server of a stopped node is not nil")
		}
		n := 10 * (round + 1)
		write(n)
		read(1)
		read(n)
		t.Logf("round %d: n%d down; write and reads through in %v", round, down+1, time.Since(stopped).Round(time.Millisecond))

		restarted := time.Now()
		c.Restart(down)
		t.Logf("round %d: n%d back and current in %v (meta leader n%d)", round, down+1, time.Since(restarted).Round(time.Millisecond), c.MetaLeader()+1)
		// Every replica of the stream catches up, the restarted one included.
		retry(t, "replicas current", func(ctx context.Context) error {
			s, err := js.Stream(ctx, "S")
			if err != nil {
				return err
			}
			ci := s.CachedInfo().Cluster
			if ci == nil || ci.Leader == "" || len(ci.Replicas) != 2 {
				return errors.New("stream has no leader or not two followers")
			}
			for _, r := range ci.Replicas {
				if !r.Current || r.Offline {
					return errors.New(r.Name + " not current")
				}
			}
			if s.CachedInfo().State.Msgs != uint64(round+2) {
				return errors.New("messages missing")
			}
			return nil
		})
	}
	write(100)
	read(100)
}

func replicas(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) int {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	return s.CachedInfo().Config.Replicas
}

// retry runs f until it succeeds (a stream may be electing a leader after a node left), failing
// the test after ClusterWait.
func retry(t *testing.T, what string, f func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(ClusterWait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (for %v)", what, err, ClusterWait)
		}
		<-tick.C
	}
}
