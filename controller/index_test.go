package controller

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

func mustLookup(t *testing.T, c *Controller, sessionID, want string) {
	t.Helper()
	got, err := c.LookupSession(context.Background(), connector.Genesys, sessionID)
	if err != nil || got != want {
		t.Fatalf("LookupSession(%q) = %q, %v; want %q", sessionID, got, err, want)
	}
}

func TestSessionIndexedOnJoinAndKeptAfterTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		if _, err := h.c.LookupSession(context.Background(), connector.Genesys, "hist-1"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("lookup before the join: %v", err)
		}
		mustFate(t, h.start_("i1", "111111111"), "ack")
		mustLookup(t, h.c, "hist-1", "i1")
		if _, err := h.c.LookupSession(context.Background(), connector.Zoom, "hist-1"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("another vendor's session of the same id: %v", err)
		}

		// The session ends: the key stays, for the late webhooks.
		act := time.Now()
		h.conn.session(0).activate(act)
		synctest.Wait()
		h.conn.session(0).deactivate(act, act.Add(time.Second))
		synctest.Wait()
		if h.store.get("i1").Live != nil {
			t.Fatal("the session did not end")
		}
		mustLookup(t, h.c, "hist-1", "i1")

		// A second session on another interaction gets its own key.
		mustFate(t, h.start_("i2", "222222222"), "ack")
		mustLookup(t, h.c, "hist-2", "i2")
		mustLookup(t, h.c, "hist-1", "i1")
	})
}

func TestSessionIndexedOnRehandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		nh := h.conn.session(0).handle
		nh.SessionID = "hist-after-rehandshake"
		h.conn.session(0).emit(connector.Event{Kind: connector.EventRejoined, Handle: nh})
		synctest.Wait()
		mustLookup(t, h.c, "hist-after-rehandshake", "i1")
		mustLookup(t, h.c, "hist-1", "i1")
	})
}

func TestSessionIndexedOnRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		mustFate(t, h.start_("i1", "111111111"), "ack")
		h.stop()
		// The index is lost (a bucket restored from an older copy): the re-join writes it again.
		h.store.mu.Lock()
		clear(h.store.sessions)
		h.store.mu.Unlock()
		c2, err := New(h.c.cfg, []connector.Connector{h.conn}, h.store, h.pub)
		if err != nil {
			t.Fatal(err)
		}
		h.c = c2
		if err := c2.Recover(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.start()
		synctest.Wait()
		mustLookup(t, h.c, "hist-1", "i1")
	})
}

// A failed index write fails the step's save: the start message is nak'd and its redelivery
// finishes the work, index included. No live state is saved without its index entry.
func TestSessionIndexFailureIsRetriedWithTheStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.store.mu.Lock()
		h.store.failIndex = 1
		h.store.mu.Unlock()
		in := chat.Inbound{InteractionID: "i1", StartToken: "111111111", Chat: &chat.Message{ID: "m-start", InteractionID: "i1", From: chat.Sender{Role: chat.RoleCustomer}, Text: "{start:111111111}"}}
		mustFate(t, h.send(in), "nak")
		if st := h.store.get("i1"); st.Live != nil {
			t.Fatalf("a live state was saved without its index: %+v", st.Live)
		}
		if _, err := h.c.LookupSession(context.Background(), connector.Genesys, "hist-1"); !errors.Is(err, ErrNoSession) {
			t.Fatalf("lookup after the failed write: %v", err)
		}
		mustFate(t, h.send(in), "ack") // the redelivery
		mustLookup(t, h.c, "hist-1", "i1")
		if st := h.store.get("i1"); st.Live == nil || st.Sessions != 1 {
			t.Fatalf("state after the redelivery: %+v", st)
		}
		if len(h.conn.sessions) != 1 {
			t.Fatalf("joined %d times, want once", len(h.conn.sessions))
		}
	})
}

