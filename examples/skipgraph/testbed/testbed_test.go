package testbed_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/examples/skipgraph/testbed"
	"github.com/skipwire/skipwire/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.ChildMain(testbed.ChildRole)
	goleak.VerifyTestMain(m)
}

// TestChildNodes runs 7 nodes, 3 of them in child processes (one started
// later with AddChild), and drives them like the others: they join,
// searches from them are right, their tables and connections are counted;
// then one is killed (SIGKILL), one leaves and one in this process is
// killed, all at once, and after the repair every search is right again
// and no message between the nodes still running was lost.
func TestChildNodes(t *testing.T) {
	ctx := testkit.Context(t, 90*time.Second)
	tb, err := testbed.Start(ctx, testbed.Options{Nodes: 6, Children: 2})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tb.Close()) })
	extra, err := tb.AddChild(ctx, testbed.ChildOptions{})
	require.NoError(t, err)
	var apart []int
	for i := range tb.Size() {
		if tb.InChild(i) {
			apart = append(apart, i)
		}
	}
	require.Equal(t, []int{2, 5, 6}, apart, "children spread over the indexes, then the one added")
	require.Equal(t, 6, extra)

	_, err = tb.JoinAll(ctx, []int{0, 1, 2, 3, 4, 5, 6}, 3)
	require.NoError(t, err)
	require.NoError(t, tb.WaitConverged(ctx))
	var s testbed.Searches
	for _, i := range apart {
		for range 20 {
			tb.SearchFrom(ctx, i, &s)
		}
	}
	require.Equal(t, 60, s.Correct, "searches from the children: %v", s.Examples)
	cs, err := tb.WaitOnePerPair(ctx)
	require.NoError(t, err)
	require.Len(t, cs.PerNode, 7)
	require.Positive(t, slices.Min(cs.Neighbours), "every node, children included, has table neighbours")

	t0 := time.Now()
	w := tb.WatchDepartures()
	var wg sync.WaitGroup
	for _, i := range []int{2, 3} {
		wg.Go(func() {
			d, err := tb.Kill(i)
			w.Add(d)
			require.NoError(t, err)
		})
	}
	wg.Go(func() {
		d, err := tb.Leave(ctx, 5)
		w.Add(d)
		// A neighbour killed meanwhile cannot be told.
		if err != nil {
			t.Logf("leave of node 5: %v", err)
		}
	})
	wg.Wait()
	seen, err := w.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, tb.WaitConverged(ctx))
	require.Equal(t, []int{0, 1, 4, 6}, tb.Running())
	t.Logf("departures noticed after %v; repaired after %s", seen, time.Since(t0).Round(time.Millisecond))

	after := tb.RunSearches(ctx, 100, 4, nil)
	require.Equal(t, 100, after.Correct, "%v", after.Examples)
	s = testbed.Searches{}
	for range 20 {
		tb.SearchFrom(ctx, 6, &s)
	}
	require.Equal(t, 20, s.Correct, "searches from the child left: %v", s.Examples)

	cut := time.Now()
	_, err = tb.WaitOnePerPair(ctx)
	require.NoError(t, err)
	time.Sleep(time.Until(cut.Add(time.Second)))
	tot := tb.Ledger().Totals(tb.Alive, cut)
	require.Zero(t, tot.Lost, "%s: %v", tot, tot.Examples)
	to, by, from := tb.Ledger().Traffic(tb.Node(6).Self().ID, t0)
	require.Positive(t, to, "messages to the child")
	require.Positive(t, by, "messages the child received")
	require.Positive(t, from, "messages from the child")
	peerstore, _, _ := tb.Resolutions().Counts()
	require.Positive(t, peerstore)
}

func TestStartChildrenBounds(t *testing.T) {
	ctx := testkit.Context(t, 10*time.Second)
	_, err := testbed.Start(ctx, testbed.Options{Nodes: 3, Children: 3})
	require.ErrorContains(t, err, "need 0 to 2 (node 0 runs here)")
	_, err = testbed.Start(ctx, testbed.Options{Nodes: 3, Children: -1})
	require.Error(t, err)
}
