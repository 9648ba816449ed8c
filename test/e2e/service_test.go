package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// request sends a micro request and returns the answer, with its error code ("" for none).
func (e *env) request(subject, body string) (data []byte, code, desc string) {
	e.t.Helper()
	m, err := e.nc.Request(subject, []byte(body), wait)
	if err != nil {
		e.t.Fatalf("request %s: %v", subject, err)
	}
	return m.Data, m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
}

// requestJSON sends a micro request that must succeed and decodes its answer into v.
func (e *env) requestJSON(subject, body string, v any) {
	e.t.Helper()
	data, code, desc := e.request(subject, body)
	if code != "" {
		e.t.Fatalf("%s %s: error %s %s", subject, body, code, desc)
	}
	if err := json.Unmarshal(data, v); err != nil {
		e.t.Fatalf("%s answer %s: %v", subject, data, err)
	}
}

// inboundMsgs is how many messages the inbound stream holds.
func (e *env) inboundMsgs() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), e.cfg.NATS.Inbound.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func noInternalListener(c *configs.Config) { c.HTTP.Listen = "" }

// TestOperatorEndpoints: the micro service's operator endpoints through real NATS requests to the
// real daemon: every replica's status; the live sessions listed from the bucket with filters and
// pages; one interaction's state; a stop that ends the session at the Co-browse Server as
// operator_stop with one audit line naming who asked; bad requests refused with 400 and nothing
// published.
func TestOperatorEndpoints(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, noInternalListener)
	e.startDaemon()
	e.event("i-1", chat.EventCreated, "agent-1")
	s1 := e.joinSession("i-1", "agent-1", 1)
	e.activate("i-1", s1, "agent-1")
	e.event("i-2", chat.EventCreated, "agent-2")
	s2 := e.joinSession("i-2", "agent-2", 1)
	e.event("i-3", chat.EventCreated, "agent-3")

	// status: this replica's view, on the subject every replica answers and on its member's.
	var st daemon.Status
	e.requestJSON(daemon.StatusSubject(), "", &st)
	if st.Member != "main" || st.Version == "" || st.NATS.Status != "CONNECTED" || len(st.Consumer.Partitions) != 16 || st.Consumer.Of != 16 ||
		st.LiveSessions != 2 || len(st.Sessions) != 2 || st.Sessions[0].Phase != "active" || st.Sessions[1].Phase != "joined" ||
		st.Sessions[0].Vendor != "genesys" || len(st.Vendors) != 1 || st.Vendors[0].Vendor != "genesys" || !st.Vendors[0].Healthy ||
		st.Retention != "168h0m0s" || st.Instance == "" {
		t.Fatalf("status: %+v", st)
	}
	var byMember daemon.Status
	e.requestJSON(daemon.MemberStatusSubject("main"), "", &byMember)
	if byMember.Instance != st.Instance {
		t.Fatalf("the member's status is another instance's: %+v", byMember)
	}
	var info micro.Info
	e.requestJSON("$SRV.INFO."+daemon.ServiceName, "", &info)
	var subjects []string
	for _, ep := range info.Endpoints {
		subjects = append(subjects, ep.Subject)
	}
	for _, want := range []string{"cobrowse.status", "cobrowse.status.main", "cobrowse.sessions.list", "cobrowse.sessions.get",
		"cobrowse.sessions.stop", "cobrowse.cluster.status"} {
		if !slices.Contains(subjects, want) {
			t.Errorf("$SRV.INFO has no endpoint %s: %v", want, subjects)
		}
	}
	if info.Metadata["member"] != "main" || info.Version == "" || info.ID != st.Instance {
		t.Fatalf("$SRV.INFO: %+v", info)
	}

	// sessions.list, from the live markers, filtered and paged.
	list := func(body string) daemon.ListAnswer {
		t.Helper()
		var a daemon.ListAnswer
		e.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsList), body, &a)
		return a
	}
	ids := func(a daemon.ListAnswer) []string {
		var out []string
		for _, s := range a.Sessions {
			out = append(out, s.InteractionID)
		}
		return out
	}
	for body, want := range map[string][]string{
		``:                                     {"i-1", "i-2"},
		`{"vendor":"genesys"}`:                 {"i-1", "i-2"},
		`{"vendor":"zoom"}`:                    nil,
		`{"phase":"active"}`:                   {"i-1"},
		`{"agent":"agent-2"}`:                  {"i-2"},
		`{"agent":"agent-2","phase":"active"}`: nil,
	} {
		if a := list(body); !slices.Equal(ids(a), want) || a.Truncated {
			t.Errorf("list %s: %v truncated %v, want %v", body, ids(a), a.Truncated, want)
		}
	}
	page := list(`{"limit":1}`)
	if !slices.Equal(ids(page), []string{"i-1"}) || !page.Truncated || page.Next != "i-1" {
		t.Fatalf("first page: %+v", page)
	}
	if s := page.Sessions[0]; s.Token != "******"+s1.Token()[6:] || s.SessionID != s1.HistoryID() || s.AgentID != "agent-1" || s.Phase != "active" {
		t.Fatalf("listed session: %+v", s)
	}
	if next := list(`{"limit":1,"after":"i-1"}`); !slices.Equal(ids(next), []string{"i-2"}) || next.Truncated {
		t.Fatalf("second page: %+v", next)
	}

	// sessions.get: a live one, one without a session, an unknown one.
	var got daemon.StateSummary
	e.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-1"}`, &got)
	if got.Live == nil || got.Live.Phase != "active" || got.Seq != 2 || got.Sessions != 1 || got.AgentID != "agent-1" || got.Closed {
		t.Fatalf("get i-1: %+v", got)
	}
	got = daemon.StateSummary{}
	e.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-3"}`, &got)
	if got.Live != nil || got.AgentID != "agent-3" || got.Revision == 0 {
		t.Fatalf("get i-3: %+v", got)
	}
	if _, code, desc := e.request(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-9"}`); code != "404" || !strings.Contains(desc, "i-9") {
		t.Fatalf("get of an unknown interaction: %q %q", code, desc)
	}

	// Refused requests publish nothing.
	before := e.inboundMsgs()
	for _, bad := range []struct{ endpoint, body, code, says string }{
		{daemon.EndpointSessionsStop, `not json`, "400", "not JSON"},
		{daemon.EndpointSessionsStop, `{}`, "400", "field interactionId: required"},
		{daemon.EndpointSessionsStop, `{"interactionId":"i.1"}`, "400", "not a NATS subject token"},
		{daemon.EndpointSessionsStop, `{"interactionId":"i-1","reason":"a\nb"}`, "400", "control character"},
		{daemon.EndpointSessionsStop, `{"interactionId":"i-1","by":"ann"}`, "400", `unknown field "by"`},
		{daemon.EndpointSessionsStop, `{"interactionId":"i-3"}`, "409", "no live session"},
		{daemon.EndpointSessionsStop, `{"interactionId":"i-9"}`, "404", "no state"},
		{daemon.EndpointSessionsList, `{"vendor":"webex"}`, "400", "field vendor"},
		{daemon.EndpointSessionsGet, ``, "400", "the body is empty"},
	} {
		if _, code, desc := e.request(daemon.SessionsSubject(bad.endpoint), bad.body); code != bad.code || !strings.Contains(desc, bad.says) {
			t.Errorf("%s %s: %q %q, want %s saying %q", bad.endpoint, bad.body, code, desc, bad.code, bad.says)
		}
	}
	if after := e.inboundMsgs(); after != before {
		t.Fatalf("refused requests published %d messages", after-before)
	}

	// sessions.stop: answered once the signal is stored; the session ends as operator_stop.
	var stop daemon.StopAnswer
	e.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsStop), `{"interactionId":"i-2","reason":"customer asked","requestedBy":"ops-ann"}`, &stop)
	if stop.InteractionID != "i-2" || stop.SessionID != s2.HistoryID() || stop.Stream != e.cfg.NATS.Inbound.Stream || stop.Seq == 0 ||
		stop.Duplicate || stop.Subject != "cc.signal.i-2.operator" || !strings.HasPrefix(stop.Signal, "op-") {
		t.Fatalf("stop: %+v", stop)
	}
	e.expectEnd("i-2", "operator_stop")
	e.waitEnded(s2)
	if by := s2.EndedBy(); !strings.HasPrefix(by, "controller") {
		t.Fatalf("ended at the server by %q", by)
	}
	// One audit line for the stop, naming who asked and why, the token masked.
	if !e.logs.WaitFor("audit: operator stop", wait, nil) {
		t.Fatal("no audit line")
	}
	var audit []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "audit: operator stop") {
			audit = append(audit, l)
		}
	}
	if len(audit) != 1 || !strings.Contains(audit[0], "requested_by=ops-ann") || !strings.Contains(audit[0], `reason="customer asked"`) ||
		!strings.Contains(audit[0], "via=main") || !strings.Contains(audit[0], "interaction=i-2") ||
		!strings.Contains(audit[0], "token=******"+s2.Token()[6:]) || strings.Contains(audit[0], s2.Token()) {
		t.Fatalf("audit lines: %q", audit)
	}
	// Nothing is live any more: a second stop has nothing to stop.
	if _, code, _ := e.request(daemon.SessionsSubject(daemon.EndpointSessionsStop), `{"interactionId":"i-2"}`); code != "409" {
		t.Fatalf("a stop after the end: %q, want 409", code)
	}
	if st := s1.State(); st != gcbtest.StateActive {
		t.Fatalf("the other session was touched: %v", st)
	}
	var after daemon.Status
	e.requestJSON(daemon.StatusSubject(), "", &after)
	if after.LiveSessions != 1 {
		t.Fatalf("status after the stop: %+v", after.Sessions)
	}
}

