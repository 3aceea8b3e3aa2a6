package integration_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/natlab"
	"github.com/skipwire/skipwire/internal/testkit"
)

// TestNATLab runs the NAT lab (package natlab): two nodes, each behind a
// NAT of its own, reach each other by Identifier through a relay and
// exchange numbered messages (none lost, duplicated or out of order) while
// hole punching opens a direct connection over QUIC, then over TCP, through
// cone NATs, and fails through symmetric ones; then a relayed connection
// is driven into each of the relay's limits. Each scenario logs its figures.
//
// The skipwire connection stays on the relayed libp2p connection: it does
// not move to the direct one yet, and the duplicate cleanup closes the
// direct connection about a second after it opens (the side with the
// smaller Identifier closes libp2p connections that carry no skipwire
// stream). The figures say so.
func TestNATLab(t *testing.T) {
	if err := natlab.Unavailable(); err != nil {
		t.Skip(err)
	}
	lab, err := natlab.New()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, lab.Close()) })
	ctx := testkit.Context(t, 3*time.Minute)
	require.NoError(t, lab.Start())
	for _, sc := range natlab.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			res, err := lab.Run(ctx, sc)
			require.NoError(t, err)
			for _, l := range res.Lines() {
				t.Log(l)
			}
			require.Empty(t, res.Problems(sc))
		})
	}
}

// TestNATDirectConnectionKept is what one connection per peer should mean
// behind NAT once skipwire connections move to the direct path: within 2 s
// of hole punching, the skipwire connection runs on the direct libp2p
// connection, and that is the only one left to the peer.
func TestNATDirectConnectionKept(t *testing.T) {
	t.Skip("needs migration (the skipwire connection moves from the relayed stream to the direct one) and a duplicate rule " +
		"that prefers direct over limited connections: today the side with the smaller Identifier keeps only the libp2p " +
		"connection that carries the skipwire stream, the relayed one, and closes the hole-punched connection after " +
		"newConnGrace (1 s); TestNATLab logs it")
	if err := natlab.Unavailable(); err != nil {
		t.Skip(err)
	}
	lab, err := natlab.New()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, lab.Close()) })
	sc := natlab.Scenarios()[0]
	res, err := lab.Run(testkit.Context(t, time.Minute), sc)
	require.NoError(t, err)
	require.NotNil(t, res.Direct)
	require.False(t, res.Direct.Closed, "the direct connection is kept")
	require.NotContains(t, res.PathAtEnd, "/p2p-circuit", "the skipwire connection moved to the direct path")
	require.Len(t, res.ConnsAtEnd, 1, "one libp2p connection to the peer")
}
