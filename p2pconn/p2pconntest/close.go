package p2pconntest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// testCloseSemantics: after a local Close, Send and Next fail at once with
// ErrConnectionClosed (not a loss), unread messages are gone, the connection
// looks dead in every way and leaves the pool; Close again is a no-op.
func testCloseSemantics(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	for _, m := range []string{"unread 1", "unread 2"} {
		send(t, cb, []byte(m))
	}

	require.NoError(t, ca.Close())
	requireDead(t, ca)
	require.Equal(t, b.ID, ca.RemoteID(), "RemoteID must keep working after Close")
	require.Zero(t, a.Manager.ConnectionCount())
	_, ok := a.Manager.GetConnection(b.ID)
	require.False(t, ok)

	ctx := testkit.Context(t, opTimeout)
	err := ca.Send(ctx, []byte("x"))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost, "a local close is not a loss")
	_, err = ca.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "Next after Close must fail at once, unread messages discarded")
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
	require.NotErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)

	require.NoError(t, ca.Close(), "second Close")
	requireDead(t, ca)

	// The remote sees a clean close.
	_, err = cb.Next(ctx)
	requireGoodbye(t, err)
	require.Eventually(t, func() bool { return !cb.IsAlive() }, eventually, tick)
	requireLeftPool(t, b, a.ID)
	requireDead(t, cb)
}

// testConcurrentClose: many goroutines closing both sides at once all return
// nil and leave both sides dead.
func testConcurrentClose(t *testing.T, net Network) {
	const closers = 20
	ns := nodes(t, net, 2, config())
	ca, cb := pair(t, ns[0], ns[1])

	start := make(chan struct{})
	var wg waitGroup
	var failures errs
	for i := range closers {
		for _, c := range []p2pconn.Connection{ca, cb} {
			wg.Go(func() {
				<-start
				if err := c.Close(); err != nil {
					failures.add(fmt.Errorf("close %d: %w", i, err))
				}
				if c.IsAlive() {
					failures.add(fmt.Errorf("close %d returned before the connection died", i))
				}
			})
		}
	}
	close(start)
	wg.wait(t, opTimeout, "concurrent Closes")
	failures.require(t)
	requireDead(t, ca)
	requireDead(t, cb)
	require.Zero(t, ns[0].Manager.ConnectionCount())
	require.Zero(t, ns[1].Manager.ConnectionCount())
}

// testCloseReleasesBlockedSendAndNext: Close releases a Next waiting for a
// message and, within CloseTimeout, a Send blocked because the remote reads
// nothing; both fail with ErrConnectionClosed.
func testCloseReleasesBlockedSendAndNext(t *testing.T, net Network) {
	cfg := config()
	cfg.ReceiveBuffer = 4
	cfg.CloseTimeout = 300 * time.Millisecond
	ns := nodes(t, net, 2, cfg)
	ca, _ := pair(t, ns[0], ns[1])
	ctx := testkit.Context(t, time.Minute)

	nextErr := make(chan error, 1)
	go func() {
		_, err := ca.Next(ctx)
		nextErr <- err
	}()

	fillUntilBlocked(t, ca, 64<<10)
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- ca.Send(ctx, make([]byte, 64<<10))
	}()
	select {
	case err := <-sendErr:
		require.FailNow(t, "Send did not block although the remote reads nothing", "err: %v", err)
	case <-time.After(quiet):
	}

	start := time.Now()
	require.NoError(t, ca.Close())
	require.Less(t, time.Since(start), cfg.CloseTimeout+5*time.Second, "Close overran CloseTimeout")
	for what, ch := range map[string]chan error{"Send": sendErr, "Next": nextErr} {
		select {
		case err := <-ch:
			require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "blocked %s", what)
		case <-time.After(opTimeout):
			require.FailNow(t, "Close did not release a blocked "+what)
		}
	}
	requireDead(t, ca)
}

