package attach

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// One co-browse session on one interaction, as the controller would describe it: the values the
// examples in docs/nats-contract.md show.
const (
	exInteraction = "0007Ka5TDDHJ003F"
	exSession     = "9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90"
	exToken       = "535176834"
	exAgent       = "agent-4711"
	exURL         = "https://gcb-node2.example.com/cobrowse/slave.html#nosidinput=1&sid=535176834"
	exActivation  = 1773480430412 // 2026-03-14T09:27:10.412Z
	exDeactivated = 1773481292907 // 2026-03-14T09:41:32.907Z

	// A Zoom session the daemon created (BYOP), and a CEC session, on interactions of their own.
	// The JWTs are fakes: {"alg":"HS256"}, {"example":true} or {"role":"agent","example":true}.
	exZoomInteraction = "0007Ka5TDDHJ0051"
	exZoomSession     = "Yx3mQ8vR2kT6wP0nL5sJ7A"
	exZoomAgent       = "agent-5120"
	exCustomerJWT     = "eyJhbGciOiJIUzI1NiJ9.eyJleGFtcGxlIjp0cnVlfQ.FAKE-SIGNATURE"
	exAgentJWT        = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYWdlbnQiLCJleGFtcGxlIjp0cnVlfQ.FAKE-SIGNATURE"
	exPIN             = "K7Q2M9X4TB"
	exDeskURL         = "https://zoom-desk.example.com/cobrowse/desk?access_token=" + exAgentJWT
	exCECInteraction  = "0007Ka5TDDHJ0077"
	exCECSession      = "0007Ka5TDDHJ0077-mx4lkp0v0nbg"
	exConnectParam    = "FAKE-CONNECT-PARAM-7F3C"
)

// at returns a time in a non-UTC zone with nanoseconds, to prove "at" is normalized.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.Add(987_654 * time.Nanosecond).In(time.FixedZone("CET", 3600))
}

func i64(v int64) *int64 { return &v }

type example struct {
	name string
	msg  any // Update, Lifecycle or Handoff
	want string
}

