package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS path of a join: an anchor of the join latency for what the protocol floor leaves out.
// The daemon's join is measured from the start message's publish to the join attach's receipt;
// besides the four protocol steps (the floor), that path holds NATS round trips the NATS contract
// asks for: the inbound message through the consumer group's work queue, the interaction's state
// read, and the publishes (the join marker, saved before the join call, reserved the ids of the
// join's messages, so they go out before the state is saved again). A bare relay in the harness
// process, on a connection of its own, does that NATS work and nothing else, each round beside the
// floor and the daemon:
//
//   - the "start message" published into a stream of its own (ANCHOR_IN, its PubAck awaited, as
//     the daemon's), sourced into a work queue by partition as the group's stream is (ANCHOR_WQ,
//     the same transform), pulled there by a bare consumer (Consume, explicit acks);
//   - the relay reads the interaction's key (KV Get), publishes three messages (the joined event,
//     the attach, the agent's view, each with its Nats-Msg-Id) without waiting between them and
//     awaits their PubAcks;
//   - the "attach" received on an ordered consumer, as the harness's watcher receives the
//     daemon's. (After it, off the measured path: the state written, with the Get's revision, the
//     message acked.)
//
// The join marker the daemon writes before its join call is left out: it overlaps the handshake
// and the first connect. So the daemon's join can approach the floor plus this path, not less.

const (
	anchorInStream  = "ANCHOR_IN"
	anchorWQStream  = "ANCHOR_WQ"
	anchorOutStream = "ANCHOR_OUT"
	anchorBucket    = "anchor_state"
)

// natsPath is the relay and the subscription that times it.
type natsPath struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cc     jetstream.ConsumeContext
	oc     jetstream.ConsumeContext
	got    chan string  // the interaction ids of the attaches received
	pulled chan arrival // the close messages pulled (see closeBatch)
	errs   chan error   // the relay's failures
	wg     sync.WaitGroup
	state  []byte
	blobs  [3][]byte
	cancel context.CancelFunc
}

