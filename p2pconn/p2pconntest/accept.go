package p2pconntest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// testAcceptYieldsEachInboundOnce: Accept yields every connection a remote
// opened, once, and none that the node opened itself.
func testAcceptYieldsEachInboundOnce(t *testing.T, net Network) {
	ns := nodes(t, net, 5, config())
	a, peers, d := ns[0], ns[1:4], ns[4]

	want := make(map[identity.Identifier]bool)
	for _, p := range peers {
		connect(t, p, a)
		want[p.ID] = true
	}
	for range peers {
		c := accept(t, a)
		require.True(t, want[c.RemoteID()], "Accept yielded %s, which is not an unaccepted inbound peer", c.RemoteID().Short())
		delete(want, c.RemoteID())
		got, ok := a.Manager.GetConnection(c.RemoteID())
		require.True(t, ok)
		requireSameConn(t, c, got, "accepted connection vs GetConnection")
	}
	requireNoAccept(t, a)

	// An outbound connection is the remote's to accept.
	connect(t, a, d)
	requireNoAccept(t, a)
	c := accept(t, d)
	require.Equal(t, a.ID, c.RemoteID())
}

// testAcceptCancelledContext: Accept returns its ctx's error, whether the ctx
// ended before the call or during it.
func testAcceptCancelledContext(t *testing.T, net Network) {
	a := net.NewNode(t, config())

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	within(t, stuck, "Accept", func() { _, err = a.Manager.Accept(cancelled) })
	require.ErrorIs(t, err, context.Canceled)

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		_, err := a.Manager.Accept(ctx)
		result <- err
	}()
	cancel()
	select {
	case err := <-result:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(opTimeout):
		require.FailNow(t, "Accept ignored the end of its ctx")
	}

	// The manager still accepts.
	b := net.NewNode(t, config())
	connect(t, b, a)
	require.Equal(t, b.ID, accept(t, a).RemoteID())
}

// testAcceptQueuesDeadConnection: an inbound connection that died before it
// was accepted is still yielded, with its messages readable.
func testAcceptQueuesDeadConnection(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]

	cb := connect(t, b, a)
	for _, m := range []string{"one", "two", "three"} {
		send(t, cb, []byte(m))
	}
	require.NoError(t, cb.Close())
	// The acceptor may settle the connection after the opener's Connect
	// returned (the opener sends CONFIRM and goes on), so a can see it
	// arrive, then die.
	requireLeftPool(t, a, b.ID)
	require.Eventually(t, func() bool { return a.Manager.ConnectionCount() == 0 }, eventually, tick)

	ca := accept(t, a)
	require.Equal(t, b.ID, ca.RemoteID())
	require.Eventually(t, func() bool { return !ca.IsAlive() }, eventually, tick)
	requireDrainThenGoodbye(t, ca, "one", "two", "three")
	requireDead(t, ca)
}

// testNoAcceptNeeded: a node that never calls Accept still reaches inbound
// connections through GetConnection and Connect, and nothing blocks.
func testNoAcceptNeeded(t *testing.T, net Network) {
	ns := nodes(t, net, 6, config())
	a, peers := ns[0], ns[1:]

	outbound := make([]p2pconn.Connection, len(peers))
	for i, p := range peers {
		outbound[i] = connect(t, p, a)
		send(t, outbound[i], fmt.Appendf(nil, "hello from %d", i))
	}
	for i, p := range peers {
		require.Eventually(t, func() bool {
			_, ok := a.Manager.GetConnection(p.ID)
			return ok
		}, eventually, tick, "inbound connection from peer %d not in the pool", i)
		got, _ := a.Manager.GetConnection(p.ID)
		requireSameConn(t, got, connect(t, a, p), "Connect must return the inbound connection")
		recvString(t, got, fmt.Sprintf("hello from %d", i))
		send(t, got, fmt.Appendf(nil, "reply to %d", i))
		recvString(t, outbound[i], fmt.Sprintf("reply to %d", i))
	}
	require.Equal(t, len(peers), a.Manager.ConnectionCount())
}

// testFullAcceptQueueNeverBlocks: inbound connections keep coming and going
// while nobody accepts; no Connect blocks on the unread queue, each either
// works or is refused, and once the queue is drained new ones get in.
func testFullAcceptQueueNeverBlocks(t *testing.T, net Network) {
	cfg := config()
	cfg.MaxConnections = 2
	a := net.NewNode(t, cfg)

	opened := 0
	for i := range 6 {
		p := net.NewNode(t, config())
		c, err := p.Manager.Connect(testkit.Context(t, opTimeout), a.ID)
		if err != nil {
			require.ErrorIs(t, err, p2pconn.ErrRefused, "connect %d", i)
			continue
		}
		opened++
		send(t, c, fmt.Appendf(nil, "from %d", i))
		require.NoError(t, c.Close())
		requireLeftPool(t, a, p.ID)
	}
	require.GreaterOrEqual(t, opened, cfg.MaxConnections, "the first connections must fit in the accept queue")

	// Drain: whatever the queue kept is dead, with its message readable.
	for {
		var c p2pconn.Connection
		var err error
		within(t, quiet+stuck, "Accept", func() { c, err = a.Manager.Accept(testkit.Context(t, quiet)) })
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		msg := recv(t, c)
		require.Contains(t, string(msg), "from ")
		_, err = c.Next(testkit.Context(t, opTimeout))
		requireGoodbye(t, err)
	}

	p := net.NewNode(t, config())
	c := connect(t, p, a)
	ca := accept(t, a)
	require.Equal(t, p.ID, ca.RemoteID())
	send(t, c, []byte("in"))
	recvString(t, ca, "in")
}
