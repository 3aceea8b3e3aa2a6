package resolver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	"github.com/stretchr/testify/require"
)

// fakeRouter is a routing.PeerRouting that answers with fn.
type fakeRouter func(ctx context.Context, p peer.ID) (peer.AddrInfo, error)

func (f fakeRouter) FindPeer(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
	return f(ctx, p)
}

var _ routing.PeerRouting = fakeRouter(nil)

func TestDHTErrorMapping(t *testing.T) {
	id := newID(t)
	good := answer(t, id, "/ip4/127.0.0.1/tcp/4001")
	netErr := errors.New("connection refused")
	for _, tc := range []struct {
		name     string
		info     peer.AddrInfo
		err      error
		notFound bool  // the error must match ErrNotFound, else must not
		also     error // the error must also match this
	}{
		{name: "routing not found", err: routing.ErrNotFound, notFound: true, also: routing.ErrNotFound},
		{name: "wrapped routing not found", err: fmt.Errorf("lookup: %w", routing.ErrNotFound), notFound: true, also: routing.ErrNotFound},
		{name: "answer without addresses", info: peer.AddrInfo{ID: id.PeerID()}, notFound: true},
		{name: "answer for another peer", info: answer(t, newID(t), "/ip4/127.0.0.1/tcp/1"), also: ErrPeerMismatch},
		{name: "network error", err: netErr, also: netErr},
		{name: "empty routing table", err: kb.ErrLookupFailure, also: kb.ErrLookupFailure},
		{name: "deadline from router", err: context.DeadlineExceeded, also: context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewDHT(fakeRouter(func(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
				require.Equal(t, id.PeerID(), p)
				return tc.info, tc.err
			}))
			_, err := r.Resolve(context.Background(), id)
			require.Error(t, err)
			require.ErrorContains(t, err, id.Short())
			require.Equal(t, tc.notFound, errors.Is(err, ErrNotFound), "ErrNotFound match for %v", err)
			if tc.also != nil {
				require.ErrorIs(t, err, tc.also)
			}
		})
	}

	t.Run("success", func(t *testing.T) {
		r := NewDHT(fakeRouter(func(context.Context, peer.ID) (peer.AddrInfo, error) { return good, nil }))
		info, err := r.Resolve(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, good, info)
	})
}

// TestDHTContextEnds checks that a lookup cut short by ctx is never reported as
// not found, although kad-dht's FindPeer then returns routing.ErrNotFound.
func TestDHTContextEnds(t *testing.T) {
	id := newID(t)
	kadLike := fakeRouter(func(ctx context.Context, _ peer.ID) (peer.AddrInfo, error) {
		<-ctx.Done()
		return peer.AddrInfo{}, routing.ErrNotFound
	})

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := NewDHT(kadLike).Resolve(ctx, id)
			errc <- err
		}()
		cancel()
		err := <-errc
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrNotFound)
	})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := NewDHT(kadLike).Resolve(ctx, id)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, ErrNotFound)
	})

	t.Run("already canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := NewDHT(fakeRouter(func(context.Context, peer.ID) (peer.AddrInfo, error) {
			t.Error("router called with a canceled ctx")
			return peer.AddrInfo{}, nil
		})).Resolve(ctx, id)
		require.ErrorIs(t, err, context.Canceled)
	})
}

// hostRouter is a fakeRouter with a Host whose peerstore is ps, like a
// *dht.IpfsDHT.
type hostRouter struct {
	fakeRouter
	ps peerstore.Peerstore
}

func (r hostRouter) Host() host.Host { return psHost{ps: r.ps, bus: eventbus.NewBus()} }

// psHost is a host.Host of which only Peerstore and EventBus work.
type psHost struct {
	host.Host
	ps  peerstore.Peerstore
	bus event.Bus
}

func (h psHost) Peerstore() peerstore.Peerstore { return h.ps }
func (h psHost) EventBus() event.Bus            { return h.bus }

// TestDHTLooksAgainForMovedPeer checks the second lookup NewDHT makes when
// kad-dht reports not found but the lookup brought addresses for the peer.
func TestDHTLooksAgainForMovedPeer(t *testing.T) {
	ps, err := pstoremem.NewPeerstore()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ps.Close()) })
	moved, gone := newID(t), newID(t)
	newAddr := mustAddr(t, "/ip4/127.0.0.1/tcp/4002")
	ps.AddAddr(moved.PeerID(), newAddr, peerstore.TempAddrTTL)

	calls := 0
	r := NewDHT(hostRouter{ps: ps, fakeRouter: func(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
		calls++
		if p == moved.PeerID() && calls == 2 {
			return peer.AddrInfo{ID: p, Addrs: ps.Addrs(p)}, nil
		}
		return peer.AddrInfo{}, routing.ErrNotFound
	}})

	info, err := r.Resolve(context.Background(), moved)
	require.NoError(t, err)
	require.Equal(t, answer(t, moved, newAddr.String()), info)
	require.Equal(t, 2, calls)

	// A peer the lookup heard nothing of is not looked up twice.
	calls = 0
	_, err = r.Resolve(context.Background(), gone)
	require.ErrorIs(t, err, ErrNotFound)
	require.Equal(t, 1, calls)

	// Nor is one found not found twice.
	calls = 10
	_, err = r.Resolve(context.Background(), moved)
	require.ErrorIs(t, err, ErrNotFound)
	require.Equal(t, 12, calls)
}
