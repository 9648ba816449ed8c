package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// stats summarizes durations, in milliseconds.
type stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// summarize takes the nearest-rank percentiles of ds.
func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return stats{N: len(s), P50: millis(rank(50)), P90: millis(rank(90)), P99: millis(rank(99)), Max: millis(s[len(s)-1])}
}

// millis is d in milliseconds, to the microsecond: how the report gives every latency.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// report is everything one run measured; it is printed as lines, then as one JSON line.
type report struct {
	Version   int                `json:"v"`
	Started   string             `json:"started"`
	Machine   machine            `json:"machine"`
	Ingestion *ingestResult      `json:"ingestion,omitempty"`
	Join      *latencyResult     `json:"join,omitempty"`
	Live      []*liveResult      `json:"live,omitempty"` // one per transport, in the order measured
	Goals     map[string]goal    `json:"goals"`
	WallS     map[string]float64 `json:"wall_s"`
	OK        bool               `json:"ok"`
	Error     string             `json:"error,omitempty"`

	goals []goal // in the order printed
}

type machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg,omitempty"` // /proc/loadavg at the start: how noisy the box was
}

// goal is one goal of the performance issue, judged on this run's figures.
type goal struct {
	Value float64 `json:"value"`
	Goal  string  `json:"goal"` // the bound the value is judged against, e.g. "<= 1.5"
	Met   bool    `json:"met"`
	Note  string  `json:"note,omitempty"` // e.g. judged at N=10000, measured at a smaller N

	key    string
	label  string // what the goal says
	shown  string // the value as printed, with its unit
	anchor string // the anchor it is judged against, or the figures behind a ratio
}

// goalN is the live session count the memory and CPU goals are set at.
const goalN = 10000

