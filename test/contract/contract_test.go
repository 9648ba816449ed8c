package contract

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

func load(t *testing.T) *Contract {
	t.Helper()
	c, err := Load("cc")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every file in docs/schemas compiles on its own (against the draft 2020-12 meta-schema, every
// $ref resolved), and asyncapi.yaml loads: every channel, parameter, message and operation
// resolves, and every message's payload is a schema file that compiles.
func TestSchemasCompileAndAsyncAPILoads(t *testing.T) {
	c := load(t)
	files := schemaFiles(t, c.Root)
	if len(files) == 0 {
		t.Fatal("no schema files")
	}
	comp := jsonschema.NewCompiler()
	for _, f := range files {
		if _, err := comp.Compile(filepath.Join(c.Root, "docs", filepath.FromSlash(f))); err != nil {
			t.Errorf("docs/%s: %v", f, err)
		}
	}
	want := map[string]string{ // channel -> the actions of the daemon on it
		"chatMessage": "receive", "interactionEvent": "receive", "signal": "receive,send",
		"attach": "send", "lifecycle": "send", "agentPage": "send", "customerPage": "send", "webhook": "receive,send",
	}
	for _, ch := range c.Channels {
		acts := slices.Sorted(slices.Values(ch.Actions))
		if got := strings.Join(acts, ","); got != want[ch.Name] {
			t.Errorf("channel %s: actions %q, want %q", ch.Name, got, want[ch.Name])
		}
		delete(want, ch.Name)
	}
	for name := range want {
		t.Errorf("docs/asyncapi.yaml has no channel %s", name)
	}
}

// Every schema file is used: named by a message of asyncapi.yaml, or by a $ref of a schema file
// that is.
func TestEverySchemaFileIsReferenced(t *testing.T) {
	c := load(t)
	reached := map[string]bool{}
	var visit func(file string)
	visit = func(file string) {
		if reached[file] {
			return
		}
		reached[file] = true
		b, err := os.ReadFile(filepath.Join(c.Root, "docs", filepath.FromSlash(file)))
		if err != nil {
			t.Errorf("docs/%s: %v", file, err)
			return
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Errorf("docs/%s: %v", file, err)
			return
		}
		for _, ref := range refs(doc) {
			target, _, _ := strings.Cut(ref, "#")
			if target != "" {
				visit(pathJoin(file, target))
			}
		}
	}
	for _, f := range c.Files {
		visit(f)
	}
	for _, f := range schemaFiles(t, c.Root) {
		if !reached[f] {
			t.Errorf("docs/%s is referenced neither by docs/asyncapi.yaml nor by a schema it uses", f)
		}
	}
}

func pathJoin(from, ref string) string {
	return filepath.ToSlash(filepath.Join(filepath.Dir(from), ref))
}

func refs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				out = append(out, s)
			} else {
				out = append(out, refs(x)...)
			}
		}
	case []any:
		for _, x := range v {
			out = append(out, refs(x)...)
		}
	}
	return out
}

func schemaFiles(t *testing.T, root string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "docs", "schemas", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		out = append(out, "schemas/"+filepath.Base(p))
	}
	return out
}

// docExample is one JSON block of docs/nats-contract.md with the subject (and msg id) its
// "<!-- subject: S; msg-id: M -->" line gives.
type docExample struct {
	line           int
	subject, msgID string
	payload        []byte
}

var (
	jsonBlock    = regexp.MustCompile("(?s)```json\n(.*?)```")
	subjectLabel = regexp.MustCompile(`^<!-- subject: (\S+)(?:; msg-id: (\S+))? -->$`)
)

