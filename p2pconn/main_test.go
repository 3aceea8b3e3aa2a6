package p2pconn_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
)

func TestMain(m *testing.M) {
	// A test may re-execute this binary as a remote node in its own process.
	testkit.ChildMain(childnode.Role)
	goleak.VerifyTestMain(m)
}