// TestRetentionPurgesClosedInteractions: with a short controller.retention, a closed
// interaction's state is removed from the bucket by the server a retention after its close (its
// live marker went at the end of its session); an open one stays; a later start message on the
// purged interaction starts it over at seq 1.
func TestRetentionPurgesClosedInteractions(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, func(c *configs.Config) {
		noInternalListener(c)
		c.Controller.Retention = d(2 * time.Second)
		c.NATS.Outbound.DuplicateWindow = d(time.Second)
	})
	e.startDaemon()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, e.cfg.NATS.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := kv.Watch(ctx, "i-1", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = removed.Stop() }()

	e.event("i-2", chat.EventCreated, "agent-2")
	e.event("i-1", chat.EventCreated, "agent-1")
	s := e.joinSession("i-1", "agent-1", 1)
	e.activate("i-1", s, "agent-1")
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	if _, err := kv.Get(ctx, "live.i-1"); err == nil {
		t.Fatal("the live marker outlived the session")
	}
	for {
		select {
		case en := <-removed.Updates():
			if en == nil || en.Operation() == jetstream.KeyValuePut {
				continue
			}
		case <-ctx.Done():
			t.Fatal("the closed interaction's state was not removed within the bound")
		}
		break
	}
	if _, code, _ := e.request(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-1"}`); code != "404" {
		t.Fatalf("get of the purged interaction: %q, want 404", code)
	}
	var open daemon.StateSummary
	e.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-2"}`, &open)
	if open.AgentID != "agent-2" {
		t.Fatalf("the open interaction: %+v", open)
	}
	// The accepted trade: a later message of the purged interaction starts it over at seq 1.
	s2, err := e.cluster.CreateSession(1)
	if err != nil {
		t.Fatal(err)
	}
	e.startMsg("i-1", s2.Token())
	e.expectLifecycle("i-1", attach.Joined)
	if u := e.expectUpdate("i-1"); u.Seq != 1 || u.Data.SessionsQuantity != 1 {
		t.Fatalf("the purged interaction's next attach: %+v, want seq 1 and one session", u)
	}
}

