package integration_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/examples/skipgraph/sg"
	"github.com/skipwire/skipwire/examples/skipgraph/testbed"
	"github.com/skipwire/skipwire/internal/testkit"
)

// TestSkipGraphIsolatedNode runs a skip graph of 12 nodes: 8 in this
// process, listening on the bridge of a netnsLab, and 4 in child processes
// (this test binary run again), each in a network namespace of its own
// behind a veth pair. All join through the introducer and searches, from
// every kind of node, are checked against the sorted key list.
//
// Then one namespaced node's interface goes down: its packets vanish, with
// no reset and no FIN, while its process runs on. Its neighbours notice
// through skipwire's keepalive (KeepaliveInterval + KeepaliveTimeout, 1 s +
// 1 s here) and repair their tables. Once every table is the one the
// sorted keys of the others give, every search is correct and none goes to
// or through the isolated node (no hop was committed to it, it received
// nothing and answered nothing), no message between the reachable nodes
// was lost, and every pair shares one libp2p connection.
func TestSkipGraphIsolatedNode(t *testing.T) {
	lab := newNetnsLab(t)
	ctx := testkit.Context(t, 50*time.Second)
	const here, apart = 8, 4
	nss := make([]string, apart)
	for k := range nss {
		nss[k] = lab.node(t, k)
	}
	conn := testbed.ConnConfig()
	conn.KeepaliveInterval = time.Second
	conn.KeepaliveTimeout = time.Second
	t0 := time.Now()
	tb, err := testbed.Start(ctx, testbed.Options{
		Nodes:  here,
		Conn:   &conn,
		Listen: fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(1)),
		// Timeouts for a machine slowed down by the race detector.
		Node: sg.Config{SearchTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, HopTimeout: 2 * time.Second},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tb.Close()) })
	idx := make([]int, apart)
	var wg sync.WaitGroup
	for k := range apart {
		wg.Go(func() {
			var err error
			idx[k], err = tb.AddChild(ctx, testbed.ChildOptions{
				Listen: fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(10+k)),
				Wrap:   []string{"ip", "netns", "exec", nss[k]},
			})
			require.NoError(t, err, "node in namespace %s", nss[k])
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	all := make([]int, tb.Size())
	for i := range all {
		all[i] = i
	}
	_, err = tb.JoinAll(ctx, all, 4)
	require.NoError(t, err)
	require.NoError(t, tb.WaitConverged(ctx))
	t.Logf("%d nodes started and joined in %s, %d of them in namespaces", tb.Size(), time.Since(t0).Round(time.Millisecond), apart)
	requireSearches(t, ctx, tb, 100, "after the joins")
	requireSearchesFrom(t, ctx, tb, idx, 10, "after the joins")

	// Cut one namespaced node off: its interface goes down.
	victim := idx[0]
	id := tb.Node(victim).Self().ID
	neighbours := len(tb.Node(victim).Table().Neighbours())
	w := tb.WatchDepartures()
	stop := tb.StartSearches(1, 20*time.Millisecond)
	d, err := tb.Cut(victim, func() error { return ipCmd("-n", nss[0], "link", "set", lab.nodeIf(0), "down") })
	w.Add(d)
	require.NoError(t, err)
	seen, err := w.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, tb.WaitConverged(ctx))
	repaired := time.Since(d.At)
	during := stop()
	require.NotContains(t, tb.Running(), victim)

	// Every search after the repair is right and avoids the isolated node.
	since := time.Now()
	requireSearches(t, ctx, tb, 200, "after the isolation")
	requireSearchesFrom(t, ctx, tb, idx[1:], 10, "after the isolation")
	to, by, from := tb.Ledger().Traffic(id, since, "search", "found")
	require.Zero(t, to, "search hops committed to the isolated node")
	require.Zero(t, by, "messages of searches the isolated node received")
	require.Zero(t, from, "answers or hops from the isolated node")
	anyTo, anyBy, anyFrom := tb.Ledger().Traffic(id, since)
	require.Zero(t, anyBy, "messages the isolated node received")

	// Nothing lost between the nodes still reachable; one connection per
	// pair.
	cut := time.Now()
	conns, err := tb.WaitOnePerPair(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, conns.MaxPerPair)
	require.Equal(t, 1, conns.MaxStreams)
	time.Sleep(time.Until(cut.Add(time.Second)))
	tot := tb.Ledger().Totals(tb.Alive, cut)
	require.Zero(t, tot.Lost, "messages lost between reachable nodes: %s: %v", tot, tot.Examples)
	t.Logf("isolated node %d (%s, %d neighbours) dropped by its last neighbour %s after its interface went down; every table repaired after %s; "+
		"searches meanwhile %d correct, %d wrong, %d failed %v; after the repair no search touched it (maintenance messages committed to it %d, from it %d); "+
		"messages %s; libp2p connections per pair max %d over %d pairs",
		victim, id.Short(), neighbours, slices.Max(seen).Round(time.Millisecond), repaired.Round(time.Millisecond),
		during.Correct, during.Wrong, during.Failed, during.Examples, anyTo, anyFrom, tot, conns.MaxPerPair, conns.Pairs)
}

// requireSearchesFrom runs n searches from each of the nodes idx for random
// keys, and requires every answer to be the one the sorted key list gives.
func requireSearchesFrom(t *testing.T, ctx context.Context, tb *testbed.Testbed, idx []int, n int, when string) {
	t.Helper()
	var s testbed.Searches
	for _, i := range idx {
		for range n {
			tb.SearchFrom(ctx, i, &s)
		}
	}
	require.Equal(t, n*len(idx), s.Correct, "searches from nodes %v %s: %d correct, %d wrong, %d failed: %v", idx, when, s.Correct, s.Wrong, s.Failed, s.Examples)
}
