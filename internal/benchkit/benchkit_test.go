package benchkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/benchkit"
	"github.com/skipwire/skipwire/network"
	"github.com/skipwire/skipwire/resolver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestLinks runs each load on each kind of link, and measures idle links.
func TestLinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := benchkit.NewNodes(3, benchkit.NodeConfig{TCP: true}, resolver.NewStatic())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, benchkit.CloseNodes(nodes)) })

	for name, open := range map[string]benchkit.Opener{"skipwire": benchkit.OpenSkipwire, "raw": benchkit.OpenRaw, "combining": benchkit.OpenRawCombining, "tcp": benchkit.OpenTCP} {
		t.Run(name, func(t *testing.T) {
			l, took, err := open(ctx, nodes[0], nodes[1])
			require.NoError(t, err)
			require.Positive(t, took)
			res, err := benchkit.Throughput(l, 64<<10, 4, 50, nil)
			require.NoError(t, err)
			require.Positive(t, res.Elapsed)
			rt, err := benchkit.RoundTrips(l, 128, 2, 10, nil) // closes l
			require.NoError(t, err)
			require.Len(t, rt.RTTs, 10)

			idle := benchkit.Idle{Center: nodes[0], Peers: nodes[1:], Open: open, Readers: true, Workers: 2, Settle: time.Second}
			cost, target, err := idle.Measure(ctx, 0)
			require.NoError(t, err)
			require.Positive(t, target)
			require.Positive(t, cost.Took)
		})
	}
}

// TestCombiningSenders sends from many goroutines through the combining
// writer and checks every message arrives whole.
func TestCombiningSenders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := benchkit.NewNodes(2, benchkit.NodeConfig{}, resolver.NewStatic())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, benchkit.CloseNodes(nodes)) })

	l, _, err := benchkit.OpenRawCombining(ctx, nodes[0], nodes[1])
	require.NoError(t, err)
	for _, size := range []int{0, 128, 20 << 10} {
		_, err := benchkit.Throughput(l, size, 16, 2000, nil)
		require.NoError(t, err, "size %d", size)
	}
	require.NoError(t, l.Close())
}

// TestNets runs the network layer's loads.
func TestNets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes, err := benchkit.NewNodes(4, benchkit.NodeConfig{}, resolver.NewStatic())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, benchkit.CloseNodes(nodes)) })

	n, err := benchkit.StartNetworks(ctx, nodes[0], nodes[1:], network.Config{})
	require.NoError(t, err)
	res, err := n.OneWay(128, 8, 10, 500)
	require.NoError(t, err)
	require.Positive(t, res.Elapsed)
	rt, err := n.Requests(128, 2, 10)
	require.NoError(t, err)
	require.Len(t, rt.RTTs, 10)
	for range 2 { // the second time on fresh connections
		fi, err := n.FanIn(128, 5, 100)
		require.NoError(t, err)
		require.Equal(t, 300, fi.Messages)
		require.Len(t, fi.Delays, 300)
		for _, d := range fi.Delays {
			require.Positive(t, d)
		}
		require.NoError(t, n.Disconnect())
		require.Zero(t, nodes[0].Manager.ConnectionCount())
	}
	require.NoError(t, n.Close())

	// The Managers are free again for links of their own.
	l, _, err := benchkit.OpenSkipwire(ctx, nodes[1], nodes[0])
	require.NoError(t, err)
	_, err = benchkit.RoundTrips(l, 128, 1, 5, nil)
	require.NoError(t, err)
}