func docExamples(t *testing.T, root string) []docExample {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "nats-contract.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	for _, loc := range jsonBlock.FindAllSubmatchIndex(doc, -1) {
		before := strings.Split(string(doc[:loc[0]]), "\n")
		line := len(before)
		// The label is the line above the block, or above its "<!-- example: -->" marker.
		i := len(before) - 2
		if i >= 0 && strings.HasPrefix(before[i], "<!-- example: ") {
			i--
		}
		var m []string
		if i >= 0 {
			m = subjectLabel.FindStringSubmatch(before[i])
		}
		if m == nil {
			t.Errorf("docs/nats-contract.md:%d: JSON block without a <!-- subject: ... --> line above it", line)
			continue
		}
		out = append(out, docExample{line: line, subject: m[1], msgID: m[2], payload: doc[loc[2]:loc[3]]})
	}
	return out
}

// Every JSON example of docs/nats-contract.md is a valid message of the subject its label names
// (the msg id too, when the label gives one), and every channel but the vendor's webhooks has an
// example there.
func TestDocExamplesMatchTheirSchemas(t *testing.T) {
	c := load(t)
	examples := docExamples(t, c.Root)
	seen := map[string]bool{}
	for _, ex := range examples {
		if err := c.Check(ex.subject, ex.msgID, ex.payload); err != nil {
			t.Errorf("docs/nats-contract.md:%d: %v", ex.line, err)
		}
		if ch, _ := c.Match(ex.subject); ch != nil {
			seen[ch.Name] = true
			if slices.Contains(ch.Actions, "send") && !slices.Contains(ch.Actions, "receive") && ex.msgID == "" {
				t.Errorf("docs/nats-contract.md:%d: an outbound example without its msg-id in its label", ex.line)
			}
		}
	}
	for _, ch := range c.Channels {
		if !seen[ch.Name] && ch.Name != "webhook" { // the webhook's body is the vendor's (docs/zoom.md)
			t.Errorf("docs/nats-contract.md has no example of channel %s (%s)", ch.Name, ch.Address)
		}
	}
	if len(examples) < 26 {
		t.Errorf("only %d labelled examples in docs/nats-contract.md", len(examples))
	}
}

// The subjects the daemon's code builds are those of the channels.
func TestDaemonSubjectsMatchChannels(t *testing.T) {
	c := load(t)
	for subject, want := range map[string]string{
		chat.ChatSubject("cc", "i-1"):                        "chatMessage",
		chat.EventSubject("cc", "i-1"):                       "interactionEvent",
		chat.SignalSubject("cc", "i-1", chat.SourceZoom):     "signal",
		chat.SignalSubject("cc", "i-1", chat.SourceOperator): "signal",
		attach.UpdateSubject("cc", "i-1"):                    "attach",
		attach.LifecycleSubject("cc", "i-1", attach.Joined):  "lifecycle",
		attach.LifecycleSubject("cc", "i-1", attach.Failed):  "lifecycle",
		attach.AgentSubject("cc", "agent-1"):                 "agentPage",
		attach.CustomerSubject("cc", "i-1"):                  "customerPage",
		chat.WebhookSubject("cc", string(connector.Zoom)):    "webhook",
	} {
		ch, _ := c.Match(subject)
		if ch == nil || ch.Name != want {
			t.Errorf("subject %s: channel %v, want %s", subject, ch, want)
		}
	}
	for _, subject := range []string{
		"cc.chat.i-1.message.x", "cc.chat.i-1", "cc.cobrowse.i-1.paused", "cc.signal.i-1.nobody",
		"cc.webhook.glance", "xx.chat.i-1.message", "cc.chat..message", "cc.customer.i-1.view",
	} {
		if ch, _ := c.Match(subject); ch != nil {
			t.Errorf("subject %s matches channel %s", subject, ch.Name)
		}
	}
	// Another prefix.
	acme, err := Load("acme")
	if err != nil {
		t.Fatal(err)
	}
	if ch, v := acme.Match(chat.ChatSubject("acme", "i-9")); ch == nil || ch.Name != "chatMessage" || v["interactionId"] != "i-9" {
		t.Errorf("acme chat subject: %v %v", ch, v)
	}
	if ch, _ := acme.Match(chat.ChatSubject("cc", "i-9")); ch != nil {
		t.Errorf("a cc subject matches with prefix acme: %s", ch.Name)
	}
}

