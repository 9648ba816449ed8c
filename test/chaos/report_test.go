package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
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

// The line: single mode's is as it always was; replicas mode's ends with moved.
func TestLine(t *testing.T) {
	r := &result{n: 3, lost: 1, serverLost: 2, moved: 5}
	if got, want := r.line(), "chaos: interactions=3 lost=1 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=2 failed=0"; got != want {
		t.Fatalf("single mode:\ngot  %s\nwant %s", got, want)
	}
	r.replicas = true
	if got, want := r.line(), "chaos: interactions=3 lost=1 doubled=0 live_after_close=0 ended_by_restart=0 server_lost=2 failed=0 moved=5"; got != want {
		t.Fatalf("replicas mode:\ngot  %s\nwant %s", got, want)
	}
}

// moved, in replicas mode: an interaction counts once when, between its first message and what
// settled it, its partition went to another member or its owner's process died.
func TestMoved(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const iid = "ix-0001"
	part := chat.Partition(iid, partitionCount)
	owners := func(ownerOfPart string) []string {
		o := make([]string, partitionCount)
		for i := range o {
			o[i] = []string{"r1", "r2", "r3"}[i%3]
		}
		o[part] = ownerOfPart
		return o
	}
	start := ownerChange{at: at(0), owners: owners("r1")}
	for _, tc := range []struct {
		name    string
		changes []ownerChange
		end     int // seconds; -1: never settled
		want    int
	}{
		{"nothing happened", []ownerChange{start}, 20, 0},
		{"its owner killed while in flight", []ownerChange{start, {at: at(15), died: "r1"}}, 20, 1},
		{"another replica killed", []ownerChange{start, {at: at(15), died: "r2"}}, 20, 0},
		{"its owner killed after it settled", []ownerChange{start, {at: at(25), died: "r1"}}, 20, 0},
		{"its owner killed before it began", []ownerChange{start, {at: at(5), died: "r1"}}, 20, 0},
		{"its owner killed, never settled", []ownerChange{start, {at: at(30), died: "r1"}}, -1, 1},
		{"its partition moved", []ownerChange{start, {at: at(15), owners: owners("r2")}}, 20, 1},
		{"other partitions moved", []ownerChange{start, {at: at(15), owners: owners("r1")}}, 20, 0},
		{"killed, removed and added back: once", []ownerChange{start, {at: at(12), died: "r1"}, {at: at(14), owners: owners("r2")}, {at: at(16), owners: owners("r1")}}, 20, 1},
		{"moved before it began, its new owner killed", []ownerChange{start, {at: at(5), owners: owners("r3")}, {at: at(15), died: "r3"}}, 20, 1},
		{"moved before it began, its old owner killed", []ownerChange{start, {at: at(5), owners: owners("r3")}, {at: at(15), died: "r1"}}, 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := newInteraction(1, 1)
			it.sess = control.Session{Token: "123456789", HistoryID: "hist-1", Node: "node-1"}
			it.startAcked, it.begunAt = true, at(10)
			h := &harness{opt: options{mode: modeReplicas, n: 1}, stderr: io.Discard, obs: newObserver(), inters: []*interaction{it}, touched: map[string]bool{}, owners: tc.changes}
			if tc.end >= 0 {
				h.obs.place("cc.interaction.ix-0001.attach", []byte(`{"interactionId":"ix-0001","seq":2,"sessionId":"hist-1","vendor":"genesys","data":{"CoBrowseAssociated":"No","CoBrowseSessionsQuantity":1,"CoBrowseSessionId":"hist-1"},"changed":[],"at":"2026-03-14T09:00:00.000Z"}`), at(tc.end))
			}
			res := h.count([]control.Session{{Token: "123456789", HistoryID: "hist-1", Node: "node-1", State: "ended", EndedBy: "controller"}})
			if res.moved != tc.want {
				t.Fatalf("moved=%d, want %d (line %s)", res.moved, tc.want, res.line())
			}
		})
	}
}

// In replicas mode a kill excuses a server_lost after a participant's exit only when the killed
// replica owned the interaction: the Controllers of the others lived on to witness the exit.
func TestBlindExitReplicas(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	const iid = "ix-0001"
	part := chat.Partition(iid, partitionCount)
	owners := make([]string, partitionCount)
	for i := range owners {
		owners[i] = "r2"
	}
	owners[part] = "r1"
	for _, tc := range []struct {
		killed string
		want   bool
	}{{"r1", true}, {"r2", false}} {
		t.Run(tc.killed, func(t *testing.T) {
			it := newInteraction(1, 1)
			it.sess = control.Session{Token: "123456789", HistoryID: "hist-1"}
			it.exitOK, it.exitCtl, it.exitAt = true, "4", t0.Add(2*time.Second)
			h := &harness{opt: options{mode: modeReplicas, n: 1}, owners: []ownerChange{{at: t0, owners: owners}},
				kills: []daemonKill{{at: t0.Add(time.Second), member: tc.killed, controllers: map[string]string{"123456789": "4"}}}}
			if got := h.blindExit(it, t0.Add(3*time.Second)) != ""; got != tc.want {
				t.Fatalf("kill of %s excuses the exit: %v, want %v", tc.killed, got, tc.want)
			}
		})
	}
}
