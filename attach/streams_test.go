package attach

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

func testLogger(e *env) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// previousRelease is CC_COBROWSE as the previous release created it: the three outbound subjects
// in one stream, its description, no metadata.
func previousRelease() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DefaultStream,
		Description: "cobrowse-connector outbound: attached-data updates, co-browse lifecycle events, agent views",
		Subjects:    []string{"cc.interaction.*.attach", "cc.cobrowse.*.*", "cc.agent.*.cobrowse"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Duplicates:  24 * time.Hour,
		Discard:     jetstream.DiscardOld,
		MaxAge:      30 * 24 * time.Hour,
	}
}

func (e *env) create(t *testing.T, sc jetstream.StreamConfig) {
	t.Helper()
	if _, err := e.js.CreateStream(ctx(t), sc); err != nil {
		t.Fatal(err)
	}
}

func (e *env) config(t *testing.T, stream string) jetstream.StreamConfig {
	t.Helper()
	s, err := e.js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatalf("%s: %v", stream, err)
	}
	return s.CachedInfo().Config
}

// A stream the daemon created that holds the agent's page subject beside the reporting subjects
// (the previous release's, known by its description; or one with this release's marker) drops the
// page subject and gets the marker; the messages stored under it stay; then CC_HANDOFF is created
// and the page messages go there.
func TestPreviousReleaseStreamMigrated(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   func() jetstream.StreamConfig
	}{
		{"previous release's description, no metadata", previousRelease},
		{"marker", func() jetstream.StreamConfig {
			sc := previousRelease()
			sc.Description = "renamed by someone"
			sc.Metadata = map[string]string{MetaCreated: "1", "team": "cc-ops"}
			return sc
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			e.create(t, tc.sc())
			// What the previous release stored: an agent view and a lifecycle event.
			old := &nats.Msg{Subject: "cc.agent.agent-4711.cobrowse", Header: nats.Header{},
				Data: []byte(`{"interactionId":"0007Ka5TDDHJ003F","sessionId":"S0","url":"https://gcb.example.com/cobrowse/slave.html#nosidinput=1&sid=535176834","at":"2026-03-14T09:26:53.602Z"}`)}
			old.Header.Set(jetstream.MsgIDHeader, "0007Ka5TDDHJ003F.S0.agent.agent-4711")
			if _, err := e.js.PublishMsg(ctx(t), old); err != nil {
				t.Fatal(err)
			}
			if _, err := e.js.Publish(ctx(t), "cc.cobrowse.0007Ka5TDDHJ003F.joined", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}

			p := e.publisher(t, Config{})

			cfg := e.config(t, DefaultStream)
			if got := strings.Join(cfg.Subjects, " "); got != "cc.interaction.*.attach cc.cobrowse.*.*" {
				t.Errorf("subjects after the migration: %s", got)
			}
			if cfg.Metadata[MetaCreated] != "1" || cfg.Metadata[MetaContract] != "1" {
				t.Errorf("metadata after the migration: %v", cfg.Metadata)
			}
			want := tc.sc()
			if cfg.Description != want.Description || cfg.MaxAge != want.MaxAge || cfg.Duplicates != want.Duplicates ||
				(want.Metadata != nil && cfg.Metadata["team"] != "cc-ops") {
				t.Errorf("the migration changed more than the subjects and the marker: %+v", cfg)
			}
			if n := e.msgs(t, DefaultStream); n != 2 {
				t.Fatalf("%s holds %d messages after the migration, want 2", DefaultStream, n)
			}
			if m := e.stored(t, DefaultStream, 1); m.Subject != "cc.agent.agent-4711.cobrowse" {
				t.Errorf("the old agent view is gone: %s", m.Subject)
			}
			hcfg := e.config(t, DefaultHandoffStream)
			if got := strings.Join(hcfg.Subjects, " "); got != "cc.agent.*.cobrowse cc.customer.*.cobrowse" || hcfg.Metadata[MetaCreated] != "1" {
				t.Errorf("%s: subjects %s, metadata %v", DefaultHandoffStream, got, hcfg.Metadata)
			}
			if u, l, a := p.Streams(); u != DefaultStream || l != DefaultStream || a != DefaultHandoffStream {
				t.Errorf("streams %s %s %s", u, l, a)
			}
			if err := p.AgentView(ctx(t), okView()); err != nil {
				t.Fatal(err)
			}
			if err := p.Update(ctx(t), okUpdate()); err != nil {
				t.Fatal(err)
			}
			if h, r := e.msgs(t, DefaultHandoffStream), e.msgs(t, DefaultStream); h != 1 || r != 3 {
				t.Errorf("%s holds %d, %s holds %d; want 1 and 3", DefaultHandoffStream, h, DefaultStream, r)
			}
			if log := e.log.String(); !strings.Contains(log, "moved the page subjects out") || !strings.Contains(log, "dropped=[cc.agent.*.cobrowse]") {
				t.Errorf("log:\n%s", log)
			}

			// What the doc says to do with the old agent views: purge them by subject.
			s, err := e.js.Stream(ctx(t), DefaultStream)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Purge(ctx(t), jetstream.WithPurgeSubject("cc.agent.*.cobrowse")); err != nil {
				t.Fatal(err)
			}
			if n := e.msgs(t, DefaultStream); n != 2 {
				t.Errorf("%s holds %d messages after the purge, want 2", DefaultStream, n)
			}

			// The next start changes nothing.
			e.log = &logtest.Buffer{}
			e.publisher(t, Config{})
			if log := e.log.String(); strings.Contains(log, "moved") || strings.Contains(log, "created stream") {
				t.Errorf("second start:\n%s", log)
			}
		})
	}
}

