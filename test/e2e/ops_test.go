package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// internalURL is the daemon's internal listener, once it listens.
func (e *env) internalURL() string {
	e.t.Helper()
	a := e.internal.Load()
	if a == nil {
		e.t.Fatal("the daemon's internal listener is not there")
	}
	return "http://" + *a
}

// httpGet asks the daemon's internal listener for path, with an optional Accept header.
func (e *env) httpGet(path, accept string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, e.internalURL()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metrics reads /metrics: each sample's series (name and labels, as the exposition writes them,
// labels sorted by name) and its value.
func (e *env) metrics() map[string]float64 {
	e.t.Helper()
	code, body := e.httpGet("/metrics", "")
	if code != http.StatusOK {
		e.t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitMetrics reads /metrics until every series in want has its value.
func (e *env) waitMetrics(what string, want map[string]float64) map[string]float64 {
	e.t.Helper()
	var got map[string]float64
	e.waitUntil(what, func() bool {
		got = e.metrics()
		for series, v := range want {
			if have, ok := got[series]; !ok || have != v {
				return false
			}
		}
		return true
	})
	return got
}

// waitReadyz asks /readyz until it answers code.
func (e *env) waitReadyz(code int) {
	e.t.Helper()
	var last int
	var body string
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if last, body = e.httpGet("/readyz", ""); last == code {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("/readyz answers %d %q, want %d", last, body, code)
		}
		<-tick.C
	}
}

// TestOperationsEndpoints: the real daemon's internal listener through one co-browse session.
// /healthz answers 200 and /readyz 200 once the daemon consumes; /metrics counts the join (counter
// and latency histogram), follows the live session through its phases and counts its end by
// reason, with the inbound messages, the key-value and publish latencies and the Co-browse node's
// breaker; once NATS is gone /readyz answers 503 (NATS named in its report) while /healthz still
// answers 200, and 200 again once NATS is back.
func TestOperationsEndpoints(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	if code, body := e.httpGet("/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	e.waitReadyz(http.StatusOK)

	before := e.metrics()
	for _, series := range []string{
		`cobrowse_joins_total{result="joined",vendor="genesys"}`,
		`cobrowse_live_sessions{phase="active",vendor="genesys"}`,
		`cobrowse_session_ends_total{reason="interaction_closed",vendor="genesys"}`,
		`cobrowse_inbound_messages_total{kind="chat",outcome="malformed"}`,
	} {
		if v, ok := before[series]; !ok || v != 0 {
			t.Errorf("before any session: %s = %v (there: %v), want 0", series, v, ok)
		}
	}
	if before["cobrowse_ready"] != 1 {
		t.Errorf("cobrowse_ready = %v, want 1", before["cobrowse_ready"])
	}

	e.event("i-1", chat.EventAssigned, "agent-1")
	s := e.joinSession("i-1", "agent-1", 1)
	e.waitMetrics("the joined session counted", map[string]float64{
		`cobrowse_joins_total{result="joined",vendor="genesys"}`:                    1,
		`cobrowse_join_duration_seconds_count{vendor="genesys"}`:                    1,
		`cobrowse_live_sessions{phase="joined",vendor="genesys"}`:                   1,
		`cobrowse_session_ends_total{reason="interaction_closed",vendor="genesys"}`: 0,
	})
	e.activate("i-1", s, "agent-1")
	e.waitMetrics("the session active", map[string]float64{
		`cobrowse_live_sessions{phase="joined",vendor="genesys"}`: 0,
		`cobrowse_live_sessions{phase="active",vendor="genesys"}`: 1,
	})
	e.event("i-1", chat.EventClosed, "")
	e.expectEnd("i-1", "interaction_closed")
	e.waitEnded(s)
	got := e.waitMetrics("the end counted", map[string]float64{
		`cobrowse_live_sessions{phase="active",vendor="genesys"}`:                   0,
		`cobrowse_live_sessions{phase="stopping",vendor="genesys"}`:                 0,
		`cobrowse_session_ends_total{reason="interaction_closed",vendor="genesys"}`: 1,
		`cobrowse_joins_total{result="joined",vendor="genesys"}`:                    1,
		`cobrowse_joins_total{result="failed",vendor="genesys"}`:                    0,
		// assigned, activity-free start and closed: three handled, none retried
		`cobrowse_inbound_messages_total{kind="chat",outcome="acked"}`:  1,
		`cobrowse_inbound_messages_total{kind="event",outcome="acked"}`: 2,
		`cobrowse_inbound_redeliveries_total{kind="event"}`:             0,
	})
	if b := got[`cobrowse_join_duration_seconds_bucket{vendor="genesys",le="+Inf"}`]; b != 1 {
		t.Errorf("join latency +Inf bucket = %v, want 1", b)
	}
	if sum := got[`cobrowse_join_duration_seconds_sum{vendor="genesys"}`]; sum <= 0 || sum > wait.Seconds() {
		t.Errorf("join latency sum %vs", sum)
	}
	for _, series := range []string{`cobrowse_kv_duration_seconds_count{op="create"}`, `cobrowse_kv_duration_seconds_count{op="update"}`,
		`cobrowse_kv_duration_seconds_count{op="get"}`, `cobrowse_publish_duration_seconds_count{kind="batch"}`} {
		if got[series] < 1 {
			t.Errorf("%s = %v, want at least 1", series, got[series])
		}
	}
	breakers := 0
	for series, v := range got {
		if strings.HasPrefix(series, `cobrowse_breaker_state{node="`) && strings.HasSuffix(series, `",vendor="genesys"}`) {
			breakers++
			if v != 0 {
				t.Errorf("%s = %v, want 0 (closed)", series, v)
			}
		}
	}
	if breakers == 0 {
		t.Error("no breaker state for the Co-browse node the session was on")
	}
	for series := range got {
		if strings.Contains(series, "i-1") || strings.Contains(series, s.Token()) || strings.Contains(series, s.HistoryID()) {
			t.Errorf("a series names the interaction or the session: %s", series)
		}
	}

	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	e.waitReadyz(http.StatusServiceUnavailable)
	code, body := e.httpGet("/readyz?verbose", "application/json")
	var rep struct {
		Ready  bool `json:"ready"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
		Vendors []struct {
			Vendor string `json:"vendor"`
		} `json:"vendors"`
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz json %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || rep.Ready || len(rep.Checks) < 2 || rep.Checks[0].Name != "nats" || rep.Checks[0].OK ||
		len(rep.Vendors) != 1 || rep.Vendors[0].Vendor != "genesys" {
		t.Fatalf("with NATS gone: %d %s", code, body)
	}
	if code, _ := e.httpGet("/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz with NATS gone: %d", code)
	}
	if v := e.metrics()["cobrowse_ready"]; v != 0 {
		t.Fatalf("cobrowse_ready with NATS gone = %v", v)
	}
	e.ns = e.ns.Restart(t)
	e.waitReadyz(http.StatusOK)
}
