package resolver

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
)

func TestPeerstore(t *testing.T) {
	ps, err := pstoremem.NewPeerstore()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ps.Close()) })
	r := NewPeerstore(ps)
	ctx := context.Background()

	id, unknown := newID(t), newID(t)
	a := mustAddr(t, "/ip4/127.0.0.1/tcp/4001")
	ps.AddAddr(id.PeerID(), a, peerstore.PermanentAddrTTL)

	info, err := r.Resolve(ctx, id)
	require.NoError(t, err)
	require.Equal(t, id.PeerID(), info.ID)
	require.Equal(t, []ma.Multiaddr{a}, info.Addrs)

	_, err = r.Resolve(ctx, unknown)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, "peerstore")

	// A peer whose addresses expired or were cleared is not found.
	ps.ClearAddrs(id.PeerID())
	_, err = r.Resolve(ctx, id)
	require.ErrorIs(t, err, ErrNotFound)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ps.AddAddr(id.PeerID(), a, peerstore.PermanentAddrTTL)
	_, err = r.Resolve(cctx, id)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrNotFound)
}

func TestPeerstoreOfHost(t *testing.T) {
	a, b := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
	ctx := context.Background()
	r := NewPeerstore(a.Peerstore())

	_, err := r.Resolve(ctx, hostID(t, b))
	require.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, a.Connect(ctx, addrInfo(b)))
	info, err := r.Resolve(ctx, hostID(t, b))
	require.NoError(t, err)
	require.Equal(t, b.ID(), info.ID)
	require.Subset(t, info.Addrs, b.Addrs())
}
