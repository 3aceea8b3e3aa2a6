package p2pconn_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// TestStarvedSchedulerNoFalseLoss: one OS thread for Go code, four
// goroutines spinning on it, and the default Config (KeepaliveInterval 15 s,
// KeepaliveTimeout 10 s). Healthy connections, idle and busy, carry on: no
// loss is declared. 20 s here, 60 s in make soak.
func TestStarvedSchedulerNoFalseLoss(t *testing.T) {
	run := 20 * time.Second
	if soak() {
		run = time.Minute
	}
	c := newCluster(t, transports["tcp"])
	a := c.node(p2pconn.Config{})
	peers := []*node{c.node(p2pconn.Config{}), c.node(p2pconn.Config{}), c.node(p2pconn.Config{})}
	ctx := testkit.Context(t, run+time.Minute)
	var conns []p2pconn.Connection
	for _, p := range peers {
		ca, _ := connected(t, ctx, a, p)
		conns = append(conns, ca)
	}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	spin, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for spin.Err() == nil {
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	// One connection stays idle (the health check pings it); the others carry
	// a message every 100 ms.
	var sent atomic.Int64
	deadline := time.Now().Add(run)
	for time.Now().Before(deadline) {
		for _, conn := range conns[1:] {
			require.NoError(t, conn.Send(ctx, []byte("tick")))
			sent.Add(1)
		}
		time.Sleep(100 * time.Millisecond) // pacing the load, not waiting for a state
		for i, conn := range conns {
			require.True(t, conn.IsAlive(), "connection %d declared dead under a starved scheduler: %v", i, conn.Err())
		}
	}
	t.Logf("%s with GOMAXPROCS=1 and 4 spinning goroutines: %d messages, %d connections alive", run, sent.Load(), a.m.ConnectionCount())
	require.Equal(t, len(peers), a.m.ConnectionCount())
}