// judge works out every goal the run measured, in the order printed.
func (r *report) judge(js bool) {
	r.Goals = map[string]goal{}
	r.goals = nil
	add := func(g goal, value float64, le bool, bound float64, measured bool) {
		g.Value = value
		if le {
			g.Goal, g.Met = "<= "+trimFloat(bound), value <= bound
		} else {
			g.Goal, g.Met = ">= "+trimFloat(bound), value >= bound
		}
		if !measured {
			g.Met = false
		}
		r.Goals[g.key] = g
		r.goals = append(r.goals, g)
	}
	if in := r.Ingestion; in != nil {
		add(goal{key: "ingest_ratio_same_stream", label: "ingestion, 1 replica: >= 0.8x the bare consumer on the same stream (work queue)",
			shown:  fmt.Sprintf("%.3fx", in.Ratio),
			anchor: fmt.Sprintf("daemon %.0f msgs/s, same-stream anchor %.0f msgs/s (CC_INBOUND anchor %.0f, %.3fx)", in.Daemon.Rate, in.Anchor.Rate, in.Inbound.Rate, in.RatioInbound),
		}, in.Ratio, false, 0.8, true)
	}
	if j := r.Join; j != nil {
		add(goal{key: "join_p50_ratio_floor", label: "join p50 <= 1.5x the protocol floor's p50 (" + j.Transport + ")",
			shown: fmt.Sprintf("%.2fx", j.RatioP50), anchor: fmt.Sprintf("daemon %.2f ms, floor %.2f ms", j.Daemon.P50, j.Anchor.P50)}, j.RatioP50, true, 1.5, true)
		add(goal{key: "join_p99_ratio_floor", label: "join p99 <= 2x the protocol floor's p99 (" + j.Transport + ")",
			shown: fmt.Sprintf("%.2fx", j.RatioP99), anchor: fmt.Sprintf("daemon %.2f ms, floor %.2f ms", j.Daemon.P99, j.Anchor.P99)}, j.RatioP99, true, 2, true)
		g := goal{key: "join_p50_ratio_js", label: "stretch: join p50 <= 0.5x the JavaScript client's p50 (" + j.Transport + ")"}
		if j.JS != nil {
			g.shown, g.anchor = fmt.Sprintf("%.2fx", j.JSRatioP50), fmt.Sprintf("daemon %.2f ms, JS client %.2f ms", j.Daemon.P50, j.JS.P50)
		} else {
			g.shown, g.anchor, g.Note = "-", "no JS anchor", "not measured: -js=false"
		}
		add(g, j.JSRatioP50, true, 0.5, j.JS != nil)
		add(goal{key: "close_p99_ms_one", label: "close p99 <= 20 ms, one at a time",
			shown: fmt.Sprintf("%.2f ms", j.Close.P99), anchor: fmt.Sprintf("p50 %.2f ms, max %.2f ms over %d", j.Close.P50, j.Close.Max, j.Close.N)}, j.Close.P99, true, 20, true)
		g = goal{key: "close_p99_ms_in_flight", label: fmt.Sprintf("close p99 <= 20 ms, %d in flight", j.InFlight)}
		if j.CloseBatch.N > 0 {
			g.shown, g.anchor = fmt.Sprintf("%.2f ms", j.CloseBatch.P99), fmt.Sprintf("p50 %.2f ms, max %.2f ms over %d; bare client's stops in flight p99 %.2f ms", j.CloseBatch.P50, j.CloseBatch.Max, j.CloseBatch.N, j.BareBatch.P99)
		} else {
			g.shown, g.anchor, g.Note = "-", "", "not measured: -close-batches 0"
		}
		add(g, j.CloseBatch.P99, true, 20, j.CloseBatch.N > 0)
	}
	for _, l := range r.Live {
		key := "live_" + strings.ReplaceAll(l.Transport, "-", "_")
		note := ""
		if l.N < goalN {
			note = fmt.Sprintf("judged at %d; measured at N=%d", goalN, l.N)
		}
		bound := 11.0
		if l.Transport == cometd.TransportLongPolling {
			bound = 22
		}
		var anchors []string
		if l.JS != nil {
			anchors = append(anchors, fmt.Sprintf("JS client %.1f KiB", l.JS.PerSessionKiB))
		} else if js {
			anchors = append(anchors, "JS client not measured")
		}
		if l.Bare != nil {
			anchors = append(anchors, fmt.Sprintf("bare Go client %.1f KiB", l.Bare.PerSessionKiB))
		}
		add(goal{key: key + "_kib_per_session", label: fmt.Sprintf("live %s: RSS per session <= %s KiB", l.Transport, trimFloat(bound)), Note: note,
			shown: fmt.Sprintf("%.1f KiB", l.PerSessionKiB), anchor: strings.Join(anchors, ", ")}, l.PerSessionKiB, true, bound, true)
		add(goal{key: key + "_daemon_mb", label: fmt.Sprintf("live %s: whole daemon <= 250 MB", l.Transport), Note: note,
			shown: fmt.Sprintf("%.1f MB", l.RSSNMB), anchor: fmt.Sprintf("at N=%d, %.1f MB before", l.N, float64(l.RSS0KiB)*1024/1e6)}, l.RSSNMB, true, 250, true)
		anchors = anchors[:0]
		if l.JS != nil {
			anchors = append(anchors, fmt.Sprintf("JS client %.2f%%", l.JS.IdleCPUPct))
		}
		if l.Bare != nil {
			anchors = append(anchors, fmt.Sprintf("bare Go client %.2f%%", l.Bare.IdleCPUPct))
		}
		add(goal{key: key + "_idle_cpu_pct", label: fmt.Sprintf("live %s: idle CPU <= 5%% of a core", l.Transport), Note: note,
			shown: fmt.Sprintf("%.2f%%", l.IdleCPUPct), anchor: strings.Join(anchors, ", ")}, l.IdleCPUPct, true, 5, true)
	}
}

