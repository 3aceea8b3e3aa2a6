// Package testkit holds the helpers that the tests of several skipwire
// packages share, so that each lives once:
//
//   - [Context]: a ctx with a deadline, cancelled when the test ends;
//   - [Percentile]: the nearest-rank percentile of durations;
//   - [NewHost]: a libp2p host on a loopback port 0, closed when the test ends;
//   - [Role], [ChildMain] and [StartChild]: the test binary re-executed as a
//     child process (a node in a process of its own, which a test can
//     freeze, thaw, kill or stop); [Launch] does the same for a program
//     that is not a test (a demo whose main calls ChildMain first); a role
//     with Serve instead of Run is driven after it is ready through its
//     standard input ([Child.Stdin]) and answers on its standard output
//     ([ChildOptions] Lines).
//
// A package whose tests start children calls ChildMain first in its TestMain:
//
//	var echoRole = testkit.Role{Name: "echo", Run: runEcho}
//
//	func TestMain(m *testing.M) {
//		testkit.ChildMain(echoRole) // returns unless this process is a child
//		goleak.VerifyTestMain(m)
//	}
//
//	func runEcho(ctx context.Context, args []string) error {
//		// ... start serving ...
//		testkit.Ready("some", "fields") // the parent's Child.Ready
//		<-ctx.Done()                      // the parent stopped the child
//		return nil
//	}
//
// and a test starts one with
//
//	c := testkit.StartChild(t, echoRole, testkit.ChildOptions{})
//	c.Ready            // []string{"some", "fields"}
//	c.Freeze(); c.Thaw() // SIGSTOP, SIGCONT
//
// The package internal/testkit/childnode builds a skipwire echo node on it.
package testkit