// fillUntilBlocked sends messages of size bytes on c until three Sends in a row block
// (the remote reads nothing), and fails the test if none does.
func fillUntilBlocked(t testing.TB, c p2pconn.Connection, size int) {
	t.Helper()
	const maxFill = 4096
	timeouts := 0
	for i := range maxFill {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		var err error
		within(t, quiet+stuck, "Send", func() { err = c.Send(ctx, seqMessage(uint64(i), size)) })
		cancel()
		if err == nil {
			timeouts = 0
			continue
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		// Three in a row: the windows are full, not a busy scheduler.
		if timeouts++; timeouts == 3 {
			return
		}
	}
	require.FailNow(t, "Send never blocked although the remote reads nothing")
}

// testRemoteCloseDrainsBufferedMessages: the remote's Close (here by the
// side that accepted) leaves every message it sent readable, then EOF.
func testRemoteCloseDrainsBufferedMessages(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("buffered %d", i))
		send(t, cb, []byte(want[i]))
	}
	require.NoError(t, cb.Close())

	requireDrainThenGoodbye(t, ca, want...)
	require.Eventually(t, func() bool { return !ca.IsAlive() }, eventually, tick)
	requireLeftPool(t, a, b.ID)
	requireDead(t, ca)
	require.NotErrorIs(t, ca.Err(), p2pconn.ErrConnectionLost)
	err := ca.Send(testkit.Context(t, opTimeout), []byte("x"))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	_, err = ca.Next(testkit.Context(t, opTimeout))
	requireGoodbye(t, err)
}

// testDisconnect: Disconnect closes gracefully: the remote reads what was
// sent, then EOF, and drops the connection; the local side drops it at once.
func testDisconnect(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	for _, m := range []string{"one", "two", "three"} {
		send(t, ca, []byte(m))
	}

	require.NoError(t, a.Manager.Disconnect(b.ID))
	requireDead(t, ca)
	require.Zero(t, a.Manager.ConnectionCount())
	_, ok := a.Manager.GetConnection(b.ID)
	require.False(t, ok)

	requireDrainThenGoodbye(t, cb, "one", "two", "three")
	require.Eventually(t, func() bool { return !cb.IsAlive() }, eventually, tick)
	requireLeftPool(t, b, a.ID)
	require.Zero(t, b.Manager.ConnectionCount())
	requireDead(t, cb)
	err := cb.Send(testkit.Context(t, opTimeout), []byte("x"))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, cb.Err(), p2pconn.ErrConnectionLost)

	require.NoError(t, a.Manager.Disconnect(b.ID), "second Disconnect")
}

// testDisconnectUnknownPeer: Disconnect of a peer without a connection is a
// no-op.
func testDisconnectUnknownPeer(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	require.NoError(t, a.Manager.Disconnect(randomID(t)))
	require.NoError(t, a.Manager.Disconnect(b.ID))
	require.NoError(t, a.Manager.Disconnect(a.ID))
	require.Zero(t, a.Manager.ConnectionCount())
}

// testCrashIsLoss: when the remote vanishes, the survivor's Next and Send
// fail with ErrConnectionLost (also ErrConnectionClosed and io.EOF) and the
// connection leaves the pool.
func testCrashIsLoss(t *testing.T, net Network) {
	cfg := config()
	cfg.KeepaliveInterval = 500 * time.Millisecond
	cfg.KeepaliveTimeout = 500 * time.Millisecond
	cfg.ResumeWindow = 300 * time.Millisecond // the crashed node never comes back
	ns := nodes(t, net, 3, cfg)
	a, b, c := ns[0], ns[1], ns[2]

	t.Run("reader", func(t *testing.T) {
		ca, cb := pair(t, a, b)
		send(t, ca, []byte("x"))
		recvString(t, cb, "x")

		net.Crash(t, b)
		_, err := ca.Next(testkit.Context(t, opTimeout))
		requireLost(t, err)
		require.Eventually(t, func() bool { return !ca.IsAlive() }, eventually, tick)
		requireLeftPool(t, a, b.ID)
		requireDead(t, ca)
		requireLost(t, ca.Err())
		requireLost(t, ca.Send(testkit.Context(t, opTimeout), []byte("x")))
		_, err = ca.Next(testkit.Context(t, opTimeout))
		requireLost(t, err)
	})
	t.Run("sender", func(t *testing.T) {
		cc, ca := pair(t, c, a)
		send(t, ca, []byte("x"))
		recvString(t, cc, "x")

		net.Crash(t, c)
		ctx := testkit.Context(t, opTimeout)
		var mu sync.Mutex
		var err error
		require.Eventually(t, func() bool {
			e := ca.Send(ctx, []byte("x"))
			mu.Lock()
			defer mu.Unlock()
			err = e
			return e != nil
		}, eventually, 10*time.Millisecond, "Send kept working after the remote crashed")
		mu.Lock()
		sendErr := err
		mu.Unlock()
		requireLost(t, sendErr)
		require.Eventually(t, func() bool { return !ca.IsAlive() }, eventually, tick)
		requireLeftPool(t, a, c.ID)
		requireDead(t, ca)
		requireLost(t, ca.Err())
	})
	require.Zero(t, a.Manager.ConnectionCount())
}
