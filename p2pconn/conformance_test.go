package p2pconn_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/p2pconntest"
)

// libp2pNetwork runs the conformance suite on real loopback hosts.
type libp2pNetwork struct {
	c     *cluster
	nodes map[p2pconn.ConnectionManager]*node
}

func (n *libp2pNetwork) NewNode(t testing.TB, cfg p2pconn.Config) p2pconntest.Node {
	t.Helper()
	nd := n.c.node(cfg)
	n.nodes[nd.m] = nd
	return p2pconntest.Node{ID: nd.id, Manager: nd.m}
}

// Crash closes the node's host without closing its manager first, as a dying
// process would: its peers see the libp2p connection vanish.
func (n *libp2pNetwork) Crash(t testing.TB, p p2pconntest.Node) {
	t.Helper()
	nd := n.nodes[p.Manager]
	require.NotNil(t, nd)
	require.NoError(t, nd.h.Close())
}

// Cut closes every libp2p connection between the two hosts, and their
// gaters refuse new ones until Restore (cluster.Cut).
func (n *libp2pNetwork) Cut(t testing.TB, a, b p2pconntest.Node) {
	t.Helper()
	n.c.Cut(t, n.nodes[a.Manager], n.nodes[b.Manager])
}

// Restore lets the two hosts connect again.
func (n *libp2pNetwork) Restore(t testing.TB, a, b p2pconntest.Node) {
	t.Helper()
	n.c.Restore(t, n.nodes[a.Manager], n.nodes[b.Manager])
}

// Restart starts a new host with the crashed node's key, on a new port
// that replaces the old one in the cluster's table, and a manager on it.
func (n *libp2pNetwork) Restart(t testing.TB, crashed p2pconntest.Node, cfg p2pconn.Config) p2pconntest.Node {
	t.Helper()
	old := n.nodes[crashed.Manager]
	require.NotNil(t, old)
	nd := n.c.nodeWithKey(cfg, old.key)
	n.nodes[nd.m] = nd
	return p2pconntest.Node{ID: nd.id, Manager: nd.m}
}

func TestConformance(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			p2pconntest.Run(t, func(t testing.TB) p2pconntest.Network {
				return &libp2pNetwork{c: newCluster(t, listen).withCuts(), nodes: make(map[p2pconn.ConnectionManager]*node)}
			})
		})
	}
}
