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
// The exchanges run with session resumption: where hole punching opens a
// direct connection, the skipwire connection moves to it while the
// messages stream, and the relayed connection is closed; the scenario
// checks that the skipwire connection ends on the direct path, the only
// libp2p connection left to the peer.
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
