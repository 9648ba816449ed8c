package controller

import (
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// Counter is a count that only goes up; a prometheus.Counter is one.
type Counter interface{ Inc() }

// Gauge is a value that goes up and down; a prometheus.Gauge is one.
type Gauge interface {
	Inc()
	Dec()
}

// Observer takes one observation, in seconds for a duration; a prometheus.Histogram is one.
type Observer interface{ Observe(float64) }

// Metrics are the controller's metrics, made by the caller on its own registry. Each function is
// called once per label value in New, for every enabled vendor, never on the way of a message; a
// nil function leaves its metric out.
type Metrics struct {
	// Joins is the counter of joins of vendor by result (JoinResults): joined (the Controller
	// joined, or a session the daemon created started), created (a session created for a request,
	// waiting for the customer's page), not_started (such a session never started), failed (the
	// join failed for good: a failed event), retry (the vendor was unavailable: tried again later).
	Joins func(vendor, result string) Counter
	// JoinSeconds observes, per vendor, the time from the decision to join to the joined state
	// (the join call, the wait for the join marker's save included).
	JoinSeconds func(vendor string) Observer
	// Live is the gauge of live sessions of vendor in phase (starting, joined, active, stopping)
	// that this replica holds.
	Live func(vendor, phase string) Gauge
	// Ends is the counter of sessions of vendor ended, by reason (the connector.EndReason values,
	// other for any reason outside them).
	Ends func(vendor, reason string) Counter
}

// JoinResults are the results a join is counted with.
var JoinResults = [...]string{joinedResult: "joined", createdResult: "created", notStartedResult: "not_started",
	failedResult: "failed", retryResult: "retry"}

// LivePhases are the phases the live-session gauge is kept by.
var LivePhases = [...]Phase{PhaseStarting, PhaseJoined, PhaseActive, PhaseStopping}

// EndReasons are the reasons session ends are counted with; other is any reason outside them.
var EndReasons = [...]connector.EndReason{connector.ParticipantExit, connector.InteractionTransferred,
	connector.InteractionClosed, connector.InteractionTimeout, connector.NoAgentJoin, connector.ServerLost,
	connector.JoinFailed, connector.Replaced, connector.Shutdown, connector.OperatorStop, "other"}

const (
	joinedResult = iota
	createdResult
	notStartedResult
	failedResult
	retryResult
	nJoinResults
)

// vendorMeters are one vendor's resolved metrics.
type vendorMeters struct {
	joins    [nJoinResults]Counter
	joinTime Observer
	live     [len(LivePhases)]Gauge
	ends     map[connector.EndReason]Counter // read-only after New
}

// meters are the resolved metrics of every enabled vendor; a nil *meters measures nothing. The
// map is read-only after New, so reading it needs no lock.
type meters struct {
	vendors map[connector.Vendor]*vendorMeters
}

type nothing struct{}

func (nothing) Inc()            {}
func (nothing) Dec()            {}
func (nothing) Observe(float64) {}

func newMeters(m *Metrics, vendors []connector.Vendor) *meters {
	if m == nil {
		return nil
	}
	out := &meters{vendors: make(map[connector.Vendor]*vendorMeters, len(vendors))}
	for _, v := range vendors {
		vm := &vendorMeters{joinTime: nothing{}, ends: make(map[connector.EndReason]Counter, len(EndReasons))}
		for r, name := range JoinResults {
			vm.joins[r] = nothing{}
			if m.Joins != nil {
				vm.joins[r] = m.Joins(string(v), name)
			}
		}
		if m.JoinSeconds != nil {
			vm.joinTime = m.JoinSeconds(string(v))
		}
		for p, phase := range LivePhases {
			vm.live[p] = nothing{}
			if m.Live != nil {
				vm.live[p] = m.Live(string(v), string(phase))
			}
		}
		for _, r := range EndReasons {
			vm.ends[r] = nothing{}
			if m.Ends != nil {
				vm.ends[r] = m.Ends(string(v), string(r))
			}
		}
		out.vendors[v] = vm
	}
	return out
}

func (m *meters) vendor(v connector.Vendor) *vendorMeters {
	if m == nil {
		return nil
	}
	return m.vendors[v]
}

// join counts a join of vendor v with result r.
func (m *meters) join(v connector.Vendor, r int) {
	if vm := m.vendor(v); vm != nil {
		vm.joins[r].Inc()
	}
}

// joined counts a join that reached the joined state, begun at since.
func (m *meters) joined(v connector.Vendor, since time.Time) {
	if vm := m.vendor(v); vm != nil {
		vm.joins[joinedResult].Inc()
		vm.joinTime.Observe(time.Since(since).Seconds())
	}
}

// ended counts a session of vendor v that ended for reason.
func (m *meters) ended(v connector.Vendor, reason connector.EndReason) {
	vm := m.vendor(v)
	if vm == nil {
		return
	}
	c, ok := vm.ends[reason]
	if !ok {
		c = vm.ends["other"]
	}
	c.Inc()
}

// liveGauge is the gauge a live session of vendor v in phase p counts in (its slot, compared by
// address); nil when none.
func (m *meters) liveGauge(v connector.Vendor, p Phase) *Gauge {
	vm := m.vendor(v)
	if vm == nil {
		return nil
	}
	for i, phase := range LivePhases {
		if phase == p {
			return &vm.live[i]
		}
	}
	return nil
}

// trackLive moves the actor's live session to the gauge of its vendor and phase, as its state says
// now: the actor's goroutine calls it between two steps and when it exits (gone), so that every
// session it holds counts exactly once, wherever the step changed it.
func (a *actor) trackLive(gone bool) {
	m := a.c.met
	if m == nil {
		return
	}
	var g *Gauge
	if l := a.st.Live; l != nil && !gone {
		v := l.Handle.Vendor
		if v == "" {
			v = a.vendor()
		}
		g = m.liveGauge(v, l.Phase)
	}
	if g == a.liveIn {
		return
	}
	if a.liveIn != nil {
		(*a.liveIn).Dec()
	}
	if g != nil {
		(*g).Inc()
	}
	a.liveIn = g
}
