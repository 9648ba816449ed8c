package daemon

import (
	"bytes"
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

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// TestClusterCommandAndEndpoints: `cobrowse-connector cluster` and the micro endpoints show and
// change the consumer group the first replica made; the last member cannot be removed; every
// replica's service answers $SRV.INFO with its member and version.
func TestClusterCommandAndEndpoints(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cfg := configs.Default()
	cfg.NATS.URL = s.ClientURL()
	log := slog.New(slog.DiscardHandler)

	// Before any replica ran, there is no group.
	var out bytes.Buffer
	if err := ClusterCommand(ctx, cfg, ClusterStatus, nil, &out); err == nil || !strings.Contains(err.Error(), "does not exist yet") {
		t.Fatalf("status without a group: %v", err)
	}
	if _, err := chat.NewConsumer(ctx, js, chatConfig(cfg, log)); err != nil {
		t.Fatal(err)
	}

	status := func(b []byte) chat.GroupStatus {
		t.Helper()
		var st chat.GroupStatus
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("status %s: %v", b, err)
		}
		return st
	}
	out.Reset()
	if err := ClusterCommand(ctx, cfg, ClusterAdd, []string{"r2"}, &out); err != nil {
		t.Fatal(err)
	}
	st := status(out.Bytes())
	if st.Group != "cobrowse" || st.Stream != "CC_INBOUND-cobrowse" || st.Partitions != 16 || len(st.Members) != 2 ||
		st.Members[0].Name != "main" || len(st.Members[0].Partitions) != 8 || st.Members[1].Name != "r2" || len(st.Members[1].Partitions) != 8 {
		t.Fatalf("after add: %+v", st)
	}
	for _, bad := range [][]string{{"a.b"}, {}} {
		if err := ClusterCommand(ctx, cfg, ClusterAdd, bad, &out); err == nil {
			t.Errorf("add %q accepted", bad)
		}
	}
	if err := ClusterCommand(ctx, cfg, "grow", nil, &out); err == nil || !strings.Contains(err.Error(), "unknown cluster action") {
		t.Errorf("unknown action: %v", err)
	}

	svc, err := startService(nc, func(ctx context.Context) (*chat.Group, error) {
		return chat.OpenGroup(ctx, js, chatConfig(cfg, log))
	}, "main", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	req := func(subject, body string) *nats.Msg {
		t.Helper()
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return m
	}
	if m := req("cobrowse.cluster.remove", `{"members":["r2"]}`); m.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Fatalf("remove: %s %s", m.Header.Get(micro.ErrorHeader), m.Data)
	} else if st := status(m.Data); len(st.Members) != 1 || len(st.Members[0].Partitions) != 16 {
		t.Fatalf("after remove: %+v", st)
	}
	m := req("cobrowse.cluster.remove", `{"members":["main"]}`)
	if m.Header.Get(micro.ErrorCodeHeader) != "400" || !strings.Contains(m.Header.Get(micro.ErrorHeader), "without members") {
		t.Fatalf("removing the last member: %q %q", m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader))
	}
	if m := req("cobrowse.cluster.add", `not json`); m.Header.Get(micro.ErrorCodeHeader) != "400" {
		t.Fatalf("a bad body: %q", m.Header.Get(micro.ErrorCodeHeader))
	}
	if st := status(req("cobrowse.cluster.status", "").Data); len(st.Members) != 1 || st.Members[0].Name != "main" {
		t.Fatalf("status: %+v", st)
	}
	var info micro.Info
	if err := json.Unmarshal(req("$SRV.INFO."+ServiceName, "").Data, &info); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, ep := range info.Endpoints {
		subjects = append(subjects, ep.Subject)
	}
	slices.Sort(subjects)
	if info.Metadata["member"] != "main" || info.Version == "" ||
		!slices.Equal(subjects, []string{"cobrowse.cluster.add", "cobrowse.cluster.remove", "cobrowse.cluster.status", "cobrowse.cluster.step_down"}) {
		t.Fatalf("$SRV.INFO: %+v", info)
	}
}

func TestServiceVersion(t *testing.T) {
	for build, want := range map[string]string{
		"v1.2.3":              "1.2.3",
		"1.2.3-rc.1":          "1.2.3-rc.1",
		"v0.1.0-3-g90f35c1":   "0.1.0-3-g90f35c1",
		"90f35c1":             "0.0.0+90f35c1",
		"90f35c1-dirty":       "0.0.0+90f35c1-dirty",
		"devel":               "0.0.0+devel",
		"(devel)":             "0.0.0+devel",
		"v1.2.3-01":           "0.0.0+v1-2-3-01",
		"":                    "0.0.0",
		"v2.0.0+build.7.sha1": "2.0.0+build.7.sha1",
	} {
		if got := serviceVersion(build); got != want || !semver.MatchString(got) {
			t.Errorf("serviceVersion(%q) = %q, want %q", build, got, want)
		}
	}
}

// FuzzClusterRequest: any body of a cluster endpoint request is read without a panic, and what it
// gives is bounded.
func FuzzClusterRequest(f *testing.F) {
	f.Add([]byte(`{"members":["r2","r3"]}`))
	f.Add([]byte(`{"members":[]}`))
	f.Add([]byte(`{"members":"r2"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		members, err := decodeClusterRequest(ClusterAdd, b)
		if err == nil && (len(members) == 0 || len(members) > 64) {
			t.Fatalf("%d members accepted", len(members))
		}
	})
}
