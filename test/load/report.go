package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
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
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return stats{N: len(s), P50: ms(rank(50)), P90: ms(rank(90)), P99: ms(rank(99)), Max: ms(s[len(s)-1])}
}

// report is everything one run measured; it is printed as lines, then as one JSON line.
type report struct {
	Version   int                `json:"v"`
	Started   string             `json:"started"`
	Machine   machine            `json:"machine"`
	Ingestion *ingestResult      `json:"ingestion,omitempty"`
	Join      *latencyResult     `json:"join,omitempty"`
	Live      *liveResult        `json:"live,omitempty"`
	WallS     map[string]float64 `json:"wall_s"`
	OK        bool               `json:"ok"`
	Error     string             `json:"error,omitempty"`
}

type machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg,omitempty"` // /proc/loadavg at the start: how noisy the box was
}

func r3(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return math.Round(x*1000) / 1000
}

// lines prints the human-readable figures, each beside its anchor.
func (r *report) lines(w io.Writer) {
	if in := r.Ingestion; in != nil {
		fmt.Fprintf(w, "ingestion: %d msgs (%d chat lines, %d created events) over %d interactions, loaded before any consumer ran\n",
			in.Msgs, in.Chats, in.Created, in.Interactions)
		fmt.Fprintf(w, "ingestion: daemon %.0f msgs/s, bare consumer %.0f msgs/s, ratio %.3f\n", in.Daemon.Rate, in.Bare.Rate, in.Ratio)
		fmt.Fprintf(w, "ingestion: cpu while draining: daemon %.0f%% of a core (%.1f µs/msg), its natsd %.0f%%; bare consumer (the harness) %.0f%% (%.1f µs/msg), its natsd %.0f%%\n",
			in.Daemon.ConsumerCPU, in.Daemon.CPUPerMsgUs, in.Daemon.NATSCPU, in.Bare.ConsumerCPU, in.Bare.CPUPerMsgUs, in.Bare.NATSCPU)
		fmt.Fprintf(w, "ingestion: daemon drained in %.2f s after %.2f s from process start to first delivery; %d redeliveries; bare consumer drains %s msgs/s (median kept)\n",
			in.Daemon.Seconds, in.Daemon.StartupS, in.Daemon.Redelivered, joinFloats(in.Bare.Runs))
		if d2 := in.Replicas2; d2 != nil {
			var parts []string
			for _, m := range d2.Replicas {
				parts = append(parts, fmt.Sprintf("%s %.0f msgs/s over %d msgs in %.2f s", m.Member, m.Rate, m.Msgs, m.Seconds))
			}
			fmt.Fprintf(w, "ingestion: 2 replicas %.0f msgs/s total (%s), bare consumer %.0f msgs/s, ratio %.3f; vs 1 replica x%.2f\n",
				d2.Rate, strings.Join(parts, ", "), in.Bare.Rate, in.Ratio2, in.Scale2)
			fmt.Fprintf(w, "ingestion: 2 replicas cpu %.0f%% of a core (%.1f µs/msg), natsd %.0f%%; %.2f s from process start to first delivery; %d redeliveries\n",
				d2.ConsumerCPU, d2.CPUPerMsgUs, d2.NATSCPU, d2.StartupS, d2.Redelivered)
		}
		logLine(w, "ingestion", in.Daemon.Warnings, in.Daemon.Errors, in.Daemon.top)
	}
	if j := r.Join; j != nil {
		fmt.Fprintf(w, "join: daemon p50 %.2f ms p99 %.2f ms, bare client p50 %.2f ms p99 %.2f ms, ratio p50 %.2f p99 %.2f (K=%d, %s)\n",
			j.Daemon.P50, j.Daemon.P99, j.Anchor.P50, j.Anchor.P99, j.RatioP50, j.RatioP99, j.K, j.Transport)
		fmt.Fprintf(w, "join: of which publishing the start message (PubAck) p50 %.2f ms p99 %.2f ms\n", j.PubAck.P50, j.PubAck.P99)
		fmt.Fprintf(w, "close: daemon p50 %.2f ms p99 %.2f ms (closed event -> session ended at the server), bare client stop p50 %.2f ms p99 %.2f ms, ratio p50 %.2f p99 %.2f; final attach p50 %.2f ms p99 %.2f ms; ended by %v\n",
			j.Close.P50, j.Close.P99, j.Stop.P50, j.Stop.P99, j.CloseP50, j.CloseP99, j.Final.P50, j.Final.P99, j.EndedBy)
		logLine(w, "join", j.Warnings, j.Errors, j.top)
	}
	if l := r.Live; l != nil {
		fmt.Fprintf(w, "live: N=%d %s sessions joined and activated: daemon %.1f KiB per session (RSS %.1f MB -> %.1f MB), bare client %.1f KiB per session (RSS %.1f MB), ratio %.2f; gcbtest server %.1f KiB per session\n",
			l.N, l.Transport, l.PerSessionKiB, float64(l.RSS0KiB)*1024/1e6, l.RSSNMB, l.BarePerSessionKiB, l.BareRSSNMB, l.MemRatio, l.GCBPerSessionKiB)
		fmt.Fprintf(w, "live: idle cpu over %.1f s: daemon %.2f%% of a core, bare client %.2f%%, ratio %.2f; gcbtest server %.2f%%, natsd %.2f%%; daemon threads %d -> %d, open files %d -> %d\n",
			l.CPUWindowS, l.IdleCPUPct, l.BareIdleCPUPct, l.CPURatio, l.GCBIdleCPUPct, l.NATSIdleCPUPct, l.Threads0, l.ThreadsN, l.FDs0, l.FDsN)
		g := fmt.Sprintf("%d after every session closed (SIGQUIT dump)", l.Goroutines)
		if l.Goroutines < 0 {
			g = "not read (" + l.goroutinesErr + ")"
		}
		if l.GoroutinesN > 0 {
			fmt.Fprintf(w, "live: goroutines (profiled daemon): %d at N live, %d after every session closed\n", l.GoroutinesN, l.Goroutines)
		} else {
			fmt.Fprintf(w, "live: goroutines: not readable while the daemon runs (no metrics or pprof endpoint); %s\n", g)
		}
		fmt.Fprintf(w, "live: daemon joined and activated them in %.1f s (%.0f/s), the bare client in %.1f s; closed in %.1f s (all acked after %.1f s): %d ended at the server (by %v), %d live after; RSS after close %.1f MB; server saw %d websocket connections, %d long-poll requests\n",
			l.JoinS, l.JoinRate, l.BareJoinS, l.CloseS, l.CloseAckedS, l.Ended, l.EndedBy, l.LiveAfter, float64(l.RSSClosedKiB)*1024/1e6, l.WebSockets, l.LongPolls)
		logLine(w, "live", l.Warnings, l.Errors, l.top)
	}
	var walls []string
	for _, k := range []string{"ingestion", "join", "live", "total"} {
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
