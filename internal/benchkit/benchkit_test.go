package benchkit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/benchkit"
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

	for name, open := range map[string]benchkit.Opener{"skipwire": benchkit.OpenSkipwire, "raw": benchkit.OpenRaw, "tcp": benchkit.OpenTCP} {
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
