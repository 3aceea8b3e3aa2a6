package resolver

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

func notFound(id identity.Identifier, who string) error {
	return newError(id, who, ErrNotFound)
}

func TestChainFirstSuccessWins(t *testing.T) {
	id := newID(t)
	first := fixed(peer.AddrInfo{}, notFound(id, "first"))
	second := fixed(answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil)
	third := fixed(answer(t, id, "/ip4/10.0.0.3/tcp/1"), nil)

	info, err := NewChain(first, nil, second, third).Resolve(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)
	require.EqualValues(t, 1, first.calls.Load())
	require.EqualValues(t, 1, second.calls.Load())
	require.Zero(t, third.calls.Load(), "members after the first success must not be asked")
}

func TestChainSkipsBadAnswers(t *testing.T) {
	id := newID(t)
	noAddrs := fixed(peer.AddrInfo{ID: id.PeerID()}, nil)
	wrongPeer := fixed(answer(t, newID(t), "/ip4/10.0.0.1/tcp/1"), nil)
	good := fixed(answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil)

	info, err := NewChain(noAddrs, wrongPeer, good).Resolve(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)

	_, err = NewChain(noAddrs, wrongPeer).Resolve(context.Background(), id)
	require.ErrorIs(t, err, ErrPeerMismatch)
	require.NotErrorIs(t, err, ErrNotFound, "a wrong answer is not a not-found")
}

func TestChainAllNotFound(t *testing.T) {
	id := newID(t)
	errA, errB := notFound(id, "a"), notFound(id, "b")
	_, err := NewChain(fixed(peer.AddrInfo{}, errA), fixed(peer.AddrInfo{}, errB)).Resolve(context.Background(), id)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, err, errA)
	require.ErrorIs(t, err, errB)
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, []error{errA, errB}, ce.Errs)
	require.Equal(t, "resolve "+id.Short()+": chain: a: no address found; b: no address found", err.Error(), "one line")
}

func TestChainMixedErrors(t *testing.T) {
	id := newID(t)
	nf := notFound(id, "static")
	netErr := errors.New("dht: no route")
	_, err := NewChain(fixed(peer.AddrInfo{}, nf), fixed(peer.AddrInfo{}, netErr)).Resolve(context.Background(), id)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrNotFound, "one member not knowing is no proof while another failed")
	require.ErrorIs(t, err, netErr)
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, []error{nf, netErr}, ce.Errs, "every member's error is kept")
	require.ErrorContains(t, err, "static")
}

func TestChainEmpty(t *testing.T) {
	for _, c := range []AddressResolver{NewChain(), NewChain(nil, nil)} {
		_, err := c.Resolve(context.Background(), newID(t))
		require.ErrorIs(t, err, ErrNotFound)
	}
}

func TestChainContextEnds(t *testing.T) {
	id := newID(t)

	t.Run("stops between members", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := &fakeResolver{fn: func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
			cancel() // ctx ends while the first member works
			return peer.AddrInfo{}, notFound(id, "first")
		}}
		second := fixed(answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil)
		_, err := NewChain(first, second).Resolve(ctx, id)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrNotFound, "an interrupted chain proves nothing")
		require.ErrorContains(t, err, "first")
		require.Zero(t, second.calls.Load())
	})

	t.Run("ends in last member", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		slow := &fakeResolver{fn: func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
			<-ctx.Done()
			return peer.AddrInfo{}, notFound(id, "slow") // as kad-dht does
		}}
		_, err := NewChain(fixed(peer.AddrInfo{}, notFound(id, "fast")), slow).Resolve(ctx, id)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, ErrNotFound)
	})

	t.Run("already ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		first := fixed(answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil)
		_, err := NewChain(first).Resolve(ctx, id)
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, first.calls.Load())
	})
}

func TestChainInvalidate(t *testing.T) {
	id := newID(t)
	under := fixed(answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil)
	cache := NewCache(under, time.Hour, time.Hour)
	c := NewChain(NewStatic(), cache)
	inv, ok := c.(Invalidator)
	require.True(t, ok, "a chain is an Invalidator")

	for range 2 {
		_, err := c.Resolve(context.Background(), id)
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, under.calls.Load())
	inv.Invalidate(id)
	_, err := c.Resolve(context.Background(), id)
	require.NoError(t, err)
	require.EqualValues(t, 2, under.calls.Load())
}

// TestChainResolveExcept: after the addresses of an answer failed, the chain
// gives the next member with other addresses its turn, and keeps only those.
func TestChainResolveExcept(t *testing.T) {
	id := newID(t)
	stale := "/ip4/10.0.0.1/tcp/1"
	first := fixed(answer(t, id, stale), nil)
	second := fixed(answer(t, id, stale, "/ip4/10.0.0.2/tcp/1"), nil)
	third := fixed(answer(t, id, "/ip4/10.0.0.3/tcp/1"), nil)
	c := NewChain(first, second, third)
	fb, ok := c.(Fallback)
	require.True(t, ok, "a chain is a Fallback")

	info, err := c.Resolve(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, stale), info, "Resolve: the first answer")

	info, err = fb.ResolveExcept(context.Background(), id, info.Addrs)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info, "the second member's new address only")
	require.Zero(t, third.calls.Load())

	info, err = fb.ResolveExcept(context.Background(), id, []ma.Multiaddr{mustAddr(t, stale), mustAddr(t, "/ip4/10.0.0.2/tcp/1")})
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.3/tcp/1"), info)

	_, err = fb.ResolveExcept(context.Background(), id, []ma.Multiaddr{mustAddr(t, stale), mustAddr(t, "/ip4/10.0.0.2/tcp/1"), mustAddr(t, "/ip4/10.0.0.3/tcp/1")})
	require.ErrorIs(t, err, ErrNotFound, "every address tried")
	require.NotContains(t, err.Error(), "\n")
}

// TestChainResolveExceptAsksFallbackMembers: a member that is a Fallback (a
// Cache) is asked through ResolveExcept, so it looks again.
func TestChainResolveExceptAsksFallbackMembers(t *testing.T) {
	id := newID(t)
	var moved atomic.Bool
	under := &fakeResolver{fn: func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
		if moved.Load() {
			return answer(t, id, "/ip4/10.0.0.2/tcp/1"), nil
		}
		return answer(t, id, "/ip4/10.0.0.1/tcp/1"), nil
	}}
	c := NewChain(NewStatic(), NewCache(under, time.Hour, time.Hour)).(Fallback)
	old, err := c.(AddressResolver).Resolve(context.Background(), id)
	require.NoError(t, err)
	moved.Store(true)
	info, err := c.ResolveExcept(context.Background(), id, old.Addrs)
	require.NoError(t, err)
	require.Equal(t, answer(t, id, "/ip4/10.0.0.2/tcp/1"), info)
	require.EqualValues(t, 2, under.calls.Load())
}