func TestSessionKey(t *testing.T) {
	for _, tc := range []struct {
		vendor connector.Vendor
		id     string
		want   string
	}{
		{connector.Zoom, "Ab/c+d==", "session.zoom.QWIvYytkPT0"},
		{connector.Genesys, "hist-1", "session.genesys.aGlzdC0x"},
	} {
		if got, err := sessionKey(tc.vendor, tc.id); err != nil || got != tc.want {
			t.Errorf("sessionKey(%s, %q) = %q, %v; want %q", tc.vendor, tc.id, got, err, tc.want)
		}
	}
	for _, bad := range []struct {
		vendor connector.Vendor
		id     string
	}{{"", "x"}, {connector.Zoom, ""}, {"zo.om", "x"}, {"zo*", "x"}} {
		if _, err := sessionKey(bad.vendor, bad.id); err == nil {
			t.Errorf("sessionKey(%q, %q): no error", bad.vendor, bad.id)
		}
	}
}

func TestKVStoreSessionIndex(t *testing.T) {
	js, ctx := newKVTest(t, 20*time.Second)
	store, err := OpenKVStore(ctx, js, KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const sid = "zoom/sess+1=="
	if _, err := store.LookupSession(ctx, connector.Zoom, sid); !errors.Is(err, ErrNoSession) || !errors.Is(err, chat.ErrNoSession) {
		t.Fatalf("lookup of an unknown session: %v", err)
	}
	if err := store.IndexSession(ctx, connector.Zoom, sid, "chat:42@tenant"); err != nil {
		t.Fatal(err)
	}
	if err := store.IndexSession(ctx, connector.Zoom, sid, "chat:42@tenant"); err != nil {
		t.Fatalf("writing the entry again: %v", err)
	}
	if got, err := store.LookupSession(ctx, connector.Zoom, sid); err != nil || got != "chat:42@tenant" {
		t.Fatalf("lookup: %q %v", got, err)
	}
	if _, err := store.LookupSession(ctx, connector.Genesys, sid); !errors.Is(err, ErrNoSession) {
		t.Fatalf("another vendor: %v", err)
	}
	key, _ := sessionKey(connector.Zoom, sid)
	if _, err := kvOf(t, js).Get(ctx, key); err != nil {
		t.Fatalf("key %s: %v", key, err)
	}
	// The index neither shows as a live session nor disturbs the states.
	if live, err := store.Live(ctx); err != nil || len(live) != 0 {
		t.Fatalf("live: %+v %v", live, err)
	}

	// Through the controller's store: a live state saved is indexed first, and the entry stays
	// when the session ends.
	is := newIndexingStore(store, connector.Zoom, map[connector.Vendor]bool{connector.Zoom: true}, nil)
	st := State{InteractionID: "i1", Vendor: connector.Zoom, Live: &Live{Handle: connector.Handle{SessionID: "z/1"}, Phase: PhaseJoined}}
	rev, err := is.Save(ctx, st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupSession(ctx, connector.Zoom, "z/1"); err != nil || got != "i1" {
		t.Fatalf("lookup after the save: %q %v", got, err)
	}
	st.Live = nil
	if _, err := is.Save(ctx, st, rev); err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupSession(ctx, connector.Zoom, "z/1"); err != nil || got != "i1" {
		t.Fatalf("lookup after the end: %q %v", got, err)
	}

	// A vendor whose connector finds its sessions without the index (Genesys) is not indexed.
	g := State{InteractionID: "i2", Vendor: connector.Genesys, Live: &Live{Handle: connector.Handle{SessionID: "g-1"}, Phase: PhaseJoined}}
	if _, err := is.Save(ctx, g, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := store.LookupSession(ctx, connector.Genesys, "g-1"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a Genesys session was indexed: %q %v", got, err)
	}
}

// A vendor name no key can hold leaves the session unindexed but never keeps its state from
// being saved.
func TestUnindexableVendorDoesNotBlockSaves(t *testing.T) {
	m := newMemStore()
	is := newIndexingStore(m, "zo.om", map[connector.Vendor]bool{"zo.om": true}, nil)
	st := State{InteractionID: "i1", Live: &Live{Handle: connector.Handle{SessionID: "s1"}, Phase: PhaseJoined}}
	if _, err := is.Save(context.Background(), st, 0); err != nil {
		t.Fatalf("save: %v", err)
	}
	if m.get("i1").Live == nil || len(m.sessions) != 0 {
		t.Fatalf("state %+v, index %v", m.get("i1"), m.sessions)
	}
}
