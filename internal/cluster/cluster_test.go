package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testOptions(size int) cluster.Options {
	return cluster.Options{
		Size: size,
		Config: p2pconn.Config{
			ConnectTimeout: 5 * time.Second,
			RetryAttempts:  2,
			RetryDelay:     50 * time.Millisecond,
			CloseTimeout:   2 * time.Second,
			// A killed node comes back as a new process: its peers'
			// sessions with the old one end soon.
			ResumeWindow: 200 * time.Millisecond,
		},
	}
}

func start(t *testing.T, ctx context.Context, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// send has node i send msg to node j and node j read it.
func send(t *testing.T, ctx context.Context, c *cluster.Cluster, i, j int, msg string) {
	t.Helper()
	ci, err := c.Manager(i).Connect(ctx, c.ID(j))
	require.NoError(t, err)
	cj, err := c.Manager(j).Connect(ctx, c.ID(i))
	require.NoError(t, err)
	require.NoError(t, ci.Send(ctx, []byte(msg)))
	got, err := cj.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

func TestStartConnectSettle(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	c := start(t, ctx, testOptions(5))
	require.Equal(t, 5, c.Size())
	require.Len(t, c.RunningNodes(), 5)

	// Every node finds every other through the DHT. A lookup that meets a
	// peer connected to us but not yet identified gets no address from
	// kad-dht; ConnResolver covers that race.
	for i := range c.Size() {
		r := resolver.NewChain(resolver.NewDHT(c.DHT(i)), cluster.ConnResolver(c.Host(i)))
		for j := range c.Size() {
			if i == j {
				continue
			}
			info, err := r.Resolve(ctx, c.ID(j))
			require.NoError(t, err, "node %d resolves node %d", i, j)
			require.Equal(t, c.Node(j).PeerID(), info.ID)
		}
	}

	require.NoError(t, c.ConnectAll(ctx))
	require.NoError(t, cluster.WaitFor(ctx, c.Settled))
	send(t, ctx, c, 1, 3, "hello")
	send(t, ctx, c, 4, 0, "world")
}

func TestKillRestart(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	c := start(t, ctx, testOptions(4))
	require.NoError(t, c.ConnectAll(ctx))
	require.NoError(t, cluster.WaitFor(ctx, c.Settled))

	const k = 2
	id, listen := c.ID(k), c.Node(k).Listen
	var conns []p2pconn.Connection
	for _, i := range []int{0, 1, 3} {
		cn, ok := c.Manager(i).GetConnection(id)
		require.True(t, ok)
		conns = append(conns, cn)
	}

	require.NoError(t, c.Kill(k))
	require.False(t, c.Running(k))
	require.Error(t, c.Kill(k), "a stopped node cannot be killed again")
	for _, cn := range conns {
		select {
		case <-cn.Done():
		case <-ctx.Done():
			t.Fatal("a peer did not notice the crash")
		}
		require.ErrorIs(t, cn.Err(), p2pconn.ErrConnectionLost)
	}

	require.NoError(t, c.Restart(ctx, k))
	require.Equal(t, id, c.ID(k), "same key, same Identifier")
	require.Equal(t, listen, c.Node(k).Listen, "same listen address")
	require.NoError(t, c.ConnectAll(ctx))
	require.NoError(t, cluster.WaitFor(ctx, c.Settled))
	send(t, ctx, c, 0, k, "welcome back")
	send(t, ctx, c, k, 3, "thanks")
}

func TestStopIsClean(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	c := start(t, ctx, testOptions(3))
	require.NoError(t, c.ConnectAll(ctx))
	cn, err := c.Manager(0).Connect(ctx, c.ID(1))
	require.NoError(t, err)

	require.NoError(t, c.Stop(1))
	<-cn.Done()
	require.NotErrorIs(t, cn.Err(), p2pconn.ErrConnectionLost, "a clean stop is a goodbye, not a loss")
	require.Equal(t, []int{0, 2}, c.RunningNodes())
	require.NoError(t, cluster.WaitFor(ctx, func() bool { return c.Manager(0).ConnectionCount() == 1 }))

	// Node 0, the bootstrap node, can go too: a restart joins through the others.
	require.NoError(t, c.Stop(0))
	require.NoError(t, c.Restart(ctx, 1))
	require.NoError(t, c.Restart(ctx, 0))
	require.NoError(t, c.ConnectAll(ctx))
	require.NoError(t, cluster.WaitFor(ctx, c.Settled))
}

func TestErrors(t *testing.T) {
	ctx := testkit.Context(t, 10*time.Second)
	_, err := cluster.Start(ctx, cluster.Options{})
	require.Error(t, err)
	_, err = cluster.Start(ctx, cluster.Options{Size: 1, Config: p2pconn.Config{MaxConnections: -1}})
	require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)

	c := start(t, ctx, testOptions(1))
	require.Error(t, c.Restart(ctx, 0), "a running node cannot be restarted")
	require.Error(t, c.Stop(7))

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err = cluster.WaitFor(short, func() bool { return false })
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
}

func TestConnResolver(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	c := start(t, ctx, testOptions(3))
	r := cluster.ConnResolver(c.Host(1))

	// Node 1 joined the DHT through node 0, so it is connected to it.
	info, err := r.Resolve(ctx, c.ID(0))
	require.NoError(t, err)
	require.Equal(t, c.Node(0).PeerID(), info.ID)
	require.NotEmpty(t, info.Addrs)

	require.NoError(t, c.Stop(2))
	require.NoError(t, cluster.WaitFor(ctx, func() bool { return c.ConnsBetween(1, 2) == 0 }))
	_, err = r.Resolve(ctx, c.ID(2))
	require.ErrorIs(t, err, resolver.ErrNotFound)
}

// TestNetworkName: a cluster of a named network runs its managers and DHTs
// on that network's protocols, and StreamsBetween counts its streams.
func TestNetworkName(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	opts := testOptions(3)
	opts.Config.NetworkName = "blue"
	c := start(t, ctx, opts)
	for i := range c.Size() {
		protos := c.Host(i).Mux().Protocols()
		require.Contains(t, protos, p2pconn.ProtocolFor("blue"))
		require.Contains(t, protos, resolver.DHTProtocolPrefixFor("blue")+"/kad/1.0.0")
		require.NotContains(t, protos, p2pconn.ProtocolID)
		require.NotContains(t, protos, resolver.DHTProtocolPrefix+"/kad/1.0.0")
	}
	require.NoError(t, c.ConnectAll(ctx))
	require.NoError(t, cluster.WaitFor(ctx, c.Settled))
	require.Equal(t, 1, c.StreamsBetween(0, 2))
	send(t, ctx, c, 2, 1, "hello")
}

// TestAdd adds a node after the start, with node 0 running and then
// stopped: it joins the DHT, is found by Identifier and exchanges messages.
func TestAdd(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	c := start(t, ctx, testOptions(3))
	i, err := c.Add(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, i)
	require.Equal(t, 4, c.Size())
	require.True(t, c.Running(i))
	send(t, ctx, c, i, 1, "from the newcomer")

	require.NoError(t, c.Stop(0))
	j, err := c.Add(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, j)
	require.Equal(t, []int{1, 2, 3, 4}, c.RunningNodes())
	send(t, ctx, c, 2, j, "to the second newcomer")
}

// TestBootstrap starts a one-node cluster whose DHT joins through a node of
// another cluster: each finds the other by Identifier, and they exchange
// messages.
func TestBootstrap(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	a := start(t, ctx, testOptions(2))
	opts := testOptions(1)
	opts.Bootstrap = []peer.AddrInfo{a.Node(0).AddrInfo()}
	b := start(t, ctx, opts)
	info, err := resolver.NewDHT(b.DHT(0)).Resolve(ctx, a.ID(1))
	require.NoError(t, err, "the outsider resolves node 1 of the other cluster")
	require.Equal(t, a.Node(1).PeerID(), info.ID)

	conn, err := a.Manager(1).Connect(ctx, b.ID(0))
	require.NoError(t, err, "node 1 finds the outsider through node 0's DHT")
	require.NoError(t, conn.Send(ctx, []byte("hello")))
	in, err := b.Manager(0).Accept(ctx)
	require.NoError(t, err)
	got, err := in.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))
}
