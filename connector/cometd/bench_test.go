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
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd/internal/bayeuxtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// benchServerEnv makes the test binary serve bayeuxtest instead of running tests (see TestMain).
const benchServerEnv = "COMETD_BENCH_SERVER"

// serveBenchServer is the benchmark's server process: a bayeuxtest server (long-polling and
// websocket, connects held 30 s) on loopback, plus GET /stats -> "<sessions> <held connects>".
// It prints "LISTENING <url>" and exits when its stdin closes.
func serveBenchServer() {
	srv := &bayeuxtest.Server{Timeout: 30 * time.Second, WebSocket: true, BrowserCookie: true}
	mux := http.NewServeMux()
	mux.Handle("/cometd", srv)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d", srv.Sessions(), srv.Parked())
	})
	err := procs.ServeChild(mux, func(addr string) []string { return []string{"http://" + addr + "/cometd"} })
	srv.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startBenchServer runs serveBenchServer in a child process until the benchmark ends.
func startBenchServer(b *testing.B) string {
	b.Helper()
	return procs.ChildServer(b, benchServerEnv+"=1")[0]
}

// heldConnects asks the server process how many connects it holds.
func heldConnects(b *testing.B, url string) int {
	resp, err := http.Get(strings.TrimSuffix(url, "/cometd") + "/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	f := strings.Fields(string(body))
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
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
