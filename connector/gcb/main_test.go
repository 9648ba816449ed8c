package gcb

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchClusterEnv) != "" {
		serveBenchCluster() // the benchmark's server process
		return
	}
	goleak.VerifyTestMain(m)
}
