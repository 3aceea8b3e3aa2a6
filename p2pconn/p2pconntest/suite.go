// Package p2pconntest is the conformance suite of the p2pconn contract: one
// set of tests that every implementation of p2pconn.ConnectionManager runs, so
// that they all behave alike (in the style of go-libp2p's
// p2p/transport/testsuite).
//
// An implementation provides a Network that starts nodes able to reach each
// other by Identifier and can crash one (and, if it implements Partitioner,
// cut the link between two; Cutter, cut it under a session that resumes;
// Restarter, start a crashed node again), then calls Run from a test:
//
//	func TestConformance(t *testing.T) {
//		p2pconntest.Run(t, func(t testing.TB) p2pconntest.Network {
//			return &myNetwork{...}
//		})
//	}
//
// Each conformance test is a subtest of its own with a fresh Network. The tests
// wait for asynchronous effects (a remote noticing a close, say) with
// require.Eventually or blocking calls bounded by a context, never with a bare
// sleep, and start few nodes, so that an implementation over real loopback
// hosts runs the suite in seconds. They leave no goroutine of their own behind;
// checking for leaks is left to each package's goleak.VerifyTestMain.
package p2pconntest

import (
	"testing"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// Node is one participant of a network under test.
type Node struct {
	ID      identity.Identifier
	Manager p2pconn.ConnectionManager
}

// Network builds nodes that can reach each other by Identifier.
type Network interface {
	// NewNode starts a node with cfg; the Network closes it in t.Cleanup.
	NewNode(t testing.TB, cfg p2pconn.Config) Node
	// Crash makes the node vanish without a clean close (process death): its peers must see ErrConnectionLost.
	Crash(t testing.TB, n Node)
}

// Partitioner is implemented by a Network that can cut the link between two
// live nodes, for a failure that passes: while the cut lasts, their
// connection is lost and Connect between them fails with an error that may
// pass (so it is retried); Heal ends the cut.
type Partitioner interface {
	Partition(a, b Node)
	Heal(a, b Node)
}

// Cutter is implemented by a Network that can take the link between two
// live nodes down while both processes run, the loss that session
// resumption (Config.ResumeWindow) survives: Cut ends every transport
// between a and b at once, as a network failure would (neither node is
// told), and keeps new ones from forming, in either direction, until
// Restore. Connects between them meanwhile fail with an error that may pass.
// The resumption tests skip on a Network without it.
type Cutter interface {
	Cut(t testing.TB, a, b Node)
	Restore(t testing.TB, a, b Node)
}

// Restarter is implemented by a Network that can start a node again after
// Crash: Restart starts a new process under the Identifier of crashed, a
// node that Crash ended, with cfg, as a process restarted with the same key
// would be; its peers reach it the way they reached the old one. The new
// process holds none of the old one's sessions.
type Restarter interface {
	Restart(t testing.TB, crashed Node, cfg p2pconn.Config) Node
}

// Run runs every conformance test as a subtest of t, calling newNetwork once per subtest.
func Run(t *testing.T, newNetwork func(t testing.TB) Network) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newNetwork(t))
		})
	}
}

// tests lists the conformance tests in the order Run runs them.
var tests = []struct {
	name string
	run  func(t *testing.T, net Network)
}{
	// Messaging.
	{"SendReceiveBothDirections", testSendReceiveBothDirections},
	{"SendCopiesMessage", testSendCopiesMessage},
	{"EmptyMessage", testEmptyMessage},
	{"OrderAndBoundaries", testOrderAndBoundaries},
	{"NextCancelledLosesNothing", testNextCancelledLosesNothing},
	{"SendHonoursContextUnderBackpressure", testSendHonoursContextUnderBackpressure},

	// One connection per peer.
	{"ConnectReturnsCachedConnection", testConnectReturnsCachedConnection},
	{"ConcurrentConnect", testConcurrentConnect},
	{"SimultaneousConnect", testSimultaneousConnect},
	{"ConnectSelf", testConnectSelf},
	{"ConnectUnknownPeer", testConnectUnknownPeer},
	{"ReconnectAfterRemoteClose", testReconnectAfterRemoteClose},
	{"ConnectFailFast", testConnectFailFast},
	{"ConnectRetries", testConnectRetries},
	{"ConnectRetriesAcrossHeal", testConnectRetriesAcrossHeal},

	// Accept.
	{"AcceptYieldsEachInboundOnce", testAcceptYieldsEachInboundOnce},
	{"AcceptCancelledContext", testAcceptCancelledContext},
	{"AcceptQueuesDeadConnection", testAcceptQueuesDeadConnection},
	{"NoAcceptNeeded", testNoAcceptNeeded},
	{"FullAcceptQueueNeverBlocks", testFullAcceptQueueNeverBlocks},

	// Close and loss.
	{"CloseSemantics", testCloseSemantics},
	{"ConcurrentClose", testConcurrentClose},
	{"CloseReleasesBlockedSendAndNext", testCloseReleasesBlockedSendAndNext},
	{"RemoteCloseDrainsBufferedMessages", testRemoteCloseDrainsBufferedMessages},
	{"Disconnect", testDisconnect},
	{"DisconnectUnknownPeer", testDisconnectUnknownPeer},
	{"CrashIsLoss", testCrashIsLoss},

	// Limits.
	{"MaxMessageSize", testMaxMessageSize},
	{"DifferentMaxMessageSize", testDifferentMaxMessageSize},
	{"MaxConnections", testMaxConnections},

	// Events.
	{"Subscribe", testSubscribe},

	// Delivery.
	{"DeliveryCloseSlowReader", testDeliveryCloseSlowReader},
	{"SlowReaderSeesClose", testSlowReaderSeesClose},
	{"DisconnectThenConnectToSlowReader", testDisconnectThenConnectToSlowReader},

	// Connection policy.
	{"Protect", testProtect},
	{"Probe", testProbe},
	{"UnreachableFor", testUnreachableFor},
	{"IdleTimeout", testIdleTimeout},
	{"IdleCloseLosesNothing", testIdleCloseLosesNothing},
	{"EvictAtLimit", testEvictAtLimit},
	{"PeerLeft", testPeerLeft},

	// Session resumption.
	{"ResumeAcrossCut", testResumeAcrossCut},
	{"ResumeWithoutTraffic", testResumeWithoutTraffic},
	{"ResumeWindowExpires", testResumeWindowExpires},
	{"ResumeEndsOnRestart", testResumeEndsOnRestart},
	{"CloseWhileResuming", testCloseWhileResuming},
	{"SendPushBackWhileResuming", testSendPushBackWhileResuming},

	// Manager lifecycle.
	{"CloseAll", testCloseAll},
	{"ManagerClose", testManagerClose},
	{"StressCloseAllThenClose", testStressCloseAllThenClose},
}
