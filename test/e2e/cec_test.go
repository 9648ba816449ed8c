package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// The CEC tier: the daemon with Genesys (the default vendor) and CEC enabled, the built-in CEC
// (cectest), and the tests playing the bot's request, the pages that open the room with what the
// daemon handed them, and the pages' reports on cc.signal.<interactionId>.customer and .agent.

type cecEnv struct {
	*env
	s *cectest.Server
}

// newCECEnv starts NATS, a Co-browse cluster and the built-in CEC; release says whether the
// daemon has the web adapter's releaseConnection.
func newCECEnv(t *testing.T, release bool, mutate func(*configs.Config)) *cecEnv {
	t.Helper()
	ce := &cecEnv{s: cectest.New(cectest.Options{})}
	t.Cleanup(ce.s.Close)
	o := ce.s.Options()
	ce.env = newEnv(t, gcbtest.Options{Nodes: 2}, func(c *configs.Config) {
		c.Vendors.Default = configs.VendorGenesys
		c.CEC.Enabled = true
		c.CEC.Domain, c.CEC.AppKey, c.CEC.AppSecret, c.CEC.TenantSpaceID = ce.s.URL(), o.AppKey, configs.Secret(o.AppSecret), o.TenantSpaceID
		if release {
			c.CEC.ReleaseURL = ce.s.ReleaseURL()
		}
		c.Controller.EndWait = d(3 * time.Second)
		if mutate != nil {
			mutate(c)
		}
	})
	return ce
}

func (ce *cecEnv) created(iid, agent string) {
	ce.publish(chat.EventSubject("cc", iid), chat.Event{ID: ce.nextID("ev"), InteractionID: iid, Type: chat.EventCreated,
		AgentID: agent, Vendor: "cec"}, "")
}

func (ce *cecEnv) request(iid string) {
	ce.publish(chat.EventSubject("cc", iid), chat.Event{ID: ce.nextID("ev"), InteractionID: iid,
		Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot, ID: "bot-1"}}, "")
}

// report plays a page's backend reporting what the CEC SDK told the page.
func (ce *cecEnv) report(iid, source string, typ chat.SignalType, role chat.Role) {
	ce.publish(chat.SignalSubject("cc", iid, source), chat.Signal{ID: ce.nextID("sig"), InteractionID: iid, Source: source,
		Type: typ, Role: role}, "")
}

// requested asks for co-browse on iid (created with agent) and checks what follows: joined, the
// attach naming the room, the recorder's connection info to the customer's page and the
// replayer's to the agent's, both of which open the room at the built-in CEC.
func (ce *cecEnv) requested(iid, agent string) string {
	ce.t.Helper()
	ce.created(iid, agent)
	ce.request(iid)
	j := ce.expectLifecycle(iid, attach.Joined)
	if !strings.HasPrefix(j.SessionID, iid+"-") || j.Vendor != "cec" {
		ce.t.Fatalf("joined %+v: want a room of the interaction", j)
	}
	room := j.SessionID
	if u := ce.expectUpdate(iid); u.Data.Associated != "Yes" || u.Data.SessionID != room || u.Data.SessionsQuantity < 1 {
		ce.t.Fatalf("first attach %+v", u.Data)
	}
	pages := map[string]attach.Handoff{}
	for range 2 {
		m := ce.expect(iid, "cobrowse")
		var h attach.Handoff
		if err := json.Unmarshal(m.data, &h); err != nil {
			ce.t.Fatal(err)
		}
		pages[m.subject] = h
	}
	start, view := pages["cc.customer."+iid+".cobrowse"], pages["cc.agent."+agent+".cobrowse"]
	if start.Kind != attach.HandoffStart || view.Kind != attach.HandoffView || start.RoomID != room || view.RoomID != room {
		ce.t.Fatalf("page messages %+v", pages)
	}
	if err := ce.s.Connect(cectest.RoleRecorder, room, start.WSSURL, start.ConnectParam); err != nil {
		ce.t.Fatalf("the customer's page opens the room: %v", err)
	}
	if err := ce.s.Connect(cectest.RoleReplayer, room, view.WSSURL, view.ConnectParam); err != nil {
		ce.t.Fatalf("the agent's page opens the room: %v", err)
	}
	return room
}

