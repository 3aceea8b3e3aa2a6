package p2pconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// transports lists the listen addresses tests run on: TCP and QUIC on loopback.
var transports = map[string]string{
	"tcp":  "/ip4/127.0.0.1/tcp/0",
	"quic": "/ip4/127.0.0.1/udp/0/quic-v1",
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

func newHost(t testing.TB, listen string, cfg p2pconn.Config) host.Host {
	t.Helper()
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	return newHostWithKey(t, key, listen)
}

// newHostWithKey starts a host with key listening on listen; cleanup closes it.
func newHostWithKey(t testing.TB, key crypto.PrivKey, listen string) host.Host {
	t.Helper()
	opts := append(p2pconn.HostOptions(testConfig()), libp2p.Identity(key), libp2p.ListenAddrStrings(listen))
	h, err := libp2p.New(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// node starts a node with cfg; cleanup closes its manager, then its host.
func (c *cluster) node(cfg p2pconn.Config) *node {
	c.t.Helper()
	h := newHost(c.t, c.listen, cfg)
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

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// libp2pConns returns how many libp2p connections a has to b.
func libp2pConns(a, b *node) int {
	return len(a.h.Network().ConnsToPeer(b.h.ID()))
}

var _ = peer.ID("")
