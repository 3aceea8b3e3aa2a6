package resolver

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/skipwire/skipwire/internal/testkit"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/stretchr/testify/require"
)

// dhtNodes is the size of the network in TestDHTResolvesEveryNode.
const dhtNodes = 16

// startKadDHTs starts a DHT on each host at once, each with bootstrap and
// opts, and closes them when the test ends (before the hosts, which were
// created first).
func startKadDHTs(t testing.TB, hosts []host.Host, bootstrap []peer.AddrInfo, opts ...dht.Option) []*dht.IpfsDHT {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dhts := make([]*dht.IpfsDHT, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { dhts[i], errs[i] = NewKadDHT(ctx, h, bootstrap, opts...) })
	}
	wg.Wait()
	for _, d := range dhts {
		if d != nil {
			t.Cleanup(func() { require.NoError(t, d.Close()) })
		}
	}
	for _, err := range errs {
		require.NoError(t, err)
	}
	return dhts
}

func TestNewKadDHTFirstNode(t *testing.T) {
	h := testkit.NewHost(t, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Listing itself as a bootstrap peer is the same as listing none.
	d, err := NewKadDHT(ctx, h, []peer.AddrInfo{addrInfo(h)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })

	require.Equal(t, dht.ModeServer, d.Mode())
	require.Contains(t, h.Mux().Protocols(), DHTProtocolPrefix+"/kad/1.0.0")
	require.NotContains(t, h.Mux().Protocols(), dht.DefaultPrefix+"/kad/1.0.0")
	require.Equal(t, h.Addrs(), d.FilteredAddrs(), "loopback addresses must be kept")
	require.Zero(t, d.RoutingTable().Size())
}

func TestNewKadDHTUnreachableBootstrap(t *testing.T) {
	h := testkit.NewHost(t, nil, "")
	gone := testkit.NewHost(t, nil, "")
	ai := addrInfo(gone)
	require.NoError(t, gone.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := NewKadDHT(ctx, h, []peer.AddrInfo{ai})
	require.ErrorContains(t, err, "no bootstrap peer reachable")
	require.Nil(t, d)
}

func TestNewKadDHTSomeBootstrapUnreachable(t *testing.T) {
	seed, h := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
	startKadDHTs(t, []host.Host{seed}, nil)
	gone := testkit.NewHost(t, nil, "")
	ai := addrInfo(gone)
	require.NoError(t, gone.Close())

	dhts := startKadDHTs(t, []host.Host{h}, []peer.AddrInfo{ai, addrInfo(seed)})
	require.Equal(t, []peer.ID{seed.ID()}, dhts[0].RoutingTable().ListPeers())
}

// TestNewKadDHTBootstrapWithoutDHT checks that NewKadDHT gives up when ctx
// ends and its routing table is still empty: here the only bootstrap peer is
// reachable but runs no DHT.
func TestNewKadDHTBootstrapWithoutDHT(t *testing.T) {
	h, plain := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	d, err := NewKadDHT(ctx, h, []peer.AddrInfo{addrInfo(plain)})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "routing table still empty")
	require.Nil(t, d)
}

func TestDHTProtocolPrefixFor(t *testing.T) {
	require.Equal(t, protocol.ID("/skipwire"), DHTProtocolPrefixFor(""))
	require.Equal(t, DHTProtocolPrefix, DHTProtocolPrefixFor(""))
	require.Equal(t, protocol.ID("/skipwire/blue"), DHTProtocolPrefixFor("blue"))
}

// TestDHTNetworkSeparates: DHTs of two networks on hosts connected to each
// other never take each other's nodes into their routing tables, so a node
// cannot join one network through a node of another, nor look up its nodes.
func TestDHTNetworkSeparates(t *testing.T) {
	seed, member, stranger := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
	const blueKad, greenKad = protocol.ID("/skipwire/blue/kad/1.0.0"), protocol.ID("/skipwire/green/kad/1.0.0")
	blue := startKadDHTs(t, []host.Host{seed}, nil, DHTNetwork("blue"))[0]
	startKadDHTs(t, []host.Host{member}, []peer.AddrInfo{addrInfo(seed)}, DHTNetwork("blue"))
	require.Contains(t, seed.Mux().Protocols(), blueKad)
	require.NotContains(t, seed.Mux().Protocols(), DHTProtocolPrefix+"/kad/1.0.0")

	// The stranger reaches the seed, but the seed is no DHT server of its network.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	d, err := NewKadDHT(ctx, stranger, []peer.AddrInfo{addrInfo(seed)}, DHTNetwork("green"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "routing table still empty")
	require.Nil(t, d)

	// It starts a network of its own, on the host still connected to the seed.
	green := startKadDHTs(t, []host.Host{stranger}, nil, DHTNetwork("green"))[0]
	require.Eventually(t, func() bool {
		theirs, _ := seed.Peerstore().SupportsProtocols(stranger.ID(), greenKad)
		ours, _ := stranger.Peerstore().SupportsProtocols(seed.ID(), blueKad)
		return len(theirs) == 1 && len(ours) == 1
	}, 5*time.Second, 5*time.Millisecond, "identify tells each host the other's DHT protocol")
	require.Never(t, func() bool {
		return blue.RoutingTable().Find(stranger.ID()) != "" || green.RoutingTable().Size() != 0
	}, 200*time.Millisecond, 10*time.Millisecond)
	require.Equal(t, []peer.ID{member.ID()}, blue.RoutingTable().ListPeers())

	lookup, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = green.FindPeer(lookup, member.ID())
	require.Error(t, err, "the green DHT knows no blue node")
}

// TestDHTNetworkInvalidName: NewKadDHT fails on a name that no network can
// have, and says why.
func TestDHTNetworkInvalidName(t *testing.T) {
	h := testkit.NewHost(t, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := NewKadDHT(ctx, h, nil, DHTNetwork("a/b"))
	require.ErrorContains(t, err, `network name "a/b": '/' is not a letter`)
	require.Nil(t, d)
	require.NotContains(t, h.Mux().Protocols(), DHTProtocolPrefixFor("a/b")+"/kad/1.0.0")
}

// TestDHTResolvesEveryNode builds a DHT of dhtNodes hosts on loopback, each
// bootstrapped on the first, then has a newcomer, bootstrapped on another
// node, resolve every node through the DHT alone, and proves each answer works
// by connecting to it from a host that knew nothing.
func TestDHTResolvesEveryNode(t *testing.T) {
	hosts := make([]host.Host, dhtNodes)
	for i := range hosts {
		hosts[i] = testkit.NewHost(t, nil, "")
	}
	start := time.Now()
	startKadDHTs(t, hosts[:1], nil)
	startKadDHTs(t, hosts[1:], []peer.AddrInfo{addrInfo(hosts[0])})
	newcomer, prober := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
	kad := startKadDHTs(t, []host.Host{newcomer}, []peer.AddrInfo{addrInfo(hosts[dhtNodes-1])})[0]
	t.Logf("%d DHT nodes and a newcomer started in %v", dhtNodes, time.Since(start))
	r := NewDHT(kad)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var unknown, stale []time.Duration
	for i, h := range hosts {
		id := hostID(t, h)
		// Make the newcomer look: kad-dht answers from the peerstore for a
		// connected peer, and bootstrapping may have connected it to h.
		// Half the nodes it forgets entirely; of the other half it keeps
		// the routing-table entry, as for a node that moved.
		require.NoError(t, newcomer.Network().ClosePeer(h.ID()))
		newcomer.Peerstore().ClearAddrs(h.ID())
		forget := i%2 == 0
		if forget {
			kad.RoutingTable().RemovePeer(h.ID())
		}

		begin := time.Now()
		info, err := r.Resolve(ctx, id)
		if forget {
			unknown = append(unknown, time.Since(begin))
		} else {
			stale = append(stale, time.Since(begin))
		}
		require.NoError(t, err, "resolve node %s", id.Short())
		require.Equal(t, h.ID(), info.ID)
		for _, a := range h.Addrs() {
			require.True(t, ma.Contains(info.Addrs, a), "node %s: answer %v lacks listen address %s", id.Short(), info.Addrs, a)
		}

		// The prober knows nothing but the answer.
		require.Empty(t, prober.Peerstore().Addrs(h.ID()))
		require.NoError(t, prober.Connect(ctx, info), "connect to node %s at %v", id.Short(), info.Addrs)
		require.NoError(t, prober.Network().ClosePeer(h.ID()))
		prober.Peerstore().ClearAddrs(h.ID())
	}
	all := append(slices.Clone(unknown), stale...)
	t.Logf("DHT lookups of %d nodes: p50 %v, p99 %v", len(all), testkit.Percentile(all, 50), testkit.Percentile(all, 99))
	t.Logf("  of %d nodes not in the routing table: p50 %v, p99 %v", len(unknown), testkit.Percentile(unknown, 50), testkit.Percentile(unknown, 99))
	t.Logf("  of %d nodes in the routing table without addresses: p50 %v, p99 %v", len(stale), testkit.Percentile(stale, 50), testkit.Percentile(stale, 99))

	// A node that does not exist is not found, once the lookup has asked everyone.
	_, err := r.Resolve(ctx, newID(t))
	require.ErrorIs(t, err, ErrNotFound)
}

// closedUntil is a connection gater that refuses every inbound connection
// until open is set.
type closedUntil struct{ open atomic.Bool }

func (g *closedUntil) InterceptPeerDial(peer.ID) bool               { return true }
func (g *closedUntil) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *closedUntil) InterceptAccept(network.ConnMultiaddrs) bool  { return g.open.Load() }
func (g *closedUntil) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
func (g *closedUntil) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

// TestNewKadDHTBootstrapLate: a bootstrap peer that refuses the first round
// of dials (as one whose handshakes all time out on a starved host) is dialed
// again, past the swarm's backoff, and the DHT joins through it.
func TestNewKadDHTBootstrapLate(t *testing.T) {
	g := &closedUntil{}
	seed := testkit.NewHost(t, nil, "", libp2p.ConnectionGater(g))
	startKadDHTs(t, []host.Host{seed}, nil)
	h := testkit.NewHost(t, nil, "")
	time.AfterFunc(300*time.Millisecond, func() { g.open.Store(true) })
	dhts := startKadDHTs(t, []host.Host{h}, []peer.AddrInfo{addrInfo(seed)})
	require.Equal(t, []peer.ID{seed.ID()}, dhts[0].RoutingTable().ListPeers())
}
