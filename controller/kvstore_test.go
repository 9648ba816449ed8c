package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

func TestKVStoreRoundTripAndCompareAndSet(t *testing.T) {
	js, ctx := newKVTest(t, 20*time.Second)
	store, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if live, err := store.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("empty bucket: %v %v", live, err)
	}
	st, rev, err := store.Load(ctx, "chat:42@tenant")
	if err != nil || rev != 0 || st.InteractionID != "chat:42@tenant" {
		t.Fatalf("missing state: %+v %d %v", st, rev, err)
	}
	st.Seq = 3
	st.Live = &Live{Handle: connector.Handle{Token: "123456789", Data: json.RawMessage(`{"userToken":"u1"}`)}, Phase: PhaseActive, JoinedAt: time.UnixMilli(1000).UTC()}
	rev, err = store.Save(ctx, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, st, 0); err == nil {
		t.Fatal("a second create of the same key succeeded")
	}
	if _, err := store.Save(ctx, st, rev+5); err == nil {
		t.Fatal("a save on a stale revision succeeded")
	}
	other := State{InteractionID: "i2", Seq: 1}
	if _, err := store.Save(ctx, other, 0); err != nil {
		t.Fatal(err)
	}

	// A second store over the same bucket (a restarted daemon) sees the live one only.
	again, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	live, err := again.Live(ctx)
	if err != nil || len(live) != 1 {
		t.Fatalf("live states: %+v %v", live, err)
	}
	got := live[0]
	if got.Rev != rev || got.State.InteractionID != "chat:42@tenant" || got.State.Seq != 3 || string(got.State.Live.Handle.Data) != `{"userToken":"u1"}` {
		t.Fatalf("live state: %+v", got)
	}

	// The session ends: the state is saved without it, and the marker goes.
	ended := got.State
	ended.Live = nil
	if _, err := again.Save(ctx, ended, got.Rev); err != nil {
		t.Fatal(err)
	}
	if live, err := again.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live after the end: %+v %v", live, err)
	}
	if _, err := kvOf(t, js).Get(ctx, livePrefix+kvKey("chat:42@tenant")); err == nil {
		t.Fatal("the live marker outlived the session")
	}
}

// A marker left by a daemon that stopped between saving a state that is no longer live and
// deleting its marker is cleaned up by the next Live; a fresh marker newer than its state is a
// live save in flight and stays, until it is older than a save could take.
func TestKVStoreStaleLiveMarker(t *testing.T) {
	js, ctx := newKVTest(t, 20*time.Second)
	store, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	kv := kvOf(t, js)
	// i1: its marker, then its state saved without a live session: the marker is stale.
	if _, err := kv.Put(ctx, livePrefix+"i1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, State{InteractionID: "i1", Seq: 2}, 0); err != nil {
		t.Fatal(err)
	}
	// i2: a state without a live session, then a fresh marker: a live save in flight (perhaps
	// another replica's), whose marker goes first; "gone": a fresh marker, no state yet.
	if _, err := store.Save(ctx, State{InteractionID: "i2", Seq: 1}, 0); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{livePrefix + "i2", livePrefix + "gone"} {
		if _, err := kv.Put(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	markers := func() (kept []string) {
		for _, m := range []string{livePrefix + "i1", livePrefix + "i2", livePrefix + "gone"} {
			if _, err := kv.Get(ctx, m); err == nil {
				kept = append(kept, m)
			}
		}
		return kept
	}
	if live, err := store.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live: %+v %v", live, err)
	}
	if kept := markers(); !slices.Equal(kept, []string{livePrefix + "i2", livePrefix + "gone"}) {
		t.Fatalf("markers kept: %v, want the two of saves in flight", kept)
	}
	// Past the grace a save could take, they are stale too.
	store.now = func() time.Time { return time.Now().Add(markerGrace + time.Second) }
	if live, err := store.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live: %+v %v", live, err)
	}
	if kept := markers(); len(kept) != 0 {
		t.Fatalf("stale markers kept: %v", kept)
	}
}

// newKVTest starts a NATS server with JetStream and returns its JetStream, and a context that
// bounds the test's calls by within.
func newKVTest(t *testing.T, within time.Duration) (jetstream.JetStream, context.Context) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), within)
	t.Cleanup(cancel)
	return js, ctx
}

