package resolver

import (
	"context"
	"sync"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

func TestStaticAddResolveRemove(t *testing.T) {
	ctx := context.Background()
	s := NewStatic()
	id, other := newID(t), newID(t)
	a1 := mustAddr(t, "/ip4/10.0.0.1/tcp/4001")
	a2 := mustAddr(t, "/ip4/10.0.0.1/udp/4001/quic-v1")

	_, err := s.Resolve(ctx, id)
	require.ErrorIs(t, err, ErrNotFound)
	require.Zero(t, s.Len())
	require.Nil(t, s.Addrs(id))

	s.Add(id) // no address: no entry
	s.Add(id, nil, ma.Multiaddr{})
	require.Zero(t, s.Len())

	s.Add(id, a1, a2)
	s.Add(id, a1) // duplicate
	require.Equal(t, 1, s.Len())
	require.Equal(t, []ma.Multiaddr{a1, a2}, s.Addrs(id))

	info, err := s.Resolve(ctx, id)
	require.NoError(t, err)
	require.Equal(t, id.PeerID(), info.ID)
	require.Equal(t, []ma.Multiaddr{a1, a2}, info.Addrs)

	// The answer is a copy.
	info.Addrs[0] = a2
	require.Equal(t, []ma.Multiaddr{a1, a2}, s.Addrs(id))

	_, err = s.Resolve(ctx, other)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, other.Short())

	s.Remove(id)
	require.Zero(t, s.Len())
	_, err = s.Resolve(ctx, id)
	require.ErrorIs(t, err, ErrNotFound)
	s.Remove(id) // unknown: no-op
}

func TestStaticCanceledContext(t *testing.T) {
	s := NewStatic()
	id := newID(t)
	s.Add(id, mustAddr(t, "/ip4/10.0.0.1/tcp/4001"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Resolve(ctx, id)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrNotFound)
}

func TestStaticConcurrent(t *testing.T) {
	s := NewStatic()
	ids := []identity.Identifier{newID(t), newID(t), newID(t)}
	a := mustAddr(t, "/ip4/10.0.0.1/tcp/4001")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := ids[(g+i)%len(ids)]
				switch i % 4 {
				case 0:
					s.Add(id, a)
				case 1:
					_, _ = s.Resolve(context.Background(), id)
				case 2:
					_ = s.Addrs(id)
					_ = s.Len()
				case 3:
					s.Remove(id)
				}
			}
		})
	}
	wg.Wait()
}