// examples are the golden bytes of every outbound message type, exactly as published.
var examples = []example{
	{"attach-joined", Update{
		InteractionID: exInteraction, Seq: 1, SessionID: exSession, Vendor: "genesys",
		Data:    Data{Associated: "Yes", SessionsQuantity: 1, SessionID: exSession},
		Changed: []string{KeySessionID, KeyAssociated, KeySessionsQuantity, KeyAssociated}, // unordered, repeated
		At:      at("2026-03-14T09:26:53.589Z"),
	}, `{"v":1,"interactionId":"0007Ka5TDDHJ003F","seq":1,"sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","vendor":"genesys","data":{"CoBrowseAssociated":"Yes","CoBrowseSessionsQuantity":1,"CoBrowseSessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90"},"changed":["CoBrowseAssociated","CoBrowseSessionsQuantity","CoBrowseSessionId"],"at":"2026-03-14T09:26:53.589Z"}`},
	{"attach-activated", Update{
		InteractionID: exInteraction, Seq: 2, SessionID: exSession, Vendor: "genesys",
		Data:    Data{Associated: "Yes", SessionsQuantity: 1, SessionID: exSession, StartTime: "1773480430412"},
		Changed: []string{KeyStartTime},
		At:      at("2026-03-14T09:27:10.455Z"),
	}, `{"v":1,"interactionId":"0007Ka5TDDHJ003F","seq":2,"sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","vendor":"genesys","data":{"CoBrowseAssociated":"Yes","CoBrowseSessionsQuantity":1,"CoBrowseSessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","CoBrowseStartTime":"1773480430412"},"changed":["CoBrowseStartTime"],"at":"2026-03-14T09:27:10.455Z"}`},
	{"attach-ended", Update{
		InteractionID: exInteraction, Seq: 3, SessionID: exSession, Vendor: "genesys",
		Data: Data{Associated: "No", SessionsQuantity: 1, SessionID: exSession, StartTime: "1773480430412",
			Duration: i64(862), EndReason: "interaction_closed"},
		Changed: []string{KeyEndReason, KeyDuration, KeyAssociated},
		At:      at("2026-03-14T09:41:33.020Z"),
	}, `{"v":1,"interactionId":"0007Ka5TDDHJ003F","seq":3,"sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","vendor":"genesys","data":{"CoBrowseAssociated":"No","CoBrowseSessionsQuantity":1,"CoBrowseSessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","CoBrowseStartTime":"1773480430412","CoBrowseDuration":862,"CoBrowseEndReason":"interaction_closed"},"changed":["CoBrowseAssociated","CoBrowseDuration","CoBrowseEndReason"],"at":"2026-03-14T09:41:33.020Z"}`},
	{"lifecycle-joined", Lifecycle{
		Event: Joined, InteractionID: exInteraction, SessionID: exSession, SessionToken: exToken,
		Vendor: "genesys", AgentID: exAgent, At: at("2026-03-14T09:26:53.571Z"),
	}, `{"v":1,"event":"joined","interactionId":"0007Ka5TDDHJ003F","sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","sessionToken":"******834","vendor":"genesys","agentId":"agent-4711","at":"2026-03-14T09:26:53.571Z"}`},
	{"lifecycle-activated", Lifecycle{
		Event: Activated, InteractionID: exInteraction, SessionID: exSession, SessionToken: exToken,
		Vendor: "genesys", AgentID: exAgent, ActivationTime: exActivation, At: at("2026-03-14T09:27:10.440Z"),
	}, `{"v":1,"event":"activated","interactionId":"0007Ka5TDDHJ003F","sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","sessionToken":"******834","vendor":"genesys","agentId":"agent-4711","activationTime":1773480430412,"at":"2026-03-14T09:27:10.440Z"}`},
	{"lifecycle-deactivated", Lifecycle{
		Event: Deactivated, InteractionID: exInteraction, SessionID: exSession, SessionToken: exToken,
		Vendor: "genesys", AgentID: exAgent, ActivationTime: exActivation, DeactivationTime: exDeactivated,
		Reason: "interaction_closed", At: at("2026-03-14T09:41:33.002Z"),
	}, `{"v":1,"event":"deactivated","interactionId":"0007Ka5TDDHJ003F","sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","sessionToken":"******834","vendor":"genesys","agentId":"agent-4711","activationTime":1773480430412,"deactivationTime":1773481292907,"reason":"interaction_closed","at":"2026-03-14T09:41:33.002Z"}`},
	{"lifecycle-failed", Lifecycle{
		Event: Failed, InteractionID: exInteraction, SessionToken: "246813771", Vendor: "genesys", AgentID: exAgent,
		Reason: "join_failed", Detail: "HTTP 404 Not Found", At: at("2026-03-14T09:25:06.118Z"),
		MsgID: exInteraction + ".failed.c:chat-m-000118",
	}, `{"v":1,"event":"failed","interactionId":"0007Ka5TDDHJ003F","sessionId":"","sessionToken":"******771","vendor":"genesys","agentId":"agent-4711","reason":"join_failed","detail":"HTTP 404 Not Found","at":"2026-03-14T09:25:06.118Z"}`},
	{"lifecycle-failed-processing", Lifecycle{
		Event: Failed, InteractionID: exInteraction, Vendor: "genesys", AgentID: exAgent,
		Reason: "processing_failed", Detail: "save state: nats: timeout", At: at("2026-03-14T09:31:02.530Z"),
		MsgID: exInteraction + ".failed.e:ev-000044",
	}, `{"v":1,"event":"failed","interactionId":"0007Ka5TDDHJ003F","sessionId":"","vendor":"genesys","agentId":"agent-4711","reason":"processing_failed","detail":"save state: nats: timeout","at":"2026-03-14T09:31:02.530Z"}`},
	{"handoff-agent-view", Handoff{
		Kind: HandoffView, AgentID: exAgent, InteractionID: exInteraction, SessionID: exSession, Vendor: "genesys",
		URL: exURL, At: at("2026-03-14T09:26:53.602Z"),
	}, `{"v":1,"kind":"view","interactionId":"0007Ka5TDDHJ003F","sessionId":"9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90","vendor":"genesys","agentId":"agent-4711","url":"https://gcb-node2.example.com/cobrowse/slave.html#nosidinput=1&sid=535176834","at":"2026-03-14T09:26:53.602Z"}`},
	{"handoff-customer-start", Handoff{
		Kind: HandoffStart, ToCustomer: true, InteractionID: exZoomInteraction, SessionID: "pending-1", Vendor: "zoom",
		Token: exCustomerJWT, PIN: exPIN, At: at("2026-03-14T10:02:11.305Z"),
	}, `{"v":1,"kind":"start","interactionId":"0007Ka5TDDHJ0051","sessionId":"pending-1","vendor":"zoom","token":"eyJhbGciOiJIUzI1NiJ9.eyJleGFtcGxlIjp0cnVlfQ.FAKE-SIGNATURE","pin":"K7Q2M9X4TB","at":"2026-03-14T10:02:11.305Z"}`},
	{"handoff-agent-view-zoom", Handoff{
		Kind: HandoffView, AgentID: exZoomAgent, InteractionID: exZoomInteraction, SessionID: exZoomSession, Vendor: "zoom",
		URL: exDeskURL, PIN: exPIN, At: at("2026-03-14T10:02:11.318Z"),
	}, `{"v":1,"kind":"view","interactionId":"0007Ka5TDDHJ0051","sessionId":"Yx3mQ8vR2kT6wP0nL5sJ7A","vendor":"zoom","agentId":"agent-5120","url":"https://zoom-desk.example.com/cobrowse/desk?access_token=eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYWdlbnQiLCJleGFtcGxlIjp0cnVlfQ.FAKE-SIGNATURE","pin":"K7Q2M9X4TB","at":"2026-03-14T10:02:11.318Z"}`},
	{"handoff-cec", Handoff{
		Kind: HandoffView, AgentID: exAgent, InteractionID: exCECInteraction, SessionID: exCECSession, Vendor: "cec",
		RoomID: "0007Ka5TDDHJ0077-mx4lkp0v0nbg", WSSURL: "wss://cec.example.com:8443/cobrowse/ws", ConnectParam: exConnectParam,
		At: at("2026-03-14T11:15:40.027Z"),
	}, `{"v":1,"kind":"view","interactionId":"0007Ka5TDDHJ0077","sessionId":"0007Ka5TDDHJ0077-mx4lkp0v0nbg","vendor":"cec","agentId":"agent-4711","roomId":"0007Ka5TDDHJ0077-mx4lkp0v0nbg","wssUrl":"wss://cec.example.com:8443/cobrowse/ws","connectParam":"FAKE-CONNECT-PARAM-7F3C","at":"2026-03-14T11:15:40.027Z"}`},
	{"handoff-end", Handoff{
		Kind: HandoffEnd, ToCustomer: true, InteractionID: exZoomInteraction, SessionID: exZoomSession, Vendor: "zoom",
		At: at("2026-03-14T10:19:47.880Z"),
	}, `{"v":1,"kind":"end","interactionId":"0007Ka5TDDHJ0051","sessionId":"Yx3mQ8vR2kT6wP0nL5sJ7A","vendor":"zoom","at":"2026-03-14T10:19:47.880Z"}`},
}