func kvOf(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), "cobrowse_interactions")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestKVKey(t *testing.T) {
	for id, want := range map[string]string{
		"i-1_A=":         "i-1_A=",
		"chat:42@tenant": "b64.Y2hhdDo0MkB0ZW5hbnQ",
		"":               "",
	} {
		if got := kvKey(id); got != want {
			t.Errorf("kvKey(%q) = %q, want %q", id, got, want)
		}
	}
}

// waitRemoved waits (bounded) for the server to remove key: a delete or purge entry on a watch.
func waitRemoved(t *testing.T, kv jetstream.KeyValue, key string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	w, err := kv.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e := <-w.Updates():
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s not removed within %s", key, within)
		}
	}
}

// TestKVStoreRetention: with a retention, the state of a done interaction is removed by the
// server a retention after its last save, with its session index entry, and its live marker is
// gone already; an open interaction's state stays; a done state another writer updated since (a
// replica that took the interaction) keeps that update; a later save starts the interaction over.
func TestKVStoreRetention(t *testing.T) {
	js, ctx := newKVTest(t, 30*time.Second)
	const retention = time.Second
	store, err := OpenKVStore(ctx, js, KVConfig{Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	if store.Retention() != retention {
		t.Fatalf("retention %s", store.Retention())
	}
	kv := kvOf(t, js)
	if st, err := kv.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL() == 0 {
		t.Fatal("a new bucket was created without per-message TTLs")
	}

	// i3's done state first, then another writer's update of it (not done: a stop to retry).
	rev3, err := store.Save(ctx, State{InteractionID: "i3", Closed: true, Seq: 4}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, State{InteractionID: "i3", Closed: true, Seq: 4,
		PendingStops: []PendingStop{{Handle: connector.Handle{Token: "123456789"}, Since: time.Now()}}}, rev3); err != nil {
		t.Fatal(err)
	}
	// i2 stays open.
	if _, err := store.Save(ctx, State{InteractionID: "i2", Seq: 1}, 0); err != nil {
		t.Fatal(err)
	}
	// i1: a live Zoom session, indexed, then closed.
	live := State{InteractionID: "i1", Seq: 1, Vendor: connector.Zoom,
		Live: &Live{Handle: connector.Handle{Vendor: connector.Zoom, Token: "PIN123", SessionID: "zs-1"}, Phase: PhaseActive}}
	if err := store.IndexSession(ctx, connector.Zoom, "zs-1", "i1"); err != nil {
		t.Fatal(err)
	}
	rev1, err := store.Save(ctx, live, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := live
	done.Live, done.Closed, done.Seq, done.Ended = nil, true, 2, 1
	if _, err := store.Save(ctx, done, rev1); err != nil {
		t.Fatal(err)
	}
	// The session ended: its entry is given the retention (indexingStore does this).
	if err := store.RetainSession(ctx, connector.Zoom, "zs-1", "i1"); err != nil {
		t.Fatal(err)
	}
	// i2's session is still live: its entry has no TTL, however long the session lasts.
	if err := store.IndexSession(ctx, connector.Zoom, "zs-2", "i2"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, livePrefix+"i1"); err == nil {
		t.Fatal("the live marker outlived the session")
	}

	waitRemoved(t, kv, "i1", 15*time.Second)
	zs1, _ := sessionKey(connector.Zoom, "zs-1")
	waitRemoved(t, kv, zs1, 15*time.Second) // given its retention just after i1's last save
	if _, err := store.LookupSession(ctx, connector.Zoom, "zs-1"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the session index outlived its retention: %v", err)
	}
	if st, rev, err := store.Load(ctx, "i1"); err != nil || rev != 0 || st.Seq != 0 {
		t.Fatalf("i1 after its retention: %+v rev %d %v", st, rev, err)
	}
	// i3's done revision expired before i1's; the update that replaced it is kept.
	if st, _, err := store.Load(ctx, "i3"); err != nil || len(st.PendingStops) != 1 {
		t.Fatalf("i3, updated after its done save: %+v %v", st, err)
	}
	if st, rev, err := store.Load(ctx, "i2"); err != nil || rev == 0 || st.Seq != 1 {
		t.Fatalf("the open i2: %+v rev %d %v", st, rev, err)
	}
	if got, err := store.LookupSession(ctx, connector.Zoom, "zs-2"); err != nil || got != "i2" {
		t.Fatalf("a live session's entry went with the retention: %q %v", got, err)
	}
	// A later message of i1 starts it over.
	if _, err := store.Save(ctx, State{InteractionID: "i1", Seq: 1}, 0); err != nil {
		t.Fatalf("i1 started over: %v", err)
	}
}

// TestKVStoreRetentionUpgradesAnOldBucket: a bucket made without per-message TTLs (by an earlier
// release) is updated to allow them when a retention is set, and keeps what it holds.
func TestKVStoreRetentionUpgradesAnOldBucket(t *testing.T) {
	js, ctx := newKVTest(t, 30*time.Second)
	old, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Save(ctx, State{InteractionID: "i0", Seq: 7}, 0); err != nil {
		t.Fatal(err)
	}
	if st, err := kvOf(t, js).Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL() != 0 {
		t.Fatal("a bucket without retention was made with TTLs")
	}
	var logs bytes.Buffer
	store, err := OpenKVStore(ctx, js, KVConfig{Retention: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "now allows per-message TTLs") {
		t.Fatalf("the upgrade was not logged: %s", logs.String())
	}
	info, err := js.Stream(ctx, "KV_cobrowse_interactions")
	if err != nil {
		t.Fatal(err)
	}
	if c := info.CachedInfo().Config; !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL != markerTTL || c.MaxMsgsPerSubject != 1 {
		t.Fatalf("bucket stream after the upgrade: allow_msg_ttl %v, marker ttl %s, history %d", c.AllowMsgTTL, c.SubjectDeleteMarkerTTL, c.MaxMsgsPerSubject)
	}
	if st, _, err := store.Load(ctx, "i0"); err != nil || st.Seq != 7 {
		t.Fatalf("state kept across the upgrade: %+v %v", st, err)
	}
	if _, err := store.Save(ctx, State{InteractionID: "i9", Closed: true}, 0); err != nil {
		t.Fatal(err)
	}
	waitRemoved(t, kvOf(t, js), "i9", 15*time.Second)
}

// TestIndexRenewedAtTheSessionsEnd: with a retention, the session index entry is written without
// a TTL while the session is live, and again with the retention's when the session ends, so that
// it stays a retention past the end (and late webhooks find it).
func TestIndexRenewedAtTheSessionsEnd(t *testing.T) {
	js, ctx := newKVTest(t, 30*time.Second)
	kvs, err := OpenKVStore(ctx, js, KVConfig{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	store := newIndexingStore(kvs, connector.Zoom, map[connector.Vendor]bool{connector.Zoom: true}, nil)
	live := State{InteractionID: "i1", Vendor: connector.Zoom,
		Live: &Live{Handle: connector.Handle{Vendor: connector.Zoom, Token: "PIN123", SessionID: "zs-1"}, Phase: PhaseActive}}
	rev, err := store.Save(ctx, live, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sessionKey(connector.Zoom, "zs-1")
	kv := kvOf(t, js)
	first, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The entry of the live session has no TTL: a session longer than the retention keeps it.
	str, err := js.Stream(ctx, "KV_"+DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	ttlOf := func(rev uint64) string {
		t.Helper()
		m, err := str.GetMsg(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		return m.Header.Get("Nats-TTL")
	}
	if got := ttlOf(first.Revision()); got != "" {
		t.Errorf("the live session's entry has Nats-TTL %q", got)
	}
	ended := live
	ended.Live = nil
	if _, err := store.Save(ctx, ended, rev); err != nil {
		t.Fatal(err)
	}
	again, err := kv.Get(ctx, key)
	if err != nil || again.Revision() <= first.Revision() || string(again.Value()) != "i1" {
		t.Fatalf("index entry after the end: %v %v (first revision %d)", again, err, first.Revision())
	}
	// The one written at the end has the retention's.
	if got := ttlOf(again.Revision()); got != "1h0m0s" {
		t.Errorf("the ended session's entry has Nats-TTL %q, want 1h0m0s", got)
	}
}

// TestKVStoreLatencyObserved: a load and a session lookup are gets, a first save a create, a later
// one an update; each call is observed once.
func TestKVStoreLatencyObserved(t *testing.T) {
	js, ctx := newKVTest(t, 20*time.Second)
	var m meterSet
	store, err := OpenKVStore(ctx, js, KVConfig{Latency: func(op string) Observer { return m.of(op) }})
	if err != nil {
		t.Fatal(err)
	}
	st, rev, err := store.Load(ctx, "i1")
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = store.Save(ctx, st, rev); err != nil {
		t.Fatal(err)
	}
	st.Seq = 1
	if _, err = store.Save(ctx, st, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LookupSession(ctx, connector.Zoom, "s-1"); err == nil {
		t.Fatal("found a session never indexed")
	}
	m.want(t, map[string]float64{"get": 2, "create": 1, "update": 1})
}
