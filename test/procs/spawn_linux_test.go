package procs

import "testing"

// spawnerRuns reports whether a spawner runs, and which (its request channel).
func spawnerRuns() (chan spawnReq, bool) {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	return spawnC, spawnC != nil
}

// The spawner can be stopped, twice harmlessly, and the next spawn starts a new one.
func TestStopSpawner(t *testing.T) {
	t.Cleanup(StopSpawner)
	first := spawnChild(t, "lines", nil)
	first.exit(t)
	c1, ok := spawnerRuns()
	if !ok {
		t.Fatal("no spawner after a spawn")
	}
	StopSpawner()
	if _, ok := spawnerRuns(); ok {
		t.Fatal("a spawner runs after StopSpawner")
	}
	StopSpawner()

	again := spawnChild(t, "lines", nil)
	again.exit(t)
	again.line(t, "a")
	again.line(t, "b")
	if again.Err() != nil {
		t.Fatalf("child of the new spawner: %v", again.Err())
	}
	if c2, ok := spawnerRuns(); !ok || c2 == c1 {
		t.Fatal("the spawn after StopSpawner did not start a new spawner")
	}
}