// activated plays the agent's page reporting its replayer connected.
func (ce *cecEnv) activated(iid string) {
	ce.t.Helper()
	ce.report(iid, chat.SourceAgent, chat.SignalUserJoined, chat.RoleAgent)
	ce.expectLifecycle(iid, attach.Activated)
	if u := ce.expectUpdate(iid); u.Data.StartTime == "" {
		ce.t.Fatalf("activated attach %+v", u.Data)
	}
}

// TestCECRequestToActivatedAndTransfer: the bot asks, both sides get their connection info, the
// agent's page reports its connection (activated), and a transfer ends the session: the room is
// released, the final attach follows at once, the pages are told; the new agent gets nothing.
func TestCECRequestToActivatedAndTransfer(t *testing.T) {
	ce := newCECEnv(t, true, nil)
	ce.startDaemon()
	room := ce.requested("i-1", "agent-1")
	ce.activated("i-1")
	ce.event("i-1", chat.EventTransferred, "agent-2")
	u := ce.expectEnd("i-1", "interaction_transferred")
	if u.Data.SessionID != room {
		t.Fatalf("final attach %+v", u.Data)
	}
	if r, ok := ce.s.Room(room); !ok || r.ReleasedAt.IsZero() {
		t.Fatalf("room %s not released at CEC: %+v", room, r)
	}
	for _, m := range ce.outbound("i-1") {
		if strings.HasPrefix(m.subject, "cc.agent.agent-2.") {
			t.Fatalf("the new agent got %s", m.data)
		}
	}
	ce.noSecretsLogged()
}

// TestCECEndPaths: each way a CEC session ends, without the release call (the pages end it and
// report) and with it.
func TestCECEndPaths(t *testing.T) {
	for _, release := range []bool{false, true} {
		t.Run(fmt.Sprintf("release=%v", release), func(t *testing.T) {
			ce := newCECEnv(t, release, nil)
			ce.startDaemon()
			endByPages := func(iid string) {
				if !release {
					ce.report(iid, chat.SourceCustomer, chat.SignalSessionEnded, chat.RoleCustomer)
				}
			}
			cases := []struct {
				name, reason string
				end          func(iid string)
			}{
				{"closed", "interaction_closed", func(iid string) { ce.event(iid, chat.EventClosed, ""); endByPages(iid) }},
				{"timeout", "interaction_timeout", func(iid string) { ce.event(iid, chat.EventTimeout, ""); endByPages(iid) }},
				{"operator stop", "operator_stop", func(iid string) {
					ce.report(iid, chat.SourceOperator, chat.SignalStop, "")
					endByPages(iid)
				}},
				{"the customer's page left", "participant_exit", func(iid string) {
					ce.report(iid, chat.SourceCustomer, chat.SignalUserLeft, chat.RoleCustomer)
				}},
				{"the agent's page left", "participant_exit", func(iid string) {
					ce.report(iid, chat.SourceAgent, chat.SignalUserLeft, chat.RoleAgent)
				}},
			}
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ce.env.t = t
					iid := fmt.Sprintf("i-end-%d", i)
					room := ce.requested(iid, "agent-1")
					ce.activated(iid)
					c.end(iid)
					if u := ce.expectEnd(iid, c.reason); u.Data.SessionID != room {
						t.Fatalf("final attach %+v", u.Data)
					}
				})
			}
		})
	}
}

// TestCECRequestWithoutAgent: connection info for the agent's side needs the agent (workNo): a
// request before an agent is assigned fails as join_failed, and nothing is handed out.
func TestCECRequestWithoutAgent(t *testing.T) {
	ce := newCECEnv(t, false, nil)
	ce.startDaemon()
	ce.created("i-1", "")
	ce.request("i-1")
	if f := ce.expectLifecycle("i-1", attach.Failed); f.Reason != "join_failed" {
		t.Fatalf("failed %+v", f)
	}
	if n := len(ce.s.Rooms()); n != 0 {
		t.Fatalf("%d rooms handed out", n)
	}
}

