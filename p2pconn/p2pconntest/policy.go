package p2pconntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// idleTimeout is the Config.IdleTimeout of the policy tests: short, so that
// they are quick, and long enough that a loaded machine does not close a
// connection in the middle of an exchange the test means to keep.
const idleTimeout = 200 * time.Millisecond

// requirePlainClose checks that err reports a clean close that is neither a
// loss nor a node leaving: a local close, or the remote's.
func requirePlainClose(t testing.TB, err error) {
	t.Helper()
	requireGoodbye(t, err)
	require.NotErrorIs(t, err, p2pconn.ErrPeerLeft, "the remote node did not leave")
}

// requireLeft checks that err reports that the remote node left.
func requireLeft(t testing.TB, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, p2pconn.ErrPeerLeft)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.ErrorIs(t, err, io.EOF)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost, "leaving is not a loss")
}

// requireDies waits until c is dead.
func requireDies(t testing.TB, c p2pconn.Connection, format string, args ...any) {
	t.Helper()
	require.Eventually(t, func() bool { return !c.IsAlive() }, eventually, tick, fmt.Sprintf(format, args...))
}

// requireStaysAlive checks that c stays alive for d.
func requireStaysAlive(t testing.TB, c p2pconn.Connection, d time.Duration, format string, args ...any) {
	t.Helper()
	require.Never(t, func() bool { return !c.IsAlive() }, d, tick, fmt.Sprintf(format, args...))
	requireAlive(t, c)
}

// testProtect: idle closing spares a protected peer, protected before it
// connected and across a Disconnect and a new connection, while it closes
// an unprotected one; Unprotect lets idle closing take it.
func testProtect(t *testing.T, net Network) {
	cfg := config()
	cfg.IdleTimeout = idleTimeout
	a := net.NewNode(t, cfg)
	ns := nodes(t, net, 2, config()) // the peers never close idle themselves
	b, c := ns[0], ns[1]

	a.Manager.Protect(b.ID)
	connect(t, a, b)
	require.NoError(t, a.Manager.Disconnect(b.ID))
	requireLeftPool(t, b, a.ID)
	cab := connect(t, a, b)
	cac := connect(t, a, c)

	requireDies(t, cac, "an idle connection to an unprotected peer must be closed")
	requirePlainClose(t, cac.Err())
	requireStaysAlive(t, cab, 3*idleTimeout, "a protected peer's idle connection was closed")

	a.Manager.Unprotect(b.ID)
	requireDies(t, cab, "Unprotect must let idle closing take the connection")
	requirePlainClose(t, cab.Err())
	requireLeftPool(t, a, b.ID)
	requireLeftPool(t, b, a.ID)
}

// testProbe: Probe measures a live connection from either side; without one
// it fails with ErrConnectionClosed and does not connect.
func testProbe(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ctx := testkit.Context(t, opTimeout)

	_, err := a.Manager.Probe(ctx, b.ID)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "probe without a connection")
	_, err = a.Manager.Probe(ctx, randomID(t))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "probe of an unknown peer")
	require.Zero(t, a.Manager.ConnectionCount(), "Probe must not connect")
	require.Zero(t, b.Manager.ConnectionCount(), "Probe must not connect")
	requireNoAccept(t, b)

	ca, cb := pair(t, a, b)
	for _, dir := range [][2]Node{{a, b}, {b, a}} {
		rtt, err := dir[0].Manager.Probe(ctx, dir[1].ID)
		require.NoError(t, err, "probe %s -> %s", dir[0].ID.Short(), dir[1].ID.Short())
		require.Positive(t, rtt, "round trip")
	}
	requireAlive(t, ca)
	requireAlive(t, cb)
	send(t, ca, []byte("after probe"))
	recvString(t, cb, "after probe")

	require.NoError(t, a.Manager.Disconnect(b.ID))
	_, err = a.Manager.Probe(ctx, b.ID)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "probe after Disconnect")
	require.Zero(t, a.Manager.ConnectionCount(), "Probe must not connect")
}

