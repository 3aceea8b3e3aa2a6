package p2pconn_test

import (
	"context"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

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
