package p2pconntest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// Session resumption (Config.ResumeWindow): a connection whose transport is
// lost while both processes run goes on, the same object, once the peers
// can talk again within the window; when they cannot, it ends and says
// exactly which messages never reached the remote.
//
// Several tests need a's messages acknowledged before the link goes down,
// so that what a connection reports as not delivered is exactly what it
// sent afterwards. They use acknowledge: a message is acknowledged once it
// is in the receiver's queue, and the tests expect a reply that a reads to
// come after b's acknowledgement of what b had received before sending it.

// resumeConfig returns config() with session resumption on: a window long
// enough that no resumption waits for it, and a small resend buffer.
func resumeConfig() p2pconn.Config {
	cfg := config()
	cfg.ResumeWindow = 20 * time.Second
	cfg.ResendBuffer = 64 << 10
	return cfg
}

// cutter returns net as a Cutter, or skips the test.
func cutter(t *testing.T, net Network) Cutter {
	t.Helper()
	c, ok := net.(Cutter)
	if !ok {
		t.Skip("the Network cannot cut a link under a session (it does not implement Cutter)")
	}
	return c
}

// acknowledge sends a message from ca to cb and one back, each read, so
// that everything ca sent before is acknowledged to it (see above).
func acknowledge(t testing.TB, ca, cb p2pconn.Connection) {
	t.Helper()
	send(t, ca, []byte("ping"))
	recvString(t, cb, "ping")
	send(t, cb, []byte("pong"))
	recvString(t, ca, "pong")
}

// sendAll sends count messages of size bytes, numbered from first, on c;
// each must return nil. It returns them.
func sendAll(t testing.TB, c p2pconn.Connection, first uint64, count, size int) [][]byte {
	t.Helper()
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = seqMessage(first+uint64(i), size)
		send(t, c, msgs[i])
	}
	return msgs
}

// requireNotDelivered checks that err is a *p2pconn.NotDeliveredError about
// peer that lists exactly want, in order.
func requireNotDelivered(t testing.TB, err error, peer identity.Identifier, want [][]byte) {
	t.Helper()
	requireNotDeliveredAfter(t, err, peer, want, nil)
}

// requireNotDeliveredAfter is requireNotDelivered for a sender whose
// messages before want the remote received but may not have acknowledged
// yet when the link went down: the list may begin with a tail of received
// (the sender cannot know they arrived).
func requireNotDeliveredAfter(t testing.TB, err error, peer identity.Identifier, want, received [][]byte) {
	t.Helper()
	var nd *p2pconn.NotDeliveredError
	require.ErrorAs(t, err, &nd, "an error listing the messages not delivered")
	require.ErrorIs(t, err, p2pconn.ErrNotDelivered)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.Equal(t, peer, nd.Peer, "NotDeliveredError.Peer")
	extra := len(nd.Messages) - len(want)
	require.True(t, extra >= 0 && extra <= len(received), "%d messages not delivered, want %d (or up to %d more)",
		len(nd.Messages), len(want), len(received))
	for i := range extra {
		require.Equal(t, received[len(received)-extra+i], nd.Messages[i], "message %d received but not acknowledged", i)
	}
	for i := range want {
		require.Equal(t, want[i], nd.Messages[extra+i], "message %d not delivered", i)
	}
}

// requireResuming checks every observable sign that c, n's connection to
// peer, goes on while its session resumes.
func requireResuming(t testing.TB, n Node, c p2pconn.Connection, peer Node) {
	t.Helper()
	requireAlive(t, c)
	require.Equal(t, 1, n.Manager.ConnectionCount(), "ConnectionCount while resuming")
	require.Equal(t, []identity.Identifier{peer.ID}, n.Manager.ConnectedPeers(), "ConnectedPeers while resuming")
	got, ok := n.Manager.GetConnection(peer.ID)
	require.True(t, ok, "GetConnection while resuming")
	requireSameConn(t, c, got, "GetConnection while resuming")
}

// eventLog records the events of one node's subscription.
type eventLog struct {
	mu     sync.Mutex
	events []p2pconn.Event
	more   chan struct{} // closed and replaced at each event
}

