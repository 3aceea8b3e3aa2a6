package memnet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// A connection the peer opens clears the failure to reach it, even without
// a Heal (here the cut is lifted behind the managers' backs).
func TestInboundClearsRecentFailure(t *testing.T) {
	net := NewNetwork()
	cfg := p2pconn.Config{UnreachableFor: time.Minute}
	a, err := net.NewManager(identity.Identifier{1}, cfg)
	require.NoError(t, err)
	defer a.Close()
	b, err := net.NewManager(identity.Identifier{2}, cfg)
	require.NoError(t, err)
	defer b.Close()
	ctx := testkit.Context(t, 10*time.Second)

	net.Partition(a.ID(), b.ID())
	_, err = a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, ErrUnreachable)
	net.mu.Lock()
	delete(net.cuts, keyOf(a.ID(), b.ID()))
	net.mu.Unlock()
	_, err = a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, p2pconn.ErrUnreachable, "remembered until something clears it")

	_, err = b.Connect(ctx, a.ID())
	require.NoError(t, err)
	require.NoError(t, a.Disconnect(b.ID()))
	_, err = a.Connect(ctx, b.ID())
	require.NoError(t, err, "the connection b opened cleared the failure")
}
