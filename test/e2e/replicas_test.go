package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// replica is one daemon replica as a process of its own.
type replica struct {
	name string
	*proc
}

// startReplica runs a daemon process as member name and waits until it runs.
func (e *env) startReplica(name string) *replica {
	e.t.Helper()
	cfg := e.cfg
	cfg.Cluster.Member = name
	cfg.NATS.Name = "cobrowse-connector-" + name
	p := e.launchProcess(cfg)
	if !p.logs.WaitFor("cobrowse-connector running", wait, p.exited) {
		e.t.Fatalf("replica %s not ready:\n%s", name, p.logs.Tail(4000))
	}
	return &replica{name: name, proc: p}
}

// waitLog waits until the replica's log holds n lines with msg (the JSON "msg" value).
func (r *replica) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	if !r.logs.WaitCount(`"msg":"`+msg+`"`, n, natsWait, nil) {
		t.Fatalf("replica %s: %d lines %q, want %d; log tail:\n%s", r.name, r.count(`"msg":"`+msg+`"`), msg, n, r.logs.Tail(6000))
	}
}

// natsWait bounds what waits on the cluster's reassignments: a member's consumer is made once the
// partitions' previous owner let go (its release is bounded by the ack wait).
const natsWait = 60 * time.Second

// clusterCmd runs `cobrowse-connector cluster ACTION MEMBER...` against the test's NATS and
// returns the group's status it prints.
func (e *env) clusterCmd(action string, members ...string) chat.GroupStatus {
	e.t.Helper()
	// The command bounds itself (a minute for the action, once connected); this bound only turns a
	// hang into a failure that says so.
	ctx, cancel := context.WithTimeout(context.Background(), 2*natsWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBinary(e.t), append([]string{"cluster", "--config", e.writeConfig(e.cfg), action}, members...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("cluster %s %v: %v\n%s", action, members, err, errOut.String())
	}
	var st chat.GroupStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		e.t.Fatalf("cluster %s output %q: %v", action, out.String(), err)
	}
	return st
}

// owners maps each partition to its member in st.
func owners(st chat.GroupStatus) map[int]string {
	m := map[int]string{}
	for _, ms := range st.Members {
		for _, p := range ms.Partitions {
			m[p] = ms.Name
		}
	}
	return m
}

// interactionsFor picks, for each member, n interaction ids whose partitions it owns.
func interactionsFor(st chat.GroupStatus, n int) map[string][]string {
	own := owners(st)
	out := map[string][]string{}
	for i, need := 0, n*len(st.Members); need > 0; i++ {
		id := "i-" + strconv.Itoa(i)
		m := own[chat.Partition(id, st.Partitions)]
		if len(out[m]) < n {
			out[m] = append(out[m], id)
			need--
		}
	}
	return out
}

// live is an interaction the test runs: its session and how far it got.
type live struct {
	iid, agent string
	s          *gcbtest.Session
	active     bool
	closed     bool
}

