package p2pconn_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// Re-executed by a test as a remote node in its own process.
		os.Exit(runChildNode())
	}
	goleak.VerifyTestMain(m)
}