// What the attach package publishes for every kind of outbound message is valid: the marshalled
// messages pass their channel's schema with their own subject and msg id.
func TestAttachMarshalMatchesSchemas(t *testing.T) {
	c := load(t)
	at := time.Date(2026, 3, 14, 9, 26, 53, 589_123_456, time.UTC)
	dur := int64(862)
	check := func(subject, msgID string, v json.Marshaler) {
		t.Helper()
		b, err := v.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Check(subject, msgID, b); err != nil {
			t.Error(err)
		}
	}
	u := attach.Update{InteractionID: "i-1", Seq: 3, SessionID: "s-1", Vendor: "genesys", At: at,
		Data:    attach.Data{Associated: "No", SessionsQuantity: 1, SessionID: "s-1", StartTime: "1773480430412", Duration: &dur, EndReason: string(connector.InteractionClosed)},
		Changed: []string{attach.KeyEndReason, attach.KeyAssociated, attach.KeyDuration}}
	check(attach.UpdateSubject("cc", "i-1"), attach.UpdateMsgID("i-1", 3), u)
	for _, r := range endReasons {
		l := attach.Lifecycle{Event: attach.Deactivated, InteractionID: "i-1", SessionID: "s-1", SessionToken: "535176834", Vendor: "zoom",
			AgentID: "agent-1", ActivationTime: 1773480430412, DeactivationTime: 1773481292907, Reason: string(r), At: at}
		check(attach.LifecycleSubject("cc", "i-1", attach.Deactivated), attach.LifecycleMsgID("i-1", "s-1", attach.Deactivated), l)
	}
	for _, tok := range []string{"", "1", "123456", "1234567", "K7Q2M9X4TB"} {
		l := attach.Lifecycle{Event: attach.Joined, InteractionID: "i-1", SessionID: "s-1", SessionToken: tok, Vendor: "cec", At: at}
		check(attach.LifecycleSubject("cc", "i-1", attach.Joined), attach.LifecycleMsgID("i-1", "s-1", attach.Joined), l)
	}
	for _, r := range []string{"join_failed", "processing_failed", "vendor_unavailable", "unsupported", "pin_not_bound"} {
		l := attach.Lifecycle{Event: attach.Failed, InteractionID: "i-1", Vendor: "genesys", Reason: r, Detail: "HTTP 404 Not Found", At: at, MsgID: "i-1.failed.c:m.1"}
		check(attach.LifecycleSubject("cc", "i-1", attach.Failed), l.MsgID, l)
	}
	for _, h := range []attach.Handoff{
		{Kind: attach.HandoffView, InteractionID: "i-1", SessionID: "s-1", Vendor: "genesys", AgentID: "agent-1", URL: "https://gcb.example/cobrowse/slave.html#nosidinput=1&sid=535176834", At: at},
		{Kind: attach.HandoffView, InteractionID: "i-1", SessionID: "s-1", Vendor: "zoom", AgentID: "agent-1", Token: "eyJ.x.y", PIN: "K7Q2M9X4TB", At: at},
		{Kind: attach.HandoffEnd, InteractionID: "i-1", SessionID: "s-1", Vendor: "cec", AgentID: "agent-1", At: at},
		{Kind: attach.HandoffStart, ToCustomer: true, InteractionID: "i-1", SessionID: "pending-1", Vendor: "zoom", Token: "eyJ.x.y", PIN: "K7Q2M9X4TB", At: at},
		{Kind: attach.HandoffStart, ToCustomer: true, InteractionID: "i-1", SessionID: "i-1-abc", Vendor: "cec", RoomID: "i-1-abc", WSSURL: "WSS://cec.example:8443/ws", ConnectParam: "x", At: at},
		{Kind: attach.HandoffEnd, ToCustomer: true, InteractionID: "i-1", SessionID: "s-1", Vendor: "zoom", At: at},
	} {
		check(h.Subject("cc"), h.MsgID(), h)
	}
	// The deprecated agent view is published as the Genesys view.
	v := attach.AgentView{AgentID: "agent-1", InteractionID: "i-1", SessionID: "s-1", URL: "http://gcb.example/slave.html#sid=1", At: at}
	check(attach.AgentSubject("cc", "agent-1"), attach.AgentViewMsgID("i-1", "s-1", "agent-1"), v)
}

