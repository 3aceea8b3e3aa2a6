package integration_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

// TestNetnsResume streams numbered messages at full speed to an echo node
// in its own process and network namespace, and reads the echoes back,
// while the node's link goes down long enough for both sides' health checks
// to declare the libp2p connection lost (KeepaliveInterval +
// KeepaliveTimeout, 1 s + 1 s), then comes back up. With session resumption
// the same Connection goes on across each cut on a new libp2p connection:
// every message comes back once, in order. Two cuts in make test, twenty in
// make soak.
func TestNetnsResume(t *testing.T) {
	cuts := 2
	if soak() {
		cuts = 20
	}
	lab := newNetnsLab(t)
	ctx := testkit.Context(t, time.Duration(cuts)*15*time.Second+time.Minute)
	ns := lab.node(t, 0)
	cfg := childConfig()
	cfg.ResumeWindow = 30 * time.Second
	kid := childnode.Start(t, childnode.Options{
		Config: cfg,
		Listen: fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(10)),
		Wrap:   []string{"ip", "netns", "exec", ns},
	})
	h := testkit.NewHost(t, nil, fmt.Sprintf("/ip4/%s/tcp/0", lab.ip(1)), p2pconn.HostOptions(cfg)...)
	table := resolver.NewStatic()
	table.Add(kid.ID, kid.Addr)
	m, err := p2pconn.NewManager(h, table, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	events, cancel := m.Subscribe()
	defer cancel()

	conn, err := m.Connect(ctx, kid.ID)
	require.NoError(t, err)
	const size = 200
	var sent, got atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for seq := uint64(0); ; seq++ {
			msg := make([]byte, size)
			binary.BigEndian.PutUint64(msg, seq)
			select {
			case <-stop:
				binary.BigEndian.PutUint64(msg, 1<<64-1)
				if err := conn.Send(ctx, msg); err != nil {
					errs <- fmt.Errorf("end message: %w", err)
				}
				return
			default:
			}
			if err := conn.Send(ctx, msg); err != nil {
				errs <- fmt.Errorf("send %d: %w", seq, err)
				return
			}
			sent.Add(1)
		}
	})
	wg.Go(func() {
		for seq := uint64(0); ; seq++ {
			msg, err := conn.Next(ctx)
			if err != nil {
				errs <- fmt.Errorf("echo %d: %w", seq, err)
				return
			}
			n := binary.BigEndian.Uint64(msg)
			if n == 1<<64-1 {
				return
			}
			if n != seq || len(msg) != size {
				errs <- fmt.Errorf("echo %d: got %d (%d bytes): lost or duplicated", seq, n, len(msg))
				return
			}
			got.Add(1)
		}
	})

	connID := func() string {
		cs := h.Network().ConnsToPeer(kid.ID.PeerID())
		if len(cs) == 0 {
			return ""
		}
		return cs[0].ID()
	}
	var down, back []time.Duration
	for i := range cuts {
		// Echoes flow on a settled connection.
		from := got.Load()
		require.Eventually(t, func() bool { return got.Load() >= from+1000 }, 20*time.Second, 10*time.Millisecond, "cut %d: echoes flow", i)
		before := connID()
		require.NoError(t, ipCmd("-n", ns, "link", "set", lab.nodeIf(0), "down"))
		t0 := time.Now()
		waitEvent(t, ctx, events, p2pconn.EventResuming)
		down = append(down, time.Since(t0))
		require.True(t, conn.IsAlive(), "the connection lives while it resumes")
		require.NoError(t, ipCmd("-n", ns, "link", "set", lab.nodeIf(0), "up"))
		t1 := time.Now()
		waitEvent(t, ctx, events, p2pconn.EventResumed)
		back = append(back, time.Since(t1))
		require.NotEqual(t, before, connID(), "cut %d: a new libp2p connection", i)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, sent.Load(), got.Load())
	cur, ok := m.GetConnection(kid.ID)
	require.True(t, ok)
	require.Same(t, conn, cur)
	require.NoError(t, conn.Err())
	t.Logf("%d cuts: %d messages echoed, 0 lost, 0 duplicated, order kept; loss noticed %v (p50) after the cut, resumed %v (p50), %v (max) after the link came back",
		cuts, got.Load(), testkit.Percentile(down, 50).Round(time.Millisecond),
		testkit.Percentile(back, 50).Round(time.Millisecond), testkit.Percentile(back, 100).Round(time.Millisecond))
}

// waitEvent waits for the next event of kind, skipping others; a
// disconnected event fails the test.
func waitEvent(t *testing.T, ctx context.Context, events <-chan p2pconn.Event, kind p2pconn.EventKind) {
	t.Helper()
	for {
		select {
		case ev := <-events:
			require.NotEqual(t, p2pconn.EventDisconnected, ev.Kind, "disconnected: %v", ev.Err)
			if ev.Kind == kind {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %v event", kind)
		}
	}
}
