package p2pconntest

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// testMaxMessageSize: a message over MaxMessageSize fails with
// ErrMessageTooLarge and the connection keeps working; one at the limit
// passes.
func testMaxMessageSize(t *testing.T, net Network) {
	const limit = 1 << 10
	cfg := config()
	cfg.MaxMessageSize = limit
	ns := nodes(t, net, 2, cfg)
	ca, cb := pair(t, ns[0], ns[1])
	ctx := testkit.Context(t, opTimeout)

	require.ErrorIs(t, ca.Send(ctx, make([]byte, limit+1)), p2pconn.ErrMessageTooLarge)
	require.ErrorIs(t, cb.Send(ctx, make([]byte, 4*limit)), p2pconn.ErrMessageTooLarge)
	requireAlive(t, ca)
	requireAlive(t, cb)

	full := bytes.Repeat([]byte{0xa5}, limit)
	send(t, ca, full)
	require.Equal(t, full, recv(t, cb))
	send(t, cb, full)
	require.Equal(t, full, recv(t, ca))
	send(t, ca, []byte("still alive"))
	recvString(t, cb, "still alive")
	requireAlive(t, ca)
	requireAlive(t, cb)
}

// testDifferentMaxMessageSize: between nodes with different limits, Send
// checks the smaller on both sides, whichever side opened, and the
// connection survives.
func testDifferentMaxMessageSize(t *testing.T, net Network) {
	const (
		small = 1 << 10
		large = 64 << 10
	)
	for _, smallOpens := range []bool{true, false} {
		name := "LargeOpens"
		if smallOpens {
			name = "SmallOpens"
		}
		t.Run(name, func(t *testing.T) {
			cfgSmall, cfgLarge := config(), config()
			cfgSmall.MaxMessageSize = small
			cfgLarge.MaxMessageSize = large
			s, l := net.NewNode(t, cfgSmall), net.NewNode(t, cfgLarge)
			var cs, cl p2pconn.Connection
			if smallOpens {
				cs, cl = pair(t, s, l)
			} else {
				cl, cs = pair(t, l, s)
			}
			ctx := testkit.Context(t, opTimeout)

			require.ErrorIs(t, cl.Send(ctx, make([]byte, small+1)), p2pconn.ErrMessageTooLarge, "large side sending over the small side's limit")
			require.ErrorIs(t, cs.Send(ctx, make([]byte, small+1)), p2pconn.ErrMessageTooLarge, "small side sending over its own limit")
			require.ErrorIs(t, cl.Send(ctx, make([]byte, large)), p2pconn.ErrMessageTooLarge)
			requireAlive(t, cs)
			requireAlive(t, cl)

			msg := bytes.Repeat([]byte{0x5a}, small)
			send(t, cl, msg)
			require.Equal(t, msg, recv(t, cs))
			send(t, cs, msg)
			require.Equal(t, msg, recv(t, cl))
			requireAlive(t, cs)
			requireAlive(t, cl)
		})
	}
}

// testMaxConnections: a node at MaxConnections refuses to open more
// (ErrTooManyConnections) and refuses inbound ones (ErrRefused), keeps its
// connections working, and takes new ones once one is closed.
func testMaxConnections(t *testing.T, net Network) {
	cfg := config()
	cfg.MaxConnections = 2
	a := net.NewNode(t, cfg)
	ns := nodes(t, net, 3, config())
	b, c, d := ns[0], ns[1], ns[2]

	cab := connect(t, a, b)
	connect(t, a, c)
	require.Equal(t, 2, a.Manager.ConnectionCount())

	_, err := a.Manager.Connect(testkit.Context(t, opTimeout), d.ID)
	require.ErrorIs(t, err, p2pconn.ErrTooManyConnections)
	_, err = d.Manager.Connect(testkit.Context(t, opTimeout), a.ID)
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	require.Zero(t, d.Manager.ConnectionCount())
	require.Equal(t, 2, a.Manager.ConnectionCount())
	_, ok := a.Manager.GetConnection(d.ID)
	require.False(t, ok)

	// The connections in place still work, and Connect still returns them.
	requireSameConn(t, cab, connect(t, a, b), "Connect at the limit")
	send(t, cab, []byte("still here"))
	cba := accept(t, b)
	recvString(t, cba, "still here")

	// Room again after a Disconnect.
	require.NoError(t, a.Manager.Disconnect(b.ID))
	cad := connect(t, a, d)
	cda := accept(t, d)
	send(t, cad, []byte("in"))
	recvString(t, cda, "in")
	require.Equal(t, 2, a.Manager.ConnectionCount())
}
