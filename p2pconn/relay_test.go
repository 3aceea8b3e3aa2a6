package p2pconn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// startRelay starts a relay host (RelayHostOptions) on loopback and waits
// until its relay service runs.
func startRelay(t *testing.T, rc p2pconn.RelayConfig) host.Host {
	t.Helper()
	r := testkit.NewHost(t, nil, testkit.LoopbackTCP, p2pconn.RelayHostOptions(testConfig(), rc)...)
	require.Eventually(t, func() bool {
		for _, p := range r.Mux().Protocols() {
			if p == proto.ProtoIDv2Hop {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "relay service never started")
	return r
}

// circuitAddr returns the address at which a node with a reservation on
// relay r is reached through r.
func circuitAddr(t *testing.T, r host.Host) ma.Multiaddr {
	t.Helper()
	a, err := ma.NewMultiaddr(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	require.NoError(t, err)
	return a
}

// TestRelayedConnection runs a skipwire connection over a circuit relay v2
// connection, which libp2p marks limited: the stream, the health check and
// Probe all run on it (libp2p's ping opts in to limited connections by
// itself), and the remote is resolved to its /p2p-circuit address only. On loopback there is no NAT and no hole punching (the hosts
// have no public address), so the connection stays relayed.
func TestRelayedConnection(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	r := startRelay(t, p2pconn.RelayConfig{})
	relay := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	natOpts := p2pconn.NATHostOptions(testConfig(), p2pconn.NATConfig{StaticRelays: []peer.AddrInfo{relay}})
	a := testkit.NewHost(t, nil, testkit.LoopbackTCP, natOpts...)
	b := testkit.NewHost(t, nil, testkit.LoopbackTCP, natOpts...)

	// b takes a slot on the relay: the relay's reservation leaves out its
	// loopback addresses, so AutoRelay would make no /p2p-circuit address
	// here; the test writes it.
	_, err := client.Reserve(ctx, b, relay)
	require.NoError(t, err)

	cfg := testConfig()
	cfg.KeepaliveInterval = 100 * time.Millisecond
	cfg.KeepaliveTimeout = 2 * time.Second
	table := resolver.NewStatic()
	mgrA, err := p2pconn.NewManager(a, table, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mgrA.Close()) })
	mgrB, err := p2pconn.NewManager(b, resolver.NewStatic(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mgrB.Close()) })
	table.Add(mgrB.ID(), circuitAddr(t, r))

	conn, err := mgrA.Connect(ctx, mgrB.ID())
	require.NoError(t, err)
	require.Contains(t, conn.RemoteAddr(), "/p2p-circuit", "connected through the relay")
	conns := a.Network().ConnsToPeer(b.ID())
	require.Len(t, conns, 1)
	require.True(t, conns[0].Stat().Limited, "a relayed connection is limited")

	in, err := mgrB.Accept(ctx)
	require.NoError(t, err)
	require.Equal(t, mgrA.ID(), in.RemoteID())
	require.True(t, strings.Contains(in.RemoteAddr(), "/p2p-circuit"), in.RemoteAddr())
	go func() {
		for {
			msg, err := in.Next(ctx)
			if err != nil || in.Send(ctx, msg) != nil {
				return
			}
		}
	}()
	for i := range 100 {
		msg := fmt.Appendf(nil, "message %d", i)
		require.NoError(t, conn.Send(ctx, msg))
		got, err := conn.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, got)
	}

	rtt, err := mgrA.Probe(ctx, mgrB.ID())
	require.NoError(t, err, "Probe over the relayed connection")
	require.Positive(t, rtt)

	// Silence for several KeepaliveIntervals: the health check pings over
	// the relayed connection and keeps it.
	time.Sleep(10 * cfg.KeepaliveInterval)
	require.True(t, conn.IsAlive(), "health check over the relayed connection: %v", conn.Err())
	require.NoError(t, conn.Send(ctx, []byte("still there")))
	got, err := conn.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "still there", string(got))
	require.Equal(t, network.Limited, a.Network().Connectedness(b.ID()))
}

// TestNATHostOptionsInvalid checks that libp2p.New refuses a NATConfig
// without a usable relay.
func TestNATHostOptionsInvalid(t *testing.T) {
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	relayKey, err := identity.GenerateKey()
	require.NoError(t, err)
	relayID, err := peer.IDFromPrivateKey(relayKey)
	require.NoError(t, err)
	relay := peer.AddrInfo{ID: relayID}
	addr, err := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/1")
	require.NoError(t, err)
	source := func(context.Context, int) <-chan peer.AddrInfo { return nil }
	for _, tc := range []struct {
		name string
		nat  p2pconn.NATConfig
		want string
	}{
		{"no relay", p2pconn.NATConfig{}, "no relay"},
		{"static relay without address", p2pconn.NATConfig{StaticRelays: []peer.AddrInfo{relay}}, "no address"},
		{"both", p2pconn.NATConfig{StaticRelays: []peer.AddrInfo{{ID: relay.ID, Addrs: []ma.Multiaddr{addr}}}, RelaySource: source}, "both set"},
		{"reachability", p2pconn.NATConfig{RelaySource: source, Reachability: 7}, "Reachability"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := libp2p.New(append(p2pconn.NATHostOptions(testConfig(), tc.nat), libp2p.Identity(key), libp2p.NoListenAddrs)...)
			if h != nil {
				_ = h.Close()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestHostOptionsDialRelayed checks how a reachable node reaches a node
// behind NAT: HostOptions has no relay transport, so a /p2p-circuit address
// cannot be dialed; with libp2p.EnableRelay() appended it can.
func TestHostOptionsDialRelayed(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	r := startRelay(t, p2pconn.RelayConfig{})
	relay := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	b := testkit.NewHost(t, nil, testkit.LoopbackTCP,
		p2pconn.NATHostOptions(testConfig(), p2pconn.NATConfig{StaticRelays: []peer.AddrInfo{relay}})...)
	_, err := client.Reserve(ctx, b, relay)
	require.NoError(t, err)
	target := peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{circuitAddr(t, r)}}

	plain := testkit.NewHost(t, nil, testkit.LoopbackTCP, p2pconn.HostOptions(testConfig())...)
	require.Error(t, plain.Connect(ctx, target), "no relay transport")

	relaying := testkit.NewHost(t, nil, testkit.LoopbackTCP, append(p2pconn.HostOptions(testConfig()), libp2p.EnableRelay())...)
	require.NoError(t, relaying.Connect(ctx, target))
	require.Equal(t, network.Limited, relaying.Network().Connectedness(b.ID()))
}
