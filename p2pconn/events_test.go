package p2pconn_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

func nextEvent(t testing.TB, ctx context.Context, events <-chan p2pconn.Event) p2pconn.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		require.True(t, ok, "subscription closed")
		return ev
	case <-ctx.Done():
		t.Fatal("no event")
		return p2pconn.Event{}
	}
}

func TestEvents(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.ResumeWindow = 200 * time.Millisecond
	a, b := c.node(cfg), c.node(testConfig())
	ctx := testkit.Context(t, 10*time.Second)
	aEvents, cancelA := a.m.Subscribe()
	defer cancelA()
	bEvents, cancelB := b.m.Subscribe()
	defer cancelB()

	conn, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	ev := nextEvent(t, ctx, aEvents)
	require.Equal(t, p2pconn.EventConnected, ev.Kind)
	require.Equal(t, b.id, ev.Peer)
	require.False(t, ev.Inbound)
	require.Same(t, conn, ev.Conn)
	ev = nextEvent(t, ctx, bEvents)
	require.Equal(t, p2pconn.EventConnected, ev.Kind)
	require.Equal(t, a.id, ev.Peer)
	require.True(t, ev.Inbound)

	// A clean close on a's side: b sees a disconnection that is not a loss.
	require.NoError(t, a.m.Disconnect(b.id))
	ev = nextEvent(t, ctx, aEvents)
	require.Equal(t, p2pconn.EventDisconnected, ev.Kind)
	require.ErrorIs(t, ev.Err, p2pconn.ErrConnectionClosed)
	ev = nextEvent(t, ctx, bEvents)
	require.Equal(t, p2pconn.EventDisconnected, ev.Kind)
	require.ErrorIs(t, ev.Err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, ev.Err, p2pconn.ErrConnectionLost)

	// A crash of b's host: a sees a loss at once, and the end of the
	// session when no one answers within the resume window.
	_, err = a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	require.Equal(t, p2pconn.EventConnected, nextEvent(t, ctx, aEvents).Kind)
	require.NoError(t, b.h.Close())
	ev = nextEvent(t, ctx, aEvents)
	require.Equal(t, p2pconn.EventResuming, ev.Kind)
	require.ErrorIs(t, ev.Err, p2pconn.ErrConnectionLost)
	ev = nextEvent(t, ctx, aEvents)
	require.Equal(t, p2pconn.EventDisconnected, ev.Kind)
	require.ErrorIs(t, ev.Err, p2pconn.ErrConnectionLost)

	// Close ends the subscription.
	require.NoError(t, a.m.Close())
	for range aEvents {
	}
}

// TestPersistentPeer: the manager reconnects a persistent peer after the
// remote closes the connection, and after the remote restarts.
func TestPersistentPeer(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	a, b := c.node(cfg), c.node(cfg)
	ctx := testkit.Context(t, 20*time.Second)
	events, cancel := a.m.Subscribe()
	defer cancel()
	require.ErrorIs(t, a.m.AddPersistentPeer(a.id), p2pconn.ErrSelfConnect)
	require.NoError(t, a.m.AddPersistentPeer(b.id))
	require.NoError(t, a.m.AddPersistentPeer(b.id))
	require.Equal(t, []any{b.id}, anys(a.m.PersistentPeers()))

	first := nextEvent(t, ctx, events)
	require.Equal(t, p2pconn.EventConnected, first.Kind)
	require.Equal(t, b.id, first.Peer)

	// b hangs up: a reconnects on its own.
	require.NoError(t, b.m.Disconnect(a.id))
	require.Equal(t, p2pconn.EventDisconnected, nextEvent(t, ctx, events).Kind)
	again := nextEvent(t, ctx, events)
	require.Equal(t, p2pconn.EventConnected, again.Kind)
	require.NotSame(t, first.Conn, again.Conn)
	in, err := b.m.Accept(ctx) // the first one
	require.NoError(t, err)
	require.False(t, in.IsAlive())
	in, err = b.m.Accept(ctx)
	require.NoError(t, err)
	exchange(t, ctx, again.Conn, in, 10)

	a.m.RemovePersistentPeer(b.id)
	require.Empty(t, a.m.PersistentPeers())
	require.NoError(t, b.m.Disconnect(a.id))
	require.Equal(t, p2pconn.EventDisconnected, nextEvent(t, ctx, events).Kind)
	select {
	case ev := <-events:
		t.Fatalf("unexpected event after RemovePersistentPeer: %v", ev.Kind)
	case <-time.After(200 * time.Millisecond):
	}
}

