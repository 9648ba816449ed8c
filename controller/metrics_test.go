package controller

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// meterSet is a set of counters, gauges and observers a test reads by name, e.g.
// "joins/genesys/joined", "live/genesys/active", "join_seconds/genesys" (the observation count).
type meterSet struct {
	mu sync.Mutex
	v  map[string]float64
}

type meterOf struct {
	s    *meterSet
	name string
}

func (m meterOf) add(d float64) {
	m.s.mu.Lock()
	m.s.v[m.name] += d
	m.s.mu.Unlock()
}
func (m meterOf) Inc()            { m.add(1) }
func (m meterOf) Dec()            { m.add(-1) }
func (m meterOf) Observe(float64) { m.add(1) }

func (s *meterSet) of(name string) meterOf {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		s.v = map[string]float64{}
	}
	s.v[name] += 0 // made: reads of it say 0, not absent
	return meterOf{s, name}
}

func (s *meterSet) get(name string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.v[name]
	if !ok {
		return -1
	}
	return v
}

func (s *meterSet) metrics() *Metrics {
	return &Metrics{
		Joins:       func(v, r string) Counter { return s.of("joins/" + v + "/" + r) },
		JoinSeconds: func(v string) Observer { return s.of("join_seconds/" + v) },
		Live:        func(v, p string) Gauge { return s.of("live/" + v + "/" + p) },
		Ends:        func(v, r string) Counter { return s.of("ends/" + v + "/" + r) },
	}
}

func (s *meterSet) want(t *testing.T, want map[string]float64) {
	t.Helper()
	for name, v := range want {
		if got := s.get(name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

// TestMetricsFollowTheSession: a join counts as joined with its latency observed, the session
// counts in the live gauge of its phase as it moves (joined, active), an end counts by reason and
// leaves the gauge; failed and retried joins count as such; a session left live at shutdown leaves
// the gauge when its actor goes. Every label value exists from New on.
func TestMetricsFollowTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m meterSet
		h := newHarness(t, func(c *Config) { c.Metrics = m.metrics() })
		m.want(t, map[string]float64{"joins/genesys/joined": 0, "joins/genesys/not_started": 0, "live/genesys/stopping": 0,
			"ends/genesys/operator_stop": 0, "ends/genesys/other": 0, "join_seconds/genesys": 0})

		mustFate(t, h.start_("i1", "123456789"), "ack")
		m.want(t, map[string]float64{"joins/genesys/joined": 1, "join_seconds/genesys": 1, "live/genesys/joined": 1, "live/genesys/active": 0})
		h.conn.session(0).activate(time.Now())
		synctest.Wait()
		m.want(t, map[string]float64{"live/genesys/joined": 0, "live/genesys/active": 1})
		mustFate(t, h.event("i1", chat.EventTransferred, "a2"), "ack")
		m.want(t, map[string]float64{"live/genesys/active": 0, "live/genesys/stopping": 0, "ends/genesys/interaction_transferred": 1})

		h.conn.joinErr["222222222"] = &connector.ServerError{Op: "join", Kind: connector.ErrRefused, Reason: "403::agent busy"}
		mustFate(t, h.start_("i2", "222222222"), "ack")
		h.conn.joinErr["333333333"] = &connector.ServerError{Op: "join", Kind: connector.ErrUnavailable, Reason: "503"}
		mustFate(t, h.start_("i3", "333333333"), "nak")
		m.want(t, map[string]float64{"joins/genesys/failed": 1, "joins/genesys/retry": 1, "joins/genesys/joined": 1, "join_seconds/genesys": 1})

		mustFate(t, h.start_("i4", "444444444"), "ack")
		m.want(t, map[string]float64{"live/genesys/joined": 1})
		h.stop() // the session stays live at the server for the next start: this replica holds it no more
		m.want(t, map[string]float64{"live/genesys/joined": 0, "ends/genesys/shutdown": 0})
	})
}

// TestNoMetricsMeasuresNothing: a nil Metrics (the tests' and benchmarks' default) counts nothing
// and costs nothing but nil checks.
func TestNoMetricsMeasuresNothing(t *testing.T) {
	var m *meters
	m.join(connector.Genesys, joinedResult)
	m.joined(connector.Genesys, time.Now())
	m.ended(connector.Genesys, connector.Shutdown)
	if m.liveGauge(connector.Genesys, PhaseActive) != nil {
		t.Fatal("a gauge without metrics")
	}
	if got := newMeters(&Metrics{}, []connector.Vendor{connector.CEC}); got.liveGauge(connector.Genesys, PhaseActive) != nil ||
		got.liveGauge(connector.CEC, "detected") != nil || got.liveGauge(connector.CEC, PhaseActive) == nil {
		t.Fatal("gauges for a vendor not enabled, or a phase never saved")
	}
}

// TestMetricsCountOnceSaved: a join whose outcome could not be saved is not counted then (its
// message is nak'd and may be redone); the actor's own retry saves it, and the join counts once.
func TestMetricsCountOnceSaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m meterSet
		h := newHarness(t, func(c *Config) { c.Metrics = m.metrics() })
		h.store.mu.Lock()
		h.store.skipSaves, h.store.failSaves = 1, 1 // the join's marker is saved; the outcome is not
		h.store.mu.Unlock()
		mustFate(t, h.start_("i1", "123456789"), "nak")
		m.want(t, map[string]float64{"joins/genesys/joined": 0, "join_seconds/genesys": 0})
		time.Sleep(10 * time.Second) // the actor's retry (synctest's clock)
		synctest.Wait()
		if st := h.store.get("i1"); st.Live == nil {
			t.Fatal("state not saved by the retry")
		}
		m.want(t, map[string]float64{"joins/genesys/joined": 1, "join_seconds/genesys": 1})
	})
}