var endReasons = []connector.EndReason{
	connector.ParticipantExit, connector.InteractionTransferred, connector.InteractionClosed, connector.InteractionTimeout,
	connector.NoAgentJoin, connector.ServerLost, connector.JoinFailed, connector.Replaced, connector.Shutdown, connector.OperatorStop,
}

// The schemas' enums are the daemon's vocabularies.
func TestEnumsAreTheDaemonsVocabularies(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	common := readSchema(t, root, "common.json")
	eq := func(what string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Errorf("%s: schema enum %q, daemon's %q", what, got, want)
		}
	}
	var reasons []string
	for _, r := range endReasons {
		reasons = append(reasons, string(r))
	}
	got := enum(t, common, "$defs", "endReason", "enum")
	eq("end reasons", got, reasons...)
	for _, r := range got {
		if !connector.EndReason(r).Valid() {
			t.Errorf("end reason %q of the schema is not valid for the daemon", r)
		}
	}
	eq("vendors", enum(t, common, "$defs", "vendor", "enum"), string(connector.Genesys), string(connector.Zoom), string(connector.CEC))
	eq("roles", enum(t, common, "$defs", "role", "enum"), string(chat.RoleCustomer), string(chat.RoleAgent), string(chat.RoleBot), string(chat.RoleSystem))
	for _, r := range enum(t, common, "$defs", "role", "enum") {
		if !chat.Role(r).Valid() {
			t.Errorf("role %q is not valid for the daemon", r)
		}
	}
	for _, typ := range enum(t, readSchema(t, root, "interaction-event.json"), "properties", "type", "anyOf", "0", "enum") {
		if !chat.EventType(typ).Known() {
			t.Errorf("event type %q is not one the daemon acts on", typ)
		}
	}
	for _, typ := range enum(t, readSchema(t, root, "signal.json"), "properties", "type", "anyOf", "0", "enum") {
		if !chat.SignalType(typ).Known() {
			t.Errorf("signal type %q is not one the daemon acts on", typ)
		}
	}
	eq("signal sources", enum(t, readSchema(t, root, "signal.json"), "properties", "source", "enum"),
		chat.SourceZoom, chat.SourceCustomer, chat.SourceAgent, chat.SourceOperator)
	for _, k := range enum(t, readSchema(t, root, "lifecycle.json"), "properties", "event", "enum") {
		if !attach.LifecycleKind(k).Valid() {
			t.Errorf("lifecycle event %q is not valid for the daemon", k)
		}
	}
	eq("lifecycle events", enum(t, readSchema(t, root, "lifecycle.json"), "properties", "event", "enum"),
		string(attach.Joined), string(attach.Activated), string(attach.Deactivated), string(attach.Failed))
	eq("page message kinds", enum(t, readSchema(t, root, "handoff.json"), "properties", "kind", "enum"),
		string(attach.HandoffView), string(attach.HandoffStart), string(attach.HandoffEnd))
	eq("attached-data keys", enum(t, readSchema(t, root, "attach.json"), "properties", "changed", "items", "enum"),
		attach.KeyAssociated, attach.KeySessionsQuantity, attach.KeySessionID, attach.KeyStartTime, attach.KeyDuration, attach.KeyEndReason)
}

func readSchema(t *testing.T, root, file string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "schemas", file))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("docs/schemas/%s: %v", file, err)
	}
	return v
}

// enum returns the strings at path (object keys, or list indexes as decimals) in v.
func enum(t *testing.T, v any, path ...string) []string {
	t.Helper()
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := int(p[0] - '0')
			if len(p) != 1 || i >= len(x) {
				t.Fatalf("no %v", path)
			}
			v = x[i]
		default:
			t.Fatalf("no %v", path)
		}
	}
	var out []string
	for _, x := range v.([]any) {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