// An operator's stream that captures the page subjects beside the reporting ones is refused with
// its name, the page subject and what to do; nothing is created or changed.
func TestOperatorStreamWithPagesRefused(t *testing.T) {
	operatorCopy := previousRelease()
	operatorCopy.Name, operatorCopy.Description = "CC_OUT", "outbound of the co-browse daemon"
	for _, tc := range []struct {
		name    string
		streams []jetstream.StreamConfig
		want    []string
	}{
		{"the previous layout, made by the operator", []jetstream.StreamConfig{operatorCopy},
			[]string{"stream CC_OUT", "not one the daemon created", "captures the page subjects cc.agent.*.cobrowse beside",
				"no longer captures cc.agent.*.cobrowse", "creates CC_HANDOFF"}},
		{"everything under the prefix", []jetstream.StreamConfig{{Name: "PLATFORM", Subjects: []string{"cc.>"}}},
			[]string{"stream PLATFORM (subjects cc.>)", "cc.agent.*.cobrowse, cc.customer.*.cobrowse beside"}},
		{"lifecycle and pages together", []jetstream.StreamConfig{
			{Name: "ATTACH", Subjects: []string{"cc.interaction.*.attach"}},
			{Name: "EVENTS", Subjects: []string{"cc.cobrowse.>", "cc.customer.*.*"}},
		}, []string{"stream EVENTS", "cc.customer.*.cobrowse beside"}},
		{"the daemon's, changed since", []jetstream.StreamConfig{{Name: DefaultStream, Subjects: []string{"cc.>"},
			Metadata: map[string]string{MetaCreated: "1"}}},
			[]string{"stream CC_COBROWSE was created by the daemon but changed since", "make CC_COBROWSE capture cc.interaction.*.attach and cc.cobrowse.*.* only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			var before []jetstream.StreamConfig
			for _, sc := range tc.streams {
				e.create(t, sc)
				before = append(before, e.config(t, sc.Name))
			}
			_, err := New(ctx(t), e.js, Config{Logger: testLogger(e)})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, sc := range before {
				if after := e.config(t, sc.Name); !slices.Equal(after.Subjects, sc.Subjects) || after.Metadata[MetaContract] != "" {
					t.Errorf("stream %s changed: %v -> %v, metadata %v", sc.Name, sc.Subjects, after.Subjects, after.Metadata)
				}
			}
			if _, err := e.js.Stream(ctx(t), DefaultHandoffStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("%s created: %v", DefaultHandoffStream, err)
			}
		})
	}
}

// A refused start changes nothing, not even a migration it could have done: here the previous
// release's stream is beside an operator's stream that captures only the customer's page subject.
func TestRefusalChangesNothing(t *testing.T) {
	e := start(t)
	e.create(t, previousRelease())
	e.create(t, jetstream.StreamConfig{Name: "CUSTOMERS", Subjects: []string{"cc.customer.*.cobrowse"}})
	_, err := New(ctx(t), e.js, Config{Logger: testLogger(e)})
	if err == nil || !strings.Contains(err.Error(), "the page subjects are only partly captured") ||
		!strings.Contains(err.Error(), "cc.agent.*.cobrowse is captured by no stream") {
		t.Fatalf("got %v", err)
	}
	if cfg := e.config(t, DefaultStream); len(cfg.Subjects) != 3 || cfg.Metadata[MetaCreated] != "" {
		t.Errorf("%s changed: %v %v", DefaultStream, cfg.Subjects, cfg.Metadata)
	}
	if _, err := e.js.Stream(ctx(t), DefaultHandoffStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("%s created: %v", DefaultHandoffStream, err)
	}
}

// Two daemons starting at once: the second finds what the first created.
func TestConcurrentStartsShareStreams(t *testing.T) {
	e := start(t)
	e.create(t, previousRelease())
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := New(ctx(t), e.js, Config{Logger: testLogger(e)})
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := strings.Join(e.config(t, DefaultStream).Subjects, " "); got != "cc.interaction.*.attach cc.cobrowse.*.*" {
		t.Errorf("subjects %s", got)
	}
	if got := strings.Join(e.config(t, DefaultHandoffStream).Subjects, " "); got != "cc.agent.*.cobrowse cc.customer.*.cobrowse" {
		t.Errorf("subjects %s", got)
	}
}