// testUnreachableFor: after a Connect fails across a partition, Connects
// within UnreachableFor fail at once with an *UnreachableError, unless they
// pass IgnoreRecentFailure; the memory ends with the window, and after a
// Heal with a Connect that ignores it and succeeds, or a connection the peer
// opens.
func testUnreachableFor(t *testing.T, net Network) {
	p, ok := net.(Partitioner)
	if !ok {
		t.Skip("the Network cannot partition")
	}
	cfg := config()
	cfg.UnreachableFor = 300 * time.Millisecond
	cfg.RetryAttempts = 1
	cfg.RetryDelay = 4 * time.Second // a Connect that dials waits 2 s at least for its retry
	cfg.MaxRetryDelay = cfg.RetryDelay
	cfg.ConnectTimeout = time.Second
	ns := nodes(t, net, 3, cfg)
	a, b, c := ns[0], ns[1], ns[2]
	ctx := testkit.Context(t, opTimeout)
	once := p2pconn.WithRetryAttempts(0)

	p.Partition(a, b)
	start := time.Now()
	_, err := a.Manager.Connect(ctx, b.ID, once)
	require.Error(t, err, "connect across a partition")
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "the first failure is an attempt of its own")

	// A Connect that would not retry fails at once.
	t0 := time.Now()
	_, err = a.Manager.Connect(ctx, b.ID, once)
	elapsed := time.Since(t0)
	var ue *p2pconn.UnreachableError
	require.ErrorAs(t, err, &ue, "connect right after a failure")
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)
	require.Equal(t, b.ID, ue.Peer)
	require.Error(t, ue.Cause)
	require.ErrorIs(t, err, ue.Cause)
	require.False(t, ue.LastTried.Before(start), "LastTried %v before the failed Connect began", ue.LastTried)
	require.False(t, ue.LastTried.After(t0), "LastTried %v after the failed Connect returned", ue.LastTried)
	require.Less(t, elapsed, time.Second, "a recent failure must fail at once")
	connect(t, a, c) // other peers are not concerned

	// A Connect with retries counts the failure as its first attempt: it
	// waits for the window to end, then dials (and fails again).
	_, err = a.Manager.Connect(ctx, b.ID)
	require.Error(t, err, "connect across a partition")
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "a Connect with retries dials once the window ends")
	require.GreaterOrEqual(t, time.Since(ue.LastTried), cfg.UnreachableFor, "it dialed within the window")
	start = time.Now()

	// IgnoreRecentFailure dials anyway.
	_, err = a.Manager.Connect(ctx, b.ID, once, p2pconn.IgnoreRecentFailure())
	require.Error(t, err, "connect across a partition")
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "IgnoreRecentFailure must dial")

	// The window ends: Connect dials again (and fails again).
	require.Eventually(t, func() bool {
		_, err := a.Manager.Connect(ctx, b.ID, once)
		return err != nil && !errors.Is(err, p2pconn.ErrUnreachable)
	}, eventually, tick, "the failure is remembered past UnreachableFor")
	require.GreaterOrEqual(t, time.Since(start), cfg.UnreachableFor, "the failure was forgotten before UnreachableFor")

	// Healed: a Connect that ignores the failure succeeds, and clears it.
	p.Heal(a, b)
	ca, err := a.Manager.Connect(ctx, b.ID, p2pconn.IgnoreRecentFailure())
	require.NoError(t, err, "connect with IgnoreRecentFailure after Heal")
	cb := accept(t, b)
	send(t, ca, []byte("healed"))
	recvString(t, cb, "healed")
	require.NoError(t, a.Manager.Disconnect(b.ID))
	connect(t, a, b)
	require.NoError(t, a.Manager.Disconnect(b.ID))
	requireLeftPool(t, b, a.ID)

	// A connection the peer opens clears the failure too.
	p.Partition(a, b)
	_, err = a.Manager.Connect(ctx, b.ID, once)
	require.Error(t, err, "connect across a partition")
	p.Heal(a, b)
	connect(t, b, a)
	accept(t, a)
	require.NoError(t, a.Manager.Disconnect(b.ID))
	requireLeftPool(t, b, a.ID)
	connect(t, a, b)
}