// recordEvents records n's events until the test ends.
func recordEvents(t testing.TB, n Node) *eventLog {
	t.Helper()
	l := &eventLog{more: make(chan struct{})}
	ch, cancel := n.Manager.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			l.mu.Lock()
			l.events = append(l.events, ev)
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}

// await waits for the k-th event (from 1) of kind about c, and returns it.
func (l *eventLog) await(t testing.TB, kind p2pconn.EventKind, c p2pconn.Connection, k int) p2pconn.Event {
	t.Helper()
	deadline := time.NewTimer(opTimeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		seen := 0
		for _, ev := range l.events {
			if ev.Kind == kind && ev.Conn == c {
				if seen++; seen == k {
					l.mu.Unlock()
					return ev
				}
			}
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-deadline.C:
			require.FailNow(t, "no event", "no %s event #%d for the connection to %s in %s; its events: %v",
				kind, k, c.RemoteID().Short(), opTimeout, l.kinds(c))
		}
	}
}

// kinds returns the kinds of the events about c, in order.
func (l *eventLog) kinds(c p2pconn.Connection) []p2pconn.EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var kinds []p2pconn.EventKind
	for _, ev := range l.events {
		if ev.Conn == c {
			kinds = append(kinds, ev.Kind)
		}
	}
	return kinds
}

// endSeq numbers the message that ends a stream of numbered messages.
const endSeq = math.MaxUint64

// streamSeqs sends messages of size bytes numbered from 0 on c until stop
// is closed, then the end message, and returns how many it sent before the
// end. It stops at the first error.
func streamSeqs(ctx context.Context, c p2pconn.Connection, size int, stop <-chan struct{}) (uint64, error) {
	for seq := uint64(0); ; seq++ {
		select {
		case <-stop:
			return seq, c.Send(ctx, seqMessage(endSeq, size))
		default:
		}
		if err := c.Send(ctx, seqMessage(seq, size)); err != nil {
			return seq, fmt.Errorf("send %d: %w", seq, err)
		}
	}
}

// drainSeqs reads numbered messages from c up to the end message, checking
// that they come once each and in order, and counts them in got.
func drainSeqs(ctx context.Context, c p2pconn.Connection, got *atomic.Uint64) error {
	for want := uint64(0); ; want++ {
		msg, err := c.Next(ctx)
		if err != nil {
			return fmt.Errorf("next, message %d: %w", want, err)
		}
		if len(msg) < 8 {
			return fmt.Errorf("message %d: %d bytes, no sequence number", want, len(msg))
		}
		switch seq := seqOrZero(msg); seq {
		case endSeq:
			return nil
		case want:
			got.Add(1)
		default:
			return fmt.Errorf("got message %d where %d was due: lost or duplicated", seq, want)
		}
	}
}

