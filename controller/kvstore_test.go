package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

func TestKVStoreRoundTripAndCompareAndSet(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
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
// deleting its marker is cleaned up by the next Live.
func TestKVStoreStaleLiveMarker(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	store, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Save(ctx, State{InteractionID: "i1", Seq: 2}, 0); err != nil {
		t.Fatal(err)
	}
	kv := kvOf(t, js)
	if _, err := kv.Put(ctx, livePrefix+"i1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, livePrefix+"gone", nil); err != nil { // no state at all
		t.Fatal(err)
	}
	if live, err := store.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live: %+v %v", live, err)
	}
	for _, m := range []string{livePrefix + "i1", livePrefix + "gone"} {
		if _, err := kv.Get(ctx, m); err == nil {
			t.Fatalf("stale marker %s kept", m)
		}
	}
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

// TestKVStoreLatencyObserved: a load and a session lookup are gets, a first save a create, a later
// one an update; each call is observed once.
func TestKVStoreLatencyObserved(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
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