// testIdleTimeout: idle closing closes a connection that carried nothing
// for IdleTimeout, cleanly on both sides, but never one with a message
// waiting for Next; once read, that one goes too.
func testIdleTimeout(t *testing.T, net Network) {
	cfg := config()
	cfg.IdleTimeout = idleTimeout
	a := net.NewNode(t, cfg)
	ns := nodes(t, net, 2, config())
	b, c := ns[0], ns[1]
	cab, cba := pair(t, a, b)
	cac, cca := pair(t, a, c)
	send(t, cba, []byte("unread"))

	requireDies(t, cac, "an idle connection must be closed")
	requireDead(t, cac)
	requirePlainClose(t, cac.Err())
	require.ErrorIs(t, cac.Send(testkit.Context(t, opTimeout), []byte("x")), p2pconn.ErrConnectionClosed)
	_, err := cca.Next(testkit.Context(t, opTimeout))
	requirePlainClose(t, err)
	requireDies(t, cca, "the remote must see the idle close")
	requirePlainClose(t, cca.Err())
	require.ErrorIs(t, cca.Send(testkit.Context(t, opTimeout), []byte("x")), p2pconn.ErrConnectionClosed)
	requireLeftPool(t, a, c.ID)
	requireLeftPool(t, c, a.ID)

	requireStaysAlive(t, cab, 3*idleTimeout, "a connection with a message waiting for Next is not idle")
	recvString(t, cab, "unread")
	requireDies(t, cab, "read, the connection becomes idle")
	_, err = cab.Next(testkit.Context(t, opTimeout))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
	_, err = cba.Next(testkit.Context(t, opTimeout))
	requirePlainClose(t, err)

	// The peers connect again as usual.
	cca, cac = pair(t, c, a)
	send(t, cca, []byte("again"))
	recvString(t, cac, "again")
}

// testIdleCloseLosesNothing: both sides send now and then, with pauses
// around IdleTimeout, while both read, until idle closing ends the
// connection under them: every Send that returned nil is read exactly once,
// in order, on either side, and the failed ones fail as closed.
func testIdleCloseLosesNothing(t *testing.T, net Network) {
	const maxRounds = 40
	cfg := config()
	cfg.IdleTimeout = idleTimeout
	a := net.NewNode(t, cfg)
	b := net.NewNode(t, config())
	cab, cba := pair(t, a, b)
	ctx := testkit.Context(t, time.Minute)

	// Readers on both sides, to the end.
	received := [2][]uint64{}
	var wg waitGroup
	var failures errs
	for side, c := range []p2pconn.Connection{cab, cba} {
		wg.Go(func() {
			for {
				msg, err := c.Next(ctx)
				if err != nil {
					if !errors.Is(err, p2pconn.ErrConnectionClosed) || errors.Is(err, p2pconn.ErrConnectionLost) {
						failures.add(fmt.Errorf("side %d: Next: %w", side, err))
					}
					return
				}
				received[side] = append(received[side], seqOrZero(msg))
			}
		})
	}

	// Senders take turns, pausing around IdleTimeout, until a Send fails.
	committed := [2][]uint64{}
	senders := []p2pconn.Connection{cab, cba}
	rounds := 0
	for ; rounds < maxRounds; rounds++ {
		side := rounds % 2
		seq := uint64(rounds)
		err := senders[side].Send(ctx, seqMessage(seq, 64))
		if err != nil {
			require.ErrorIs(t, err, p2pconn.ErrConnectionClosed, "a Send failing at the idle close")
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			break
		}
		committed[1-side] = append(committed[1-side], seq)
		time.Sleep(idleTimeout * time.Duration(60+rand.IntN(55)) / 100) // pacing, not a wait for a state
	}
	requireDies(t, cab, "no idle close after %d rounds", rounds)
	wg.wait(t, opTimeout, "readers")
	failures.require(t)
	for side, name := range []string{"closing side", "remote"} {
		require.Equal(t, committed[side], received[side], "%s: messages received differ from the Sends that returned nil", name)
	}
	t.Logf("%d rounds, %d and %d messages delivered", rounds, len(received[0]), len(received[1]))
}

// seqOrZero returns the sequence number of a seqMessage, or 0 for a message
// too short to hold one (which the comparison then reports).
func seqOrZero(msg []byte) uint64 {
	if len(msg) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(msg)
}