// startNATSPath makes the anchor's streams and bucket on e's NATS server and starts the relay.
func (e *env) startNATSPath(ctx context.Context) (_ *natsPath, err error) {
	nc, err := nats.Connect(e.natsURL, nats.Name("load-natspath"))
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p := &natsPath{nc: nc, got: make(chan string, 16), pulled: make(chan arrival, 1024), errs: make(chan error, 1), cancel: cancel}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if p.js, err = jetstream.New(nc); err != nil {
		return nil, err
	}
	const pre = "anchor"
	if _, err = p.js.CreateStream(ctx, jetstream.StreamConfig{Name: anchorInStream, Subjects: []string{pre + ".chat.*.message"},
		Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	wq := groupStreamConfig()
	wq.Name, wq.Description, wq.Metadata = anchorWQStream, "", nil
	wq.Sources = []*jetstream.StreamSource{{Name: anchorInStream, SubjectTransforms: partitionTransforms(pre, defaultPartitions)[:1]}}
	if _, err = p.js.CreateStream(ctx, wq); err != nil {
		return nil, err
	}
	if _, err = p.js.CreateStream(ctx, jetstream.StreamConfig{Name: anchorOutStream, Subjects: []string{pre + ".out.>"},
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour}); err != nil {
		return nil, err
	}
	kv, err := p.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: anchorBucket, Storage: jetstream.FileStorage, History: 1})
	if err != nil {
		return nil, err
	}
	// Payloads of the daemon's sizes: its state with a join's outbox, its joined event, attach
	// and view.
	p.state = []byte(`{"v":1,"seq":1,"sessions":1,"outbox":[` + strings.Repeat(`"x",`, 150) + `"x"]}`)
	for i, n := range [3]int{350, 450, 300} {
		p.blobs[i] = []byte(`{"pad":"` + strings.Repeat("x", n) + `"}`)
	}

	cons, err := p.js.CreateOrUpdateConsumer(ctx, anchorWQStream, jetstream.ConsumerConfig{Durable: "relay", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return nil, err
	}
	if p.cc, err = cons.Consume(func(m jetstream.Msg) { p.relay(rctx, kv, m) }); err != nil {
		return nil, err
	}
	out, err := p.js.OrderedConsumer(ctx, anchorOutStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{pre + ".out.*.attach"}})
	if err != nil {
		return nil, err
	}
	if p.oc, err = out.Consume(func(m jetstream.Msg) {
		select {
		case p.got <- strings.Split(m.Subject(), ".")[2]:
		default:
		}
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// relay does one message's NATS work (see the type's comment); a close message's, see closeBatch.
func (p *natsPath) relay(ctx context.Context, kv jetstream.KeyValue, m jetstream.Msg) {
	if bytes.Contains(m.Data(), []byte(`"type":"closed"`)) {
		p.pulled <- arrival{subject: m.Subject(), at: time.Now()}
		p.wg.Go(func() { p.closeWork(ctx, kv, m) })
		return
	}
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		parts := strings.Split(m.Subject(), ".") // <partition>.anchor.chat.<iid>.message
		if len(parts) != 5 {
			return fmt.Errorf("unexpected subject %s", m.Subject())
		}
		iid := parts[3]
		var rev uint64
		switch e, err := kv.Get(ctx, iid); {
		case err == nil:
			rev = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return err
		}
		return p.publishAndSettle(ctx, kv, m, iid, rev, "joined", "attach", "view")
	}()
	p.fail(err)
}

// publishAndSettle publishes a step's messages of kinds without waiting between them, awaits
// their PubAcks, writes the state (without an outbox) over revision rev and acks m.
func (p *natsPath) publishAndSettle(ctx context.Context, kv jetstream.KeyValue, m jetstream.Msg, iid string, rev uint64, kinds ...string) error {
	futures := make([]jetstream.PubAckFuture, len(kinds))
	for i, kind := range kinds {
		msg := &nats.Msg{Subject: "anchor.out." + iid + "." + kind, Data: p.blobs[i], Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, iid+"."+kind)
		var err error
		if futures[i], err = p.js.PublishMsgAsync(msg); err != nil {
			return err
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := kv.Update(ctx, iid, p.state[:len(p.state)/4], rev); err != nil {
		return err
	}
	return m.DoubleAck(ctx)
}

// fail passes the relay's first failure on to the round waiting for it.
func (p *natsPath) fail(err error) {
	if err != nil {
		select {
		case p.errs <- err:
		default:
		}
	}
}

// round publishes the start message of iid and returns the time to its attach, and the PubAck's.
func (p *natsPath) round(ctx context.Context, iid string, bound time.Duration) (lat, pubAck time.Duration, err error) {
	data := []byte(`{"id":"m-` + iid + `","interactionId":"` + iid + `","from":{"role":"customer","id":"c"},"text":"{start:123456789}"}`)
	t0 := time.Now()
	pctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if _, err := p.js.Publish(pctx, "anchor.chat."+iid+".message", data); err != nil {
		return 0, 0, err
	}
	pubAck = time.Since(t0)
	for {
		select {
		case got := <-p.got:
			if got == iid {
				return time.Since(t0), pubAck, nil
			}
		case err := <-p.errs:
			return 0, 0, fmt.Errorf("NATS path relay: %w", err)
		case <-pctx.Done():
			return 0, 0, fmt.Errorf("NATS path: no attach for %s within %v", iid, bound)
		}
	}
}

// arrival is a close message pulled by the relay, and when.
type arrival struct {
	subject string
	at      time.Time
}

// closeWork is the NATS work of a close after its stop call, as an actor of the daemon does it
// (on a goroutine of its own): the state written with the deactivated event and the final attach,
// both published, the state written again, the message acked.
func (p *natsPath) closeWork(ctx context.Context, kv jetstream.KeyValue, m jetstream.Msg) {
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		iid := strings.Split(m.Subject(), ".")[3]
		rev, err := kv.Put(ctx, iid, p.state)
		if err != nil {
			return err
		}
		return p.publishAndSettle(ctx, kv, m, iid, rev, "deactivated", "final")
	}()
	p.fail(err)
}

// closeBatch publishes n close messages at once (each stamped as it is handed to the client, as
// the daemon's closed events are) and returns each one's time to its pull by the relay: when the
// daemon could send its stop call at the earliest. The relay meanwhile does each pulled one's
// NATS work, as the daemon's actors do theirs.
func (p *natsPath) closeBatch(ctx context.Context, k, n int, bound time.Duration) ([]time.Duration, error) {
	sent := make(map[string]time.Time, n)
	for i := range n {
		iid := fmt.Sprintf("npc%03d-%03d", k, i)
		subject := "anchor.chat." + iid + ".message"
		data := []byte(`{"id":"e-` + iid + `","interactionId":"` + iid + `","type":"closed"}`)
		sent[subject] = time.Now()
		if _, err := p.js.PublishAsync(subject, data); err != nil {
			return nil, err
		}
	}
	bctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var lat []time.Duration
	for len(lat) < n {
		select {
		case a := <-p.pulled:
			_, subject, _ := strings.Cut(a.subject, ".") // without the partition
			if t, ok := sent[subject]; ok {
				lat = append(lat, a.at.Sub(t))
			}
		case err := <-p.errs:
			return nil, fmt.Errorf("NATS path relay: %w", err)
		case <-bctx.Done():
			return nil, fmt.Errorf("NATS path: %d of %d close messages pulled within %v", len(lat), n, bound)
		}
	}
	return lat, nil
}

func (p *natsPath) stop() {
	if p.cc != nil {
		p.cc.Stop()
	}
	if p.oc != nil {
		p.oc.Stop()
	}
	p.cancel()
	p.wg.Wait()
	p.nc.Close()
}
