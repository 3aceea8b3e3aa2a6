package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// timedResolver times every Resolve of the resolver it wraps.
type timedResolver struct {
	r  resolver.AddressResolver
	mu sync.Mutex
	ds []time.Duration
}

func (t *timedResolver) Resolve(ctx context.Context, id identity.Identifier) (peer.AddrInfo, error) {
	t0 := time.Now()
	info, err := t.r.Resolve(ctx, id)
	t.mu.Lock()
	t.ds = append(t.ds, time.Since(t0))
	t.mu.Unlock()
	return info, err
}

func (t *timedResolver) durations() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Duration(nil), t.ds...)
}

// TestDHTNewcomer starts 16 hosts on loopback that know only one bootstrap
// node and resolve Identifiers through the DHT alone (resolver.NewDHT, no
// peerstore fallback). They all connect to each other, both sides of every
// pair at once. Then a newcomer, bootstrapped through one random node,
// connects to every other node by Identifier, through the DHT alone, and
// exchanges a message each way with each. The DHT lookups (p50/p99) are
// logged; afterwards every host pair still shares exactly one libp2p
// connection.
func TestDHTNewcomer(t *testing.T) {
	const size = 16
	// DHT lookups cost more than static resolution: twice the deadline.
	ctx := testkit.Context(t, 2*pairsDeadline(size+1))
	cfg := nodeConfig()
	var mu sync.Mutex
	var timers []*timedResolver
	c := startCluster(t, ctx, cluster.Options{Size: size, Config: cfg,
		NewResolver: func(_ host.Host, kad *dht.IpfsDHT) resolver.AddressResolver {
			r := &timedResolver{r: resolver.NewDHT(kad)}
			mu.Lock()
			timers = append(timers, r)
			mu.Unlock()
			return r
		}})
	t0 := time.Now()
	require.NoError(t, c.ConnectAll(ctx))
	requireOnePerPair(t, ctx, c)
	var clusterLat []time.Duration
	for _, r := range timers {
		clusterLat = append(clusterLat, r.durations()...)
	}
	t.Logf("cluster: %d nodes connected pairwise through the DHT alone in %s; %d lookups (by Connects that had no libp2p connection), p50 %s, p99 %s",
		size, time.Since(t0).Round(time.Millisecond), len(clusterLat),
		testkit.Percentile(clusterLat, 50).Round(time.Microsecond), testkit.Percentile(clusterLat, 99).Round(time.Microsecond))

	// The newcomer knows one node.
	boot := c.Node(1 + rand.N(size-1))
	h := testkit.NewHost(t, nil, cluster.DefaultListen, p2pconn.HostOptions(cfg)...)
	kad, err := resolver.NewKadDHT(ctx, h, []peer.AddrInfo{boot.AddrInfo()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, kad.Close()) })
	newcomerDHT := resolver.NewDHT(kad)
	m, err := p2pconn.NewManager(h, newcomerDHT, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })

	// Lookups: every other node, timed; those the newcomer is already
	// connected to (through the DHT's own traffic) answer locally.
	var lat []time.Duration
	remote := 0
	for j := range size {
		id := c.ID(j)
		wasConnected := h.Network().Connectedness(id.PeerID()) == network.Connected
		t1 := time.Now()
		info, err := newcomerDHT.Resolve(ctx, id)
		d := time.Since(t1)
		require.NoError(t, err, "newcomer resolves node %d", j)
		require.Equal(t, id.PeerID(), info.ID)
		require.NotEmpty(t, info.Addrs)
		lat = append(lat, d)
		if !wasConnected {
			remote++
		}
	}
	t.Logf("newcomer (bootstrapped through node %d only): %d DHT lookups (%d to nodes it had no connection to), p50 %s, p99 %s",
		boot.Index, len(lat), remote, testkit.Percentile(lat, 50).Round(time.Microsecond), testkit.Percentile(lat, 99).Round(time.Microsecond))

	// Connect to everyone at once, while everyone connects back, and
	// exchange a message each way.
	var wg sync.WaitGroup
	for j := range size {
		wg.Go(func() {
			out, err := m.Connect(ctx, c.ID(j))
			require.NoError(t, err, "newcomer connects to node %d", j)
			in, err := c.Manager(j).Connect(ctx, m.ID())
			require.NoError(t, err, "node %d connects to the newcomer", j)
			require.NoError(t, out.Send(ctx, fmt.Appendf(nil, "hello %d", j)))
			require.NoError(t, in.Send(ctx, fmt.Appendf(nil, "welcome from %d", j)))
			got, err := in.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("hello %d", j), string(got))
			got, err = out.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("welcome from %d", j), string(got))
		})
	}
	wg.Wait()

	// One libp2p connection per host pair, the newcomer's included.
	onePerPair := func() bool {
		if m.ConnectionCount() != size {
			return false
		}
		for j := range size {
			if c.Manager(j).ConnectionCount() != size || len(h.Network().ConnsToPeer(c.ID(j).PeerID())) != 1 {
				return false
			}
			for k := range size {
				if j != k && (c.ConnsBetween(j, k) != 1 || c.StreamsBetween(j, k) != 1) {
					return false
				}
			}
		}
		return true
	}
	require.NoError(t, cluster.WaitFor(ctx, onePerPair), "%s", describeUnsettled(c))
	t.Logf("after lookups and traffic: %d host pairs, 1 libp2p connection each", (size+1)*size/2)
}
