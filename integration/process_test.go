package integration_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/cluster"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// driver is an in-process node that drives request/echo traffic to child
// nodes, one pinger goroutine per child, and counts the outcome per child.
type driver struct {
	m     *p2pconn.Manager
	table *resolver.Static
	kids  []*childnode.Node
	stats []*pingStats

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type pingStats struct {
	echoed   atomic.Int64 // requests whose echo came back
	failed   atomic.Int64 // requests that failed (Connect, Send or Next error)
	mismatch atomic.Int64 // echoes that were not the request
	stopped  atomic.Bool
}

// startDriver starts a node listening on listen that knows kids' addresses
// (static table) and pings each of them every tick.
func startDriver(t testing.TB, listen string, kids []*childnode.Node, tick time.Duration) *driver {
	t.Helper()
	cfg := childConfig()
	h := testkit.NewHost(t, nil, listen, p2pconn.HostOptions(cfg)...)
	table := resolver.NewStatic()
	for _, k := range kids {
		table.Add(k.ID, k.Addr)
	}
	m, err := p2pconn.NewManager(h, table, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	d := &driver{m: m, table: table, kids: kids, cancel: cancel}
	t.Cleanup(func() {
		d.stop()
		require.NoError(t, m.Close())
	})
	for k := range kids {
		st := new(pingStats)
		d.stats = append(d.stats, st)
		d.wg.Go(func() { d.ping(ctx, k, st, tick) })
	}
	return d
}

func (d *driver) ping(ctx context.Context, k int, st *pingStats, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	var seq uint64
	for !st.stopped.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq++
		req := binary.BigEndian.AppendUint64(nil, seq)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := d.m.Connect(rctx, d.kids[k].ID)
		if err == nil {
			err = conn.Send(rctx, req)
		}
		var echo []byte
		if err == nil {
			echo, err = conn.Next(rctx)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			st.failed.Add(1)
			if conn != nil && conn.IsAlive() {
				// A timed-out echo may still come: start afresh.
				_ = conn.Close()
			}
		case !bytes.Equal(echo, req):
			st.mismatch.Add(1)
		default:
			st.echoed.Add(1)
		}
	}
}

func (d *driver) stop() {
	d.cancel()
	d.wg.Wait()
}

// echoedAtLeast waits until child k has echoed n more requests than from.
func (d *driver) waitEchoes(ctx context.Context, k int, from, n int64) error {
	return cluster.WaitFor(ctx, func() bool { return d.stats[k].echoed.Load() >= from+n })
}

// waitDead waits for conn to die and returns how long after since it was seen.
func waitDead(t testing.TB, ctx context.Context, conn p2pconn.Connection, since time.Time) time.Duration {
	t.Helper()
	select {
	case <-conn.Done():
	case <-ctx.Done():
		t.Fatalf("connection to %s not declared dead", conn.RemoteID().Short())
	}
	return time.Since(since)
}

// TestProcessKillAndFreeze runs four nodes as separate OS processes (this
// test binary re-executed) and an in-process node that sends requests to
// each and reads the echoes. Mid-traffic one child is killed (SIGKILL) and
// another frozen (SIGSTOP): both connections are declared lost
// (ErrConnectionLost), the frozen one by the health check within
// KeepaliveInterval + KeepaliveTimeout (1 s + 1 s), while every request to
// the other two is still echoed. The frozen child, thawed (SIGCONT), is
// reached again by the next Connect.
func TestProcessKillAndFreeze(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	kids := make([]*childnode.Node, 4)
	var wg sync.WaitGroup
	for k := range kids {
		wg.Go(func() { kids[k] = childnode.Start(t, childnode.Options{Config: childConfig()}) })
	}
	wg.Wait()
	require.NotContains(t, kids, (*childnode.Node)(nil))
	d := startDriver(t, testkit.LoopbackTCP, kids, 10*time.Millisecond)
	for k := range kids {
		require.NoError(t, d.waitEchoes(ctx, k, 0, 20), "child %d echoes", k)
	}
	const killed, frozen = 1, 2
	connKilled, ok := d.m.GetConnection(kids[killed].ID)
	require.True(t, ok)
	connFrozen, ok := d.m.GetConnection(kids[frozen].ID)
	require.True(t, ok)
	before := []int64{d.stats[0].echoed.Load(), d.stats[3].echoed.Load()}

	t0 := time.Now()
	require.NoError(t, kids[killed].Cmd.Process.Signal(syscall.SIGKILL))
	require.NoError(t, kids[frozen].Freeze())
	killLat := waitDead(t, ctx, connKilled, t0)
	freezeLat := waitDead(t, ctx, connFrozen, t0)
	require.ErrorIs(t, connKilled.Err(), p2pconn.ErrConnectionLost)
	require.ErrorIs(t, connFrozen.Err(), p2pconn.ErrConnectionLost)
	require.Less(t, freezeLat, 5*time.Second, "frozen peer detected within KeepaliveInterval + KeepaliveTimeout (2 s) plus slack")
	d.stats[killed].stopped.Store(true)

	// Traffic to the others kept flowing, and keeps flowing.
	require.NoError(t, d.waitEchoes(ctx, 0, before[0], 50))
	require.NoError(t, d.waitEchoes(ctx, 3, before[1], 50))
	for _, k := range []int{0, 3} {
		require.Zero(t, d.stats[k].failed.Load(), "child %d: a request to a live child failed", k)
		require.Zero(t, d.stats[k].mismatch.Load())
	}

	// Thawed, the frozen child is reached again.
	thawed := d.stats[frozen].echoed.Load()
	require.NoError(t, kids[frozen].Thaw())
	t1 := time.Now()
	require.NoError(t, d.waitEchoes(ctx, frozen, thawed, 10))
	t.Logf("SIGKILL detected in %s (%v); SIGSTOP detected in %s (%v); after SIGCONT echoes resumed in %s; echoes %d/%d/%d/%d, failed %d/%d/%d/%d",
		killLat.Round(time.Millisecond), connKilled.Err(), freezeLat.Round(time.Millisecond), connFrozen.Err(), time.Since(t1).Round(time.Millisecond),
		d.stats[0].echoed.Load(), d.stats[1].echoed.Load(), d.stats[2].echoed.Load(), d.stats[3].echoed.Load(),
		d.stats[0].failed.Load(), d.stats[1].failed.Load(), d.stats[2].failed.Load(), d.stats[3].failed.Load())
	d.stop()
	for _, k := range []int{0, 3} {
		require.Zero(t, d.stats[k].failed.Load(), "child %d: a request to a live child failed", k)
	}
}