// TestReplicasOnACluster: three daemon replicas, processes of their own, on a 3-node NATS cluster
// (R3), share the interactions through the consumer group. A replica killed with live sessions is
// removed from the group: its interactions move to the others, which take their sessions up and go
// on (an agent who joins afterwards is reported, a close ends the session). A NATS node stops and
// the replicas ride over it. A fourth replica is added and takes its share, with the sessions on
// it; one replica is removed while it runs and hands its interactions over. At the end every
// session has ended at the server, and no interaction's attach seq was stored twice or skipped.
func TestReplicasOnACluster(t *testing.T) {
	began := time.Now()
	e, ncl := newClusterEnv(t, gcbtest.Options{}, nil)
	e.outWait = natsWait

	r := map[string]*replica{"r1": e.startReplica("r1")}
	r["r1"].waitLog(t, "consuming the member's partitions", 1)
	e.watchQuick(e.cfg.NATS.Outbound.Stream, &e.out)
	e.watchQuick(e.cfg.NATS.Outbound.HandoffStream, &e.pages)
	st := e.clusterCmd("add", "r2", "r3")
	if len(st.Members) != 3 {
		t.Fatalf("after add: %+v", st)
	}
	for _, name := range []string{"r2", "r3"} {
		r[name] = e.startReplica(name)
	}
	for _, name := range []string{"r1", "r2", "r3"} {
		r[name].waitLog(t, "consuming the member's partitions", map[string]int{"r1": 2, "r2": 1, "r3": 1}[name])
	}
	t.Logf("3 replicas on a 3-node cluster up in %v", time.Since(began).Round(time.Millisecond))

	// Two interactions on each replica, one of them active.
	byMember := interactionsFor(st, 2)
	all := map[string]*live{}
	for _, m := range []string{"r1", "r2", "r3"} {
		for i, iid := range byMember[m] {
			l := &live{iid: iid, agent: "agent-" + iid}
			e.event(iid, chat.EventCreated, l.agent)
			l.s = e.joinSession(iid, l.agent, 1)
			if i == 0 {
				e.activate(iid, l.s, l.agent)
				l.active = true
			}
			all[iid] = l
		}
	}
	if n := r["r2"].count(`"msg":"joined as Controller","component":"controller"`); n != 2 {
		t.Fatalf("r2 joined %d sessions, want its 2", n)
	}

	// r2 dies with its two sessions live; the operator removes it; r1 and r3 take its partitions
	// and its sessions up.
	r["r2"].kill()
	killed := time.Now()
	// A message for one of them while no replica reads it: not lost, handled by the new owner.
	late := byMember["r2"][1]
	e.event(late, chat.EventAssigned, "agent-late")
	st = e.clusterCmd("remove", "r2")
	if len(st.Members) != 2 {
		t.Fatalf("after remove: %+v", st)
	}
	rejoined := func() int {
		return r["r1"].count(`"msg":"re-joined a live session"`) + r["r3"].count(`"msg":"re-joined a live session"`)
	}
	e.waitUntil("r2's sessions re-joined by their new owners", func() bool { return rejoined() >= 2 })
	if to, v := e.expectAgentView(late); to != "agent-late" || v.SessionID != all[late].s.HistoryID() {
		t.Fatalf("the view announced to the agent assigned while %s's owner was dead: to %s, %+v", late, to, v)
	}
	moved := byMember["r2"]
	t.Logf("r2 killed and removed: its interactions %v taken up in %v", moved, time.Since(killed).Round(time.Millisecond))
	// The idle one is activated now: only a Controller that joined again sees the agent.
	for _, iid := range moved {
		if l := all[iid]; !l.active {
			e.activate(iid, l.s, l.agent)
			l.active = true
		}
	}
	e.closeAndEnd(all[moved[0]])

	// A NATS node stops (not the meta leader): the replicas ride over it.
	down := (ncl.MetaLeader() + 1) % ncl.N()
	ncl.Stop(down)
	e.closeAndEnd(all[byMember["r1"][0]])
	ncl.Restart(down)
	t.Logf("n%d stopped and back; an interaction closed meanwhile ended", down+1)

	// A fourth replica joins: the members that give partitions up let go first; r4 takes the
	// sessions of its share up.
	r["r4"] = e.startReplica("r4")
	r["r4"].waitLog(t, "this member has no partitions: it consumes nothing until an operator adds it (cobrowse-connector cluster add)", 1)
	st = e.clusterCmd("add", "r4")
	r["r4"].waitLog(t, "consuming the member's partitions", 1)
	own := owners(st)
	var onR4 []string
	for iid, l := range all {
		if !l.closed && own[chat.Partition(iid, st.Partitions)] == "r4" {
			onR4 = append(onR4, iid)
		}
	}
	slices.Sort(onR4)
	for _, iid := range onR4 {
		e.closeAndEnd(all[iid])
		if r["r4"].count(`"msg":"stopping session","component":"controller","interaction":"`+iid+`"`) == 0 {
			t.Errorf("%s ended without r4, its owner now", iid)
		}
	}
	t.Logf("r4 added: it owns %d partitions, and ended %v", len(st.Members[len(st.Members)-1].Partitions), onR4)

	// r1 is removed while it runs: it lets go of its interactions, which go on elsewhere.
	e.clusterCmd("remove", "r1")
	r["r1"].waitLog(t, "this member has no partitions: it consumes nothing until an operator adds it (cobrowse-connector cluster add)", 1)
	for _, l := range all {
		if !l.closed {
			e.closeAndEnd(l)
		}
	}

	// Nothing doubled or skipped: each interaction's attach seqs are 1..n, each stored once.
	for iid := range all {
		var seqs []uint64
		for _, m := range e.outbound(iid) {
			if strings.HasSuffix(m.subject, ".attach") {
				var u attach.Update
				if err := json.Unmarshal(m.data, &u); err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, u.Seq)
			}
		}
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Errorf("%s attach seqs %v: want 1..%d, each once", iid, seqs, len(seqs))
				break
			}
		}
	}
	for _, l := range all {
		if l.s.State() != gcbtest.StateEnded {
			t.Errorf("%s: session still live at the server", l.iid)
		}
	}
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// closeAndEnd closes the interaction and sees its session end as interaction_closed, stopped by
// the Controller: over CometD, or by the REST stop when the close comes while the interaction's
// new owner still re-joins it.
func (e *env) closeAndEnd(l *live) {
	e.t.Helper()
	e.closeEvent(l.iid)
	e.expectEnd(l.iid, "interaction_closed")
	e.waitEnded(l.s)
	if by := l.s.EndedBy(); by != gcbtest.EndedByController && by != gcbtest.EndedByControllerREST {
		e.t.Fatalf("%s ended by %q", l.iid, l.s.EndedBy())
	}
	l.closed = true
}