// secrets are the credentials of the examples, which no log may show in full.
var secrets = []string{exToken, exCustomerJWT, exAgentJWT, exPIN, exConnectParam,
	// their signature, payload and header parts too
	"FAKE-SIGNATURE", "eyJleGFtcGxlIjp0cnVlfQ", "eyJyb2xlIjoiYWdlbnQiLCJleGFtcGxlIjp0cnVlfQ", "eyJhbGciOiJIUzI1NiJ9"}

func marshal(t *testing.T, m any) []byte {
	t.Helper()
	var b []byte
	var err error
	switch m := m.(type) {
	case Update:
		b, err = m.MarshalJSON()
	case Lifecycle:
		b, err = m.MarshalJSON()
	case Handoff:
		b, err = m.MarshalJSON()
	case AgentView:
		b, err = m.MarshalJSON()
	default:
		t.Fatalf("unknown message %T", m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenJSON(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			got := marshal(t, ex.msg)
			if string(got) != ex.want {
				t.Fatalf("bytes differ\n got %s\nwant %s", got, ex.want)
			}
			// The contract's version, not the build's, is the first field of every message.
			if want := fmt.Sprintf(`{"v":%d,`, ContractVersion); !strings.HasPrefix(string(got), want) {
				t.Errorf("%s does not start with %s", got, want)
			}
			// The contract's types, checked by decoding rather than by eye.
			var m map[string]any
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatal(err)
			}
			if at, _ := m["at"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(at) {
				t.Errorf("at %q is not RFC 3339 UTC with milliseconds", at)
			}
			switch ex.msg.(type) {
			case Update:
				if _, ok := m["seq"].(float64); !ok {
					t.Errorf("seq is %T, want a JSON number", m["seq"])
				}
				if _, ok := m["changed"].([]any); !ok {
					t.Errorf("changed is %T, want an array", m["changed"])
				}
				data := m["data"].(map[string]any)
				if _, ok := data[KeySessionsQuantity].(float64); !ok {
					t.Errorf("%s is %T, want a JSON number", KeySessionsQuantity, data[KeySessionsQuantity])
				}
				if v, ok := data[KeyStartTime]; ok {
					if s, ok := v.(string); !ok || !allDigits(s) {
						t.Errorf("%s is %#v, want a string of digits", KeyStartTime, v)
					}
				}
				if v, ok := data[KeyDuration]; ok {
					if _, ok := v.(float64); !ok {
						t.Errorf("%s is %T, want a JSON number", KeyDuration, v)
					}
				}
			case Lifecycle:
				for _, k := range []string{"activationTime", "deactivationTime"} {
					if v, ok := m[k]; ok {
						if _, ok := v.(float64); !ok {
							t.Errorf("%s is %T, want a JSON number", k, v)
						}
					}
				}
				if strings.Contains(string(got), exToken) {
					t.Errorf("full session token in %s", got)
				}
			}
		})
	}
}

