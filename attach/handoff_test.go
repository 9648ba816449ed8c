package attach

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func exampleHandoffs() map[string]Handoff {
	out := map[string]Handoff{}
	for _, ex := range examples {
		if h, ok := ex.msg.(Handoff); ok {
			out[ex.name] = h
		}
	}
	return out
}

// No credential of a page message shows in full through slog (text or JSON, alone or in a
// group), fmt's verbs, or a struct that holds the message; what is shown is enough to tell which.
func TestHandoffMaskedInLogs(t *testing.T) {
	wantShown := map[string][]string{
		"handoff-agent-view":      {"https://gcb-node2.example.com/cobrowse/slave.html#nosidinput=*&sid=******834", "to=agent:agent-4711"},
		"handoff-customer-start":  {"token=******URE", "pin=******4TB", "to=customer"},
		"handoff-agent-view-zoom": {"https://zoom-desk.example.com/cobrowse/desk?access_token=******URE", "pin=******4TB"},
		"handoff-cec":             {"room_id=0007Ka5TDDHJ0077-mx4lkp0v0nbg", "wss_url=wss://cec.example.com:8443/cobrowse/ws", "connect_param=******F3C"},
		"handoff-end":             {"kind=end", "session_id=Yx3mQ8vR2kT6wP0nL5sJ7A"},
	}
	type holder struct {
		Name    string
		Handoff Handoff
		Ptr     *Handoff
	}
	for name, h := range exampleHandoffs() {
		t.Run(name, func(t *testing.T) {
			var text, js bytes.Buffer
			slog.New(slog.NewTextHandler(&text, nil)).Info("page message", "handoff", h, "ptr", &h)
			//nolint:sloglint // attributes on purpose: the masking must hold however a Handoff reaches a handler
			slog.New(slog.NewJSONHandler(&js, nil)).Info("page message", slog.Any("handoff", h), slog.Group("g", "h", h))
			outputs := map[string]string{
				"slog text": text.String(),
				"slog json": js.String(),
				"%v":        fmt.Sprintf("%v", h),
				"%+v":       fmt.Sprintf("%+v", h),
				"%s":        fmt.Sprintf("%s", h), //nolint:staticcheck // %s is what this case tests
				"%#v":       fmt.Sprintf("%#v", h),
				"%v ptr":    fmt.Sprintf("%v", &h),
				"nested":    fmt.Sprintf("%+v", holder{"x", h, &h}),
				"slice":     fmt.Sprint([]Handoff{h}),
			}
			for how, out := range outputs {
				for _, secret := range secrets {
					if strings.Contains(out, secret) {
						t.Errorf("%s shows %s:\n%s", how, secret, out)
					}
				}
			}
			for _, w := range wantShown[name] {
				if !strings.Contains(text.String(), w) {
					t.Errorf("slog text lacks %q:\n%s", w, text.String())
				}
			}
			// The wire form, for the page, has them in full.
			b, err := h.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{h.URL, h.Token, h.PIN, h.ConnectParam} {
				if v != "" && !strings.Contains(string(b), v) {
					t.Errorf("wire form lacks %s: %s", v, b)
				}
			}
		})
	}
	// The deprecated AgentView shows no session token either.
	v := okView()
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("agent view", "v", v)
	for how, out := range map[string]string{
		"slog":  logged.String(),
		"%+v":   fmt.Sprintf("%+v", v),
		"%#v":   fmt.Sprintf("%#v", v),
		"print": fmt.Sprint(v),
	} {
		if strings.Contains(out, exToken) || !strings.Contains(out, "sid=******834") {
			t.Errorf("%s: %s", how, out)
		}
	}
}

func TestMaskURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://h.example/p", "https://h.example/p"},
		{"https://h.example/p?access_token=abcdefghijklmnopqrstuvwxyz", "https://h.example/p?access_token=******xyz"},
		{"https://h.example/p?a=1&access_token=abcdefghijkl&b=", "https://h.example/p?a=*&access_token=******jkl&b="},
		{"https://h.example/slave.html#nosidinput=1&sid=535176834", "https://h.example/slave.html#nosidinput=*&sid=******834"},
		{"https://h.example/p?x=secretvalue1#/route", "https://h.example/p?x=******ue1#******"},
		{"https://h.example/p?x=1#/a/longer/route", "https://h.example/p?x=*#******ute"},
		{"https://h.example/p?tokenwithoutname", "https://h.example/p?******ame"},
	} {
		if got := maskURL(tc.in); got != tc.want {
			t.Errorf("maskURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"123", "***"}, {"123456", "******"}, {"535176834", "******834"}, {"K7Q2M9X4TB", "******4TB"},
		{strings.Repeat("x", 500) + "END", "******END"},
	} {
		if got := maskSecret(tc.in); got != tc.want {
			t.Errorf("maskSecret(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The wire form reads back into the same message; without agentId it is the customer's.
func TestHandoffJSONRoundTrip(t *testing.T) {
	for name, h := range exampleHandoffs() {
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back Handoff
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := h
		want.At = h.At.UTC().Truncate(time.Millisecond)
		back.At = back.At.UTC()
		if back != want {
			t.Errorf("%s: read back\n %#v\nwant %#v", name, back, want)
		}
		if back.ToCustomer != (h.AgentID == "") {
			t.Errorf("%s: ToCustomer %v", name, back.ToCustomer)
		}
	}
	// A message to the customer never writes an agent id, whatever AgentID holds.
	h := okHandoff(HandoffStart)
	h.AgentID = "A1"
	if b, _ := h.MarshalJSON(); bytes.Contains(b, []byte("agentId")) {
		t.Errorf("customer message with an agentId: %s", b)
	}
}

// The deprecated AgentView is the Genesys view Handoff to the agent: same bytes, msg id,
// subject and validation; what the previous release's readers decode from it is unchanged.
func TestAgentViewIsTheGenesysHandoff(t *testing.T) {
	h := exampleHandoffs()["handoff-agent-view"]
	v := AgentView{AgentID: h.AgentID, InteractionID: h.InteractionID, SessionID: h.SessionID, URL: h.URL, At: h.At}
	if v.Handoff() != h {
		t.Fatalf("AgentView.Handoff() = %#v, want %#v", v.Handoff(), h)
	}
	vb, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := h.MarshalJSON()
	if !bytes.Equal(vb, hb) {
		t.Errorf("AgentView bytes\n %s\nwant %s", vb, hb)
	}
	if got := AgentViewMsgID(v.InteractionID, v.SessionID, v.AgentID); got != h.MsgID() {
		t.Errorf("AgentViewMsgID = %s, want %s", got, h.MsgID())
	}
	var back AgentView
	if err := json.Unmarshal(hb, &back); err != nil {
		t.Fatal(err)
	}
	if back.AgentID != v.AgentID || back.InteractionID != v.InteractionID || back.SessionID != v.SessionID ||
		back.URL != v.URL || !back.At.Equal(v.At.Truncate(time.Millisecond)) {
		t.Errorf("decoded %+v", back)
	}
	// The form the previous release wrote (and the controller may have saved) still reads.
	var old AgentView
	if err := json.Unmarshal([]byte(`{"interactionId":"I1","sessionId":"S1","url":"https://x.example/slave.html#sid=1","at":"2026-03-14T09:26:53.602Z"}`), &old); err != nil ||
		old.InteractionID != "I1" || old.URL == "" {
		t.Errorf("old form: %+v, %v", old, err)
	}

	// Published either way, it is one message in the page stream.
	e := start(t)
	p := e.publisher(t, Config{})
	if err := p.AgentView(ctx(t), v); err != nil {
		t.Fatal(err)
	}
	if err := p.Handoff(ctx(t), h); err != nil {
		t.Fatal(err)
	}
	if n := e.msgs(t, DefaultHandoffStream); n != 1 {
		t.Fatalf("%s holds %d messages, want 1", DefaultHandoffStream, n)
	}
	m := e.stored(t, DefaultHandoffStream, 1)
	if m.Subject != "cc.agent.agent-4711.cobrowse" || m.Header.Get(jetstream.MsgIDHeader) != h.MsgID() || !bytes.Equal(m.Data, hb) {
		t.Errorf("stored %s %s %s", m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data)
	}
}

// Page messages land in the page stream of their recipient, with their subject and msg id, and
// nothing in the reporting stream.
func TestHandoffLandsInHandoffStream(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{Prefix: "acme.cc"})
	for _, h := range []Handoff{okHandoff(HandoffView), okHandoff(HandoffStart), okHandoff(HandoffEnd)} {
		if err := p.Handoff(ctx(t), h); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []struct{ subject, msgID string }{
		{"acme.cc.agent.A1.cobrowse", "I1.S1.view.agent:A1"},
		{"acme.cc.customer.I1.cobrowse", "I1.S1.start.customer"},
		{"acme.cc.agent.A1.cobrowse", "I1.S1.end.agent:A1"},
	} {
		m := e.stored(t, DefaultHandoffStream, uint64(i+1))
		if m.Subject != want.subject || m.Header.Get(jetstream.MsgIDHeader) != want.msgID {
			t.Errorf("message %d: %s %s, want %s %s", i+1, m.Subject, m.Header.Get(jetstream.MsgIDHeader), want.subject, want.msgID)
		}
		if !bytes.HasPrefix(m.Data, []byte(`{"v":1,"kind":`)) {
			t.Errorf("message %d: %s", i+1, m.Data)
		}
	}
	if n := e.msgs(t, DefaultStream); n != 0 {
		t.Errorf("%s holds %d messages", DefaultStream, n)
	}
}