// testResumeAcrossCut: both sides stream numbered messages while the link
// between them goes down and comes back, three times. Each time both sides
// announce the loss (EventResuming) and their connection goes on meanwhile
// (alive, counted, returned by GetConnection; a Connect across the cut fails
// and leaves it be), then resumes (EventResumed) on the same object; a
// Connect made as the link comes back returns that object. No message is
// lost or duplicated, and no connection ends.
func testResumeAcrossCut(t *testing.T, net Network) {
	cut := cutter(t, net)
	ns := nodes(t, net, 2, resumeConfig())
	a, b := ns[0], ns[1]
	evA, evB := recordEvents(t, a), recordEvents(t, b)
	ca, cb := pair(t, a, b)

	const cuts, size, step = 3, 200, 100
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failures := &errs{stop: cancel}
	stop := make(chan struct{})
	var sentA, sentB uint64
	var gotA, gotB atomic.Uint64 // what a and b received
	var wg waitGroup
	wg.Go(func() {
		var err error
		sentA, err = streamSeqs(ctx, ca, size, stop)
		failures.add(errWrap("a sends", err))
	})
	wg.Go(func() {
		var err error
		sentB, err = streamSeqs(ctx, cb, size, stop)
		failures.add(errWrap("b sends", err))
	})
	wg.Go(func() { failures.add(errWrap("b receives", drainSeqs(ctx, cb, &gotB))) })
	wg.Go(func() { failures.add(errWrap("a receives", drainSeqs(ctx, ca, &gotA))) })
	defer func() {
		cancel()
		wg.wait(t, opTimeout, "the streams")
	}()

	var took []time.Duration // from each Restore to both sides' EventResumed
	for i := 1; i <= cuts; i++ {
		fromA, fromB := gotB.Load(), gotA.Load()
		require.Eventually(t, func() bool {
			return gotB.Load() >= fromA+step && gotA.Load() >= fromB+step || ctx.Err() != nil
		}, eventually, tick, "traffic both ways before cut %d", i)
		failures.require(t)

		cut.Cut(t, a, b)
		evA.await(t, p2pconn.EventResuming, ca, i)
		evB.await(t, p2pconn.EventResuming, cb, i)
		requireResuming(t, a, ca, b)
		requireResuming(t, b, cb, a)
		if i == 1 {
			_, err := a.Manager.Connect(ctx, b.ID, p2pconn.WithRetryAttempts(0), p2pconn.WithConnectTimeout(time.Second))
			require.Error(t, err, "Connect across the cut")
			requireResuming(t, a, ca, b)
		}

		restored := time.Now()
		cut.Restore(t, a, b)
		if i == cuts {
			c, err := a.Manager.Connect(ctx, b.ID)
			require.NoError(t, err, "Connect as the link comes back")
			requireSameConn(t, ca, c, "Connect to a peer whose session resumes")
		}
		evA.await(t, p2pconn.EventResumed, ca, i)
		evB.await(t, p2pconn.EventResumed, cb, i)
		took = append(took, time.Since(restored).Round(time.Millisecond/10))
	}
	close(stop)
	wg.wait(t, opTimeout, "the streams")
	failures.require(t)
	require.Equal(t, sentA, gotB.Load(), "a's messages: sent, received by b")
	require.Equal(t, sentB, gotA.Load(), "b's messages: sent, received by a")

	want := []p2pconn.EventKind{p2pconn.EventConnected}
	for range cuts {
		want = append(want, p2pconn.EventResuming, p2pconn.EventResumed)
	}
	require.Equal(t, want, evA.kinds(ca), "a's events for its connection")
	require.Equal(t, want, evB.kinds(cb), "b's events for its connection")
	for _, s := range []struct {
		n, peer Node
		c       p2pconn.Connection
	}{{a, b, ca}, {b, a, cb}} {
		requireAlive(t, s.c)
		got, err := s.n.Manager.Connect(ctx, s.peer.ID)
		require.NoError(t, err)
		requireSameConn(t, s.c, got, "Connect after the resumptions")
	}
	t.Logf("%d and %d messages across %d cuts: 0 lost, 0 duplicated; resumed %v after each Restore", sentA, sentB, cuts, took)
}

// testResumeWithoutTraffic: the link between two nodes goes down and comes
// back within ResumeWindow while neither sends anything: the session
// resumes by itself (EventResumed on both sides), with no Send or Connect
// to prompt it, and the connection carries messages both ways afterwards.
func testResumeWithoutTraffic(t *testing.T, net Network) {
	cut := cutter(t, net)
	cfg := resumeConfig()
	cfg.ResumeWindow = 2 * time.Second
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	evA, evB := recordEvents(t, a), recordEvents(t, b)
	ca, cb := pair(t, a, b) // nothing sent: nothing waits for acknowledgement

	cut.Cut(t, a, b)
	evA.await(t, p2pconn.EventResuming, ca, 1)
	evB.await(t, p2pconn.EventResuming, cb, 1)
	cut.Restore(t, a, b)
	for _, s := range []struct {
		ev *eventLog
		c  p2pconn.Connection
	}{{evA, ca}, {evB, cb}} {
		require.Eventually(t, func() bool {
			k := s.ev.kinds(s.c)
			return k[len(k)-1] != p2pconn.EventResuming
		}, opTimeout, tick, "the session neither resumed nor ended")
		require.Equal(t, []p2pconn.EventKind{p2pconn.EventConnected, p2pconn.EventResuming, p2pconn.EventResumed},
			s.ev.kinds(s.c), "events of the connection to %s: its session did not resume (Err: %v)", s.c.RemoteID().Short(), s.c.Err())
	}
	requireAlive(t, ca)
	requireAlive(t, cb)
	send(t, ca, []byte("after"))
	recvString(t, cb, "after")
	send(t, cb, []byte("back"))
	recvString(t, ca, "back")
}

