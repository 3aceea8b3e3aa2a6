package integration_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
)

// TestSimultaneousMesh starts 32 nodes (100 with SKIPWIRE_SOAK=1). Every node
// connects to every other by Identifier (resolved through the peerstore or the
// DHT), both sides of each pair at the same instant, and then every node sends
// to every other, all pairs and both directions at once. Every message
// arrives, from the right sender, once; each host pair ends with exactly one
// libp2p connection carrying one skipwire stream on each side.
func TestSimultaneousMesh(t *testing.T) {
	size, perPair := 32, 5
	if soak() {
		size, perPair = soakNodes(t), 20
	}
	before := takeSnapshot()
	ctx := testkit.Context(t, pairsDeadline(size))
	c := startCluster(t, ctx, cluster.Options{Size: size, Config: nodeConfig()})
	l := newLedger(c)
	ss := newServices(t, l)

	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	// Both sides of each pair call Connect at the same instant; a few pairs
	// at a time (testkit.Parallel), since DHT lookups and secure handshakes
	// are CPU work: hundreds at once on a busy machine under the race
	// detector exceed the ConnectTimeout.
	pairs := allPairs(size)
	testkit.ForEach(len(pairs), testkit.Parallel(), func(k int) {
		i, j := pairs[k][0], pairs[k][1]
		var pair sync.WaitGroup
		for _, d := range [][2]int{{i, j}, {j, i}} {
			pair.Go(func() {
				if _, err := ss.get(d[0]).connect(ctx, d[1]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		pair.Wait()
	})
	require.Empty(t, errs)
	t.Logf("%d Connect calls (both sides of each pair at once, up to %d pairs at a time) in %s", size*(size-1), testkit.Parallel(), time.Since(t0).Round(time.Millisecond))
	settled := requireOnePerPair(t, ctx, c)
	t.Logf("settled: %d pairs, 1 libp2p connection and 1 skipwire stream per side each, after %s", settled, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	for i := range size {
		for j := range size {
			if i == j {
				continue
			}
			wg.Go(func() {
				for range perPair {
					if err := ss.get(i).send(ctx, j, 64); err != nil {
						t.Errorf("send %d -> %d: %v", i, j, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	require.False(t, t.Failed())
	require.NoError(t, waitDelivered(ctx, l))
	tot := l.totals()
	t.Logf("messages: %s, in %s", tot, time.Since(t0).Round(time.Millisecond))
	require.Equal(t, size*(size-1)*perPair, tot.delivered)
	require.Zero(t, tot.lost)
	require.Zero(t, tot.dups)
	require.Zero(t, tot.misrouted)

	// The traffic opened nothing new.
	requireOnePerPair(t, ctx, c)
	ss.closeAll()
	require.NoError(t, c.Close())
	require.NoError(t, cluster.WaitFor(ctx, func() bool { return takeSnapshot().goroutines <= before.goroutines+10 }))
	t.Logf("SUMMARY mesh: %d nodes, %d pairs; %s; connections per pair 1; reconnects %d; start %s; end %s",
		size, settled, tot, l.reconnects.Load(), before, takeSnapshot())
}