// json.Marshal of the public types gives the same document (HTML-escaped, as json.Marshal
// always does): no other code path can leak a full token or a local-time "at".
func TestJSONMarshalUsesContractForm(t *testing.T) {
	for _, ex := range examples {
		got, err := json.Marshal(ex.msg)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(ex.want), &b); err != nil {
			t.Fatal(err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Errorf("%s: json.Marshal gives %s, want %s", ex.name, got, ex.want)
		}
	}
}

func TestTokenMaskedInReasonAndDetail(t *testing.T) {
	e := okLifecycle(Failed)
	e.SessionToken = exToken
	e.Reason = "join_failed"
	e.Detail = "get session 535176834 on https://gcb.example.com/rest/live/sessions/535176834: HTTP 404"
	got := string(marshal(t, e))
	if strings.Contains(got, exToken) || !strings.Contains(got, `"detail":"get session ******834 on https://gcb.example.com/rest/live/sessions/******834: HTTP 404"`) {
		t.Fatalf("got %s", got)
	}
	// A short PIN is masked in its own field but not searched for in free text.
	e.SessionToken, e.Detail = "123", "HTTP 404 after 1234 ms"
	got = string(marshal(t, e))
	if !strings.Contains(got, `"sessionToken":"***"`) || !strings.Contains(got, `"detail":"HTTP 404 after 1234 ms"`) {
		t.Fatalf("got %s", got)
	}
	if s := fmt.Sprint(slog.AnyValue(okLifecycle(Joined)).Resolve()); strings.Contains(s, exToken) {
		t.Fatalf("full token in the log value %s", s)
	}
}

