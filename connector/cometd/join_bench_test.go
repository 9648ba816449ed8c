package cometd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// BenchmarkJoinLatency measures, against gcbtest (the Co-browse Server stand-in, in process), how
// long the Genesys join takes right after Start returns (join-after-start-µs), while the client
// sends its second /meta/connect (the first held one) at the same moment; the same call once that
// connect is held (call-later-µs, a refused join: one round trip, with less work at the server);
// and Start itself (start-µs). Medians over b.N sessions.
//
// Beside each of those sessions another one joins with StartCall, the join sent with the first
// connect: start-then-join-µs is Start and the join after it, startcall-µs the same with
// StartCall, and startcall/start-then-join their ratio (the medians', the two alternated).
//
// A variant that held the second connect until the join was sent measured no better (see the
// "Join latency" note in doc.go), so the client sends it at once.
func BenchmarkJoinLatency(b *testing.B) {
	for _, tr := range bothTransports {
		b.Run(tr, func(b *testing.B) {
			cl := gcbtest.NewCluster(gcbtest.Options{Nodes: 1, ConnectTimeout: 30 * time.Second, ServerURL: true})
			b.Cleanup(cl.Close)
			node := cl.Nodes()[0]
			var starts, firsts, laters, both, startCalls []time.Duration
			for range b.N {
				gs2, err := cl.CreateSession(0)
				if err != nil {
					b.Fatal(err)
				}
				c2, err := cometd.New(cometd.Options{URL: node.CometDURL(), Transports: []string{tr}})
				if err != nil {
					b.Fatal(err)
				}
				ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
				s0 := time.Now()
				if _, err := c2.StartCall(ctx2, "/service/session/join", map[string]any{"sessionToken": gs2.Token(), "role": 3}, nil); err != nil {
					b.Fatal(err)
				}
				startCalls = append(startCalls, time.Since(s0))
				c2.Close()
				cancel2()
				_ = gs2.CustomerExit()

				gs, err := cl.CreateSession(0)
				if err != nil {
					b.Fatal(err)
				}
				c, err := cometd.New(cometd.Options{URL: node.CometDURL(), Transports: []string{tr}})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				if err := c.Start(ctx); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				join := map[string]any{"sessionToken": gs.Token(), "role": 3}
				if _, err := c.Call(ctx, "/service/session/join", join); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				poll := time.NewTicker(time.Millisecond)
				for node.Stats().HeldConnects < 1 { // the second connect is held now
					select {
					case <-poll.C:
					case <-ctx.Done():
						b.Fatal("the second connect was not held")
					}
				}
				poll.Stop()
				t3 := time.Now()
				_, _ = c.Call(ctx, "/service/session/join", join) // refused (already joined): one round trip
				t4 := time.Now()
				starts, firsts, laters = append(starts, t1.Sub(t0)), append(firsts, t2.Sub(t1)), append(laters, t4.Sub(t3))
				both = append(both, t2.Sub(t0))
				c.Close()
				cancel()
				_ = gs.CustomerExit()
			}
			med := func(d []time.Duration) float64 {
				slices.Sort(d)
				return float64(d[len(d)/2].Microseconds())
			}
			b.ReportMetric(med(starts), "start-µs")
			b.ReportMetric(med(firsts), "join-after-start-µs")
			b.ReportMetric(med(laters), "call-later-µs")
			b.ReportMetric(med(both), "start-then-join-µs")
			b.ReportMetric(med(startCalls), "startcall-µs")
			b.ReportMetric(med(startCalls)/med(both), "startcall/start-then-join")
		})
	}
}
