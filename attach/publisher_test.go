package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

type env struct {
	srv *natstest.Server
	js  jetstream.JetStream
	log *logtest.Buffer
}

func start(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: s, js: js, log: &logtest.Buffer{}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func (e *env) publisher(t *testing.T, cfg Config) *Publisher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := New(ctx(t), e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) msgs(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) stored(t *testing.T, stream string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := e.js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func publish(ctx context.Context, p *Publisher, m any) error {
	switch m := m.(type) {
	case Update:
		return p.Update(ctx, m)
	case Lifecycle:
		return p.Lifecycle(ctx, m)
	case Handoff:
		return p.Handoff(ctx, m)
	case AgentView:
		return p.AgentView(ctx, m)
	}
	panic(fmt.Sprintf("unknown message %T", m))
}

// Every message type lands on its subject with its msg id and the golden bytes; publishing
// everything a second time succeeds and stores nothing more.
func TestPublishStoresOnceWithSubjectAndMsgID(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	const r, h = DefaultStream, DefaultHandoffStream
	want := map[string]struct{ stream, subject, msgID string }{
		"attach-joined":               {r, "cc.interaction.0007Ka5TDDHJ003F.attach", "0007Ka5TDDHJ003F.attach.1"},
		"attach-activated":            {r, "cc.interaction.0007Ka5TDDHJ003F.attach", "0007Ka5TDDHJ003F.attach.2"},
		"attach-ended":                {r, "cc.interaction.0007Ka5TDDHJ003F.attach", "0007Ka5TDDHJ003F.attach.3"},
		"lifecycle-joined":            {r, "cc.cobrowse.0007Ka5TDDHJ003F.joined", "0007Ka5TDDHJ003F.9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90.joined"},
		"lifecycle-activated":         {r, "cc.cobrowse.0007Ka5TDDHJ003F.activated", "0007Ka5TDDHJ003F.9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90.activated"},
		"lifecycle-deactivated":       {r, "cc.cobrowse.0007Ka5TDDHJ003F.deactivated", "0007Ka5TDDHJ003F.9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90.deactivated"},
		"lifecycle-failed":            {r, "cc.cobrowse.0007Ka5TDDHJ003F.failed", "0007Ka5TDDHJ003F.failed.c:chat-m-000118"},
		"lifecycle-failed-processing": {r, "cc.cobrowse.0007Ka5TDDHJ003F.failed", "0007Ka5TDDHJ003F.failed.e:ev-000044"},
		"handoff-agent-view":          {h, "cc.agent.agent-4711.cobrowse", "0007Ka5TDDHJ003F.9c0f4f1e-5b7a-4d43-8f5e-2a6c1d3b7e90.view.agent:agent-4711"},
		"handoff-customer-start":      {h, "cc.customer.0007Ka5TDDHJ0051.cobrowse", "0007Ka5TDDHJ0051.pending-1.start.customer"},
		"handoff-agent-view-zoom":     {h, "cc.agent.agent-5120.cobrowse", "0007Ka5TDDHJ0051.Yx3mQ8vR2kT6wP0nL5sJ7A.view.agent:agent-5120"},
		"handoff-cec":                 {h, "cc.agent.agent-4711.cobrowse", "0007Ka5TDDHJ0077.0007Ka5TDDHJ0077-mx4lkp0v0nbg.view.agent:agent-4711"},
		"handoff-end":                 {h, "cc.customer.0007Ka5TDDHJ0051.cobrowse", "0007Ka5TDDHJ0051.Yx3mQ8vR2kT6wP0nL5sJ7A.end.customer"},
	}
	count := map[string]uint64{}
	for _, ex := range examples {
		if err := publish(ctx(t), p, ex.msg); err != nil {
			t.Fatalf("%s: %v", ex.name, err)
		}
		count[want[ex.name].stream]++
	}
	for stream, n := range count {
		if got := e.msgs(t, stream); got != n {
			t.Fatalf("%s holds %d messages, want %d", stream, got, n)
		}
	}
	seq := map[string]uint64{}
	for _, ex := range examples {
		w := want[ex.name]
		seq[w.stream]++
		m := e.stored(t, w.stream, seq[w.stream])
		if m.Subject != w.subject {
			t.Errorf("%s: subject %s, want %s", ex.name, m.Subject, w.subject)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != w.msgID {
			t.Errorf("%s: msg id %s, want %s", ex.name, id, w.msgID)
		}
		if string(m.Data) != ex.want {
			t.Errorf("%s: stored\n %s\nwant %s", ex.name, m.Data, ex.want)
		}
	}

	// The same messages again, as after a redelivery or a restart: success, nothing stored.
	// The values may differ (a later "at"): the id alone decides.
	for _, ex := range examples {
		m := ex.msg
		switch x := m.(type) {
		case Update:
			x.At = time.Now()
			m = x
		case Lifecycle:
			x.At = time.Now()
			m = x
		case Handoff:
			x.At = time.Now()
			m = x
		}
		if err := publish(ctx(t), p, m); err != nil {
			t.Fatalf("%s again: %v", ex.name, err)
		}
	}
	for stream, n := range count {
		if got := e.msgs(t, stream); got != n {
			t.Fatalf("after publishing everything twice %s holds %d messages, want %d", stream, got, n)
		}
	}
	if !strings.Contains(e.log.String(), "publish deduplicated") {
		t.Errorf("duplicates not logged at debug:\n%s", e.log)
	}
	for _, secret := range secrets {
		if strings.Contains(e.log.String(), secret) {
			t.Errorf("%s in the log:\n%s", secret, e.log)
		}
	}
}

// Two publishers (a restarted daemon) share the dedupe of the stream.
func TestDedupeAcrossPublishers(t *testing.T) {
	e := start(t)
	p1 := e.publisher(t, Config{})
	u := okUpdate()
	if err := p1.Update(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	p2 := e.publisher(t, Config{})
	if err := p2.Update(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	l := okLifecycle(Joined)
	if err := p1.Lifecycle(ctx(t), l); err != nil {
		t.Fatal(err)
	}
	if err := p2.Lifecycle(ctx(t), l); err != nil {
		t.Fatal(err)
	}
	if n := e.msgs(t, DefaultStream); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	// A new seq is a new message.
	u.Seq = 2
	if err := p2.Update(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	if n := e.msgs(t, DefaultStream); n != 3 {
		t.Fatalf("stream holds %d messages, want 3", n)
	}
}

func TestLifecycleTokenMaskedWhateverTheCallerPasses(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	for i, tok := range []string{"535176834", "******834"} {
		l := okLifecycle(Joined)
		l.SessionID = fmt.Sprintf("S%d", i)
		l.SessionToken = tok
		if err := p.Lifecycle(ctx(t), l); err != nil {
			t.Fatal(err)
		}
		m := e.stored(t, DefaultStream, uint64(i+1))
		if !bytes.Contains(m.Data, []byte(`"sessionToken":"******834"`)) {
			t.Errorf("stored %s, want the token masked to ******834", m.Data)
		}
	}
	if n := e.msgs(t, DefaultStream); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	if strings.Contains(e.log.String(), "535176834") {
		t.Errorf("full token in the log:\n%s", e.log)
	}
}

// A zero "at" is stamped with the publisher's clock.
func TestZeroAtStamped(t *testing.T) {
	e := start(t)
	now := time.Date(2026, 3, 14, 9, 0, 0, 123_456_789, time.UTC)
	p := e.publisher(t, Config{Now: func() time.Time { return now }})
	if err := p.AgentView(ctx(t), okView()); err != nil {
		t.Fatal(err)
	}
	if m := e.stored(t, DefaultHandoffStream, 1); !bytes.Contains(m.Data, []byte(`"at":"2026-03-14T09:00:00.123Z"`)) {
		t.Fatalf("stored %s", m.Data)
	}
}

// A fresh server: the reporting stream (updates, lifecycle events) and the page stream (page
// messages), each with the daemon's marker, its age and its duplicate window.
func TestFreshServerStreams(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{MaxAge: 30 * 24 * time.Hour})
	for _, tc := range []struct {
		stream, subjects, description string
		maxAge, duplicates            time.Duration
	}{
		{DefaultStream, "cc.interaction.*.attach cc.cobrowse.*.*", reportingDescription, 30 * 24 * time.Hour, DefaultDuplicateWindow},
		{DefaultHandoffStream, "cc.agent.*.cobrowse cc.customer.*.cobrowse", handoffDescription, 15 * time.Minute, 15 * time.Minute},
	} {
		s, err := e.js.Stream(ctx(t), tc.stream)
		if err != nil {
			t.Fatalf("%s: %v", tc.stream, err)
		}
		cfg := s.CachedInfo().Config
		if got := strings.Join(cfg.Subjects, " "); got != tc.subjects {
			t.Errorf("%s: subjects %s, want %s", tc.stream, got, tc.subjects)
		}
		if cfg.MaxAge != tc.maxAge || cfg.Duplicates != tc.duplicates {
			t.Errorf("%s: max age %s, duplicates %s; want %s, %s", tc.stream, cfg.MaxAge, cfg.Duplicates, tc.maxAge, tc.duplicates)
		}
		if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.Discard != jetstream.DiscardOld || cfg.Replicas != 1 {
			t.Errorf("%s: config %+v", tc.stream, cfg)
		}
		if cfg.Metadata[MetaCreated] != "1" || cfg.Metadata[MetaContract] != "1" || cfg.Description != tc.description {
			t.Errorf("%s: metadata %v, description %q", tc.stream, cfg.Metadata, cfg.Description)
		}
	}
	if u, l, a := p.Streams(); u != DefaultStream || l != DefaultStream || a != DefaultHandoffStream {
		t.Errorf("streams %s %s %s", u, l, a)
	}
	if a, c := p.HandoffStreams(); a != DefaultHandoffStream || c != DefaultHandoffStream {
		t.Errorf("page streams %s %s", a, c)
	}
	log := e.log.String()
	if strings.Count(log, "created stream") != 2 || !strings.Contains(log, "component=attach") {
		t.Errorf("log:\n%s", log)
	}
}

func TestStreamCreatedWhenMissing(t *testing.T) {
	e := start(t)
	cfg := Config{Prefix: "acme.cc", Stream: "ACME_COBROWSE", HandoffStream: "ACME_HANDOFF", HandoffMaxAge: time.Hour,
		HandoffDuplicateWindow: 10 * time.Minute}
	p := e.publisher(t, cfg)
	s, err := e.js.Stream(ctx(t), "ACME_COBROWSE")
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if got := strings.Join(sc.Subjects, " "); got != "acme.cc.interaction.*.attach acme.cc.cobrowse.*.*" {
		t.Errorf("subjects %s", got)
	}
	if sc.Duplicates != DefaultDuplicateWindow || sc.MaxAge != 0 {
		t.Errorf("config %+v", sc)
	}
	if s, err = e.js.Stream(ctx(t), "ACME_HANDOFF"); err != nil {
		t.Fatal(err)
	}
	sc = s.CachedInfo().Config
	if got := strings.Join(sc.Subjects, " "); got != "acme.cc.agent.*.cobrowse acme.cc.customer.*.cobrowse" {
		t.Errorf("subjects %s", got)
	}
	if sc.MaxAge != time.Hour || sc.Duplicates != 10*time.Minute {
		t.Errorf("config %+v", sc)
	}
	if err := p.AgentView(ctx(t), okView()); err != nil {
		t.Fatal(err)
	}
	if m := e.stored(t, "ACME_HANDOFF", 1); m.Subject != "acme.cc.agent.A1.cobrowse" {
		t.Errorf("subject %s", m.Subject)
	}
	// The next start finds the streams by their subjects and uses them.
	e.publisher(t, cfg)
	if log := e.log.String(); !strings.Contains(log, `msg="using existing streams" component=attach subject_set=reporting`) ||
		!strings.Contains(log, `msg="using existing streams" component=attach subject_set=page`) {
		t.Errorf("log:\n%s", log)
	}
}

// An existing stream capturing the subjects is used as it is: no stream of our own, its settings
// untouched, the messages stored there.
func TestExistingStreamReused(t *testing.T) {
	e := start(t)
	platform := jetstream.StreamConfig{Name: "PLATFORM", Subjects: []string{"cc.interaction.>", "cc.cobrowse.>"}, Storage: jetstream.MemoryStorage,
		Duplicates: time.Minute}
	if _, err := e.js.CreateStream(ctx(t), platform); err != nil {
		t.Fatal(err)
	}
	p := e.publisher(t, Config{})
	if u, l, a := p.Streams(); u != "PLATFORM" || l != "PLATFORM" || a != DefaultHandoffStream {
		t.Fatalf("streams %s %s %s", u, l, a)
	}
	if _, err := e.js.Stream(ctx(t), DefaultStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("%s created beside an existing stream: %v", DefaultStream, err)
	}
	if err := p.Update(ctx(t), okUpdate()); err != nil {
		t.Fatal(err)
	}
	if n := e.msgs(t, "PLATFORM"); n != 1 {
		t.Fatalf("PLATFORM holds %d messages", n)
	}
	s, _ := e.js.Stream(ctx(t), "PLATFORM")
	if d := s.CachedInfo().Config.Duplicates; d != time.Minute {
		t.Errorf("existing stream changed: duplicates %s", d)
	}
	log := e.log.String()
	if !strings.Contains(log, "using existing streams") || !strings.Contains(log, `streams="[PLATFORM PLATFORM]"`) ||
		strings.Count(log, "shorter window") != 1 {
		t.Errorf("log:\n%s", log)
	}
}

// Each kind of message goes to the stream that captures it.
func TestExistingStreamsPerSubject(t *testing.T) {
	e := start(t)
	for _, sc := range []jetstream.StreamConfig{
		{Name: "ATTACH", Subjects: []string{"cc.interaction.*.attach"}},
		{Name: "EVENTS", Subjects: []string{"cc.cobrowse.>"}},
		// The operator's own page stream, for the agents' pages only, kept an hour.
		{Name: "DESKTOPS", Subjects: []string{"cc.agent.*.*"}, MaxAge: time.Hour},
		{Name: "PAGES", Subjects: []string{"cc.customer.>"}, MaxAge: 10 * time.Minute, Duplicates: 10 * time.Minute},
	} {
		if _, err := e.js.CreateStream(ctx(t), sc); err != nil {
			t.Fatal(err)
		}
	}
	p := e.publisher(t, Config{})
	if u, l, a := p.Streams(); u != "ATTACH" || l != "EVENTS" || a != "DESKTOPS" {
		t.Fatalf("streams %s %s %s", u, l, a)
	}
	if a, c := p.HandoffStreams(); a != "DESKTOPS" || c != "PAGES" {
		t.Fatalf("page streams %s %s", a, c)
	}
	for _, m := range []any{okUpdate(), okLifecycle(Joined), okView()} {
		if err := publish(ctx(t), p, m); err != nil {
			t.Fatal(err)
		}
	}
	if a, ev, d := e.msgs(t, "ATTACH"), e.msgs(t, "EVENTS"), e.msgs(t, "DESKTOPS"); a != 1 || ev != 1 || d != 1 {
		t.Fatalf("ATTACH %d, EVENTS %d, DESKTOPS %d", a, ev, d)
	}
	for _, name := range []string{DefaultStream, DefaultHandoffStream} {
		if _, err := e.js.Stream(ctx(t), name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s created beside existing streams: %v", name, err)
		}
	}
	// Kept longer than configured, an operator's choice: said, and used all the same.
	if log := e.log.String(); !strings.Contains(log, "longer than configured") || !strings.Contains(log, "stream=DESKTOPS") ||
		strings.Contains(log, "stream=PAGES max_age") {
		t.Errorf("log:\n%s", log)
	}
}

// Streams that capture some outbound subjects but not all, or overlap them without capturing
// them, are a configuration error: nothing is created.
func TestPartlyCapturedRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		subjects []string
		want     string
	}{
		{"one of three", []string{"cc.interaction.*.attach"}, "cc.cobrowse.*.* is captured by no stream"},
		{"overlap only", []string{"cc.agent.agent-1.cobrowse"}, "overlaps cc.agent.*.cobrowse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t)
			if _, err := e.js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "OTHER", Subjects: tc.subjects}); err != nil {
				t.Fatal(err)
			}
			_, err := New(ctx(t), e.js, Config{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, err := e.js.Stream(ctx(t), DefaultStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Fatalf("%s created: %v", DefaultStream, err)
			}
		})
	}
}

// A stream named like ours that captures other subjects is not silently taken over.
func TestStreamNameTakenRefused(t *testing.T) {
	e := start(t)
	if _, err := e.js.CreateStream(ctx(t), jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	_, err := New(ctx(t), e.js, Config{})
	if err == nil || !strings.Contains(err.Error(), "captures other subjects") {
		t.Fatalf("got %v", err)
	}
}

func TestConfigRefused(t *testing.T) {
	e := start(t)
	for _, cfg := range []Config{
		{Prefix: "cc."}, {Prefix: "c*"}, {Prefix: "a b"}, {Prefix: ">"},
		{Stream: "CC.COBROWSE"}, {Replicas: -1}, {DuplicateWindow: -time.Second}, {PublishTimeout: -time.Second},
		{MaxAge: -time.Second}, {HandoffStream: "CC HANDOFF"}, {HandoffStream: DefaultStream}, {Stream: "X", HandoffStream: "X"},
		{HandoffMaxAge: -time.Second}, {HandoffDuplicateWindow: -time.Second},
		{HandoffDuplicateWindow: 16 * time.Minute}, {HandoffMaxAge: time.Minute, HandoffDuplicateWindow: 2 * time.Minute},
	} {
		if _, err := New(ctx(t), e.js, cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := New(ctx(t), nil, Config{}); err == nil {
		t.Error("nil JetStream accepted")
	}
}

func TestValidationPublishesNothing(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	for _, tc := range invalidMessages() {
		if err := publish(ctx(t), p, tc.msg); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.name, err)
		}
	}
	if n := e.msgs(t, DefaultStream); n != 0 {
		t.Fatalf("stream holds %d messages after refusals", n)
	}
}

func TestTransientWhenServerDown(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{PublishTimeout: 300 * time.Millisecond})
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	err := p.Update(ctx(t), okUpdate())
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("got %v, want ErrTransient", err)
	}
	pe, ok := errors.AsType[*PublishError](err)
	if !ok || pe.Subject != "cc.interaction.I1.attach" || pe.MsgID != "I1.attach.1" || !pe.Transient {
		t.Fatalf("error %#v", err)
	}
	if !strings.Contains(err.Error(), "cc.interaction.I1.attach") || !strings.Contains(err.Error(), "I1.attach.1") {
		t.Errorf("error text lacks subject or msg id: %v", err)
	}
}

// No stream captures the subject any more (deleted after the start): no responders, transient.
func TestTransientWhenNoStream(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	if err := e.js.DeleteStream(ctx(t), DefaultStream); err != nil {
		t.Fatal(err)
	}
	err := p.Lifecycle(ctx(t), okLifecycle(Joined))
	if !errors.Is(err, ErrTransient) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("got %v, want ErrTransient wrapping no responders", err)
	}
}

