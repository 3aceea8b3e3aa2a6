package p2pconn_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// transports lists the listen addresses tests run on: TCP and QUIC on loopback.
var transports = map[string]string{
	"tcp":  testkit.LoopbackTCP,
	"quic": testkit.LoopbackQUIC,
}

// node is a manager on a real loopback host.
type node struct {
	id  identity.Identifier
	key crypto.PrivKey // the host's key, nil if the test did not keep it
	h   host.Host
	m   *p2pconn.Manager
}

// cluster builds nodes that resolve each other through one static table.
type cluster struct {
	t      testing.TB
	listen string
	table  *resolver.Static
	cuts   *linkCuts // set by withCuts: the links between hosts may be cut
}

func newCluster(t testing.TB, listen string) *cluster {
	return &cluster{t: t, listen: listen, table: resolver.NewStatic()}
}

// newHost starts a host with a fresh key and p2pconn's host options,
// listening on listen; cleanup closes it.
func newHost(t testing.TB, listen string) host.Host {
	t.Helper()
	return testkit.NewHost(t, nil, listen, p2pconn.HostOptions(testConfig())...)
}

// node starts a node with cfg; cleanup closes its manager, then its host.
func (c *cluster) node(cfg p2pconn.Config) *node {
	c.t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(c.t, err)
	return c.nodeWithKey(cfg, key)
}

// nodeWithKey starts a node with cfg on a host with key, as node does; the
// table then lists the new host's addresses only for its Identifier.
func (c *cluster) nodeWithKey(cfg p2pconn.Config, key crypto.PrivKey) *node {
	c.t.Helper()
	opts := p2pconn.HostOptions(testConfig())
	var g *cutGater
	if c.cuts != nil {
		self, err := peer.IDFromPrivateKey(key)
		require.NoError(c.t, err)
		g = &cutGater{self: self, cuts: c.cuts}
		opts = append(opts, libp2p.ConnectionGater(g))
	}
	h := testkit.NewHost(c.t, key, c.listen, opts...)
	if g != nil {
		g.watch(h)
	}
	m, err := p2pconn.NewManager(h, c.table, cfg)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = m.Close() })
	id := m.ID()
	c.table.Remove(id)
	c.table.Add(id, h.Addrs()...)
	return &node{id: id, key: key, h: h, m: m}
}

// withCuts lets Cut and Restore take the links between c's nodes down and
// up; it must be called before c starts nodes.
func (c *cluster) withCuts() *cluster {
	c.cuts = &linkCuts{cut: make(map[[2]peer.ID]bool)}
	return c
}

// Cut takes the link between a and b down, as a network failure would:
// each host closes its libp2p connections with the other, and refuses new
// ones until Restore. Neither manager is told.
func (c *cluster) Cut(t testing.TB, a, b *node) {
	t.Helper()
	require.NotNil(t, c.cuts, "the cluster was not built withCuts")
	c.cuts.set(a.h.ID(), b.h.ID(), true)
	require.Eventually(t, func() bool {
		_ = a.h.Network().ClosePeer(b.h.ID())
		_ = b.h.Network().ClosePeer(a.h.ID())
		return libp2pConns(a, b) == 0 && libp2pConns(b, a) == 0
	}, 10*time.Second, 5*time.Millisecond, "libp2p connections between the hosts survive the cut")
}

// Restore lets a and b connect again after Cut.
func (c *cluster) Restore(t testing.TB, a, b *node) {
	t.Helper()
	require.NotNil(t, c.cuts, "the cluster was not built withCuts")
	c.cuts.set(a.h.ID(), b.h.ID(), false)
}

// linkCuts are the links between hosts that are cut.
type linkCuts struct {
	mu  sync.RWMutex
	cut map[[2]peer.ID]bool // by ordered pair of peers
}

func cutKey(a, b peer.ID) [2]peer.ID {
	if a > b {
		a, b = b, a
	}
	return [2]peer.ID{a, b}
}

func (l *linkCuts) set(a, b peer.ID, cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cut {
		l.cut[cutKey(a, b)] = true
	} else {
		delete(l.cut, cutKey(a, b))
	}
}

func (l *linkCuts) isCut(a, b peer.ID) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cut[cutKey(a, b)]
}

// cutGater is the connection gater of a host of a cluster withCuts: it
// refuses connections with a peer whose link with the host is cut, once
// they are secured (the peer is known then), in both directions. Refusing
// there, rather than at the dial, makes a dial fail as the network failing
// would: libp2p reports a refused dial (InterceptPeerDial, InterceptAddrDial)
// or upgrade (InterceptUpgraded) as swarm.ErrGaterDisallowedConnection,
// which a manager takes as a decision that no retry can change.
type cutGater struct {
	self peer.ID
	cuts *linkCuts
}

func (g *cutGater) InterceptPeerDial(peer.ID) bool                                  { return true }
func (g *cutGater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g *cutGater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *cutGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func (g *cutGater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.cuts.isCut(g.self, p)
}

// watch closes, on h, every connection that a cut forbids and that was
// past the gater when the cut began.
func (g *cutGater) watch(h host.Host) {
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if g.cuts.isCut(g.self, c.RemotePeer()) {
			go func() { _ = c.Close() }()
		}
	}})
}

func testConfig() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout:    5 * time.Second,
		RetryAttempts:     2,
		RetryDelay:        20 * time.Millisecond,
		CloseTimeout:      2 * time.Second,
		KeepaliveInterval: 5 * time.Second,
	}
}

// libp2pConns returns how many libp2p connections a has to b.
func libp2pConns(a, b *node) int {
	return len(a.h.Network().ConnsToPeer(b.h.ID()))
}
