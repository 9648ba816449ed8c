package daemon

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 16 * mib, maxGCPercent},          // before the first collection
		{2 * mib, 16 * mib, maxGCPercent},    // a small heap: 800 % capped
		{8 * mib, 16 * mib, 200},             // twice the default's room
		{16 * mib, 16 * mib, 100},            // the default's
		{32 * mib, 16 * mib, 50},             // half
		{70 * mib, 16 * mib, minGCPercent},   // 22 %, floored at a quarter
		{1000 * mib, 16 * mib, minGCPercent}, // a huge heap: a quarter of it
	} {
		if got := gcPercentFor(c.live, c.headroom); got != c.want {
			t.Errorf("gcPercentFor(%d MiB live, %d MiB) = %d, want %d", c.live/mib, c.headroom/mib, got, c.want)
		}
	}
}

// TestHeapTuner: after each collection the tuner sets the GOGC the live heap and the headroom
// give; stopped, it puts the GOGC it found back and sets nothing more. (Not parallel: GOGC is the
// process's.)
func TestHeapTuner(t *testing.T) {
	t.Setenv("GOGC", "") // the tuner stays off under an operator's GOGC: make sure there is none
	if tuner := startHeapTuner(0, nil); tuner != nil {
		t.Fatal("a tuner with no headroom")
	}
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	tuned := make(chan int, 64)
	const headroom = 64 << 20
	tuner := startHeapTuner(headroom, func(p int) {
		select {
		case tuned <- p:
		default:
		}
	})
	if tuner == nil {
		t.Fatal("no tuner")
	}
	runtime.GC()
	select {
	case p := <-tuned:
		if want := gcPercentFor(liveHeap(), headroom); p != want {
			t.Errorf("GOGC set to %d after a collection, want %d (live heap %d)", p, want, liveHeap())
		}
		if got := tuner.gcPercent(); got != p {
			t.Errorf("gcPercent %d, set %d", got, p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no tuning after a collection")
	}
	tuner.stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after stop GOGC is %d, want the 100 found at start", got)
	}
	// Stopped: a collection sets nothing. Drain what may have come between, then collect.
	for len(tuned) > 0 {
		<-tuned
	}
	runtime.GC()
	runtime.GC()
	if len(tuned) > 0 {
		t.Error("the tuner set GOGC after stop")
	}

	t.Setenv("GOGC", "80")
	if startHeapTuner(headroom, nil) != nil {
		t.Error("a tuner under GOGC set in the environment")
	}
}
