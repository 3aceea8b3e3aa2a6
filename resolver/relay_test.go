package resolver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
)

// A node behind NAT is reached at a relay's address followed by
// /p2p/<relay>/p2p-circuit: both the static table and the DHT helper hand
// such addresses out as they are.

func TestStaticCircuitAddrs(t *testing.T) {
	ctx := context.Background()
	id, relay := newID(t), newID(t)
	circuit := fmt.Sprintf("/ip4/198.51.100.7/udp/4001/quic-v1/p2p/%s/p2p-circuit", relay.PeerID())

	s := NewStatic()
	s.Add(id, mustAddr(t, circuit))
	info, err := s.Resolve(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []ma.Multiaddr{mustAddr(t, circuit)}, info.Addrs)

	for _, tc := range []struct {
		name, addr, want string // want "" means the line is refused
	}{
		{"circuit", circuit, circuit},
		{"circuit and target", circuit + "/p2p/" + id.PeerID().String(), circuit},
		{"relay only", fmt.Sprintf("/ip4/198.51.100.7/tcp/4001/p2p/%s", relay.PeerID()), ""},
		{"circuit to another peer", circuit + "/p2p/" + relay.PeerID().String(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStatic()
			err := s.Load(strings.NewReader(id.String() + " " + tc.addr + "\n"))
			if tc.want == "" {
				require.ErrorIs(t, err, ErrPeerMismatch, "an address that names another peer last")
				return
			}
			require.NoError(t, err)
			require.Equal(t, []ma.Multiaddr{mustAddr(t, tc.want)}, s.Addrs(id))
		})
	}
}

// TestDHTResolvesCircuitAddrs finds a node that cannot be dialed (it does not
// listen) and announces only its /p2p-circuit address: the lookup answers
// with that address at once, and a host dialing the answer reaches the node
// through the relay. The node's DHT runs as a client, as a node behind NAT
// should run it (as a server it enters the others' routing tables, and their
// queries to it wait for a direct connection, since kad-dht opens no stream
// on a relayed one, until they time out), and as a server.
func TestDHTResolvesCircuitAddrs(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  dht.ModeOpt
	}{{"client", dht.ModeClient}, {"server", dht.ModeServer}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := testkit.Context(t, 30*time.Second)
			r := testkit.NewHost(t, nil, "")
			rel, err := relayv2.New(r)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, rel.Close()) })
			circuit := mustAddr(t, fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))

			key, err := identity.GenerateKey()
			require.NoError(t, err)
			natted, err := libp2p.New(libp2p.Identity(key), libp2p.NoListenAddrs, libp2p.EnableRelay(),
				libp2p.DisableIdentifyAddressDiscovery(),
				libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{circuit} }))
			require.NoError(t, err)
			t.Cleanup(func() { testkit.CloseHost(t, natted) })
			_, err = client.Reserve(ctx, natted, addrInfo(r))
			require.NoError(t, err)

			seed, finder := testkit.NewHost(t, nil, ""), testkit.NewHost(t, nil, "")
			bootstrap := []peer.AddrInfo{addrInfo(seed)}
			startKadDHTs(t, []host.Host{seed}, nil)
			startKadDHTs(t, []host.Host{natted}, bootstrap, dht.Mode(mode.opt))
			kad := startKadDHTs(t, []host.Host{finder}, bootstrap)[0]

			t0 := time.Now()
			info, err := NewDHT(kad).Resolve(ctx, hostID(t, natted))
			require.NoError(t, err)
			took := time.Since(t0)
			require.Less(t, took, 5*time.Second, "the lookup ends once the relayed connection is up")
			require.Equal(t, natted.ID(), info.ID)
			require.True(t, slices.ContainsFunc(info.Addrs, circuit.Equal), "answer %v holds %s", info.Addrs, circuit)
			t.Logf("answer in %s: %v", took.Round(time.Millisecond), info.Addrs)

			// The answer works for a host that never met the node: the
			// dial runs through the relay.
			other := testkit.NewHost(t, nil, "")
			require.NoError(t, other.Connect(ctx, info))
			conns := other.Network().ConnsToPeer(natted.ID())
			require.Len(t, conns, 1)
			require.True(t, conns[0].Stat().Limited, "through the relay: %s", conns[0].RemoteMultiaddr())
		})
	}
}
