package daemon

import (
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
)

// The heap's headroom (heap_headroom_mb): after each collection the daemon sets the collector's
// GOGC so that the heap may grow by about the headroom past what is live before the next one,
// within [minGCPercent, maxGCPercent] of the live heap.
//
// Why: Go's default (GOGC=100) lets the heap grow to twice what is live, and the pages it grew
// into stay taken. A daemon with thousands of live sessions that only wait holds a large live heap
// and allocates little: with the default, half its memory is room it seldom needs (docs/
// scaling.md). A daemon with few live sessions holds a small live heap and allocates in bursts (a
// batch of joins or closes): with the default it collects often, in the middle of the burst. A
// fixed headroom serves both: more room than the default for a small heap, less for a large one,
// at the cost of more frequent collections while a large heap is busy. GOGC set in the
// environment is the operator's choice and wins: the daemon then leaves the collector alone.
const (
	minGCPercent = 25
	maxGCPercent = 400
)

// gcPercentFor is the GOGC that gives a live heap of live bytes about headroom bytes of growth.
func gcPercentFor(live, headroom uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := headroom * 100 / live
	return int(min(max(p, minGCPercent), maxGCPercent))
}

// heapTuner applies the headroom after each collection. It owns no goroutine: the runtime runs
// its cleanup (runtime.AddCleanup on a sentinel object that each collection finds unreachable)
// on the runtime's cleanup goroutine, and stop ends the chain at the next collection.
type heapTuner struct {
	headroom uint64
	onTune   func(percent int) // tests: after each setting

	mu      sync.Mutex
	stopped bool
	percent int // what is set now
	before  int // GOGC before start, put back by stop
}

// sentinel is what each collection finds unreachable. It holds a pointer and is larger than the
// tiny allocator's objects, which may share a block with others and never be freed alone.
type sentinel struct {
	_ *byte
	_ [16]byte
}

// startHeapTuner starts the tuner with headroom bytes; nil when headroom is 0 or GOGC is set in
// the environment.
func startHeapTuner(headroom uint64, onTune func(int)) *heapTuner {
	if headroom == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &heapTuner{headroom: headroom, onTune: onTune}
	t.mu.Lock()
	t.percent = gcPercentFor(liveHeap(), headroom)
	t.before = debug.SetGCPercent(t.percent)
	t.mu.Unlock()
	t.arm()
	return t
}

func (t *heapTuner) arm() {
	runtime.AddCleanup(new(sentinel), (*heapTuner).collected, t)
}

// collected runs after a collection: it sets the GOGC for the live heap it left, and arms the
// next sentinel.
func (t *heapTuner) collected() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	p := gcPercentFor(liveHeap(), t.headroom)
	if p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
	t.mu.Unlock()
	if t.onTune != nil {
		t.onTune(p)
	}
	t.arm()
}

// stop puts the GOGC found at start back; the tuner does nothing more.
func (t *heapTuner) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.before)
	}
}

// gcPercent is the GOGC set now, for the log.
func (t *heapTuner) gcPercent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

// liveHeap is the heap the last collection left live (0 before the first).
func liveHeap() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
