package cometd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// benchServerEnv makes the test binary serve bayeuxtest instead of running tests (see TestMain).
const benchServerEnv = "COMETD_BENCH_SERVER"

// serveBenchServer is the benchmark's server process: a bayeuxtest server (long-polling and
// websocket, connects held 30 s, or COMETD_BENCH_HOLD) on loopback, plus GET /stats ->
// "<sessions> <held connects> <long-polling connects received>". It prints "LISTENING <url>" and
// exits when its stdin closes.
func serveBenchServer() {
	hold, err := time.ParseDuration(os.Getenv(benchHoldEnv))
	if err != nil {
		hold = 30 * time.Second
	}
	var connects atomic.Int64
	srv := &bayeuxtest.Server{Timeout: hold, WebSocket: true, BrowserCookie: true, OnBody: func(c *bayeuxtest.Call) {
		for _, m := range c.Body {
			if m.Channel == "/meta/connect" {
				connects.Add(1)
			}
		}
	}}
	mux := http.NewServeMux()
	mux.Handle("/cometd", srv)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d %d", srv.Sessions(), srv.Parked(), connects.Load())
	})
	err = procs.ServeChild(mux, func(addr string) []string { return []string{"http://" + addr + "/cometd"} })
	srv.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// benchHoldEnv sets the bench server's connect hold (a Go duration).
const benchHoldEnv = "COMETD_BENCH_HOLD"

// startBenchServer runs serveBenchServer in a child process until the benchmark ends.
func startBenchServer(b *testing.B, env ...string) string {
	b.Helper()
	return procs.ChildServer(b, append([]string{benchServerEnv + "=1"}, env...)...)[0]
}

// benchStat asks the server process for field i of its /stats.
func benchStat(b *testing.B, url string, i int) int {
	resp, err := http.Get(strings.TrimSuffix(url, "/cometd") + "/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	f := strings.Fields(string(body))
	n, _ := strconv.Atoi(f[i])
	return n
}

// heldConnects asks the server process how many connects it holds.
func heldConnects(b *testing.B, url string) int { return benchStat(b, url, 1) }

// BenchmarkConnectRenewal measures what one long-polling /meta/connect renewal costs the client
// (the steady state of a session that only waits): a session against the bench server holding
// each connect 1 ms, allocations and bytes per renewal from the runtime's counters, the renewals
// counted by the server. The server is another process, so only the client's allocations count.
func BenchmarkConnectRenewal(b *testing.B) {
	url := startBenchServer(b, benchHoldEnv+"=1ms")
	c, err := cometd.New(cometd.Options{URL: url, Transports: []string{cometd.TransportLongPolling}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	from := benchStat(b, url, 2)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	// The server is asked every 10 ms how many renewals it saw; the polls' own allocations are
	// measured after, and taken off.
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	n, polls := 0, 0
	for n < b.N {
		select {
		case <-poll.C:
		case <-ctx.Done():
			b.Fatalf("%d of %d renewals", n, b.N)
		}
		n = benchStat(b, url, 2) - from
		polls++
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	c.Close()
	var p0, p1 runtime.MemStats
	runtime.ReadMemStats(&p0)
	for range polls {
		benchStat(b, url, 2)
	}
	runtime.ReadMemStats(&p1)
	allocs := float64(m1.Mallocs-m0.Mallocs) - float64(p1.Mallocs-p0.Mallocs)
	bytes := float64(m1.TotalAlloc-m0.TotalAlloc) - float64(p1.TotalAlloc-p0.TotalAlloc)
	b.ReportMetric(allocs/float64(n), "allocs/renewal")
	b.ReportMetric(bytes/float64(n), "B/renewal")
}

// BenchmarkLiveSessions holds live Bayeux sessions (default 1,000 per transport; set
// COMETD_BENCH_SESSIONS to change) against a bayeuxtest server in a separate process, each
// started, subscribed to one channel and parked in its /meta/connect, and reports the client
// side's cost per session:
//
//   - heap-B/session: live Go heap (HeapAlloc after a GC), before and after. It counts
//     everything the sessions hold in this process: Client structs, cookie jars, connections,
//     buffers, timers.
//   - stack-B/session: goroutine stacks in use (StackInuse).
//   - B/session: the two together.
//   - rss-B/session: the change in resident memory, both ends measured after a GC.
//   - rss-nogc-B/session: the change in resident memory with no GC forced at the end, as a
//     daemon sees it (the heap counts about twice: garbage waits for the next GC); noisier.
//   - goroutines/session.
//
// Not counted: kernel socket buffers and the server (another process). COMETD_BENCH_HEAPPROFILE
// =<path> writes heap and goroutine profiles of the live sessions (add -test.memprofilerate=1
// for exact heap figures). COMETD_BENCH_TRANSPORT=websocket (or long-polling) runs one only.
func BenchmarkLiveSessions(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("COMETD_BENCH_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	for _, tr := range bothTransports {
		if only := os.Getenv("COMETD_BENCH_TRANSPORT"); only != "" && only != tr {
			continue
		}
		b.Run(tr, func(b *testing.B) {
			url := startBenchServer(b)
			for range b.N {
				before := procs.TakeSnapshot()
				clients := make([]*cometd.Client, n)
				for i := range clients {
					c, err := cometd.New(cometd.Options{URL: url, Transports: []string{tr}})
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					if err := c.Start(ctx); err != nil {
						b.Fatalf("session %d: %v", i, err)
					}
					if err := c.Subscribe(ctx, "/bench"); err != nil {
						b.Fatalf("session %d: %v", i, err)
					}
					cancel()
					clients[i] = c
				}
				// Wait until every session's second connect is held by the server process.
				deadline := time.After(time.Minute)
				poll := time.NewTicker(20 * time.Millisecond)
				for heldConnects(b, url) < n {
					select {
					case <-poll.C:
					case <-deadline:
						b.Fatalf("only %d of %d connects held", heldConnects(b, url), n)
					}
				}
				poll.Stop()
				rssNoGC := procs.RSS()
				after := procs.TakeSnapshot()
				if p := os.Getenv("COMETD_BENCH_HEAPPROFILE"); p != "" {
					f, _ := os.Create(p + "." + tr)
					pprof.WriteHeapProfile(f)
					f.Close()
					pf, _ := os.Create(p + "." + tr + ".goroutines")
					pprof.Lookup("goroutine").WriteTo(pf, 1)
					pf.Close()
				}
				procs.ReportPerSession(b, n, before, after, rssNoGC)
				for _, c := range clients {
					c.Close()
				}
				runtime.KeepAlive(clients)
			}
		})
	}
}
