package p2pconn_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// TestAllowList: a node with an allow list reaches, and is reached by, the
// listed nodes only; every refusal is counted, in Refused and in the
// Prometheus counter; allowing and denying take effect for new connections.
func TestAllowList(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			// b, cut off by a below, resumes until its window passes.
			cfgB := testConfig()
			cfgB.ResumeWindow = 500 * time.Millisecond
			b, d := c.node(cfgB), c.node(testConfig())
			al := p2pconn.NewAllowList(b.id)
			reg := prometheus.NewRegistry()
			reg.MustRegister(al)
			var resolves atomic.Int64
			a := gatedNode(c, al, &resolves)
			ctx := testkit.Context(t, 30*time.Second)
			require.True(t, al.Allowed(b.id))
			require.False(t, al.Allowed(d.id))

			// A member: both directions work.
			connectAndExchange(t, ctx, a, b)

			// A stranger, dialed: refused before the dial, not retried.
			before := resolves.Load()
			_, err := a.m.Connect(ctx, d.id)
			require.ErrorIs(t, err, swarm.ErrGaterDisallowedConnection)
			require.NotContains(t, err.Error(), "attempt 2", "a gater refusal is not retried")
			require.Equal(t, before+1, resolves.Load(), "one attempt")
			_, out := al.Refused()
			require.Equal(t, uint64(1), out)

			// A stranger, dialing: closed after the secure handshake.
			_, err = d.m.Connect(ctx, a.id)
			require.Error(t, err)
			require.Eventually(t, func() bool { return libp2pConns(a, d) == 0 && libp2pConns(d, a) == 0 }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, 1, a.m.ConnectionCount(), "only the member")
			in, out := al.Refused()
			require.GreaterOrEqual(t, in, uint64(1), "the stranger's connections are counted")
			got := gather(t, reg)
			require.Equal(t, float64(in), got["skipwire_gater_refusals_total{direction=inbound,gater=allow_list}"])
			require.Equal(t, float64(out), got["skipwire_gater_refusals_total{direction=outbound,gater=allow_list}"])

			// Admitted, the stranger dials in; the member, denied and cut
			// off, cannot come back.
			al.Allow(d.id)
			connectAndExchange(t, ctx, d, a)
			al.Deny(b.id)
			require.False(t, al.Allowed(b.id))
			require.NoError(t, a.m.Disconnect(b.id))
			require.NoError(t, a.h.Network().ClosePeer(b.h.ID()))
			require.Eventually(t, func() bool {
				_, ok := b.m.GetConnection(a.id)
				return !ok && libp2pConns(a, b) == 0 && libp2pConns(b, a) == 0
			}, 5*time.Second, 10*time.Millisecond, "b sees the connection gone")
			_, err = b.m.Connect(ctx, a.id)
			require.Error(t, err)
			_, err = a.m.Connect(ctx, b.id)
			require.ErrorIs(t, err, swarm.ErrGaterDisallowedConnection)
			require.Equal(t, []identity.Identifier{d.id}, a.m.ConnectedPeers())
		})
	}
}

// TestAllowListGater checks each interception point directly: only listed
// Ed25519 peers pass, each refusal is counted once in its direction, and
// the checks do not allocate.
func TestAllowListGater(t *testing.T) {
	var member, stranger identity.Identifier
	member[0], stranger[0] = 1, 2
	ekey, _, err := crypto.GenerateECDSAKeyPair(cryptoRand{})
	require.NoError(t, err)
	ecdsa, err := peer.IDFromPrivateKey(ekey)
	require.NoError(t, err)

	al := p2pconn.NewAllowList(member, member)
	al.Deny(stranger) // not listed: nothing happens
	mp, sp := member.PeerID(), stranger.PeerID()

	require.True(t, al.InterceptPeerDial(mp))
	require.False(t, al.InterceptPeerDial(sp))
	require.False(t, al.InterceptPeerDial(ecdsa), "a peer without an Identifier is no member")
	require.True(t, al.InterceptAddrDial(sp, nil), "checked by InterceptPeerDial")
	require.True(t, al.InterceptAccept(nil), "the peer is not known yet")
	in, out := al.Refused()
	require.Equal(t, [2]uint64{0, 2}, [2]uint64{in, out})
	for _, dir := range []network.Direction{network.DirInbound, network.DirOutbound} {
		require.True(t, al.InterceptSecured(dir, mp, nil))
		require.False(t, al.InterceptSecured(dir, sp, nil))
		require.False(t, al.InterceptSecured(dir, ecdsa, nil))
	}
	in, out = al.Refused()
	require.Equal(t, [2]uint64{2, 4}, [2]uint64{in, out})

	allocs := testing.AllocsPerRun(100, func() {
		_ = al.InterceptPeerDial(mp)
		_ = al.InterceptPeerDial(sp)
		_ = al.InterceptSecured(network.DirInbound, sp, nil)
		_ = al.InterceptSecured(network.DirInbound, ecdsa, nil)
	})
	require.Zero(t, allocs)

	al.Deny(member)
	require.False(t, al.InterceptPeerDial(mp))
	require.False(t, p2pconn.NewAllowList().InterceptPeerDial(mp), "an empty list refuses everybody")
}

// TestGatersShareRegistry: an allow list and a deny list register on one
// registry, each under its own gater label.
func TestGatersShareRegistry(t *testing.T) {
	var id identity.Identifier
	al, dl := p2pconn.NewAllowList(), p2pconn.NewDenyList()
	dl.Deny(id)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(al))
	require.NoError(t, reg.Register(dl))
	require.False(t, al.InterceptSecured(network.DirInbound, id.PeerID(), nil))
	require.False(t, dl.InterceptPeerDial(id.PeerID()))
	got := gather(t, reg)
	require.Equal(t, 1.0, got["skipwire_gater_refusals_total{direction=inbound,gater=allow_list}"])
	require.Equal(t, 0.0, got["skipwire_gater_refusals_total{direction=outbound,gater=allow_list}"])
	require.Equal(t, 1.0, got["skipwire_gater_refusals_total{direction=outbound,gater=deny_list}"])
	require.Equal(t, 0.0, got["skipwire_gater_refusals_total{direction=inbound,gater=deny_list}"])
}

// TestAllowListConcurrent runs every method at once, for the race detector.
func TestAllowListConcurrent(t *testing.T) {
	al := p2pconn.NewAllowList()
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
					al.Allow(id)
				case 1:
					al.Deny(id)
				case 2:
					_ = al.Allowed(id)
					_, _ = al.Refused()
				default:
					_ = al.InterceptPeerDial(id.PeerID())
					_ = al.InterceptSecured(network.DirInbound, id.PeerID(), nil)
				}
			}
		})
	}
	wg.Wait()
	al.Allow(ids...)
	for _, id := range ids {
		require.True(t, al.Allowed(id))
	}
}
