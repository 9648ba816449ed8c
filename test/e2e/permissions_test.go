package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// permissionSets reads the NATS permission sets of docs/service.md: each block that follows a
// <!-- nats-permissions: NAME --> line, by name.
func permissionSets(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "service.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- nats-permissions: ([A-Z_]+) -->\n```text\n(.*?)```")
	sets := make(map[string]string)
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		sets[m[1]] = m[2]
	}
	return sets
}

// violations records the server's permission violations.
type violations struct {
	mu    sync.Mutex
	lines []string
}

func (v *violations) record(format string, args ...any) {
	if l := fmt.Sprintf(format, args...); strings.Contains(l, "Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, l)
		v.mu.Unlock()
	}
}

// The server.Logger methods: violations are logged as errors.
func (v *violations) Noticef(string, ...any)    {}
func (v *violations) Warnf(f string, a ...any)  { v.record(f, a...) }
func (v *violations) Fatalf(f string, a ...any) { v.record(f, a...) }
func (v *violations) Errorf(f string, a ...any) { v.record(f, a...) }
func (v *violations) Debugf(string, ...any)     {}
func (v *violations) Tracef(string, ...any)     {}

func (v *violations) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.lines, "\n")
}

// permissionServer starts a NATS server whose users have exactly the permission sets of the
// documentation (and an admin, for the test's own watching).
func permissionServer(t *testing.T, sets map[string]string) (*server.Server, *violations) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\n", filepath.Join(dir, "js"))
	for _, name := range []string{"COBROWSE_DAEMON", "COBROWSE_PLATFORM", "COBROWSE_FRONTEND", "COBROWSE_OPERATOR", "COBROWSE_REPORTING"} {
		set, ok := sets[name]
		if !ok {
			t.Fatalf("docs/service.md has no permission set %s", name)
		}
		b.WriteString(set)
	}
	b.WriteString(`authorization {
  users: [
    {user: cobrowse-connector, password: pw-daemon, permissions: $COBROWSE_DAEMON}
    {user: platform, password: pw-platform, permissions: $COBROWSE_PLATFORM}
    {user: frontend, password: pw-frontend, permissions: $COBROWSE_FRONTEND}
    {user: ops, password: pw-ops, permissions: $COBROWSE_OPERATOR}
    {user: reporting, password: pw-reporting, permissions: $COBROWSE_REPORTING}
    {user: admin, password: pw-admin}
  ]
}
`)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the documented permission sets are not a valid nats-server configuration: %v", err)
	}
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &violations{}
	ns.SetLogger(v, false, false)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	return ns, v
}

