package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// dashboardPath is the Grafana dashboard shipped with the daemon.
var dashboardPath = filepath.Join("..", "..", "..", "deploy", "grafana", "cobrowse-connector.json")

// family is a gathered metric family: its name, HELP text and the label names of its series.
type family struct {
	name, help string
	labels     []string
}

// registered gathers the daemon's registry once every metric has its series, as the packages make
// them at start (every label value), and a vendor has a breaker: the names of the series families,
// with a histogram's _bucket, _sum and _count, and the families.
func registered(t *testing.T) (map[string]bool, []family) {
	t.Helper()
	r := &readiness{}
	b := connector.NewBreakers(connector.BreakerSettings{})
	_ = b.Do("http://gcb-node-1.example:8700/cobrowse", "join", func() error { return nil })
	r.setVendors([]vendorBreakers{{vendor: string(connector.Genesys), breakers: b}})
	m := newMetrics(r)
	for _, k := range chat.MessageKinds {
		for _, o := range chat.MessageOutcomes {
			m.chat.Messages(k, o)
		}
		m.chat.Redeliveries(k)
	}
	for _, reason := range chat.TerminateReasons {
		m.chat.Terminated(reason)
	}
	for _, v := range []connector.Vendor{connector.Genesys, connector.Zoom, connector.CEC} {
		for _, res := range controller.JoinResults {
			m.ctrl.Joins(string(v), res)
		}
		m.ctrl.JoinSeconds(string(v))
		for _, p := range controller.LivePhases {
			m.ctrl.Live(string(v), string(p))
		}
		for _, reason := range controller.EndReasons {
			m.ctrl.Ends(string(v), string(reason))
		}
	}
	for _, op := range controller.KVOps {
		m.kv(op)
	}
	for _, k := range attach.PublishKinds {
		m.publish(k)
	}
	gathered, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	var families []family
	for _, f := range gathered {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
		fam := family{name: f.GetName(), help: f.GetHelp()}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				fam.labels = append(fam.labels, l.GetName())
			}
		}
		families = append(families, fam)
	}
	return names, families
}

// queries returns every PromQL expression of the dashboard: the panels' targets and the template
// variables' queries.
func queries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

// metricName finds the metric names of an expression: the daemon's (cobrowse_), the Go runtime's
// (go_) and the process's (process_).
var metricName = regexp.MustCompile(`\b(?:cobrowse|go|process)_[a-zA-Z0-9_:]*`)

// TestDashboardUsesOnlyRegisteredMetrics: every metric the Grafana dashboard queries is one the
// daemon registers, and every metric of the daemon's own has a panel, so neither can drift from
// the other.
func TestDashboardUsesOnlyRegisteredMetrics(t *testing.T) {
	names, families := registered(t)
	used := map[string]bool{}
	for _, q := range queries(t) {
		for _, name := range metricName.FindAllString(q, -1) {
			used[name] = true
			if !names[name] {
				t.Errorf("the dashboard queries %s, which the daemon does not register (in %q)", name, q)
			}
		}
	}
	if len(used) < 10 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(used), used)
	}
	for _, f := range families {
		name := f.name
		if !strings.HasPrefix(name, "cobrowse_") {
			continue
		}
		if !used[name] && !used[name+"_bucket"] {
			t.Errorf("%s has no panel in the dashboard", name)
		}
	}
}

// TestMetricsAreDocumentedAndBounded: every metric of the daemon's own is named cobrowse_..., has
// its HELP text, and no label that would name an interaction, a session or an agent.
func TestMetricsAreDocumentedAndBounded(t *testing.T) {
	_, families := registered(t)
	own := 0
	for _, f := range families {
		name := f.name
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		own++
		if !strings.HasPrefix(name, "cobrowse_") || len(f.help) < 20 {
			t.Errorf("%s: want the cobrowse_ prefix and a HELP text, have %q", name, f.help)
		}
		for _, l := range f.labels {
			if !slices.Contains([]string{"kind", "outcome", "reason", "vendor", "result", "phase", "node", "op", "version", "goversion"}, l) {
				t.Errorf("%s has the label %s: not one of the bounded ones", name, l)
			}
		}
	}
	if own != 12 {
		t.Errorf("%d metrics of the daemon's own, want 12 (docs/observability.md lists them)", own)
	}
}