// errWrap returns nil for a nil err, else err prefixed with what.
func errWrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// testResumeWindowExpires: the link stays down past ResumeWindow. The
// session ends on both sides, not before the window: the sender's with a
// *NotDeliveredError listing exactly the messages sent after the loss, in
// Err, the disconnected event and later Sends; the receiver got none of
// them. A new connection then works.
func testResumeWindowExpires(t *testing.T, net Network) {
	cut := cutter(t, net)
	cfg := resumeConfig()
	cfg.ResumeWindow = 500 * time.Millisecond
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	evA := recordEvents(t, a)
	ca, cb := pair(t, a, b)
	sendAll(t, ca, 0, 5, 64)
	for i := range uint64(5) {
		require.Equal(t, i, seqOf(t, recv(t, cb)))
	}
	acknowledge(t, ca, cb)

	start := time.Now()
	cut.Cut(t, a, b)
	evA.await(t, p2pconn.EventResuming, ca, 1)
	lost := sendAll(t, ca, 100, 5, 64)
	ev := evA.await(t, p2pconn.EventDisconnected, ca, 1)
	require.GreaterOrEqual(t, time.Since(start), cfg.ResumeWindow, "the session ended within ResumeWindow")
	requireNotDelivered(t, ev.Err, b.ID, lost)
	requireLost(t, ev.Err)
	requireDead(t, ca)
	requireNotDelivered(t, ca.Err(), b.ID, lost)
	err := ca.Send(testkit.Context(t, opTimeout), []byte("late"))
	require.ErrorIs(t, err, p2pconn.ErrNotDelivered, "a later Send carries the report")
	requireLeftPool(t, a, b.ID)

	// b's session ends too, and none of the messages reached it.
	_, err = cb.Next(testkit.Context(t, opTimeout))
	requireLost(t, err)
	requireLeftPool(t, b, a.ID)

	cut.Restore(t, a, b)
	c2 := connect(t, a, b)
	require.True(t, c2 != ca, "a session that ended does not come back")
	cb2 := accept(t, b)
	send(t, c2, []byte("after"))
	recvString(t, cb2, "after")
	requireNothingMore(t, cb2)
}

// testResumeEndsOnRestart: the remote's process dies and a new one starts
// under its Identifier. The survivor's session resumes meanwhile (a crash
// looks like any loss), and ends once it reaches the new process, which
// holds no such session: with a *NotDeliveredError listing exactly the
// messages sent after the crash. The new process receives none of them, and
// a Connect reaches it on a new connection.
func testResumeEndsOnRestart(t *testing.T, net Network) {
	r, ok := net.(Restarter)
	if !ok {
		t.Skip("the Network cannot restart a node (it does not implement Restarter)")
	}
	cfg := resumeConfig()
	// A reconnection under way when the new process starts may be dialing
	// the old one's address into silence (QUIC): let it give up soon.
	cfg.ConnectTimeout = time.Second
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	evA := recordEvents(t, a)
	ca, cb := pair(t, a, b)
	acknowledge(t, ca, cb)

	net.Crash(t, b)
	evA.await(t, p2pconn.EventResuming, ca, 1)
	lost := sendAll(t, ca, 0, 5, 64)
	requireResuming(t, a, ca, b)

	b2 := r.Restart(t, b, cfg)
	require.Equal(t, b.ID, b2.ID)
	ev := evA.await(t, p2pconn.EventDisconnected, ca, 1)
	requireNotDelivered(t, ev.Err, b.ID, lost)
	requireLost(t, ev.Err)
	requireDead(t, ca)
	requireNotDelivered(t, ca.Err(), b.ID, lost)

	c2 := connect(t, a, b2)
	require.True(t, c2 != ca, "a connection to the new process")
	cb2 := accept(t, b2)
	send(t, c2, []byte("to the new process"))
	recvString(t, cb2, "to the new process")
	send(t, cb2, []byte("from the new process"))
	recvString(t, c2, "from the new process")
	requireNothingMore(t, cb2, c2)
}

