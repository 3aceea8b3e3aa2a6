package p2pconn_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// soak reports whether the long versions of the tests run (make soak).
func soak() bool { return os.Getenv("SKIPWIRE_SOAK") != "" }

func trials(short, long int) int {
	if soak() {
		return long
	}
	return short
}

// exchange has a and b each send n numbered messages on their connection
// right away, and checks each receives the other's n exactly once, in order.
func exchange(t testing.TB, ctx context.Context, ca, cb p2pconn.Connection, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(c p2pconn.Connection) {
		defer wg.Done()
		for i := range n {
			msg := binary.BigEndian.AppendUint32(nil, uint32(i))
			if err := c.Send(ctx, msg); err != nil {
				errs <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
	}
	recv := func(c p2pconn.Connection) {
		defer wg.Done()
		for i := range n {
			msg, err := c.Next(ctx)
			if err != nil {
				errs <- fmt.Errorf("next %d: %w", i, err)
				return
			}
			if got := binary.BigEndian.Uint32(msg); got != uint32(i) {
				errs <- fmt.Errorf("message %d arrived as number %d", i, got)
				return
			}
		}
	}
	wg.Add(4)
	go send(ca)
	go send(cb)
	go recv(ca)
	go recv(cb)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// requireSettled checks a and b share one libp2p connection and one skipwire
// connection, the one each side was handed.
func requireSettled(t testing.TB, a, b *node, ca, cb p2pconn.Connection) {
	t.Helper()
	require.Eventually(t, func() bool {
		return libp2pConns(a, b) == 1 && libp2pConns(b, a) == 1
	}, 5*time.Second, 5*time.Millisecond, "libp2p connections a->b %d, b->a %d", libp2pConns(a, b), libp2pConns(b, a))
	ga, ok := a.m.GetConnection(b.id)
	require.True(t, ok)
	require.Same(t, ca, ga)
	gb, ok := b.m.GetConnection(a.id)
	require.True(t, ok)
	require.Same(t, cb, gb)
	require.Equal(t, 1, a.m.ConnectionCount())
	require.Equal(t, 1, b.m.ConnectionCount())
	require.True(t, ca.IsAlive())
	require.True(t, cb.IsAlive())
}

// TestSimultaneousConnect has both nodes Connect to each other at the same
// instant and send right away: every message arrives once, in order, and the
// hosts settle on one libp2p connection. The larger node's opening is
// answered REJECT(duplicate) in most trials: its Connect must wait for the
// smaller node's stream and return it, not spend its retries and fail.
func TestSimultaneousConnect(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			for trial := range trials(20, 200) {
				c := newCluster(t, listen)
				a, b := c.node(testConfig()), c.node(testConfig())
				ctx := testkit.Context(t, 20*time.Second)
				ca, cb := connectBoth(t, ctx, a, b, nil)
				exchange(t, ctx, ca, cb, 200)
				requireSettled(t, a, b, ca, cb)
				if t.Failed() {
					t.Fatalf("trial %d failed", trial)
				}
			}
		})
	}
}

// TestSimultaneousConnectWithRawDial races a raw host.Connect (as a DHT
// lookup would make) with both nodes' Connects: the duplicate cleanup must
// never close a libp2p connection on which a handshake is under way that the
// manager has not registered yet (a HELLO read but not admitted).
func TestSimultaneousConnectWithRawDial(t *testing.T) {
	for trial := range trials(10, 200) {
		c := newCluster(t, transports["tcp"])
		a, b := c.node(testConfig()), c.node(testConfig())
		ctx := testkit.Context(t, 20*time.Second)
		ca, cb := connectBoth(t, ctx, a, b, func() {
			_ = b.h.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()})
		})
		exchange(t, ctx, ca, cb, 200)
		requireSettled(t, a, b, ca, cb)
		if t.Failed() {
			t.Fatalf("trial %d failed", trial)
		}
	}
}

// connectBoth releases a.Connect(b), b.Connect(a) and extra (if any) at once.
func connectBoth(t testing.TB, ctx context.Context, a, b *node, extra func()) (ca, cb p2pconn.Connection) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); <-start; ca, errA = a.m.Connect(ctx, b.id) }()
	go func() { defer wg.Done(); <-start; cb, errB = b.m.Connect(ctx, a.id) }()
	if extra != nil {
		wg.Add(1)
		go func() { defer wg.Done(); <-start; extra() }()
	}
	close(start)
	wg.Wait()
	require.NoError(t, errA)
	require.NoError(t, errB)
	return ca, cb
}

// TestConcurrentConnectOneDial has 50 goroutines Connect to one peer at once:
// they share one dial and one connection.
func TestConcurrentConnectOneDial(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 10*time.Second)
	var wg sync.WaitGroup
	conns := make([]p2pconn.Connection, 50)
	start := make(chan struct{})
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var err error
			conns[i], err = a.m.Connect(ctx, b.id)
			require.NoError(t, err)
		}()
	}
	close(start)
	wg.Wait()
	for _, c := range conns {
		require.Same(t, conns[0], c)
	}
	require.Equal(t, 1, libp2pConns(a, b))
	require.Equal(t, 1, a.m.ConnectionCount())
	// One stream on the one connection: the skipwire stream (no duplicates opened).
	streams := 0
	for _, s := range a.h.Network().ConnsToPeer(b.h.ID())[0].GetStreams() {
		if s.Protocol() == p2pconn.ProtocolID {
			streams++
		}
	}
	require.Equal(t, 1, streams)
	require.Eventually(t, func() bool { return b.m.ConnectionCount() == 1 }, 5*time.Second, 5*time.Millisecond)
}

// TestSettlingReleasesStreams repeats simultaneous Connects over one libp2p
// connection: the losing streams are released each time, so no skipwire
// stream piles up in the swarm.
func TestSettlingReleasesStreams(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	a, b := c.node(testConfig()), c.node(testConfig())
	ctx := testkit.Context(t, 30*time.Second)
	skipwireStreams := func(n *node, other *node) int {
		count := 0
		for _, conn := range n.h.Network().ConnsToPeer(other.h.ID()) {
			for _, s := range conn.GetStreams() {
				if s.Protocol() == p2pconn.ProtocolID {
					count++
				}
			}
		}
		return count
	}
	for range 20 {
		ca, cb := connectBoth(t, ctx, a, b, nil)
		exchange(t, ctx, ca, cb, 5)
		require.NoError(t, a.m.CloseAll())
		require.NoError(t, b.m.CloseAll())
	}
	require.Eventually(t, func() bool {
		return skipwireStreams(a, b) == 0 && skipwireStreams(b, a) == 0
	}, 5*time.Second, 10*time.Millisecond, "skipwire streams left: a %d, b %d", skipwireStreams(a, b), skipwireStreams(b, a))
}