// TestStatusFromEveryReplica: with two replicas, a request on the status subject is answered by
// each (no queue group), and a member's own status subject by that member only; the sessions
// endpoints are answered once (one replica of the queue group).
func TestStatusFromEveryReplica(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, noInternalListener)
	e.startDaemon()
	cfg2 := e.cfg
	cfg2.Cluster.Member = "r2"
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg2, daemon.Options{Logger: slog.New(slog.DiscardHandler), Ready: func(string) { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("second replica: %v", err)
			}
		case <-time.After(wait):
			t.Error("the second replica did not stop")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("second replica: %v", err)
	case <-time.After(wait):
		t.Fatal("second replica not ready")
	}

	// Gather every answer to one request, as `nats req --replies 0` does.
	gather := func(subject string, want int) []daemon.Status {
		t.Helper()
		inbox := nats.NewInbox()
		sub, err := e.nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := e.nc.PublishRequest(subject, inbox, nil); err != nil {
			t.Fatal(err)
		}
		var out []daemon.Status
		for len(out) < want {
			m, err := sub.NextMsg(wait)
			if err != nil {
				t.Fatalf("%s: %d answers of %d: %v", subject, len(out), want, err)
			}
			var st daemon.Status
			if err := json.Unmarshal(m.Data, &st); err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
		}
		// No third answer comes: a round trip to the server after the two answers shows it.
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := sub.Pending(); n != 0 {
			t.Fatalf("%s: %d more answers", subject, n)
		}
		return out
	}
	var members []string
	for _, st := range gather(daemon.StatusSubject(), 2) {
		members = append(members, st.Member)
	}
	slices.Sort(members)
	if !slices.Equal(members, []string{"main", "r2"}) {
		t.Fatalf("status answers from %v", members)
	}
	if st := gather(daemon.MemberStatusSubject("r2"), 1); st[0].Member != "r2" || len(st[0].Consumer.Partitions) != 0 {
		t.Fatalf("r2's status: %+v", st[0])
	}
	var info micro.Info
	e.requestJSON("$SRV.INFO."+daemon.ServiceName, "", &info)
	for _, ep := range info.Endpoints {
		if queued := ep.QueueGroup != ""; queued == strings.HasPrefix(ep.Subject, "cobrowse.status") {
			t.Errorf("endpoint %s: queue group %q", ep.Subject, ep.QueueGroup)
		}
	}
}
