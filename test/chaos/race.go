//go:build race

package main

// raceEnabled: this binary was built with -race; the test builds the daemon the same way, so
// that `go test -race` finds its packages already compiled and the run also hunts data races.
const raceEnabled = true
