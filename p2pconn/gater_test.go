package p2pconn_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// gatedNode starts a node whose host has gater g and whose manager resolves
// through c's table, counting the lookups in resolves; cleanup closes its
// manager, then its host.
func gatedNode(c *cluster, g connmgr.ConnectionGater, resolves *atomic.Int64) *node {
	c.t.Helper()
	h := testkit.NewHost(c.t, nil, c.listen, append(p2pconn.HostOptions(testConfig()), libp2p.ConnectionGater(g))...)
	r := resolverFunc(func(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
		resolves.Add(1)
		return c.table.Resolve(ctx, id)
	})
	m, err := p2pconn.NewManager(h, r, testConfig())
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = m.Close() })
	c.table.Add(m.ID(), h.Addrs()...)
	return &node{id: m.ID(), h: h, m: m}
}

// connectAndExchange connects from to to, and checks the connection carries
// messages both ways.
func connectAndExchange(t *testing.T, ctx context.Context, from, to *node) {
	t.Helper()
	cf, err := from.m.Connect(ctx, to.id)
	require.NoError(t, err)
	ct, err := to.m.Connect(ctx, from.id) // the same connection, seen from to
	require.NoError(t, err)
	exchange(t, ctx, cf, ct, 3)
}

// TestDenyList: a node refuses to dial a denied node (a permanent error,
// not retried) and closes the connections a denied node opens to it; once
// allowed again, both directions work.
func TestDenyList(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			dl := p2pconn.NewDenyList()
			var resolves atomic.Int64
			a := gatedNode(c, dl, &resolves)
			b, d := c.node(testConfig()), c.node(testConfig())
			ctx := testkit.Context(t, 30*time.Second)

			dl.Deny(b.id, d.id)
			require.True(t, dl.Denied(b.id))
			require.True(t, dl.Denied(d.id))
			require.False(t, dl.Denied(a.id))

			// Outbound: the dial is refused before it starts, and not retried.
			_, err := a.m.Connect(ctx, b.id)
			require.ErrorIs(t, err, swarm.ErrGaterDisallowedConnection)
			require.Contains(t, err.Error(), b.id.Short())
			require.Contains(t, err.Error(), "attempt 1")
			require.NotContains(t, err.Error(), "attempt 2", "a gater refusal is not retried")
			require.Equal(t, int64(1), resolves.Load(), "one attempt")
			require.Zero(t, libp2pConns(a, b))
			_, out := dl.Refused()
			require.Equal(t, uint64(1), out, "the refused dial is counted")

			// Inbound: the connection is closed after the secure handshake,
			// before the manager sees it.
			for _, o := range []*node{b, d} {
				_, err = o.m.Connect(ctx, a.id)
				require.Error(t, err)
			}
			require.Zero(t, a.m.ConnectionCount())
			require.Zero(t, b.m.ConnectionCount())
			require.Eventually(t, func() bool {
				return libp2pConns(a, b) == 0 && libp2pConns(b, a) == 0 &&
					libp2pConns(a, d) == 0 && libp2pConns(d, a) == 0
			}, 5*time.Second, 10*time.Millisecond)
			in, _ := dl.Refused()
			require.GreaterOrEqual(t, in, uint64(2), "the connections b and d opened are counted")

			// Allowed again: a dials b, and d (refused a moment ago) dials a.
			dl.Allow(b.id)
			require.False(t, dl.Denied(b.id))
			require.True(t, dl.Denied(d.id))
			connectAndExchange(t, ctx, a, b)
			dl.Allow(d.id)
			connectAndExchange(t, ctx, d, a)
			require.Equal(t, 2, a.m.ConnectionCount())
		})
	}
}

// TestDenyListGater checks each interception point directly: only the
// points that know the peer refuse, non-Ed25519 peers pass, and the checks
// do not allocate.
func TestDenyListGater(t *testing.T) {
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	bad, err := identity.FromPrivateKey(key)
	require.NoError(t, err)
	var good identity.Identifier
	good[0] = 1
	ekey, _, err := crypto.GenerateECDSAKeyPair(cryptoRand{})
	require.NoError(t, err)
	ecdsa, err := peer.IDFromPrivateKey(ekey)
	require.NoError(t, err)

	dl := p2pconn.NewDenyList()
	dl.Deny(bad, bad)
	dl.Allow(good) // not listed: nothing happens
	badPeer, goodPeer := bad.PeerID(), good.PeerID()

	require.False(t, dl.InterceptPeerDial(badPeer))
	require.True(t, dl.InterceptPeerDial(goodPeer))
	require.True(t, dl.InterceptPeerDial(ecdsa), "non-Ed25519 peers are not skipwire's business")
	require.True(t, dl.InterceptAddrDial(badPeer, nil), "checked by InterceptPeerDial")
	require.True(t, dl.InterceptAccept(nil), "the peer is not known yet")
	for _, dir := range []network.Direction{network.DirInbound, network.DirOutbound} {
		require.False(t, dl.InterceptSecured(dir, badPeer, nil))
		require.True(t, dl.InterceptSecured(dir, goodPeer, nil))
		require.True(t, dl.InterceptSecured(dir, ecdsa, nil))
	}

	allocs := testing.AllocsPerRun(100, func() {
		_ = dl.InterceptPeerDial(badPeer)
		_ = dl.InterceptPeerDial(goodPeer)
		_ = dl.InterceptSecured(network.DirInbound, badPeer, nil)
		_ = dl.InterceptSecured(network.DirInbound, ecdsa, nil)
	})
	require.Zero(t, allocs)

	dl.Allow(bad)
	require.True(t, dl.InterceptPeerDial(badPeer))
	require.True(t, dl.InterceptSecured(network.DirInbound, badPeer, nil))
}

// TestDenyListConcurrent runs every method at once, for the race detector.
func TestDenyListConcurrent(t *testing.T) {
	dl := p2pconn.NewDenyList()
	ids := make([]identity.Identifier, 8)
	for i := range ids {
		ids[i][0] = byte(i)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := ids[(g+i)%len(ids)]
				switch i % 4 {
				case 0:
					dl.Deny(id)
				case 1:
					dl.Allow(id)
				case 2:
					_ = dl.Denied(id)
				default:
					_ = dl.InterceptPeerDial(id.PeerID())
					_ = dl.InterceptSecured(network.DirInbound, id.PeerID(), nil)
				}
			}
		})
	}
	wg.Wait()
	dl.Allow(ids...)
	for _, id := range ids {
		require.False(t, dl.Denied(id))
	}
}