// TestCECOneTokenForManySessions: twenty requests, handled at once by their interactions' actors,
// share one tokenByAkSk.
func TestCECOneTokenForManySessions(t *testing.T) {
	ce := newCECEnv(t, false, nil)
	ce.startDaemon()
	const n = 20
	for i := range n {
		ce.created(fmt.Sprintf("i-many-%d", i), fmt.Sprintf("agent-%d", i))
	}
	for i := range n {
		ce.request(fmt.Sprintf("i-many-%d", i))
	}
	ce.waitUntil("every request joined", func() bool {
		joined := 0
		for i := range n {
			for _, m := range ce.outbound(fmt.Sprintf("i-many-%d", i)) {
				if strings.HasSuffix(m.subject, ".joined") {
					joined++
				}
			}
		}
		return joined == n
	})
	if got := ce.s.TokensIssued(); got != 1 {
		t.Fatalf("%d tokens issued for %d sessions, want 1", got, n)
	}
}

// TestCECRestartWithALiveSession: a restart keeps the room (CEC has no session query: the daemon
// takes the saved handle back), and the session goes on.
func TestCECRestartWithALiveSession(t *testing.T) {
	ce := newCECEnv(t, true, nil)
	ce.startDaemon()
	room := ce.requested("i-1", "agent-1")
	ce.stopDaemon()
	ce.startDaemon()
	ce.activated("i-1")
	ce.event("i-1", chat.EventClosed, "")
	if u := ce.expectEnd("i-1", "interaction_closed"); u.Data.SessionID != room {
		t.Fatalf("final attach %+v", u.Data)
	}
}

// noSecretsLogged: no app secret, no whole AccessToken or connectParam in the daemon's log.
func (ce *cecEnv) noSecretsLogged() {
	ce.t.Helper()
	logs := ce.logs.String()
	if strings.Contains(logs, ce.s.Options().AppSecret) {
		ce.t.Error("the log shows the app secret")
	}
	for _, r := range ce.s.Rooms() {
		for _, is := range r.Issued {
			if strings.Contains(logs, is.ConnectParam) {
				ce.t.Error("the log shows a whole connectParam")
			}
		}
	}
	// AccessTokens are 64 hex characters at cectest.
	if tok := regexp.MustCompile(`[0-9a-f]{64}`).FindString(logs); tok != "" {
		ce.t.Errorf("the log shows a whole access token: ...%s", tok[60:])
	}
}

// TestCECFaultsStallNothingElse: a CEC that hangs, fails or refuses gets bounded time-outs and a
// clear failed event; meanwhile a Genesys interaction of the same daemon starts and ends as usual.
func TestCECFaultsStallNothingElse(t *testing.T) {
	ce := newCECEnv(t, false, func(c *configs.Config) {
		c.Controller.JoinTimeout = d(time.Second)
		c.CEC.RequestTimeout = d(500 * time.Millisecond)
	})
	ce.startDaemon()

	// Hangs, for every request: each attempt is bounded, the breaker opens, the request fails on
	// its last delivery; the Genesys interaction meanwhile goes from start to end.
	ce.s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Hang: true})
	ce.created("i-hang", "agent-1")
	ce.request("i-hang")
	s := ce.joinSession("i-genesys", "", 1)
	ce.event("i-genesys", chat.EventClosed, "")
	ce.expectEnd("i-genesys", "interaction_closed")
	ce.waitEnded(s)
	if f := ce.expectLifecycle("i-hang", attach.Failed); f.Reason != "join_failed" {
		t.Fatalf("failed %+v", f)
	}

	// Refuses (success:false): at once, with CEC's words.
	ce.s.ClearFaults()
	ce.s.SetFault(cectest.RouteConnectionInfo, cectest.Fault{Refuse: true, ErrorCode: "7", ErrorReason: "room quota exceeded"})
	ce.created("i-refused", "agent-2")
	ce.request("i-refused")
	if f := ce.expectLifecycle("i-refused", attach.Failed); f.Reason != "join_failed" || !strings.Contains(f.Detail, "room quota exceeded") {
		t.Fatalf("failed %+v", f)
	}
	ce.noSecretsLogged()
}
