package p2pconn_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// serviceStat returns what h's resource manager counts for skipwire's
// service.
func serviceStat(t testing.TB, h host.Host) network.ScopeStat {
	t.Helper()
	var st network.ScopeStat
	require.NoError(t, h.Network().ResourceManager().ViewService(p2pconn.ServiceName, func(s network.ServiceScope) error {
		st = s.Stat()
		return nil
	}))
	return st
}

// limitedHost starts a host whose resource manager has libp2p's default
// limits changed by set.
func limitedHost(t testing.TB, listen string, set func(*rcmgr.PartialLimitConfig)) host.Host {
	t.Helper()
	var p rcmgr.PartialLimitConfig
	set(&p)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(p.Build(rcmgr.DefaultLimits.AutoScale())), rcmgr.WithMetricsDisabled())
	require.NoError(t, err)
	return testkit.NewHost(t, nil, listen, libp2p.ResourceManager(rm))
}

// nodeOn starts a node with cfg on h, which the cluster's table then lists.
func (c *cluster) nodeOn(h host.Host, cfg p2pconn.Config) *node {
	c.t.Helper()
	m, err := p2pconn.NewManager(h, c.table, cfg)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = m.Close() })
	c.table.Add(m.ID(), h.Addrs()...)
	return &node{id: m.ID(), h: h, m: m}
}

// serviceMemory limits the memory of skipwire's service to n bytes.
func serviceMemory(n int64) func(*rcmgr.PartialLimitConfig) {
	return func(p *rcmgr.PartialLimitConfig) {
		p.Service = map[string]rcmgr.ResourceLimits{p2pconn.ServiceName: {Memory: rcmgr.LimitVal64(n)}}
	}
}

// TestReceivedMemoryReserved: skipwire's streams belong to its service in
// the resource manager, on both sides, and the messages a connection holds
// for Next count in its memory; once Next took them and the connection is
// quiet, it holds no reservation.
func TestReceivedMemoryReserved(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 10*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, serviceStat(t, a.h).NumStreamsOutbound, "the opener's stream is in the service")
	require.Equal(t, 1, serviceStat(t, b.h).NumStreamsInbound, "the acceptor's stream is in the service")

	const n, size = 8, 100 << 10
	for i := range n {
		require.NoError(t, ca.Send(ctx, payload(i, size)))
	}
	require.Eventually(t, func() bool { return serviceStat(t, b.h).Memory >= n*size }, 5*time.Second, 5*time.Millisecond,
		"reserved: %d bytes", serviceStat(t, b.h).Memory)
	require.LessOrEqual(t, serviceStat(t, b.h).Memory, int64(n*size+256<<10), "at most a step (256 KiB) beyond the messages")
	for i := range n {
		msg, err := cb.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, payload(i, size), msg)
	}
	require.Eventually(t, func() bool { return serviceStat(t, b.h).Memory == 0 }, 5*time.Second, 10*time.Millisecond,
		"a quiet connection gives its reservation back")
}

// TestMemoryRefusedPushesBack: when the resource manager refuses memory,
// the receiver stops reading, the sender's Sends wait, and nothing is
// lost: once Next takes messages, reading goes on, and every message
// arrives, in order. The refusal is counted.
func TestMemoryRefusedPushesBack(t *testing.T) {
	const limit, n, size = 1 << 20, 48, 64 << 10 // 3 MiB sent, well within a stream window of read-ahead
	c := newCluster(t, transports["tcp"])
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Metrics = reg
	b := c.nodeOn(limitedHost(t, transports["tcp"], serviceMemory(limit)), cfg)
	a := c.node(testConfig())
	ctx := testkit.Context(t, 20*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)

	var wg sync.WaitGroup
	sent := make(chan error, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			sent <- ca.Send(ctx, payload(i, size))
		}
	}()
	t.Cleanup(wg.Wait)
	require.Eventually(t, func() bool { return gather(t, reg)["skipwire_limited_total{limit=memory}"] >= 1 }, 10*time.Second, 5*time.Millisecond,
		"the resource manager never refused")
	in := gather(t, reg)["skipwire_messages_total{direction=in}"]
	t.Logf("%v messages read before the resource manager refused; %d bytes reserved of %d", in, serviceStat(t, b.h).Memory, limit)
	require.LessOrEqual(t, in, float64(limit/size+1), "the receiver read beyond the resource manager's limit")
	require.LessOrEqual(t, serviceStat(t, b.h).Memory, int64(limit))
	require.True(t, cb.IsAlive())

	for i := range n {
		msg, err := cb.Next(ctx)
		require.NoError(t, err, "message %d", i)
		require.Equal(t, payload(i, size), msg, "message %d", i)
	}
	wg.Wait()
	for range n {
		require.NoError(t, <-sent)
	}
	require.True(t, cb.IsAlive())
}

// TestMemoryRefusedNothingToFree: when the resource manager refuses the
// memory a single message needs and no message waits for Next (so none
// can be freed), the connection ends after KeepaliveInterval +
// KeepaliveTimeout, with an error that says so.
func TestMemoryRefusedNothingToFree(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.KeepaliveInterval, cfg.KeepaliveTimeout = 300*time.Millisecond, 300*time.Millisecond
	cfg.MaxMessageSize = 1 << 20
	cfg.ResumeWindow = -1
	b := c.nodeOn(limitedHost(t, transports["tcp"], serviceMemory(256<<10)), cfg)
	a := c.node(cfg)
	ctx := testkit.Context(t, 10*time.Second)
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = ca.Send(sctx, make([]byte, 512<<10)) }()
	select {
	case <-cb.Done():
	case <-ctx.Done():
		t.Fatal("the connection neither delivered nor ended")
	}
	err = cb.Err()
	t.Log(err)
	require.ErrorIs(t, err, network.ErrResourceLimitExceeded)
	require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
	_, err = cb.Next(ctx)
	require.ErrorIs(t, err, network.ErrResourceLimitExceeded)
	require.Zero(t, serviceStat(t, b.h).Memory)
}
