package p2pconntest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// testConnectReturnsCachedConnection: Connect returns the live connection,
// on the opening side and on the accepting side, which also finds it with
// GetConnection; the two sides are the two ends of one connection.
func testConnectReturnsCachedConnection(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)

	requireSameConn(t, ca, connect(t, a, b), "second Connect on the opening side")
	got, ok := a.Manager.GetConnection(b.ID)
	require.True(t, ok)
	requireSameConn(t, ca, got, "GetConnection on the opening side")

	requireSameConn(t, cb, connect(t, b, a), "Connect on the accepting side must return the connection the remote opened")
	got, ok = b.Manager.GetConnection(a.ID)
	require.True(t, ok)
	requireSameConn(t, cb, got, "GetConnection on the accepting side")

	require.Equal(t, 1, a.Manager.ConnectionCount())
	require.Equal(t, 1, b.Manager.ConnectionCount())
	require.Equal(t, []identity.Identifier{b.ID}, a.Manager.ConnectedPeers())
	require.Equal(t, []identity.Identifier{a.ID}, b.Manager.ConnectedPeers())

	send(t, ca, []byte("a->b"))
	recvString(t, cb, "a->b")
	send(t, cb, []byte("b->a"))
	recvString(t, ca, "b->a")
	requireNoAccept(t, a)
	requireNoAccept(t, b)
}

// testConcurrentConnect: 50 goroutines connecting at once share one
// connection.
func testConcurrentConnect(t *testing.T, net Network) {
	const callers = 50
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ctx := testkit.Context(t, opTimeout)

	start := make(chan struct{})
	conns := make([]p2pconn.Connection, callers)
	var failures errs
	var wg waitGroup
	for i := range conns {
		wg.Go(func() {
			<-start
			c, err := a.Manager.Connect(ctx, b.ID)
			if err != nil {
				failures.add(fmt.Errorf("connect %d: %w", i, err))
			}
			conns[i] = c
		})
	}
	close(start)
	wg.wait(t, opTimeout, "concurrent Connects")
	failures.require(t)
	for i, c := range conns {
		requireSameConn(t, conns[0], c, "Connect %d", i)
	}
	require.Equal(t, 1, a.Manager.ConnectionCount())

	cb := accept(t, b)
	require.Equal(t, 1, b.Manager.ConnectionCount())
	requireNoAccept(t, b)
	send(t, conns[0], []byte("one"))
	recvString(t, cb, "one")
	send(t, cb, []byte("two"))
	recvString(t, conns[0], "two")
}

// testSimultaneousConnect: when both sides connect at the same instant and
// send at once, each side ends with one connection, the one every Connect
// returned, and every message arrives once, in order.
func testSimultaneousConnect(t *testing.T, net Network) {
	const (
		trials   = 10
		messages = 20
	)
	for trial := range trials {
		ok := t.Run(fmt.Sprintf("trial%d", trial), func(t *testing.T) {
			// Each side sends everything before reading: leave room for it.
			cfg := config()
			cfg.ReceiveBuffer = 2 * messages
			ns := nodes(t, net, 2, cfg)
			a, b := ns[0], ns[1]
			ctx := testkit.Context(t, opTimeout)

			start := make(chan struct{})
			var conns [2]p2pconn.Connection
			var failures errs
			var wg waitGroup
			for side, ends := range [2][2]Node{{a, b}, {b, a}} {
				from, to := ends[0], ends[1]
				wg.Go(func() {
					<-start
					c, err := from.Manager.Connect(ctx, to.ID)
					if err != nil {
						failures.add(fmt.Errorf("connect %s -> %s: %w", from.ID.Short(), to.ID.Short(), err))
						return
					}
					conns[side] = c
					for i := range messages {
						if err := c.Send(ctx, fmt.Appendf(nil, "%s %d", from.ID.Short(), i)); err != nil {
							failures.add(fmt.Errorf("send %s -> %s %d: %w", from.ID.Short(), to.ID.Short(), i, err))
							return
						}
					}
				})
			}
			close(start)
			wg.wait(t, opTimeout, "simultaneous Connects")
			failures.require(t)

			for side, n := range []Node{a, b} {
				peer := []Node{b, a}[side]
				c := conns[side]
				require.Equal(t, 1, n.Manager.ConnectionCount(), "connections of %s", n.ID.Short())
				got, ok := n.Manager.GetConnection(peer.ID)
				require.True(t, ok)
				requireSameConn(t, c, got, "GetConnection on %s", n.ID.Short())
				requireSameConn(t, c, connect(t, n, peer), "Connect again on %s", n.ID.Short())
				for i := range messages {
					recvString(t, c, fmt.Sprintf("%s %d", peer.ID.Short(), i))
				}
			}
			requireNothingMore(t, conns[:]...)
			for _, c := range conns {
				requireAlive(t, c)
			}
		})
		if !ok {
			break
		}
	}
}

// testConnectSelf: a node cannot connect to itself.
func testConnectSelf(t *testing.T, net Network) {
	a := net.NewNode(t, config())
	_, err := a.Manager.Connect(testkit.Context(t, opTimeout), a.ID)
	require.ErrorIs(t, err, p2pconn.ErrSelfConnect)
	require.Zero(t, a.Manager.ConnectionCount())
	_, ok := a.Manager.GetConnection(a.ID)
	require.False(t, ok)
}

// testConnectUnknownPeer: an Identifier nobody uses cannot be resolved.
func testConnectUnknownPeer(t *testing.T, net Network) {
	a := net.NewNode(t, config())
	unknown := randomID(t)
	_, err := a.Manager.Connect(testkit.Context(t, opTimeout), unknown)
	require.ErrorIs(t, err, resolver.ErrNotFound)
	require.Zero(t, a.Manager.ConnectionCount())
	_, ok := a.Manager.GetConnection(unknown)
	require.False(t, ok)
}

// testReconnectAfterRemoteClose: a dead connection stays dead; the next
// Connect makes a new one that works.
func testReconnectAfterRemoteClose(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	send(t, ca, []byte("old"))
	recvString(t, cb, "old")

	require.NoError(t, cb.Close())
	require.Eventually(t, func() bool { return !ca.IsAlive() }, eventually, tick, "remote close not noticed")
	requireLeftPool(t, a, b.ID)

	ca2 := connect(t, a, b)
	require.False(t, ca == ca2, "Connect returned the dead connection")
	cb2 := accept(t, b)
	require.Equal(t, a.ID, cb2.RemoteID())
	require.False(t, cb == cb2)
	got, ok := b.Manager.GetConnection(a.ID)
	require.True(t, ok)
	requireSameConn(t, cb2, got, "GetConnection on the accepting side")

	send(t, ca2, []byte("new a->b"))
	recvString(t, cb2, "new a->b")
	send(t, cb2, []byte("new b->a"))
	recvString(t, ca2, "new b->a")
	requireAlive(t, ca2)
	requireAlive(t, cb2)

	requireDead(t, ca)
	requireDead(t, cb)
	require.ErrorIs(t, ca.Send(testkit.Context(t, opTimeout), []byte("x")), p2pconn.ErrConnectionClosed)
	require.Equal(t, 1, a.Manager.ConnectionCount())
	require.Equal(t, 1, b.Manager.ConnectionCount())
}
