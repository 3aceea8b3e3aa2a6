package integration_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/skipgraph/testbed"
	"github.com/skipwire/skipwire/internal/natlab"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
)

func TestMain(m *testing.M) {
	// A test may re-execute this binary as a node in its own process (and
	// maybe in its own network namespace).
	testkit.ChildMain(append(natlab.Roles, childnode.Role, testbed.ChildRole)...)
	goleak.VerifyTestMain(m)
}
