package p2pconntest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// testCloseAll: CloseAll closes every connection, inbound and outbound,
// gracefully, and the manager stays usable.
func testCloseAll(t *testing.T, net Network) {
	ns := nodes(t, net, 3, config())
	a, b, c := ns[0], ns[1], ns[2]
	cab, cba := pair(t, a, b) // outbound from a
	cca, cac := pair(t, c, a) // inbound to a
	send(t, cab, []byte("bye b"))
	send(t, cac, []byte("bye c"))

	require.NoError(t, a.Manager.CloseAll())
	require.Zero(t, a.Manager.ConnectionCount())
	require.Empty(t, a.Manager.ConnectedPeers())
	requireDead(t, cab)
	requireDead(t, cac)

	requireDrainThenGoodbye(t, cba, "bye b")
	requireDrainThenGoodbye(t, cca, "bye c")
	requireLeftPool(t, b, a.ID)
	requireLeftPool(t, c, a.ID)

	// Still usable, both ways.
	cab2, cba2 := pair(t, a, b)
	send(t, cab2, []byte("again"))
	recvString(t, cba2, "again")
	cca2, cac2 := pair(t, c, a)
	send(t, cca2, []byte("again"))
	recvString(t, cac2, "again")
	require.Equal(t, 2, a.Manager.ConnectionCount())
}

// testManagerClose: Close closes every connection gracefully, releases a
// blocked Accept, and then Connect and Accept fail with ErrManagerClosed;
// Close is idempotent.
func testManagerClose(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	cab, cba := pair(t, a, b)
	send(t, cab, []byte("bye"))

	acceptErr := make(chan error, 1)
	go func() {
		_, err := a.Manager.Accept(testkit.Context(t, time.Minute))
		acceptErr <- err
	}()
	select {
	case err := <-acceptErr:
		require.FailNow(t, "Accept returned with nothing to accept", "err: %v", err)
	case <-time.After(quiet):
	}

	require.NoError(t, a.Manager.Close())
	select {
	case err := <-acceptErr:
		require.ErrorIs(t, err, p2pconn.ErrManagerClosed, "blocked Accept")
	case <-time.After(opTimeout):
		require.FailNow(t, "Close did not release a blocked Accept")
	}
	requireDead(t, cab)
	require.Zero(t, a.Manager.ConnectionCount())

	ctx := testkit.Context(t, opTimeout)
	_, err := a.Manager.Connect(ctx, b.ID)
	require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
	_, err = a.Manager.Accept(ctx)
	require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
	require.NoError(t, a.Manager.Close(), "second Close")

	requireDrainThenGoodbye(t, cba, "bye")
	requireLeftPool(t, b, a.ID)
}

// testStressCloseAllThenClose: 100 goroutines connect, send and read while
// CloseAll and then Close run; nothing panics or deadlocks, and every
// goroutine ends once the manager is closed.
func testStressCloseAllThenClose(t *testing.T, net Network) {
	const (
		workers   = 100
		peerCount = 4
	)
	cfg := config()
	cfg.CloseTimeout = 500 * time.Millisecond
	a := net.NewNode(t, cfg)
	peers := nodes(t, net, peerCount, cfg)
	ctx := testkit.Context(t, time.Minute)
	peerCtx, stopPeers := context.WithCancel(ctx)
	defer stopPeers()

	// Peers echo whatever a sends them.
	var peerWG waitGroup
	for _, p := range peers {
		peerWG.Go(func() {
			for {
				c, err := p.Manager.Accept(peerCtx)
				if err != nil {
					return
				}
				peerWG.Go(func() {
					for {
						msg, err := c.Next(peerCtx)
						if err != nil {
							return
						}
						if c.Send(peerCtx, msg) != nil {
							return
						}
					}
				})
			}
		})
	}

	var sent, received atomic.Int64
	var workerWG waitGroup
	payload := make([]byte, 512)
	for i := range workers {
		peer := peers[(i/2)%peerCount] // a sender and a reader per peer, alternately
		workerWG.Go(func() {
			for ctx.Err() == nil {
				c, err := a.Manager.Connect(ctx, peer.ID)
				if errors.Is(err, p2pconn.ErrManagerClosed) {
					return
				}
				if err != nil {
					continue
				}
				if i%2 == 0 {
					if c.Send(ctx, payload) == nil {
						sent.Add(1)
					}
					continue
				}
				short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
				if _, err := c.Next(short); err == nil {
					received.Add(1)
				}
				cancel()
			}
		})
	}

	require.Eventually(t, func() bool { return sent.Load() >= 200 && received.Load() >= 100 }, eventually, tick,
		"too little traffic before CloseAll")
	require.NoError(t, a.Manager.CloseAll())
	require.NoError(t, a.Manager.Close())
	workerWG.wait(t, 30*time.Second, "workers after Close")
	require.NoError(t, ctx.Err(), "workers ended by the test timeout, not by ErrManagerClosed")
	require.Zero(t, a.Manager.ConnectionCount())

	stopPeers()
	peerWG.wait(t, 30*time.Second, "peers")
}
