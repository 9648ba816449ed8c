package cec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 5 * time.Second // bound on waiting for something that must happen

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func newCEC(t *testing.T, opts cectest.Options) *cectest.Server {
	t.Helper()
	s := cectest.New(opts)
	t.Cleanup(s.Close)
	return s
}

// clock is a settable clock for the connector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 14, 11, 15, 40, 0, time.UTC)} }

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// config is a connector's config on s. With release, ReleaseURL is s's.
func config(s *cectest.Server, release bool) Config {
	o := s.Options()
	cfg := Config{Domain: s.URL(), AppKey: o.AppKey, AppSecret: Secret(o.AppSecret), TenantSpaceID: o.TenantSpaceID}
	if release {
		cfg.ReleaseURL = s.ReleaseURL()
	}
	return cfg
}

func newConnector(t *testing.T, cfg Config) *Connector {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// trigger is a request's trigger for interaction iid and its agent.
func trigger(iid string) connector.Trigger {
	return connector.Trigger{InteractionID: iid, AgentID: "agent-" + iid}
}

func join(t *testing.T, c *Connector, tr connector.Trigger) *session {
	t.Helper()
	s, err := c.Join(ctxFor(t), tr)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	return s.(*session)
}

func wantServerError(t *testing.T, err error, kind error, op string) *connector.ServerError {
	t.Helper()
	se, ok := errors.AsType[*connector.ServerError](err)
	if !ok || !errors.Is(err, kind) || se.Op != op {
		t.Fatalf("error %v (%T), want a *connector.ServerError %q wrapping %v", err, err, op, kind)
	}
	return se
}

// gate is a RoundTripper that can hold the next request of a path until released.
type gate struct {
	rt      http.RoundTripper
	mu      sync.Mutex
	path    string
	started chan struct{}
	open    chan struct{}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	var started, open chan struct{}
	if g.open != nil && r.URL.Path == g.path {
		started, open = g.started, g.open
		g.started, g.open = nil, nil // only the next request is held
	}
	g.mu.Unlock()
	if open != nil {
		close(started)
		select {
		case <-open:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return g.rt.RoundTrip(r)
}

// hold makes the next request to path signal started and wait until open is closed.
func (g *gate) hold(path string) (started, open chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.path, g.started, g.open = path, make(chan struct{}), make(chan struct{})
	return g.started, g.open
}

func newGate(t *testing.T) *gate {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &gate{rt: tr}
}

// logBuffer is a slog JSON handler's output, safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func debugLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// readJSONBody decodes a request's JSON body into v.
func readJSONBody(r *http.Request, v any) error {
	return json.NewDecoder(r.Body).Decode(v)
}
