package integration_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// Re-executed by a test as a node in its own process (and maybe in
		// its own network namespace): run it, never the tests.
		os.Exit(runChildNode())
	}
	goleak.VerifyTestMain(m)
}