func anys[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestShutdownUnderLoad runs 100 goroutines sending and reading on busy
// connections while CloseAll and then Close run: both return promptly, and
// nothing panics, deadlocks or leaks (goleak, -race).
func TestShutdownUnderLoad(t *testing.T) {
	c := newCluster(t, transports["tcp"])
	cfg := testConfig()
	cfg.ReceiveBuffer = 4
	hub := c.node(cfg)
	peers := []*node{c.node(cfg), c.node(cfg), c.node(cfg), c.node(cfg)}
	ctx := testkit.Context(t, 30*time.Second)
	var conns []p2pconn.Connection
	for _, p := range peers {
		conn, err := hub.m.Connect(ctx, p.id)
		require.NoError(t, err)
		conns = append(conns, conn)
		// The peers echo, slowly enough to leave senders blocked at times.
		go func() {
			in, err := p.m.Accept(ctx)
			if err != nil {
				return
			}
			for {
				msg, err := in.Next(ctx)
				if err != nil || in.Send(ctx, msg) != nil {
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var sent, received atomic.Int64
	for i := range 100 {
		conn := conns[(i/2)%len(conns)] // a sender and a reader on each connection
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 1<<10)
			for {
				var err error
				if i%2 == 0 {
					if err = conn.Send(ctx, msg); err == nil {
						sent.Add(1)
					}
				} else if _, err = conn.Next(ctx); err == nil {
					received.Add(1)
				}
				if err != nil {
					require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
					return
				}
			}
		}()
	}
	// Let the load build up.
	require.Eventually(t, func() bool { return sent.Load() >= 200 && received.Load() >= 200 }, 10*time.Second, time.Millisecond, "sent %d, received %d", sent.Load(), received.Load())
	start := time.Now()
	require.NoError(t, hub.m.CloseAll())
	closeAll := time.Since(start)
	require.NoError(t, hub.m.Close())
	t.Logf("CloseAll under load took %s, Close %s", closeAll, time.Since(start)-closeAll)
	require.Less(t, time.Since(start), 2*cfg.CloseTimeout)
	wg.Wait()
	for _, conn := range conns {
		require.False(t, conn.IsAlive())
	}
}

// TestSubscribeRacingClose: a Subscribe still returning while the manager
// closes gets a subscription that Close ended, and Close waited for the
// goroutine that feeds it, so once both returned the channel is closed.
func TestSubscribeRacingClose(t *testing.T) {
	h := newHost(t, transports["tcp"])
	m, err := p2pconn.NewManager(h, nil, testConfig())
	require.NoError(t, err)
	entered, closed := make(chan struct{}), make(chan struct{})
	reset := p2pconn.SetTestHookSubscribed(func() {
		// Close runs while Subscribe is between registering and returning.
		close(entered)
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
		}
	})
	defer reset()
	got := make(chan (<-chan p2pconn.Event), 1)
	go func() {
		ch, _ := m.Subscribe()
		got <- ch
	}()
	<-entered
	require.NoError(t, m.Close())
	close(closed)
	ch := <-got
	select {
	case _, ok := <-ch:
		require.False(t, ok, "an event after Close")
	default:
		t.Fatal("subscription still open after Close returned: Close did not wait for its goroutine")
	}
}