func connectAs(t *testing.T, url, user string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	password := "pw-" + user
	if user == "cobrowse-connector" {
		password = "pw-daemon"
	}
	nc, err := nats.Connect(url, nats.UserInfo(user, password))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestPermissionSets: a NATS server configured with the permission sets of docs/service.md runs
// the daemon (Genesys and Zoom, the operator service, retention) through a whole flow: the
// platform publishes the chat and the events, the front-end backends publish a signal and read
// the agent's view from CC_HANDOFF, the operator asks every endpoint and stops a session (through
// the service and by its own signal), reporting reads and acks CC_COBROWSE. No party meets one
// permission violation.
func TestPermissionSets(t *testing.T) {
	ns, viol := permissionServer(t, permissionSets(t))
	url := ns.ClientURL()
	ze := newZoomEnv(t, zoomtest.Options{}, func(c *configs.Config) {
		noInternalListener(c)
		c.NATS.URL = url
		c.NATS.User, c.NATS.Password = "cobrowse-connector", "pw-daemon"
	})
	ze.nc, ze.js = connectAs(t, url, "admin") // the test's own watching of the outbound streams
	ze.startDaemon()
	_, ze.js = connectAs(t, url, "platform") // from now on, the inbound messages come from the platform

	// Genesys: join, activate, then an operator's stop through the service.
	join := func(iid string) *gcbtest.Session {
		t.Helper()
		s, err := ze.cluster.CreateSession(0)
		if err != nil {
			t.Fatal(err)
		}
		ze.startMsg(iid, s.Token())
		ze.expectLifecycle(iid, attach.Joined)
		ze.expectUpdate(iid)
		return s
	}
	ze.event("i-1", chat.EventCreated, "agent-1")
	s1 := join("i-1")
	ze.activate("i-1", s1, "agent-1")
	ze.event("i-2", chat.EventCreated, "agent-2")
	s2 := join("i-2")

	// Zoom: the token endpoint, the PIN, the webhooks through the router, the activation.
	ze.created("i-3", "agent-3")
	zs, view := ze.pinSession("i-3")
	ze.agentJoins(view)
	ze.expectActivated("i-3")

	// The front-end backends: a page's signal, and the agent's view read from CC_HANDOFF.
	fnc, fjs := connectAs(t, url, "frontend")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if _, err := fjs.Publish(ctx, chat.SignalSubject("cc", "i-3", chat.SourceCustomer),
		[]byte(`{"id":"page-1","interactionId":"i-3","source":"customer","type":"user_joined","role":"customer"}`)); err != nil {
		t.Fatalf("front-end signal: %v", err)
	}
	hc, err := fjs.OrderedConsumer(ctx, attach.DefaultHandoffStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"cc.agent.agent-1.cobrowse"}})
	if err != nil {
		t.Fatalf("front-end consumer on CC_HANDOFF: %v", err)
	}
	if m, err := hc.Next(jetstream.FetchMaxWait(wait)); err != nil || !strings.Contains(string(m.Data()), `"kind":"view"`) {
		t.Fatalf("front-end read of the agent's view: %v", err)
	}
	sub, err := fnc.SubscribeSync("cc.customer.*.cobrowse")
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.Unsubscribe()

	// The operator: every endpoint, `nats micro` ($SRV), a stop through the service, its own stop.
	onc, ojs := connectAs(t, url, "ops")
	ze.nc = onc
	var st daemon.Status
	ze.requestJSON(daemon.StatusSubject(), "", &st)
	ze.requestJSON(daemon.MemberStatusSubject("main"), "", &st)
	var list daemon.ListAnswer
	// The join's messages go out before its state is saved: the list catches up a moment later.
	ze.waitUntil("the Zoom session in the list", func() bool {
		data, code, _ := ze.request(daemon.SessionsSubject(daemon.EndpointSessionsList), `{"vendor":"zoom"}`)
		return code == "" && json.Unmarshal(data, &list) == nil && len(list.Sessions) > 0
	})
	if len(list.Sessions) != 1 || list.Sessions[0].InteractionID != "i-3" {
		t.Fatalf("list: %+v", list)
	}
	var got daemon.StateSummary
	ze.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsGet), `{"interactionId":"i-1"}`, &got)
	var group chat.GroupStatus
	ze.requestJSON("cobrowse.cluster.status", "", &group)
	for _, srv := range []string{"$SRV.PING", "$SRV.INFO." + daemon.ServiceName, "$SRV.STATS." + daemon.ServiceName} {
		if _, err := onc.Request(srv, nil, wait); err != nil {
			t.Fatalf("%s: %v", srv, err)
		}
	}
	var stop daemon.StopAnswer
	ze.requestJSON(daemon.SessionsSubject(daemon.EndpointSessionsStop), `{"interactionId":"i-1","requestedBy":"ops"}`, &stop)
	ze.expectEnd("i-1", "operator_stop")
	if _, err := ojs.Publish(ctx, chat.SignalSubject("cc", "i-2", chat.SourceOperator),
		[]byte(`{"id":"op-own-1","interactionId":"i-2","source":"operator","type":"stop"}`)); err != nil {
		t.Fatalf("the operator's own stop signal: %v", err)
	}
	ze.expectEnd("i-2", "operator_stop")
	ze.waitEnded(s1)
	ze.waitEnded(s2)

	// The platform closes the Zoom interaction: its state is saved with its retention.
	ze.event("i-3", chat.EventClosed, "")
	ze.endsInPages("i-3", "agent-3", zs, true)
	ze.expectEnd("i-3", "interaction_closed")

	// Reporting: a durable consumer of its own on CC_COBROWSE, read and acked.
	_, rjs := connectAs(t, url, "reporting")
	rc, err := rjs.CreateOrUpdateConsumer(ctx, attach.DefaultStream, jetstream.ConsumerConfig{Durable: "reporting-1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("reporting consumer: %v", err)
	}
	batch, err := rc.Fetch(5, jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("reporting ack: %v", err)
		}
		n++
	}
	if n == 0 || batch.Error() != nil {
		t.Fatalf("reporting read %d messages: %v", n, batch.Error())
	}

	ze.stopDaemon()
	if viol.String() != "" {
		t.Fatalf("permission violations:\n%s", viol)
	}
}