// TestUpgradeDrainsTheSingleDurable: the previous release read the inbound stream with one durable
// consumer. A rolling update stops it with a session live and messages pending on its durable, and
// starts this release: it handles the pending messages once, in order, through the old durable,
// takes the live session up (re-join: it does not end), then moves to the consumer group, which
// carries on from after the durable's ack floor, and deletes the durable. The sessions then end
// as usual, their attach seqs going on.
func TestUpgradeDrainsTheSingleDurable(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	e.event("i-1", chat.EventCreated, "agent-1")
	s1 := e.joinSession("i-1", "agent-1", 1)
	e.activate("i-1", s1, "agent-1")
	e.stopDaemon() // SIGTERM: the session stays live, saved in the bucket

	// What the previous release leaves: no group; its durable, with everything so far acked.
	ctx := t.Context()
	stream := e.cfg.NATS.Inbound.Stream
	if err := e.js.DeleteStream(ctx, chat.GroupStreamName(stream, e.cfg.Cluster.Group)); err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(ctx, chat.GroupBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, chat.GroupKey(stream, e.cfg.Cluster.Group)); err != nil {
		t.Fatal(err)
	}
	si, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	last := si.CachedInfo().State.LastSeq
	if _, err := e.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: e.cfg.NATS.Inbound.Durable, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last + 1,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 6, MaxAckPending: 20000,
		BackOff:        []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, 60 * time.Second},
		FilterSubjects: []string{"cc.chat.*.message", "cc.interaction.*.event", "cc.signal.*.*"},
	}); err != nil {
		t.Fatal(err)
	}
	// Pending on the durable while no daemon runs: a new agent for the live session, a new
	// interaction's start.
	e.event("i-1", chat.EventAssigned, "agent-2")
	e.event("i-2", chat.EventCreated, "agent-3")
	s2, err := e.cluster.CreateSession(1)
	if err != nil {
		t.Fatal(err)
	}
	e.startMsg("i-2", s2.Token())

	e.startDaemon()
	if !e.logs.WaitFor("drained the previous release's durable consumer: the consumer group takes over", wait, nil) {
		t.Fatal("the durable was not drained")
	}
	if to, v := e.expectAgentView("i-1"); to != "agent-2" || v.SessionID != s1.HistoryID() {
		t.Fatalf("view after the upgrade: to %s, %+v", to, v)
	}
	if j := e.expectLifecycle("i-2", attach.Joined); j.SessionID != s2.HistoryID() {
		t.Fatalf("i-2 joined %+v", j)
	}
	if u := e.expectUpdate("i-2"); u.Seq != 1 || u.Data.Associated != "Yes" {
		t.Fatalf("i-2 join attach %+v", u)
	}
	if _, err := e.js.Consumer(ctx, stream, e.cfg.NATS.Inbound.Durable); err == nil {
		t.Fatal("the durable is still there")
	}
	if s1.State() == gcbtest.StateEnded {
		t.Fatal("the live session ended at the upgrade")
	}
	// Both go on through the group, once each.
	for _, c := range []struct {
		iid string
		s   *gcbtest.Session
		seq uint64
	}{{"i-1", s1, 3}, {"i-2", s2, 2}} {
		e.event(c.iid, chat.EventClosed, "")
		if u := e.expectEnd(c.iid, "interaction_closed"); u.Seq != c.seq {
			t.Fatalf("%s final attach seq %d, want %d", c.iid, u.Seq, c.seq)
		}
		e.waitEnded(c.s)
	}
	if n := strings.Count(e.logs.String(), `msg="joined as Controller" component=controller interaction=i-2`); n != 1 {
		t.Fatalf("i-2 joined %d times", n)
	}
}

