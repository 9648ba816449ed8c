package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
)

// The counters, on made-up streams: each case is one interaction, what the stream stored for it
// and what the server says of its session. This checks the harness's arithmetic without the
// processes (TestChaosShort checks it end to end).
func TestCount(t *testing.T) {
	const hid = "hist-1"
	t0 := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	attach := func(seq int, associated string, quantity int, extra string) string {
		return fmt.Sprintf(`{"interactionId":"ix-0001","seq":%d,"sessionId":%q,"vendor":"genesys","data":{"CoBrowseAssociated":%q,"CoBrowseSessionsQuantity":%d,"CoBrowseSessionId":%q%s},"changed":[],"at":"2026-03-14T09:00:00.000Z"}`,
			seq, hid, associated, quantity, hid, extra)
	}
	deactivated := func(reason string) string {
		return fmt.Sprintf(`{"event":"deactivated","interactionId":"ix-0001","sessionId":%q,"vendor":"genesys","reason":%q,"at":"2026-03-14T09:00:01.000Z"}`, hid, reason)
	}
	const failed = `{"event":"failed","interactionId":"ix-0001","sessionId":"","vendor":"genesys","reason":"join_failed","detail":"HTTP 410","at":"2026-03-14T09:00:01.000Z"}`
	type stored struct {
		subject, data string
		at            time.Time
	}
	joinAttach := stored{"cc.interaction.ix-0001.attach", attach(1, "Yes", 1, ""), t0}
	finalAttach := stored{"cc.interaction.ix-0001.attach", attach(2, "No", 1, `,"CoBrowseEndReason":"server_lost"`), t0.Add(2 * time.Second)}
	lostEnd := stored{"cc.cobrowse.ix-0001.deactivated", deactivated("server_lost"), t0.Add(2 * time.Second)}
	ended := func(by string) control.Session {
		return control.Session{Token: "123456789", HistoryID: hid, Node: "node-1", State: "ended", EndedBy: by}
	}
	live := control.Session{Token: "123456789", HistoryID: hid, Node: "node-1", Live: true, State: "active", Users: []control.User{{ID: "1", Role: 1}, {ID: "4", Role: 3}}}

	for _, tc := range []struct {
		name   string
		msgs   []stored
		server control.Session
		exit   string // the Controller present at a participant's exit; "-" for no exit
		exitAt time.Time
		kills  []daemonKill
		want   string
	}{
		{"nothing stored", nil, live, "-", t0, nil, "lost=1 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=0 failed=0"},
		{"failed join", []stored{{"cc.cobrowse.ix-0001.failed", failed, t0}}, live, "-", t0, nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=0 failed=1"},
		{"clean end", []stored{joinAttach, finalAttach}, ended("controller"), "-", t0, nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=0 failed=0"},
		{"same seq, two contents", []stored{joinAttach, {"cc.interaction.ix-0001.attach", attach(1, "Yes", 1, `,"CoBrowseStartTime":"1"`), t0}}, live, "-", t0, nil, "lost=0 doubled=1 live_after_close=0 ended_by_restart=0 server_lost=0 failed=0"},
		{"same seq, same content twice", []stored{joinAttach, joinAttach}, live, "-", t0, nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=0 failed=0"},
		{"quantity above sessions", []stored{{"cc.interaction.ix-0001.attach", attach(1, "Yes", 2, ""), t0}}, live, "-", t0, nil, "lost=0 doubled=1 live_after_close=0 ended_by_restart=0 server_lost=0 failed=0"},
		{"final attach, session live", []stored{joinAttach, finalAttach}, live, "-", t0, nil, "lost=0 doubled=0 live_after_close=1 ended_by_restart=0 server_lost=0 failed=0"},
		{"server_lost, node killed", []stored{joinAttach, lostEnd, finalAttach}, ended("node"), "-", t0, nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=1 failed=0"},
		{"server_lost, stopped by the daemon", []stored{joinAttach, lostEnd, finalAttach}, ended("controller-rest"), "-", t0, nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=1 server_lost=1 failed=0"},
		{"server_lost, customer left under the dead daemon's Controller", []stored{joinAttach, lostEnd, finalAttach}, ended("customer"), "4", t0.Add(time.Second),
			[]daemonKill{{at: t0.Add(500 * time.Millisecond), controllers: map[string]string{"123456789": "4"}}}, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=1 failed=0"},
		{"server_lost, customer left with no Controller", []stored{joinAttach, lostEnd, finalAttach}, ended("customer"), "", t0.Add(time.Second), nil, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=1 failed=0"},
		{"server_lost, daemon killed between the exit and the end", []stored{joinAttach, lostEnd, finalAttach}, ended("customer"), "4", t0.Add(time.Second),
			[]daemonKill{{at: t0.Add(1500 * time.Millisecond), controllers: map[string]string{}}}, "lost=0 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=1 failed=0"},
		{"server_lost, customer left under a live daemon", []stored{joinAttach, lostEnd, finalAttach}, ended("customer"), "5", t0.Add(time.Second),
			[]daemonKill{{at: t0.Add(500 * time.Millisecond), controllers: map[string]string{"123456789": "4"}}}, "lost=0 doubled=0 live_after_close=0 ended_by_restart=1 server_lost=1 failed=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := newInteraction(1, 1)
			it.sess = control.Session{Token: "123456789", HistoryID: hid, Node: "node-1"}
			it.startAcked = true
			if tc.exit != "-" {
				it.exitOK, it.exitCtl, it.exitAt = true, tc.exit, tc.exitAt
			}
			h := &harness{opt: options{n: 1}, stderr: io.Discard, obs: newObserver(), inters: []*interaction{it}, touched: map[string]bool{}, kills: tc.kills}
			for _, m := range tc.msgs {
				h.obs.place(m.subject, []byte(m.data), m.at)
			}
			if len(h.obs.odd) > 0 {
				t.Fatalf("observer could not place: %v", h.obs.odd)
			}
			got := h.count([]control.Session{tc.server}).line()
			if want := "chaos: interactions=1 " + tc.want; got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