// trimFloat prints a bound without trailing zeros.
func trimFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// lines prints the human-readable figures, each beside its anchor, then the goals.
func (r *report) lines(w io.Writer) {
	if in := r.Ingestion; in != nil {
		fmt.Fprintf(w, "ingestion: %d msgs (%d chat lines, %d created events) over %d interactions, loaded before any consumer ran\n",
			in.Msgs, in.Chats, in.Created, in.Interactions)
		fmt.Fprintf(w, "ingestion: daemon (1 replica) %.0f msgs/s; bare consumer on the same stream (work queue %s made like the daemon's) %.0f msgs/s, ratio %.3f (the goal's anchor); bare consumer on %s %.0f msgs/s, ratio %.3f\n",
			in.Daemon.Rate, groupStream, in.Anchor.Rate, in.Ratio, inboundStream, in.Inbound.Rate, in.RatioInbound)
		fmt.Fprintf(w, "ingestion: anchor runs (median kept): same stream %s msgs/s, each timed once the work queue had sourced the whole backlog (median %.2f s after the publish); %s %s msgs/s\n",
			joinFloats(in.Anchor.Runs), in.SourceS, inboundStream, joinFloats(in.Inbound.Runs))
		fmt.Fprintf(w, "ingestion: cpu while draining: daemon %.0f%% of a core (%.1f µs/msg), its natsd %.0f%%; same-stream anchor (the harness) %.0f%% (%.1f µs/msg), its natsd %.0f%%; %s anchor %.0f%% (%.1f µs/msg), its natsd %.0f%%\n",
			in.Daemon.ConsumerCPU, in.Daemon.CPUPerMsgUs, in.Daemon.NATSCPU, in.Anchor.ConsumerCPU, in.Anchor.CPUPerMsgUs, in.Anchor.NATSCPU,
			inboundStream, in.Inbound.ConsumerCPU, in.Inbound.CPUPerMsgUs, in.Inbound.NATSCPU)
		fmt.Fprintf(w, "ingestion: daemon drained in %.2f s after %.2f s from process start to first delivery; %d redeliveries\n",
			in.Daemon.Seconds, in.Daemon.StartupS, in.Daemon.Redelivered)
		if d2 := in.Replicas2; d2 != nil {
			var parts []string
			for _, m := range d2.Replicas {
				parts = append(parts, fmt.Sprintf("%s %.0f msgs/s over %d msgs in %.2f s", m.Member, m.Rate, m.Msgs, m.Seconds))
			}
			fmt.Fprintf(w, "ingestion: 2 replicas %.0f msgs/s total, %.0f per replica (%s); ratio to the same-stream anchor %.3f, to %s %.3f; vs 1 replica x%.2f\n",
				d2.Rate, in.PerReplica2, strings.Join(parts, ", "), in.Ratio2, inboundStream, in.Ratio2In, in.Scale2)
			fmt.Fprintf(w, "ingestion: 2 replicas cpu %.0f%% of a core (%.1f µs/msg), natsd %.0f%%; %.2f s from process start to first delivery; %d redeliveries\n",
				d2.ConsumerCPU, d2.CPUPerMsgUs, d2.NATSCPU, d2.StartupS, d2.Redelivered)
		}
		logLine(w, "ingestion", in.Daemon.Warnings, in.Daemon.Errors, in.Daemon.top)
	}
	if j := r.Join; j != nil {
		fmt.Fprintf(w, "join: daemon p50 %.2f ms p99 %.2f ms max %.2f ms (start message published -> join attach; K=%d, %s, one at a time)\n",
			j.Daemon.P50, j.Daemon.P99, j.Daemon.Max, j.K, j.Transport)
		fmt.Fprintf(w, "join: protocol floor (bare Go client: Get Session, handshake, first connect, join) p50 %.2f ms p99 %.2f ms; daemon/floor p50 %.2f (goal <= 1.5) p99 %.2f (goal <= 2)\n",
			j.Anchor.P50, j.Anchor.P99, j.RatioP50, j.RatioP99)
		if j.JS != nil {
			fmt.Fprintf(w, "join: official CometD JavaScript client (the same four steps) p50 %.2f ms p99 %.2f ms; daemon/JS p50 %.2f (stretch goal <= 0.5) p99 %.2f\n",
				j.JS.P50, j.JS.P99, j.JSRatioP50, j.JSRatioP99)
		} else {
			fmt.Fprintln(w, "join: official CometD JavaScript client: not measured (-js=false)")
		}
		fmt.Fprintf(w, "join: floor, JS client and daemon interleaved in each round, in each of their orders in turn; of the daemon's, publishing the start message (PubAck) p50 %.2f ms p99 %.2f ms\n", j.PubAck.P50, j.PubAck.P99)
		fmt.Fprintf(w, "join: the NATS path alone (a bare relay: start message published -> pulled from a work queue -> KV get, KV update, 3 publishes -> attach received) p50 %.2f ms p99 %.2f ms; floor + NATS path p50 %.2f ms, daemon/(floor + NATS path) p50 %.2f\n",
			j.NATSPath.P50, j.NATSPath.P99, j.FloorNATSP50, j.RatioFloorNATS)
		fmt.Fprintf(w, "close: one at a time: daemon p50 %.2f ms p99 %.2f ms max %.2f ms (closed event -> session ended at the server; goal p99 <= 20 ms); final attach p50 %.2f ms p99 %.2f ms\n",
			j.Close.P50, j.Close.P99, j.Close.Max, j.Final.P50, j.Final.P99)
		stop := fmt.Sprintf("floor's /service/session/stop p50 %.2f ms p99 %.2f ms (daemon/floor p50 %.2f p99 %.2f)", j.Stop.P50, j.Stop.P99, j.CloseP50, j.CloseP99)
		if j.JSStop != nil {
			stop += fmt.Sprintf(", JS client's p50 %.2f ms p99 %.2f ms", j.JSStop.P50, j.JSStop.P99)
		}
		fmt.Fprintf(w, "close: for reference, the %s\n", stop)
		if j.CloseBatch.N > 0 {
			fmt.Fprintf(w, "close: %d in flight (%d batches, %d closes): daemon p50 %.2f ms p99 %.2f ms max %.2f ms (each closed event's publish -> its session ended at the server; goal p99 <= 20 ms); final attach p50 %.2f ms p99 %.2f ms; a batch's first publish -> last end p50 %.2f ms max %.2f ms\n",
				j.InFlight, j.Batches, j.CloseBatch.N, j.CloseBatch.P50, j.CloseBatch.P99, j.CloseBatch.Max, j.FinalBatch.P50, j.FinalBatch.P99, j.CloseBatchAll.P50, j.CloseBatchAll.Max)
			fmt.Fprintf(w, "close: anchor, the bare Go client stopping as many of its sessions at once: p50 %.2f ms p99 %.2f ms max %.2f ms (each stop's call -> its session ended at the server); daemon/anchor p99 %.2f\n",
				j.BareBatch.P50, j.BareBatch.P99, j.BareBatch.Max, div(j.CloseBatch.P99, j.BareBatch.P99))
			fmt.Fprintf(w, "close: the NATS path of as many closes published at once (each publish -> its pull from a work queue by a bare relay doing the closes' NATS work): p50 %.2f ms p99 %.2f ms max %.2f ms; its p99 + the bare stops' p99 %.2f ms, daemon/that %.2f\n",
				j.NATSBatch.P50, j.NATSBatch.P99, j.NATSBatch.Max, j.NATSBatch.P99+j.BareBatch.P99, div(j.CloseBatch.P99, j.NATSBatch.P99+j.BareBatch.P99))
			if len(j.BatchCPU) > 0 {
				var to [2]string
				for i, win := range []string{"_to_end", "_to_idle"} {
					var sum float64
					for _, p := range cpuProcs {
						m := j.BatchCPU[p+win].P50
						sum += m
						to[i] += fmt.Sprintf("%s %.1f, ", p, m)
					}
					to[i] += fmt.Sprintf("together %.1f", sum)
				}
				fmt.Fprintf(w, "close: CPU per batch, medians in ms: up to the last end at the server: %s; up to the daemon idle again: %s (two cores)\n", to[0], to[1])
			}
		}
		fmt.Fprintf(w, "close: sessions ended by %v\n", j.EndedBy)
		logLine(w, "join", j.Warnings, j.Errors, j.top)
	}
	for _, l := range r.Live {
		p := "live " + l.Transport
		fmt.Fprintf(w, "%s: N=%d sessions joined and activated, held at once (the daemon's genesys.transports [%s]); joined in %.1f s (%.0f/s)\n",
			p, l.N, l.Config, l.JoinS, l.JoinRate)
		mem := fmt.Sprintf("%s: RSS per session: daemon %.1f KiB (RSS %.1f MB -> %.1f MB)", p, l.PerSessionKiB, float64(l.RSS0KiB)*1024/1e6, l.RSSNMB)
		if l.JS != nil {
			mem += fmt.Sprintf("; JS client %.1f KiB (RSS %.1f -> %.1f MB), daemon/JS %.2f", l.JS.PerSessionKiB, l.JS.RSS0MB, l.JS.RSSNMB, l.JSMemRatio)
		}
		if l.Bare != nil {
			mem += fmt.Sprintf("; bare Go client %.1f KiB (RSS %.1f -> %.1f MB), daemon/bare %.2f", l.Bare.PerSessionKiB, l.Bare.RSS0MB, l.Bare.RSSNMB, l.MemRatio)
		}
		fmt.Fprintf(w, "%s; gcbtest server %.1f KiB\n", mem, l.GCBPerSessionKiB)
		act := fmt.Sprintf("%s: RSS per session right after the last activation, for reference: daemon %.1f KiB", p, l.PerSessionActKiB)
		if l.JS != nil {
			act += fmt.Sprintf(", JS client %.1f KiB", l.JS.PerSessionActKiB)
		}
		if l.Bare != nil {
			act += fmt.Sprintf(", bare Go client %.1f KiB", l.Bare.PerSessionActKiB)
		}
		fmt.Fprintf(w, "%s (the figures above are at the end of the idle window)\n", act)
		fmt.Fprintf(w, "%s: whole daemon at N %.1f MB (10^6 bytes)\n", p, l.RSSNMB)
		cpu := fmt.Sprintf("%s: idle cpu over %.1f s: daemon %.2f%% of a core", p, l.CPUWindowS, l.IdleCPUPct)
		if l.JS != nil {
			cpu += fmt.Sprintf("; JS client %.2f%%", l.JS.IdleCPUPct)
		}
		if l.Bare != nil {
			cpu += fmt.Sprintf("; bare Go client %.2f%%", l.Bare.IdleCPUPct)
		}
		fmt.Fprintf(w, "%s; gcbtest server %.2f%%, natsd %.2f%%\n", cpu, l.GCBIdleCPUPct, l.NATSIdleCPUPct)
		g := fmt.Sprintf("%d after every session closed (SIGQUIT dump at the end: the harness leaves the internal listener on a free port it does not read)", l.Goroutines)
		if l.Goroutines < 0 {
			g = "not read (" + l.goroutinesErr + ")"
		}
		if l.GoroutinesN > 0 {
			g = fmt.Sprintf("%d at N live, %d after every session closed (profiled daemon)", l.GoroutinesN, l.Goroutines)
		}
		fmt.Fprintf(w, "%s: daemon goroutines %s; threads %d -> %d, open files %d -> %d\n", p, g, l.Threads0, l.ThreadsN, l.FDs0, l.FDsN)
		holders := ""
		if l.JS != nil {
			holders += fmt.Sprintf("; the JS client joined and activated them in %.1f s", l.JS.JoinS)
		}
		if l.Bare != nil {
			holders += fmt.Sprintf("; the bare Go client in %.1f s", l.Bare.JoinS)
		}
		fmt.Fprintf(w, "%s: closed in %.1f s (all acked after %.1f s): %d ended at the server (by %v), %d live after; daemon RSS after close %.1f MB; server saw %d websocket connections, %d long-poll requests%s\n",
			p, l.CloseS, l.CloseAckedS, l.Ended, l.EndedBy, l.LiveAfter, float64(l.RSSClosedKiB)*1024/1e6, l.WebSockets, l.LongPolls, holders)
		logLine(w, p, l.Warnings, l.Errors, l.top)
	}
	if len(r.goals) > 0 {
		fmt.Fprintln(w, "goals (each judged on this run's figures, beside its anchor):")
		width := 0
		for _, g := range r.goals {
			width = max(width, len(g.label))
		}
		for _, g := range r.goals {
			met := "met"
			if !g.Met {
				met = "NOT met"
			}
			if strings.HasPrefix(g.Note, "judged at") {
				met += fmt.Sprintf(" (judged at %d)", goalN)
			} else if g.Note != "" {
				met += " (" + g.Note + ")"
			}
			anchor := ""
			if g.anchor != "" {
				anchor = " [" + g.anchor + "]"
			}
			fmt.Fprintf(w, "  %-*s  %s%s  %s\n", width, g.label, g.shown, anchor, met)
		}
	}
	var walls []string
	keys := []string{"ingestion", "join"}
	for _, l := range r.Live {
		keys = append(keys, "live "+l.Transport)
	}
	keys = append(keys, "live", "total")
	for _, k := range keys {
		if s, ok := r.WallS[k]; ok {
			walls = append(walls, fmt.Sprintf("%s %.1f s", k, s))
		}
	}
	fmt.Fprintf(w, "wall: %s\n", strings.Join(walls, ", "))
}

func logLine(w io.Writer, phase string, warnings, errors int, top []string) {
	if warnings == 0 && errors == 0 {
		fmt.Fprintf(w, "%s: daemon log: no warnings, no errors\n", phase)
		return
	}
	fmt.Fprintf(w, "%s: daemon log: %d warnings, %d errors; most frequent: %s\n", phase, warnings, errors, strings.Join(top, "; "))
}

// jsonLine prints the report as one JSON line, rounded.
func (r *report) jsonLine(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// Round every float to 3 decimals: decode into generic values and encode again.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	b, err = json.Marshal(roundAll(v))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func roundAll(v any) any {
	switch x := v.(type) {
	case float64:
		return r3(x)
	case map[string]any:
		for k, e := range x {
			x[k] = roundAll(e)
		}
	case []any:
		for i, e := range x {
			x[i] = roundAll(e)
		}
	}
	return v
}

// div is a/b, 0 when b is 0 (a ratio or a rate over nothing measured): JSON has no Inf or NaN.
func div(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

func joinFloats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

func r3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*1000) / 1000
}