// publicAddr is the replica's public listener address, from its log.
func (r *replica) publicAddr(t *testing.T) string {
	t.Helper()
	r.waitLog(t, "public listener serving", 1)
	for line := range strings.Lines(r.logs.String()) {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "public listener serving" {
			return rec.Addr
		}
	}
	t.Fatalf("replica %s logged no public listener address", r.name)
	return ""
}

// TestZoomWebhooksReachTheOwner: two replicas serve Zoom; the ingress sends every webhook (and the
// backend every token request) to replica a, while the interaction belongs to replica b. The
// webhooks pass through NATS keyed by interaction: b, the owner, reports the agent's join and ends
// the session when Zoom says it ended; a never acts for the interaction.
func TestZoomWebhooksReachTheOwner(t *testing.T) {
	ze := newZoomEnv(t, zoomtest.Options{}, nil)
	a := ze.startReplica("a")
	a.waitLog(t, "consuming the member's partitions", 1)
	addr := a.publicAddr(t)
	ze.public.Store(&addr)
	ze.watchOnce()
	st := ze.clusterCmd("add", "b")
	b := ze.startReplica("b")
	b.waitLog(t, "consuming the member's partitions", 1)
	iid := interactionsFor(st, 1)["b"][0]

	ze.created(iid, "agent-1")
	s, view := ze.pinSession(iid)
	ze.agentJoins(view)
	ze.expectActivated(iid)
	ze.event(iid, chat.EventTransferred, "agent-2")
	ze.endsInPages(iid, "agent-1", s, true)
	if u := ze.expectEnd(iid, "interaction_transferred"); u.Data.SessionID != s.ID {
		t.Fatalf("final attach %+v", u.Data)
	}
	if n := a.count(`"msg":"webhook delivery handed over"`); n < 2 || b.count(`"msg":"webhook delivery handed over"`) != 0 {
		t.Fatalf("webhooks taken: %d by a, %d by b; want every one by a", n, b.count(`"msg":"webhook delivery handed over"`))
	}
	if n := a.count(`"component":"controller","interaction":"` + iid + `"`); n != 0 {
		t.Fatalf("replica a logged %d controller lines for %s, which b owns", n, iid)
	}
	if b.count(`"msg":"session activated","component":"controller","interaction":"`+iid+`"`) != 1 {
		t.Fatalf("replica b did not report the agent's join of %s", iid)
	}
}
