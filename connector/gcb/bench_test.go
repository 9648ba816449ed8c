package gcb

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// benchClusterEnv makes the test binary serve a gcbtest cluster instead of running tests.
const benchClusterEnv = "GCB_BENCH_CLUSTER"

// serveBenchCluster is the benchmark's server process: a one-node gcbtest cluster (connects held
// 30 s, URL stickiness) and a control server: GET /create?n=N creates N sessions and answers
// their tokens, one a line; GET /held answers the connects held. It prints
// "LISTENING <cluster URL> <control URL>" and exits when its stdin closes.
func serveBenchCluster() {
	cl := gcbtest.NewCluster(gcbtest.Options{Nodes: 1, ConnectTimeout: 30 * time.Second, MaxInterval: time.Hour, ServerURL: true})
	mux := http.NewServeMux()
	mux.HandleFunc("/create", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for range n {
			s, err := cl.CreateSession(0)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, s.Token())
		}
	})
	mux.HandleFunc("/held", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, cl.Nodes()[0].Stats().HeldConnects)
	})
	err := procs.ServeChild(mux, func(addr string) []string { return []string{cl.URL(), "http://" + addr} })
	cl.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startBenchCluster runs the gcbtest cluster in a child process until the benchmark ends.
func startBenchCluster(b *testing.B) (cluster, control string) {
	b.Helper()
	f := procs.ChildServer(b, benchClusterEnv+"=1")
	if len(f) != 2 {
		b.Fatalf("the bench cluster said %v, want its cluster and control URLs", f)
	}
	return f[0], f[1]
}

func benchGet(b *testing.B, u string) string {
	b.Helper()
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %d %s", u, resp.StatusCode, body)
	}
	return string(body)
}

// BenchmarkLiveSessions is cometd's BenchmarkLiveSessions one level up: the cost of a live,
// waiting Genesys session in this process, its CometD client and its gcb session together.
// Sessions (default 1,000 per transport; GCB_BENCH_SESSIONS to change) are joined as Controller
// on a gcbtest cluster in another process and fed (connector.Feeder) as the controller feeds
// them; then it reports heap-B, stack-B, B (both), rss-B (after a GC), rss-nogc-B (no GC
// forced: the heap counts about twice) and goroutines, per session. GCB_BENCH_HEAPPROFILE=<path>
// writes heap profiles of the live sessions.
func BenchmarkLiveSessions(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("GCB_BENCH_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	for _, tr := range []string{cometd.TransportLongPolling, cometd.TransportWebSocket} {
		b.Run(tr, func(b *testing.B) {
			cluster, control := startBenchCluster(b)
			for range b.N {
				tokens := strings.Fields(benchGet(b, control+"/create?n="+strconv.Itoa(n)))
				c, err := New(Config{ClusterURL: cluster, Transports: []string{tr}, MaxConcurrentJoins: n})
				if err != nil {
					b.Fatal(err)
				}
				before := procs.TakeSnapshot()
				sessions := make([]connector.Session, 0, n)
				for _, tok := range tokens {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					s, err := c.Join(ctx, connector.Trigger{Token: tok, InteractionID: "i-" + tok})
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					if f, ok := s.(connector.Feeder); ok { // a waiting session has no event to read
						f.Feed(func(connector.Event, bool) {})
					}
					sessions = append(sessions, s)
				}
				deadline := time.After(time.Minute)
				poll := time.NewTicker(20 * time.Millisecond)
				for {
					held, _ := strconv.Atoi(benchGet(b, control+"/held"))
					if held >= n {
						break
					}
					select {
					case <-poll.C:
					case <-deadline:
						b.Fatalf("only %d of %d connects held", held, n)
					}
				}
				poll.Stop()
				rssNoGC := procs.RSS()
				after := procs.TakeSnapshot()
				if p := os.Getenv("GCB_BENCH_HEAPPROFILE"); p != "" {
					f, _ := os.Create(p + "." + tr)
					pprof.WriteHeapProfile(f)
					f.Close()
				}
				procs.ReportPerSession(b, n, before, after, rssNoGC)
				for _, s := range sessions {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_ = s.Close(ctx)
					cancel()
				}
				_ = c.Close()
			}
		})
	}
}
