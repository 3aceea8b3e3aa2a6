package p2pconn_test

import (
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// netConfig is testConfig in the network named name, with a retry delay
// long enough that a retried Connect shows in its duration.
func netConfig(name string) p2pconn.Config {
	cfg := testConfig()
	cfg.NetworkName = name
	cfg.RetryDelay = 5 * time.Second
	return cfg
}

// skipwireStreams returns the protocols of the streams a's host has open to
// b's that look like skipwire's, whatever their network.
func skipwireStreams(a, b *node) []protocol.ID {
	var protos []protocol.ID
	for _, c := range a.h.Network().ConnsToPeer(b.h.ID()) {
		for _, s := range c.GetStreams() {
			if strings.HasPrefix(string(s.Protocol()), "/skipgraph/") {
				protos = append(protos, s.Protocol())
			}
		}
	}
	return protos
}

// TestNetworkNameSeparatesOverlays: managers of different networks, on hosts
// connected to each other, never get a skipwire connection: Connect fails at
// once with ErrRefused, without retry, and the other side sees nothing.
func TestNetworkNameSeparatesOverlays(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	blue, green, dflt := c.node(netConfig("blue")), c.node(netConfig("green")), c.node(netConfig(""))
	ctx := testkit.Context(t, 20*time.Second)
	var events []<-chan p2pconn.Event
	for _, n := range []*node{blue, green, dflt} {
		ev, cancel := n.m.Subscribe()
		t.Cleanup(cancel)
		events = append(events, ev)
	}
	for _, pair := range [][2]*node{{blue, green}, {blue, dflt}, {green, dflt}} {
		a, b := pair[0], pair[1]
		require.NoError(t, a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}))
	}

	for _, tc := range []struct {
		name     string
		from, to *node
	}{
		{"blue to green", blue, green},
		{"green to blue", green, blue},
		{"blue to default", blue, dflt},
		{"default to blue", dflt, blue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			conn, err := tc.from.m.Connect(ctx, tc.to.id)
			took := time.Since(start)
			require.ErrorIs(t, err, p2pconn.ErrRefused)
			require.Nil(t, conn)
			require.ErrorContains(t, err, "remote does not serve "+string(tc.from.m.Protocol()))
			require.NotContains(t, err.Error(), "attempt 2", "a refusal is final")
			require.Less(t, took, 2*time.Second, "a retry would have waited at least 2.5 s")
		})
	}

	nothing := func() bool {
		for _, ev := range events {
			select {
			case e := <-ev:
				t.Logf("unexpected event %v", e)
				return false
			default:
			}
		}
		for _, n := range []*node{blue, green, dflt} {
			if n.m.ConnectionCount() != 0 {
				return false
			}
		}
		return true
	}
	require.Never(t, func() bool { return !nothing() }, 200*time.Millisecond, 10*time.Millisecond)
	for _, a := range []*node{blue, green, dflt} {
		for _, b := range []*node{blue, green, dflt} {
			if a != b {
				require.Empty(t, skipwireStreams(a, b))
			}
		}
	}
}

// TestNetworkNameSameNetworkConnects: managers of one network connect and
// exchange messages on that network's protocol, which their hosts serve
// instead of ProtocolID until the managers close.
func TestNetworkNameSameNetworkConnects(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(netConfig("blue")), c.node(netConfig("blue"))
	const proto = protocol.ID("/skipgraph/blue/conn/1.0.0")
	require.Equal(t, proto, a.m.Protocol())
	require.Contains(t, a.h.Mux().Protocols(), proto)
	require.NotContains(t, a.h.Mux().Protocols(), p2pconn.ProtocolID)

	ctx := testkit.Context(t, 10*time.Second)
	ca, cb := connected(t, ctx, a, b)
	exchange(t, ctx, ca, cb, 10)
	require.Equal(t, []protocol.ID{proto}, skipwireStreams(a, b))

	require.NoError(t, a.m.Close())
	require.NotContains(t, a.h.Mux().Protocols(), proto)
}

// TestProtocolForDefaultIsProtocolID: the default network speaks exactly
// ProtocolID, the version-1 protocol, so nodes that predate NetworkName
// connect to it.
func TestProtocolForDefaultIsProtocolID(t *testing.T) {
	require.Equal(t, protocol.ID("/skipgraph/conn/1.0.0"), p2pconn.ProtocolID)
	require.Equal(t, p2pconn.ProtocolID, p2pconn.ProtocolFor(""))
	require.Equal(t, protocol.ID("/skipgraph/blue/conn/1.0.0"), p2pconn.ProtocolFor("blue"))

	c := newCluster(t, transports["tcp"])
	old, cur := c.node(testConfig()), c.node(testConfig())
	p2pconn.SpeakVersion1(old.m)
	require.Equal(t, p2pconn.ProtocolID, cur.m.Protocol())
	require.Contains(t, cur.h.Mux().Protocols(), p2pconn.ProtocolID)

	ctx := testkit.Context(t, 10*time.Second)
	ca, cb := connected(t, ctx, old, cur)
	exchange(t, ctx, ca, cb, 10)
	require.Equal(t, []protocol.ID{p2pconn.ProtocolID}, skipwireStreams(old, cur))
}

// TestConfigValidateNetworkName: Validate, and so NewManager, reject a
// NetworkName that is too long or holds anything but ASCII letters, digits,
// '.', '_' and '-'.
func TestConfigValidateNetworkName(t *testing.T) {
	for _, name := range []string{"", "blue", "test-1.eu_west", strings.Repeat("x", 64)} {
		require.NoError(t, p2pconn.Config{NetworkName: name}.Validate(), "%q", name)
	}
	h := newHost(t, transports["tcp"])
	for _, tc := range []struct{ what, name, says string }{
		{"too long", strings.Repeat("x", 65), "longer than 64 bytes"},
		{"slash", "a/b", `'/' is not a letter`},
		{"space", "a b", `' ' is not a letter`},
		{"unicode letter", "caf\u00e9", `'é' is not a letter`},
		{"invalid utf-8", "a\xff", `is not a letter`},
	} {
		t.Run(tc.what, func(t *testing.T) {
			err := p2pconn.Config{NetworkName: tc.name}.Validate()
			require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)
			require.ErrorContains(t, err, "NetworkName")
			require.ErrorContains(t, err, tc.says)

			m, err := p2pconn.NewManager(h, nil, p2pconn.Config{NetworkName: tc.name})
			require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)
			require.Nil(t, m)
		})
	}
}
