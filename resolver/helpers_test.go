package resolver

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
)

// newID returns the Identifier of a fresh Ed25519 key.
func newID(t testing.TB) identity.Identifier {
	t.Helper()
	k, err := identity.GenerateKey()
	require.NoError(t, err)
	id, err := identity.FromPrivateKey(k)
	require.NoError(t, err)
	return id
}

func mustAddr(t testing.TB, s string) ma.Multiaddr {
	t.Helper()
	a, err := ma.NewMultiaddr(s)
	require.NoError(t, err)
	return a
}

// hostID returns the Identifier of h.
func hostID(t testing.TB, h host.Host) identity.Identifier {
	t.Helper()
	id, err := identity.FromPeerID(h.ID())
	require.NoError(t, err)
	return id
}

func addrInfo(h host.Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// answer returns a good answer for id.
func answer(t testing.TB, id identity.Identifier, addrs ...string) peer.AddrInfo {
	t.Helper()
	info := peer.AddrInfo{ID: id.PeerID()}
	for _, s := range addrs {
		info.Addrs = append(info.Addrs, mustAddr(t, s))
	}
	return info
}

// fakeResolver answers with fn and counts its calls.
type fakeResolver struct {
	fn    func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error)
	calls atomic.Int64
}

func (f *fakeResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	f.calls.Add(1)
	return f.fn(ctx, id)
}

// fixed returns a fakeResolver that always gives info and err.
func fixed(info peer.AddrInfo, err error) *fakeResolver {
	return &fakeResolver{fn: func(context.Context, identity.Identifier) (peer.AddrInfo, error) {
		return info, err
	}}
}

// fakeClock is a settable clock for Cache expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