// testEvictAtLimit: at MaxConnections with EvictAtLimit, a new connection,
// outbound or inbound, closes the least recently used unprotected one,
// cleanly and without loss; when every connection is protected, the node
// refuses as without EvictAtLimit.
func testEvictAtLimit(t *testing.T, net Network) {
	cfg := config()
	cfg.MaxConnections = 2
	cfg.EvictAtLimit = true
	a := net.NewNode(t, cfg)
	ns := nodes(t, net, 5, config())
	b, c, d, e, f := ns[0], ns[1], ns[2], ns[3], ns[4]

	cab, cba := pair(t, a, b)
	send(t, cba, []byte("unread by a")) // b's connection was used last now...
	cac, cca := pair(t, a, c)
	send(t, cac, []byte("to c")) // ...and c's after it
	recvString(t, cca, "to c")

	// Outbound at the limit: b's connection, the least recently used, goes.
	cad, cda := pair(t, a, d)
	requireDies(t, cab, "the least recently used connection must be evicted")
	require.Equal(t, 2, a.Manager.ConnectionCount())
	requirePlainClose(t, cab.Err())
	recvString(t, cab, "unread by a")
	_, err := cab.Next(testkit.Context(t, opTimeout))
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
	_, err = cba.Next(testkit.Context(t, opTimeout))
	requirePlainClose(t, err)
	requireLeftPool(t, b, a.ID)
	require.ErrorIs(t, cba.Send(testkit.Context(t, opTimeout), []byte("x")), p2pconn.ErrConnectionClosed)
	requireAlive(t, cac)
	requireAlive(t, cad)

	// Inbound at the limit: c is the least recently used but protected, so d goes.
	a.Manager.Protect(c.ID)
	cea := connect(t, e, a)
	cae := accept(t, a)
	requireDies(t, cad, "the least recently used unprotected connection must be evicted")
	_, err = cda.Next(testkit.Context(t, opTimeout))
	requirePlainClose(t, err)
	requireAlive(t, cac)
	send(t, cea, []byte("from e"))
	recvString(t, cae, "from e")
	send(t, cac, []byte("c stays"))
	recvString(t, cca, "c stays")

	// Every connection protected: refused both ways.
	a.Manager.Protect(e.ID)
	_, err = a.Manager.Connect(testkit.Context(t, opTimeout), f.ID)
	require.ErrorIs(t, err, p2pconn.ErrTooManyConnections)
	_, err = f.Manager.Connect(testkit.Context(t, opTimeout), a.ID)
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	require.Equal(t, 2, a.Manager.ConnectionCount())
	requireAlive(t, cac)
	requireAlive(t, cae)
}

// testPeerLeft: when the remote's manager closes, this side's connection
// ends with ErrPeerLeft, in Err, in Next after the buffered messages and in
// the disconnected event; Disconnect and CloseAll are never reported so.
func testPeerLeft(t *testing.T, net Network) {
	ns := nodes(t, net, 3, config())
	a, b, c := ns[0], ns[1], ns[2]
	events, cancel := a.Manager.Subscribe()
	defer cancel()

	cab, cba := pair(t, a, b)
	requireEvent(t, events, p2pconn.EventConnected, b.ID, false, cab)
	send(t, cba, []byte("one"))
	send(t, cba, []byte("two"))
	require.NoError(t, b.Manager.Close())

	requireDies(t, cab, "the remote's manager closed")
	requireLeft(t, cab.Err())
	recvString(t, cab, "one")
	recvString(t, cab, "two")
	_, err := cab.Next(testkit.Context(t, opTimeout))
	requireLeft(t, err)
	ev := requireEvent(t, events, p2pconn.EventDisconnected, b.ID, false, cab)
	requireLeft(t, ev.Err)
	requireLeftPool(t, a, b.ID)
	require.ErrorIs(t, cab.Send(testkit.Context(t, opTimeout), []byte("x")), p2pconn.ErrConnectionClosed)

	// Disconnect and CloseAll: the node is still there.
	for _, closer := range []struct {
		name  string
		close func() error
	}{
		{"Disconnect", func() error { return c.Manager.Disconnect(a.ID) }},
		{"CloseAll", c.Manager.CloseAll},
	} {
		cac, cca := pair(t, a, c)
		requireEvent(t, events, p2pconn.EventConnected, c.ID, false, cac)
		send(t, cca, []byte("bye"))
		require.NoError(t, closer.close(), closer.name)
		requireDrainThenGoodbye(t, cac, "bye")
		requirePlainClose(t, cac.Err())
		ev := requireEvent(t, events, p2pconn.EventDisconnected, c.ID, false, cac)
		requirePlainClose(t, ev.Err)
		requireLeftPool(t, a, c.ID)
	}
}