// A cancelled caller context: the message may not be stored; nothing is wrong with it.
func TestTransientWhenCancelled(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	c, cancel := context.WithCancel(t.Context())
	cancel()
	err := p.AgentView(c, okView())
	if !errors.Is(err, ErrTransient) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// A message the stream refuses is not transient: sending it again would fail again.
func TestRejectedIsNotTransient(t *testing.T) {
	t.Run("too large for the stream", func(t *testing.T) {
		e := start(t)
		if _, err := e.js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "TINY", Subjects: []string{"cc.interaction.>", "cc.cobrowse.>"}, MaxMsgSize: 64}); err != nil {
			t.Fatal(err)
		}
		p := e.publisher(t, Config{})
		err := p.Update(ctx(t), okUpdate())
		if err == nil || errors.Is(err, ErrTransient) {
			t.Fatalf("got %v, want a rejection", err)
		}
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); !ok || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
			t.Errorf("%v does not wrap the stream's refusal", err)
		}
		if !strings.Contains(err.Error(), "cc.interaction.I1.attach") || !strings.Contains(err.Error(), "I1.attach.1") {
			t.Errorf("error text lacks subject or msg id: %v", err)
		}
	})
	t.Run("wrong stream", func(t *testing.T) {
		// The stream checked at start is replaced by another one capturing the subjects: the
		// message is refused rather than stored where the dedupe window is unknown.
		e := start(t)
		p := e.publisher(t, Config{})
		if err := e.js.DeleteStream(ctx(t), DefaultStream); err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.CreateStream(ctx(t), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"cc.interaction.>", "cc.cobrowse.>"}}); err != nil {
			t.Fatal(err)
		}
		err := p.Update(ctx(t), okUpdate())
		if err == nil || errors.Is(err, ErrTransient) {
			t.Fatalf("got %v, want a rejection", err)
		}
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); !ok || apiErr.ErrorCode != 10060 { // JSStreamMismatchErr: expected stream does not match
			t.Errorf("%v: want the stream mismatch refusal", err)
		}
		if n := e.msgs(t, "OTHER"); n != 0 {
			t.Fatalf("OTHER holds %d messages", n)
		}
	})
}

func TestTransientClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", context.Canceled), true},
		{jetstream.ErrNoStreamResponse, true},
		{jetstream.ErrTooManyStalledMsgs, true}, // a burst of publishes beyond the PubAcks the client lets wait
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream cluster not available"}), true},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: 10060, Description: "expected stream does not match"}), false},
		{jetstream.ErrInvalidJSAck, false},
		{errors.New("something else"), false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Many goroutines publishing at once (the controller runs one actor per interaction).
func TestConcurrentPublishes(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			iid := fmt.Sprintf("I%d", i)
			for seq := uint64(1); seq <= 3; seq++ {
				u := okUpdate()
				u.InteractionID, u.Seq = iid, seq
				errs <- p.Update(ctx(t), u)
			}
			l := okLifecycle(Joined)
			l.InteractionID = iid
			errs <- p.Lifecycle(ctx(t), l)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.msgs(t, DefaultStream); n != 16*4 {
		t.Fatalf("stream holds %d messages, want %d", n, 16*4)
	}
}

// A batch larger than the PubAcks the client lets wait (jetstream.WithPublishAsyncMaxPending)
// waits for room (up to the publish time-out) and is stored whole.
func TestBatchWaitsForRoomAmongPendingAcks(t *testing.T) {
	e := start(t)
	e.publisher(t, Config{}) // makes the streams
	js, err := jetstream.New(e.js.Conn(), jetstream.WithPublishAsyncMaxPending(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx(t), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var batches [4]*Batch
	var wg sync.WaitGroup
	for k := range batches {
		batches[k] = p.Batch()
		wg.Go(func() {
			for i := range n {
				u := okUpdate()
				u.InteractionID = fmt.Sprintf("I-%d", k)
				u.Seq = uint64(i + 1)
				if err := batches[k].Update(ctx(t), u); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for k, b := range batches {
		if got, err := b.Wait(ctx(t)); got != n || err != nil {
			t.Fatalf("batch %d: Wait = %d, %v; want %d, nil", k, got, err, n)
		}
	}
	if m := e.msgs(t, DefaultStream); m != 4*n {
		t.Fatalf("stream holds %d, want %d", m, 4*n)
	}
}

// TestBatchStoresInOrderAndStopsAtTheFirstRefusal: a Batch stores every example in order with the
// same subjects, ids and bytes as one publish each; an invalid message stops it there: Wait says
// how many went before it, and nothing after it is sent.
func TestBatchStoresInOrderAndStopsAtTheFirstRefusal(t *testing.T) {
	e := start(t)
	p := e.publisher(t, Config{})
	b := p.Batch()
	n := 0
	for _, ex := range examples {
		if _, ok := ex.msg.(Update); !ok {
			continue
		}
		if err := b.Update(ctx(t), ex.msg.(Update)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	got, err := b.Wait(ctx(t))
	if err != nil || got != n || n == 0 {
		t.Fatalf("Wait = %d, %v; want %d, nil", got, err, n)
	}
	if m := e.msgs(t, DefaultStream); m != uint64(n) {
		t.Fatalf("stream holds %d, want %d", m, n)
	}
	i := 0
	for _, ex := range examples {
		if _, ok := ex.msg.(Update); !ok {
			continue
		}
		i++
		if m := e.stored(t, DefaultStream, uint64(i)); string(m.Data) != ex.want {
			t.Fatalf("message %d stored as\n %s\nwant %s", i, m.Data, ex.want)
		}
	}

	b = p.Batch()
	var valid Update
	for _, ex := range examples {
		if u, ok := ex.msg.(Update); ok {
			valid = u
		}
	}
	valid.Seq += 100 // a new message id
	_ = b.Update(ctx(t), valid)
	_ = b.Update(ctx(t), Update{}) // invalid
	valid.Seq++
	_ = b.Update(ctx(t), valid)
	got, err = b.Wait(ctx(t))
	if got != 1 || !errors.Is(err, ErrInvalid) {
		t.Fatalf("Wait = %d, %v; want 1, ErrInvalid", got, err)
	}
	if m := e.msgs(t, DefaultStream); m != uint64(n)+1 {
		t.Fatalf("stream holds %d, want %d: nothing after the refused message", m, n+1)
	}
}

// observations counts the observations of each kind, and their sum.
type observations struct {
	mu  sync.Mutex
	n   map[string]int
	sum map[string]float64
}

type observerOf struct {
	o    *observations
	kind string
}

func (o observerOf) Observe(v float64) {
	o.o.mu.Lock()
	defer o.o.mu.Unlock()
	o.o.n[o.kind]++
	o.o.sum[o.kind] += v
}

// TestPublishLatencyObserved: each single publish and each batch is observed once, under its kind,
// also when it fails; a batch that sent nothing is not.
func TestPublishLatencyObserved(t *testing.T) {
	e := start(t)
	o := &observations{n: map[string]int{}, sum: map[string]float64{}}
	var kinds []string
	p := e.publisher(t, Config{PublishTimeout: 500 * time.Millisecond, PublishLatency: func(kind string) Observer {
		kinds = append(kinds, kind)
		return observerOf{o, kind}
	}})
	if fmt.Sprint(kinds) != "[single batch]" {
		t.Fatalf("made for %v", kinds)
	}
	var u Update
	for _, ex := range examples {
		if m, ok := ex.msg.(Update); ok {
			u = m
		}
	}
	if err := p.Update(ctx(t), u); err != nil {
		t.Fatal(err)
	}
	b := p.Batch()
	u.Seq++
	_ = b.Update(ctx(t), u)
	u.Seq++
	_ = b.Update(ctx(t), u)
	if n, err := b.Wait(ctx(t)); n != 2 || err != nil {
		t.Fatalf("Wait = %d, %v", n, err)
	}
	if _, err := p.Batch().Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.srv.Shutdown()
	u.Seq++
	if err := p.Update(ctx(t), u); err == nil {
		t.Fatal("published with the server down")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n["single"] != 2 || o.n["batch"] != 1 || o.sum["single"] <= 0 || o.sum["batch"] <= 0 {
		t.Fatalf("observed %v (sums %v), want 2 single and 1 batch", o.n, o.sum)
	}
}
