package p2pconn_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
)

// TestFrozenPeerDetected freezes a remote node's process with SIGSTOP: the
// health check declares the connection lost within KeepaliveInterval plus
// KeepaliveTimeout (plus one check period of slack): EventResuming says so,
// and the connection ends when the resume window (500 ms here) passes.
func TestFrozenPeerDetected(t *testing.T) {
	ch := childnode.Start(t, childnode.Options{Config: p2pconn.Config{KeepaliveInterval: time.Second}})
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.KeepaliveInterval = time.Second
	cfg.KeepaliveTimeout = time.Second
	cfg.ResumeWindow = 500 * time.Millisecond
	a := c.node(cfg)
	c.table.Add(ch.ID, ch.Addr)
	ctx := testkit.Context(t, 30*time.Second)
	events, cancel := a.m.Subscribe()
	defer cancel()
	conn, err := a.m.Connect(ctx, ch.ID)
	require.NoError(t, err)
	require.NoError(t, conn.Send(ctx, []byte("ping")))
	msg, err := conn.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(msg))

	require.NoError(t, ch.Freeze())
	frozen := time.Now()
	lost := waitKind(t, ctx, events, p2pconn.EventResuming)
	took := time.Since(frozen)
	require.Contains(t, lost.Err.Error(), "health check")
	select {
	case <-conn.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end")
	}
	bound := cfg.KeepaliveInterval + cfg.KeepaliveTimeout + 500*time.Millisecond // slack: check period and scheduling
	t.Logf("frozen peer detected after %s (KeepaliveInterval %s + KeepaliveTimeout %s; bound %s)", took, cfg.KeepaliveInterval, cfg.KeepaliveTimeout, bound)
	require.Less(t, took, bound)
	require.ErrorIs(t, conn.Err(), p2pconn.ErrConnectionLost)
	require.Contains(t, conn.Err().Error(), "health check")
	require.Equal(t, 0, a.m.ConnectionCount())
}

// TestKilledPeerDetected kills a remote node's process: the connection is
// lost at once (the kernel closes its sockets).
func TestKilledPeerDetected(t *testing.T) {
	ch := childnode.Start(t, childnode.Options{Config: p2pconn.Config{KeepaliveInterval: time.Second}})
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.ResumeWindow = 500 * time.Millisecond
	a := c.node(cfg)
	c.table.Add(ch.ID, ch.Addr)
	ctx := testkit.Context(t, 30*time.Second)
	events, cancel := a.m.Subscribe()
	defer cancel()
	conn, err := a.m.Connect(ctx, ch.ID)
	require.NoError(t, err)
	killed := time.Now()
	require.NoError(t, ch.Kill())
	waitKind(t, ctx, events, p2pconn.EventResuming)
	t.Logf("killed peer detected after %s", time.Since(killed))
	require.Less(t, time.Since(killed), 2*time.Second)
	select {
	case <-conn.Done():
	case <-ctx.Done():
		t.Fatal("the session did not end")
	}
	require.ErrorIs(t, conn.Err(), p2pconn.ErrConnectionLost)
}

// TestRestartedPeerReconnects stops a node and restarts it on the same key and
// port: the next Connect reaches it at once, although the dial made while it
// was down left libp2p's dial backoff set; the old connection stays dead.
func TestRestartedPeerReconnects(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.ResumeWindow = 200 * time.Millisecond // the stopped node comes back as a new process
	a := c.node(cfg)
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	bh := testkit.NewHost(t, key, transports["tcp"], p2pconn.HostOptions(testConfig())...)
	port := bh.Addrs()[0]
	bm, err := p2pconn.NewManager(bh, nil, testConfig())
	require.NoError(t, err)
	c.table.Add(bm.ID(), bh.Addrs()...)
	ctx := testkit.Context(t, 30*time.Second)

	old, err := a.m.Connect(ctx, bm.ID())
	require.NoError(t, err)
	// Crash: the host goes away without a skipwire close.
	require.NoError(t, bh.Close())
	require.NoError(t, bm.Close())
	<-old.Done()
	require.ErrorIs(t, old.Err(), p2pconn.ErrConnectionLost)
	_, err = a.m.Connect(ctx, bm.ID())
	require.Error(t, err, "the peer is down")

	bh2 := testkit.NewHost(t, key, port.String(), p2pconn.HostOptions(testConfig())...)
	bm2, err := p2pconn.NewManager(bh2, nil, testConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = bm2.Close() })
	start := time.Now()
	conn, err := a.m.Connect(ctx, bm2.ID())
	require.NoError(t, err)
	t.Logf("reconnected to the restarted peer in %s", time.Since(start))
	require.NotSame(t, old, conn)
	require.False(t, old.IsAlive())
	require.ErrorIs(t, old.Send(ctx, []byte("x")), p2pconn.ErrConnectionClosed)
	in, err := bm2.Accept(ctx)
	require.NoError(t, err)
	exchange(t, ctx, conn, in, 50)
}

// waitKind returns the next event of kind, skipping others.
func waitKind(t *testing.T, ctx context.Context, events <-chan p2pconn.Event, kind p2pconn.EventKind) p2pconn.Event {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no %v event", kind)
		}
	}
}
