package integration_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// TestChurn runs 32 nodes that send to random peers by Identifier (static
// resolution) while a
// quarter of them (8: half crashed, half stopped cleanly) go down and come
// back on the same keys and ports. Every message sent to a peer that stayed
// up arrives; every peer of a node that went down sees its connection end
// (ErrConnectionLost for a crash); restarted nodes receive traffic again;
// and in the end each host pair shares one libp2p connection.
func TestChurn(t *testing.T) {
	runChurn(t, churnOptions{size: 32, rounds: 1, tick: 10 * time.Millisecond, timeout: pairsDeadline(32)})
}

// TestSoakChurn is TestChurn with SKIPWIRE_SOAK_NODES nodes (default 100)
// churning for SKIPWIRE_SOAK_DURATION (default 10 minutes). Run by make soak.
func TestSoakChurn(t *testing.T) {
	if !soak() {
		t.Skip("soak test: set SKIPWIRE_SOAK=1 (make soak)")
	}
	d := soakDuration(t)
	runChurn(t, churnOptions{size: soakNodes(t), duration: d, tick: 20 * time.Millisecond, timeout: d + pairsDeadline(soakNodes(t))})
}

type churnOptions struct {
	size     int
	rounds   int           // churn rounds, or
	duration time.Duration // churn for this long
	tick     time.Duration // each node sends one message per tick
	timeout  time.Duration
}

// sender sends from one node incarnation to random peers until stopped.
type sender struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startSender(ss *services, i int, tick time.Duration) *sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{cancel: cancel}
	svc := ss.get(i)
	n := ss.l.c.Size()
	s.wg.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			j := rand.N(n - 1)
			if j >= i {
				j++
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			_ = svc.send(sctx, j, 64)
			scancel()
		}
	})
	return s
}

func (s *sender) stop() {
	s.cancel()
	s.wg.Wait()
}

