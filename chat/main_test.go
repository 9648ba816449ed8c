package chat

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind: its NATS servers, connections and Runs are all gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