func TestEmptyUpdateFields(t *testing.T) {
	got := marshal(t, Update{InteractionID: "i1", Seq: 7, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	want := `{"v":1,"interactionId":"i1","seq":7,"sessionId":"","vendor":"","data":{},"changed":[],"at":"2026-01-02T03:04:05.000Z"}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	// A zero duration is a value (a session of under a second), unlike a nil one.
	got = marshal(t, Update{InteractionID: "i1", Seq: 8, Data: Data{Duration: i64(0)}, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if !strings.Contains(string(got), `"data":{"CoBrowseDuration":0}`) {
		t.Fatalf("zero duration lost: %s", got)
	}
}

func TestFormatTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 3, 14, 10, 26, 53, 589_999_999, time.FixedZone("CET", 3600)), "2026-03-14T09:26:53.589Z"},
		{time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC), "2026-03-14T09:26:53.000Z"},
		{time.Date(2026, 12, 31, 23, 59, 59, 999_000_000, time.FixedZone("X", -5*3600)), "2027-01-01T04:59:59.999Z"},
	} {
		if got := FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSubjectsAndMsgIDs(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{UpdateSubject("cc", "I1"), "cc.interaction.I1.attach"},
		{LifecycleSubject("cc", "I1", Joined), "cc.cobrowse.I1.joined"},
		{LifecycleSubject("cc", "I1", Activated), "cc.cobrowse.I1.activated"},
		{LifecycleSubject("cc", "I1", Deactivated), "cc.cobrowse.I1.deactivated"},
		{LifecycleSubject("acme.cc", "I1", Failed), "acme.cc.cobrowse.I1.failed"},
		{AgentSubject("cc", "A7"), "cc.agent.A7.cobrowse"},
		{CustomerSubject("cc", "I1"), "cc.customer.I1.cobrowse"},
		{UpdateMsgID("I1", 12), "I1.attach.12"},
		{LifecycleMsgID("I1", "S1", Deactivated), "I1.S1.deactivated"},
		{AgentViewMsgID("I1", "S1", "A7"), "I1.S1.view.agent:A7"},
		{okHandoff(HandoffView).MsgID(), "I1.S1.view.agent:A1"},
		{okHandoff(HandoffView).Subject("cc"), "cc.agent.A1.cobrowse"},
		{okHandoff(HandoffStart).MsgID(), "I1.S1.start.customer"},
		{okHandoff(HandoffStart).Subject("acme.cc"), "acme.cc.customer.I1.cobrowse"},
		{okHandoff(HandoffEnd).MsgID(), "I1.S1.end.agent:A1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if got := strings.Join(reportingSubjects("cc"), " "); got != "cc.interaction.*.attach cc.cobrowse.*.*" {
		t.Errorf("reporting subjects %v", got)
	}
	if got := strings.Join(pageSubjects("acme.cc"), " "); got != "acme.cc.agent.*.cobrowse acme.cc.customer.*.cobrowse" {
		t.Errorf("page subjects %v", got)
	}
}

func okUpdate() Update {
	return Update{InteractionID: "I1", Seq: 1, SessionID: "S1", Vendor: "genesys",
		Data: Data{Associated: "Yes", SessionsQuantity: 1, SessionID: "S1"}, Changed: []string{KeyAssociated}}
}

func okLifecycle(k LifecycleKind) Lifecycle {
	e := Lifecycle{Event: k, InteractionID: "I1", SessionID: "S1", SessionToken: exToken, Vendor: "genesys"}
	if k == Deactivated {
		e.Reason = "participant_exit"
	}
	if k == Failed {
		e.Reason = "server unreachable"
	}
	return e
}

func okView() AgentView {
	return AgentView{AgentID: "A1", InteractionID: "I1", SessionID: "S1", URL: exURL}
}

// okHandoff is a valid page message of each kind: a Genesys view to the agent, a Zoom start to
// the customer, an end to the agent.
func okHandoff(k HandoffKind) Handoff {
	switch k {
	case HandoffStart:
		return Handoff{Kind: k, ToCustomer: true, InteractionID: "I1", SessionID: "S1", Vendor: "zoom", Token: exCustomerJWT, PIN: exPIN}
	case HandoffEnd:
		return Handoff{Kind: k, AgentID: "A1", InteractionID: "I1", SessionID: "S1", Vendor: "zoom"}
	}
	return Handoff{Kind: k, AgentID: "A1", InteractionID: "I1", SessionID: "S1", Vendor: "genesys", URL: exURL}
}

// invalidMessages are refused before anything is published.
func invalidMessages() []struct {
	name string
	msg  any
} {
	u := func(f func(*Update)) Update { x := okUpdate(); f(&x); return x }
	l := func(k LifecycleKind, f func(*Lifecycle)) Lifecycle { x := okLifecycle(k); f(&x); return x }
	v := func(f func(*AgentView)) AgentView { x := okView(); f(&x); return x }
	h := func(k HandoffKind, f func(*Handoff)) Handoff { x := okHandoff(k); f(&x); return x }
	return []struct {
		name string
		msg  any
	}{
		{"update empty interaction", u(func(x *Update) { x.InteractionID = "" })},
		{"update interaction with dot", u(func(x *Update) { x.InteractionID = "a.b" })},
		{"update interaction with star", u(func(x *Update) { x.InteractionID = "a*" })},
		{"update interaction with gt", u(func(x *Update) { x.InteractionID = ">" })},
		{"update interaction with space", u(func(x *Update) { x.InteractionID = "a b" })},
		{"update interaction with tab", u(func(x *Update) { x.InteractionID = "a\tb" })},
		{"update interaction with newline", u(func(x *Update) { x.InteractionID = "a\r\nb" })},
		{"update interaction with nbsp", u(func(x *Update) { x.InteractionID = "a\u00a0b" })},
		{"update seq 0", u(func(x *Update) { x.Seq = 0 })},
		{"update associated yes lowercase", u(func(x *Update) { x.Data.Associated = "yes" })},
		{"update associated true", u(func(x *Update) { x.Data.Associated = "true" })},
		{"update start time with letters", u(func(x *Update) { x.Data.StartTime = "17734804x0412" })},
		{"update start time negative", u(func(x *Update) { x.Data.StartTime = "-1" })},
		{"update start time rfc3339", u(func(x *Update) { x.Data.StartTime = "2026-03-14T09:27:10Z" })},
		{"update start time with space", u(func(x *Update) { x.Data.StartTime = " 1773480430412" })},
		{"update negative quantity", u(func(x *Update) { x.Data.SessionsQuantity = -1 })},
		{"update negative duration", u(func(x *Update) { x.Data.Duration = i64(-5) })},
		{"update unknown end reason", u(func(x *Update) { x.Data.EndReason = "closed" })},
		{"update unknown changed key", u(func(x *Update) { x.Changed = []string{KeyAssociated, "IsCoBrowseDenied"} })},
		{"update changed key wrong case", u(func(x *Update) { x.Changed = []string{"cobrowseassociated"} })},
		{"lifecycle unknown event", l(Joined, func(x *Lifecycle) { x.Event = "ended" })},
		{"lifecycle empty event", l(Joined, func(x *Lifecycle) { x.Event = "" })},
		{"lifecycle empty interaction", l(Joined, func(x *Lifecycle) { x.InteractionID = "" })},
		{"lifecycle interaction with wildcard", l(Activated, func(x *Lifecycle) { x.InteractionID = "I*" })},
		{"deactivated without reason", l(Deactivated, func(x *Lifecycle) { x.Reason = "" })},
		{"deactivated with unknown reason", l(Deactivated, func(x *Lifecycle) { x.Reason = "bye" })},
		{"failed without reason", l(Failed, func(x *Lifecycle) { x.Reason = "" })},
		{"failed without session or msg id", l(Failed, func(x *Lifecycle) { x.SessionID = "" })},
		{"joined without session or msg id", l(Joined, func(x *Lifecycle) { x.SessionID = "" })},
		{"lifecycle msg id with newline", l(Joined, func(x *Lifecycle) { x.MsgID = "I1.x\r\nNats-Expected-Stream: X" })},
		{"lifecycle session with newline", l(Joined, func(x *Lifecycle) { x.SessionID = "S1\n" })},
		{"lifecycle negative time", l(Activated, func(x *Lifecycle) { x.ActivationTime = -1 })},
		{"view empty agent", v(func(x *AgentView) { x.AgentID = "" })},
		{"view agent with dot", v(func(x *AgentView) { x.AgentID = "a.b" })},
		{"view agent with gt", v(func(x *AgentView) { x.AgentID = "a>" })},
		{"view agent with space", v(func(x *AgentView) { x.AgentID = "a b" })},
		{"view empty interaction", v(func(x *AgentView) { x.InteractionID = "" })},
		{"view interaction with dot", v(func(x *AgentView) { x.InteractionID = "i.1" })},
		{"view without session", v(func(x *AgentView) { x.SessionID = "" })},
		{"view without url", v(func(x *AgentView) { x.URL = "" })},
		{"view url not absolute", v(func(x *AgentView) { x.URL = "slave.html#sid=535176834" })},
		{"handoff unknown kind", h(HandoffView, func(x *Handoff) { x.Kind = "join" })},
		{"handoff empty kind", h(HandoffView, func(x *Handoff) { x.Kind = "" })},
		{"handoff kind wrong case", h(HandoffView, func(x *Handoff) { x.Kind = "View" })},
		{"handoff empty interaction", h(HandoffView, func(x *Handoff) { x.InteractionID = "" })},
		{"handoff interaction with dot", h(HandoffStart, func(x *Handoff) { x.InteractionID = "i.1" })},
		{"handoff interaction with wildcard", h(HandoffStart, func(x *Handoff) { x.InteractionID = "i>" })},
		{"handoff to agent without agent", h(HandoffView, func(x *Handoff) { x.AgentID = "" })},
		{"handoff agent with dot", h(HandoffView, func(x *Handoff) { x.AgentID = "a.b" })},
		{"handoff agent with space", h(HandoffEnd, func(x *Handoff) { x.AgentID = "a b" })},
		{"handoff to customer naming an agent", h(HandoffStart, func(x *Handoff) { x.AgentID = "A1" })},
		{"handoff end to customer naming an agent", h(HandoffEnd, func(x *Handoff) { x.ToCustomer = true })},
		{"handoff without session", h(HandoffView, func(x *Handoff) { x.SessionID = "" })},
		{"handoff session with newline", h(HandoffView, func(x *Handoff) { x.SessionID = "S1\r\nNats-Expected-Stream: X" })},
		{"handoff without vendor", h(HandoffView, func(x *Handoff) { x.Vendor = "" })},
		{"handoff unknown vendor", h(HandoffView, func(x *Handoff) { x.Vendor = "glance" })},
		{"handoff vendor wrong case", h(HandoffView, func(x *Handoff) { x.Vendor = "Genesys" })},
		{"start to an agent", h(HandoffStart, func(x *Handoff) { x.ToCustomer, x.AgentID = false, "A1" })},
		{"view with nothing to open", h(HandoffView, func(x *Handoff) { x.URL = "" })},
		{"start with nothing to start with", h(HandoffStart, func(x *Handoff) { x.Token, x.PIN = "", "" })},
		{"end with url", h(HandoffEnd, func(x *Handoff) { x.URL = exURL })},
		{"end with token", h(HandoffEnd, func(x *Handoff) { x.Token = exCustomerJWT })},
		{"end with pin", h(HandoffEnd, func(x *Handoff) { x.PIN = exPIN })},
		{"end with room", h(HandoffEnd, func(x *Handoff) { x.RoomID = "room-1" })},
		{"end with wss url", h(HandoffEnd, func(x *Handoff) { x.WSSURL = "wss://cec.example.com/ws" })},
		{"end with connect param", h(HandoffEnd, func(x *Handoff) { x.ConnectParam = exConnectParam })},
		{"handoff url relative", h(HandoffView, func(x *Handoff) { x.URL = "/cobrowse/slave.html" })},
		{"handoff url javascript", h(HandoffView, func(x *Handoff) { x.URL = "javascript:alert(1)" })},
		{"handoff url wss", h(HandoffView, func(x *Handoff) { x.URL = "wss://cec.example.com/ws" })},
		{"handoff wss url https", h(HandoffView, func(x *Handoff) { x.WSSURL = "https://cec.example.com/ws" })},
		{"handoff wss url without host", h(HandoffView, func(x *Handoff) { x.WSSURL = "wss:///ws" })},
	}
}

func validate(m any) error {
	switch m := m.(type) {
	case Update:
		return m.validate()
	case Lifecycle:
		return m.validate()
	case Handoff:
		return m.validate()
	case AgentView:
		return m.validate()
	}
	panic("unknown message")
}

func TestValidation(t *testing.T) {
	for _, tc := range invalidMessages() {
		if err := validate(tc.msg); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}
	valid := []any{okUpdate(), okLifecycle(Joined), okLifecycle(Activated), okLifecycle(Deactivated),
		okLifecycle(Failed), okView(), okHandoff(HandoffView), okHandoff(HandoffStart), okHandoff(HandoffEnd)}
	// Every example page message; a view to the customer; an end to the customer; a CEC start.
	for _, ex := range examples {
		if h, ok := ex.msg.(Handoff); ok {
			valid = append(valid, h)
		}
	}
	custView := okHandoff(HandoffView)
	custView.ToCustomer, custView.AgentID = true, ""
	custEnd := okHandoff(HandoffEnd)
	custEnd.ToCustomer, custEnd.AgentID = true, ""
	valid = append(valid, custView, custEnd, Handoff{Kind: HandoffStart, ToCustomer: true, InteractionID: "I1", SessionID: "S1",
		Vendor: "cec", RoomID: "r1", WSSURL: "ws://localhost:8080/ws", ConnectParam: "x"})
	// A failed join before the server gave a session id, with the controller's own msg id.
	noSession := okLifecycle(Failed)
	noSession.SessionID, noSession.MsgID = "", "I1.m-17.failed"
	valid = append(valid, noSession)
	// Every end reason of the vocabulary is a valid deactivated reason and CoBrowseEndReason.
	for _, r := range []string{"participant_exit", "interaction_transferred", "interaction_closed",
		"interaction_timeout", "no_agent_join", "server_lost", "join_failed", "replaced", "shutdown", "operator_stop"} {
		e := okLifecycle(Deactivated)
		e.Reason = r
		u := okUpdate()
		u.Data.EndReason = r
		valid = append(valid, e, u)
	}
	// Zero values are "no value yet": an update with an empty data set is valid.
	valid = append(valid, Update{InteractionID: "I1", Seq: 9})
	for _, m := range valid {
		if err := validate(m); err != nil {
			t.Errorf("%+v: %v", m, err)
		}
	}
}

func TestCovered(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		stream  []string
		want    bool
	}{
		{"cc.interaction.*.attach", []string{"cc.interaction.*.attach"}, true},
		{"cc.interaction.*.attach", []string{"cc.>"}, true},
		{"cc.interaction.*.attach", []string{">"}, true},
		{"cc.interaction.*.attach", []string{"cc.*.*.attach"}, true},
		{"cc.interaction.*.attach", []string{"cc.interaction.>"}, true},
		{"cc.interaction.*.attach", []string{"x.y", "cc.interaction.*.*"}, true},
		{"cc.cobrowse.*.*", []string{"cc.cobrowse.>"}, true},
		{"cc.cobrowse.*.*", []string{"cc.cobrowse.*.joined"}, false},
		{"cc.agent.*.cobrowse", []string{"cc.agent.a1.cobrowse"}, false},
		{"cc.interaction.*.attach", []string{"cc.interaction.*.event"}, false},
		{"cc.interaction.*.attach", []string{"cc.interaction.*"}, false},
		{"cc.interaction.*.attach", []string{"cc.interaction.*.attach.>"}, false},
		{"cc.interaction.*.attach", []string{"cc.interaction.*.attach.x"}, false},
		{"cc.cobrowse.*.*", []string{"cc.cobrowse.*"}, false},
		{"cc.cobrowse.>", []string{"cc.cobrowse.*.*"}, false},
	} {
		if got := covered(tc.pattern, tc.stream); got != tc.want {
			t.Errorf("covered(%q, %q) = %v, want %v", tc.pattern, tc.stream, got, tc.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"cc.agent.*.cobrowse", "cc.agent.*.cobrowse", true},
		{"cc.agent.*.cobrowse", "cc.agent.a1.cobrowse", true},
		{"cc.agent.*.cobrowse", "cc.>", true},
		{"cc.agent.*.cobrowse", ">", true},
		{"cc.agent.*.cobrowse", "cc.*.*.*", true},
		{"cc.agent.*.cobrowse", "cc.agent.*.*", true},
		{"cc.agent.*.cobrowse", "cc.agent.>", true},
		{"cc.cobrowse.*.*", "cc.*.*.cobrowse", true}, // cc.cobrowse.x.cobrowse
		{"cc.agent.*.cobrowse", "cc.interaction.*.attach", false},
		{"cc.agent.*.cobrowse", "cc.cobrowse.*.*", false},
		{"cc.agent.*.cobrowse", "cc.agent.*", false},
		{"cc.agent.*.cobrowse", "cc.agent.*.cobrowse.x", false},
		{"cc.agent.*.cobrowse", "cc.agent.*.cobrowse.>", false},
		{"cc.customer.*.cobrowse", "cc.agent.*.cobrowse", false},
		{"cc", "cc.>", false},
	} {
		a, b := strings.Split(tc.a, "."), strings.Split(tc.b, ".")
		if got := overlaps(a, b); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := overlaps(b, a); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// The examples in docs/nats-contract.md are the golden bytes above, pretty-printed: the document
// cannot drift from what is published. Every other JSON block there must at least be JSON.
func TestContractDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/nats-contract.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)(<!-- example: ([a-z-]+) -->\\s*)?```json\n(.*?)```").FindAllSubmatch(doc, -1)
	byName := map[string][]byte{}
	for _, b := range blocks {
		var v any
		if err := json.Unmarshal(b[3], &v); err != nil {
			t.Errorf("JSON block in the doc is not JSON: %v\n%s", err, b[3])
			continue
		}
		if name := string(b[2]); name != "" {
			var c bytes.Buffer
			if err := json.Compact(&c, b[3]); err != nil {
				t.Fatal(err)
			}
			byName[name] = c.Bytes()
		}
	}
	for _, ex := range examples {
		got, ok := byName[ex.name]
		if !ok {
			t.Errorf("doc has no example %q", ex.name)
			continue
		}
		if string(got) != ex.want {
			t.Errorf("doc example %s differs from what is published\n doc %s\nwant %s", ex.name, got, ex.want)
		}
	}
}
