package network_test

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/network"
)

// sendLoops sends per messages from each of loops goroutines of from to
// node to on ch, each loop's in order, and counts the Sends. The loops are
// numbered from first on, in message(i, seq).
func sendLoops(t testing.TB, from *node, to *node, ch network.Channel, first, loops, per int) *sendStats {
	t.Helper()
	ctx := testContext(t, time.Minute)
	var stats sendStats
	var wg sync.WaitGroup
	for i := first; i < first+loops; i++ {
		wg.Go(func() {
			c := from.n.Conduit(ch)
			for seq := range per {
				stats.record(c.Send(ctx, to.id, message(i, seq)))
			}
		})
	}
	wg.Wait()
	return &stats
}

// TestWindowGrows: concurrent Sends to a processor that keeps up grow the
// sender's window, up to WindowLimit; every message arrives once, in order.
func TestWindowGrows(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const window, limit = 4, 32
		recv := newNode(t, w, network.Config{Window: window, WindowLimit: limit})
		send := newNode(t, w, network.Config{})
		counted := newTally()
		register(t, recv, "in", counted)

		stats := sendLoops(t, send, recv, "in", 0, 8, scale(100, 2000))
		stats.requireNoFailure(t)
		requireExactlyOnce(t, flow{"8 loops", stats, counted})
		got := recv.n.WindowOf(send.id, "in")
		t.Logf("window %d, limit %d", got, limit)
		require.Greater(t, got, window, "the window did not grow")
		require.LessOrEqual(t, got, limit)
	})
}

// TestWindowStaysWhenBehind: a processor that does not keep up does not
// grow the window of the senders it holds back.
func TestWindowStaysWhenBehind(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const window = 4
		recv := newNode(t, w, network.Config{Window: window, WindowLimit: 64})
		send := newNode(t, w, network.Config{})
		held := &gated{hold: network.Message{From: send.id}, gate: make(chan struct{}), got: make(chan network.Message, 1024)}
		register(t, recv, "in", held)

		var stats *sendStats
		done := make(chan struct{})
		go func() {
			defer close(done)
			stats = sendLoops(t, send, recv, "in", 0, 8, 8)
		}()
		// The processor holds the first message; the window fills behind it
		// and the Sends wait, saying so.
		<-held.got
		require.Never(t, func() bool { return recv.n.WindowOf(send.id, "in") != window }, 5*quiet, tick,
			"the window grew while the processor held the sender back")
		close(held.gate)
		<-done
		stats.requireNoFailure(t)
		require.Equal(t, int64(64), stats.ok.Load())
	})
}

// TestWindowInterop: a Network that predates growing windows and one that
// grows them work together with fixed windows both ways: nothing is lost,
// duplicated or rejected.
func TestWindowInterop(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const window = 4
		regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
		older, err := network.NewWithoutCapabilities(w.manager(t, connConfig()),
			network.Config{Window: window, Metrics: regs[0]})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, older.Close()) })
		ns := []*node{
			{id: older.ID(), m: older.Manager(), n: older},
			newNode(t, w, network.Config{Window: window, Metrics: regs[1]}),
		}
		tallies := []*tally{newTally(), newTally()}
		for i, nd := range ns {
			register(t, nd, "in", tallies[i])
		}
		stats := make([]*sendStats, 2)
		var wg sync.WaitGroup
		for i, nd := range ns {
			wg.Go(func() { stats[1-i] = sendLoops(t, nd, ns[1-i], "in", 0, 8, scale(50, 1000)) })
		}
		wg.Wait()
		for i := range ns {
			stats[i].requireNoFailure(t)
		}
		requireExactlyOnce(t, flow{"to the older", stats[0], tallies[0]}, flow{"to the newer", stats[1], tallies[1]})
		for i, nd := range ns {
			require.Equal(t, window, nd.n.WindowOf(ns[1-i].id, "in"), "node %d grew a window", i)
			require.Zero(t, metricSum(t, regs[i], "skipwire_network_rejected_total"), "node %d rejected envelopes", i)
		}
	})
}

// TestWindowAllowance: senders' grown windows share one allowance per
// channel, WindowLimit - Window, and a sender that goes gives its share back.
func TestWindowAllowance(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const window, limit = 4, 12
		recv := newNode(t, w, network.Config{Window: window, WindowLimit: limit})
		counted := newTally()
		register(t, recv, "in", counted)
		senders := newNodes(t, w, 3, network.Config{})
		per := scale(100, 2000)
		var wg sync.WaitGroup
		for i, s := range senders {
			wg.Go(func() { sendLoops(t, s, recv, "in", 8*i, 8, per).requireNoFailure(t) })
		}
		wg.Wait()
		require.Eventually(t, func() bool { arrived, _, _ := counted.counts(); return arrived >= 3*8*per }, eventually, tick)
		arrived, dups, disorder := counted.counts()
		t.Logf("%d sent, %d arrived, %d duplicated, %d out of order", 3*8*per, arrived, dups, disorder)
		require.Equal(t, 3*8*per, arrived)
		require.Zero(t, dups)
		require.Zero(t, disorder)

		extra := 0
		for _, s := range senders {
			extra += recv.n.WindowOf(s.id, "in") - window
		}
		t.Logf("windows grown by %d in all, allowance %d", extra, limit-window)
		require.Positive(t, extra, "no window grew")
		require.Equal(t, extra, recv.n.Granted("in"))
		require.LessOrEqual(t, extra, limit-window)

		// A sender's Network closes: the room it was granted goes back.
		for _, s := range senders {
			require.NoError(t, s.n.Close())
		}
		require.Eventually(t, func() bool { return recv.n.Granted("in") == 0 }, eventually, tick)
	})
}
