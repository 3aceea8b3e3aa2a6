package p2pconn_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
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
	id identity.Identifier
	h  host.Host
	m  *p2pconn.Manager
}

// cluster builds nodes that resolve each other through one static table.
type cluster struct {
	t      testing.TB
	listen string
	table  *resolver.Static
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
	h := newHost(c.t, c.listen)
	m, err := p2pconn.NewManager(h, c.table, cfg)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = m.Close() })
	id := m.ID()
	c.table.Add(id, h.Addrs()...)
	return &node{id: id, h: h, m: m}
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
