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

func TestConformance(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			p2pconntest.Run(t, func(t testing.TB) p2pconntest.Network {
				return &libp2pNetwork{c: newCluster(t, listen), nodes: make(map[p2pconn.ConnectionManager]*node)}
			})
		})
	}
}