func runChurn(t *testing.T, o churnOptions) {
	before := takeSnapshot()
	ctx := testkit.Context(t, o.timeout)
	// Static resolution: a DHT lookup takes seconds under the race detector
	// on two cores, which would make this a test of the DHT's speed. The
	// nodes keep their addresses across restarts, so one table serves all.
	table := resolver.NewStatic()
	c := startCluster(t, ctx, cluster.Options{Size: o.size, Config: nodeConfig(),
		NewResolver: func(host.Host, *dht.IpfsDHT) resolver.AddressResolver { return table }})
	for i := range o.size {
		table.Add(c.ID(i), c.Node(i).Listen...)
	}
	l := newLedger(c)
	ss := newServices(t, l)

	var smu sync.Mutex
	senders := make([]*sender, o.size)
	for i := range o.size {
		senders[i] = startSender(ss, i, o.tick)
	}
	t.Cleanup(func() {
		smu.Lock()
		defer smu.Unlock()
		for _, s := range senders {
			if s != nil {
				s.stop()
			}
		}
	})

	// Warm up: traffic connects the nodes on demand.
	t0 := time.Now()
	half := o.size * (o.size - 1) / 2
	require.NoError(t, cluster.WaitFor(ctx, func() bool {
		n := 0
		for i := range o.size {
			n += c.Manager(i).ConnectionCount()
		}
		return n >= half
	}))
	t.Logf("warm-up: half of all possible connections up after %s; %s", time.Since(t0).Round(time.Millisecond), l.totals())

	quarter := max(1, o.size/4)
	var detectLat []time.Duration
	var detected, crashLost, stopClean, rounds int
	churnStart := time.Now()
	for round := 0; ; round++ {
		if o.rounds > 0 && round >= o.rounds || o.duration > 0 && time.Since(churnStart) >= o.duration {
			break
		}
		rounds++
		victims := rand.Perm(o.size)[:quarter]
		var wg sync.WaitGroup
		var mu sync.Mutex
		for v, k := range victims {
			crash := v%2 == 0
			wg.Go(func() {
				// Peers' connections to k, to check that they notice.
				var conns []p2pconn.Connection
				// (Other victims' connections end by their own stop.)
				for _, i := range c.RunningNodes() {
					if slices.Contains(victims, i) {
						continue
					}
					if cn, ok := c.Manager(i).GetConnection(c.ID(k)); ok {
						conns = append(conns, cn)
					}
				}
				smu.Lock()
				s := senders[k]
				senders[k] = nil
				smu.Unlock()
				s.stop()
				l.bump(k)
				down := time.Now()
				if crash {
					require.NoError(t, c.Kill(k))
				} else {
					require.NoError(t, c.Stop(k))
				}
				for _, cn := range conns {
					select {
					case <-cn.Done():
					case <-ctx.Done():
						t.Errorf("node %d: a peer did not see its connection end", k)
						return
					}
					lat := time.Since(down)
					err := cn.Err()
					require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
					if crash {
						require.ErrorIs(t, err, p2pconn.ErrConnectionLost, "a crash is a loss")
					}
					mu.Lock()
					detectLat = append(detectLat, lat)
					detected++
					if crash && errors.Is(err, p2pconn.ErrConnectionLost) {
						crashLost++
					}
					if !crash && !errors.Is(err, p2pconn.ErrConnectionLost) {
						stopClean++
					}
					mu.Unlock()
				}
				l.bump(k)
				require.NoError(t, c.Restart(ctx, k))
				ss.restarted(k)
				smu.Lock()
				senders[k] = startSender(ss, k, o.tick)
				smu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		// Restarted nodes are reached again: each receives traffic.
		for _, k := range victims {
			require.NoError(t, cluster.WaitFor(ctx, func() bool { return l.reached(k) }), "node %d not reached after its restart", k)
		}
		if o.duration > 0 {
			tot := l.totals()
			t.Logf("round %d at %s: %s; reconnects %d; %s", rounds, time.Since(churnStart).Round(time.Second), tot, l.reconnects.Load(), takeSnapshot())
			// (Mid-run, "lost" counts messages still in flight; the end checks it.)
			require.Zero(t, tot.dups+tot.misrouted, "mid-soak")
		}
	}
	t.Logf("churn: %d rounds of %d nodes down and back in %s; %d peer connections saw the end (p50 %s, max %s after the stop); crashes: %d losses; clean stops: %d goodbyes",
		rounds, quarter, time.Since(churnStart).Round(time.Millisecond), detected,
		testkit.Percentile(detectLat, 50).Round(time.Millisecond), testkit.Percentile(detectLat, 100).Round(time.Millisecond), crashLost, stopClean)

	smu.Lock()
	for i, s := range senders {
		s.stop()
		senders[i] = nil
	}
	smu.Unlock()
	require.NoError(t, waitDelivered(ctx, l), "messages: %s", l.totals())
	tot := l.totals()
	t.Logf("messages: %s", tot)
	require.Zero(t, tot.lost, "messages to live peers all arrive")
	require.Zero(t, tot.dups)
	require.Zero(t, tot.misrouted)

	// Everyone reaches everyone again, on one connection per pair: both
	// sides of a few pairs at a time (testkit.Parallel), as in
	// TestSimultaneousMesh.
	t0 = time.Now()
	pairs := allPairs(o.size)
	testkit.ForEach(len(pairs), testkit.Parallel(), func(k int) {
		var pair sync.WaitGroup
		for _, d := range [][2]int{{pairs[k][0], pairs[k][1]}, {pairs[k][1], pairs[k][0]}} {
			pair.Go(func() {
				if err := ss.get(d[0]).send(ctx, d[1], 0); err != nil {
					t.Errorf("send %d -> %d: %v", d[0], d[1], err)
				}
			})
		}
		pair.Wait()
	})
	require.False(t, t.Failed())
	require.NoError(t, waitDelivered(ctx, l), "messages: %s", l.totals())
	settled := requireOnePerPair(t, ctx, c)
	t.Logf("after churn: every ordered pair exchanged a message and %d pairs settled on 1 connection in %s", settled, time.Since(t0).Round(time.Millisecond))
	end := l.totals()
	require.Zero(t, end.lost)
	reconnects := l.reconnects.Load()
	ss.closeAll()
	require.NoError(t, c.Close())
	require.NoError(t, cluster.WaitFor(ctx, func() bool { return takeSnapshot().goroutines <= before.goroutines+10 }))
	t.Logf("SUMMARY churn: %d nodes, %d rounds of %d restarts; messages %s; connections per pair 1 (%d pairs); reconnects %d; dead-peer detections %d (p50 %s); start %s; end %s",
		o.size, rounds, quarter, end, settled, reconnects, detected, testkit.Percentile(detectLat, 50).Round(time.Millisecond), before, takeSnapshot())
}