// testCloseWhileResuming: Close of a connection whose session resumes ends
// it at once and returns the *NotDeliveredError of the messages sent after
// the loss; the remote, which cannot know, resumes on until the link comes
// back, then its session ends with the messages it sent meanwhile, and
// none of the closed side's reach it.
func testCloseWhileResuming(t *testing.T, net Network) {
	cut := cutter(t, net)
	ns := nodes(t, net, 2, resumeConfig())
	a, b := ns[0], ns[1]
	evA, evB := recordEvents(t, a), recordEvents(t, b)
	ca, cb := pair(t, a, b)
	acknowledge(t, ca, cb)

	cut.Cut(t, a, b)
	evA.await(t, p2pconn.EventResuming, ca, 1)
	evB.await(t, p2pconn.EventResuming, cb, 1)
	lostA := sendAll(t, ca, 0, 3, 64)
	err := ca.Close()
	requireNotDelivered(t, err, b.ID, lostA)
	requireDead(t, ca)
	require.NoError(t, ca.Close(), "a second Close")
	ev := evA.await(t, p2pconn.EventDisconnected, ca, 1)
	requireNotDelivered(t, ev.Err, b.ID, lostA)
	requireLeftPool(t, a, b.ID)
	require.Zero(t, a.Manager.ConnectionCount())

	requireResuming(t, b, cb, a)
	lostB := sendAll(t, cb, 10, 2, 64)
	cut.Restore(t, a, b)
	ev = evB.await(t, p2pconn.EventDisconnected, cb, 1)
	requireNotDeliveredAfter(t, ev.Err, a.ID, lostB, [][]byte{[]byte("pong")})
	requireLost(t, ev.Err)
	_, err = cb.Next(testkit.Context(t, opTimeout))
	requireLost(t, err)
	require.NotContains(t, evB.kinds(cb), p2pconn.EventResumed)
}

// testSendPushBackWhileResuming: while the session resumes, Sends commit
// until the messages waiting for acknowledgement cost ResendBuffer bytes
// (each its length plus 32); then a Send waits, and fails with its ctx,
// having committed nothing. A Send waiting when the session resumes
// completes; the remote gets every committed message once, in order, and
// never the one whose Send failed.
func testSendPushBackWhileResuming(t *testing.T, net Network) {
	cut := cutter(t, net)
	const size = 1000
	cfg := resumeConfig()
	cfg.ResendBuffer = 8 << 10
	fits := cfg.ResendBuffer / (size + 32)
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	evA := recordEvents(t, a)
	ca, cb := pair(t, a, b)
	acknowledge(t, ca, cb)

	cut.Cut(t, a, b)
	evA.await(t, p2pconn.EventResuming, ca, 1)
	sendAll(t, ca, 0, fits, size)
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	var err error
	within(t, quiet+stuck, "Send to a full resend buffer", func() { err = ca.Send(ctx, seqMessage(uint64(fits), size)) })
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Send beyond ResendBuffer while resuming")
	require.False(t, errors.Is(err, p2pconn.ErrConnectionClosed), "the connection goes on: %v", err)
	requireResuming(t, a, ca, b)

	blocked := make(chan error, 1)
	go func() { blocked <- ca.Send(testkit.Context(t, opTimeout), seqMessage(uint64(fits)+1, size)) }()
	select {
	case err := <-blocked:
		require.FailNow(t, "Send did not wait for room", "it returned %v", err)
	case <-time.After(quiet):
	}
	cut.Restore(t, a, b)
	evA.await(t, p2pconn.EventResumed, ca, 1)
	select {
	case err := <-blocked:
		require.NoError(t, err, "the waiting Send, once the session resumed")
	case <-time.After(opTimeout):
		require.FailNow(t, "the waiting Send never returned")
	}
	var got []string
	for range fits + 1 {
		got = append(got, fmt.Sprint(seqOf(t, recv(t, cb))))
	}
	want := make([]string, 0, fits+1)
	for i := range fits {
		want = append(want, fmt.Sprint(i))
	}
	want = append(want, fmt.Sprint(fits+1))
	require.Equal(t, strings.Join(want, " "), strings.Join(got, " "), "messages received: the one whose Send failed never")
	requireNothingMore(t, cb)
}
