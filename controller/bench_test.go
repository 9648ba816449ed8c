package controller

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// BenchmarkLiveInteractions holds 10,000 interactions, each with a joined co-browse session, and
// reports the memory per interaction: the controller's actor goroutine, state, timers and queue,
// plus the in-memory fakes' copies of each state and published message, so the figure is an
// upper bound for the controller alone. The co-browse connection (connector/cometd measures it)
// and NATS are not counted.
func BenchmarkLiveInteractions(b *testing.B) {
	const n = 10000
	for range b.N {
		conn, store, pub := newFakeConn(), newMemStore(), newRecorder()
		pub.published = make(chan any, 4*n)
		c, err := New(Config{Timers: Timers{NoAgentJoin: time.Hour, Inactivity: time.Hour}, MaxInteractions: 2 * n}, []connector.Connector{conn}, store, pub)
		if err != nil {
			b.Fatal(err)
		}
		base := heapAndStacks()
		goroutines := runtime.NumGoroutine()
		done := make([]*delivery, n)
		for i := range n {
			id := "i" + strconv.Itoa(i)
			d := newDelivery()
			done[i] = d
			c.Handle(context.Background(), chat.Inbound{InteractionID: id, StartToken: "123456789", Delivery: d,
				Chat: &chat.Message{ID: "m", InteractionID: id}})
		}
		for _, d := range done {
			<-d.settled
		}
		perInteraction := float64(heapAndStacks()-base) / n
		b.ReportMetric(perInteraction, "B/interaction")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/interaction")
		if c.Len() != n {
			b.Fatalf("%d actors", c.Len())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := c.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}

// heapAndStacks is the heap in use plus goroutine stacks, after a collection.
func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
