package p2pconntest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// Timeouts of the suite. They bound waits that succeed at once on a healthy
// implementation, so they are generous for slow machines and the race detector.
const (
	// opTimeout bounds one blocking call expected to succeed.
	opTimeout = 20 * time.Second
	// eventually bounds a require.Eventually on an asynchronous effect.
	eventually = 10 * time.Second
	// tick is the polling period of require.Eventually.
	tick = 5 * time.Millisecond
	// quiet is how long a call that must not succeed is given to prove it.
	quiet = 100 * time.Millisecond
	// stuck is how long past its ctx's end a call may take to return.
	stuck = 5 * time.Second
)

// config returns the base configuration of the suite's nodes: the defaults,
// with short retry and close timings so that failures are quick.
func config() p2pconn.Config {
	return p2pconn.Config{
		ConnectTimeout: 5 * time.Second,
		RetryAttempts:  1,
		RetryDelay:     10 * time.Millisecond,
		MaxRetryDelay:  100 * time.Millisecond,
		CloseTimeout:   time.Second,
	}
}

// nodes starts n nodes with cfg.
func nodes(t testing.TB, net Network, n int, cfg p2pconn.Config) []Node {
	t.Helper()
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = net.NewNode(t, cfg)
	}
	return ns
}

// connect opens (or gets) from's connection to to.
func connect(t testing.TB, from, to Node) p2pconn.Connection {
	t.Helper()
	c, err := from.Manager.Connect(testkit.Context(t, opTimeout), to.ID)
	require.NoError(t, err, "connect %s -> %s", from.ID.Short(), to.ID.Short())
	require.NotNil(t, c)
	require.Equal(t, to.ID, c.RemoteID())
	return c
}

// pair connects a to b and returns a's side, and b's side as b's Accept
// yields it. b's side must also be what b.GetConnection returns.
func pair(t testing.TB, a, b Node) (ca, cb p2pconn.Connection) {
	t.Helper()
	ca = connect(t, a, b)
	cb = accept(t, b)
	require.Equal(t, a.ID, cb.RemoteID(), "accepted connection from the wrong peer")
	got, ok := b.Manager.GetConnection(a.ID)
	require.True(t, ok, "GetConnection on the accepting side")
	requireSameConn(t, cb, got, "GetConnection on the accepting side")
	return ca, cb
}

// accept returns the next inbound connection of n.
func accept(t testing.TB, n Node) p2pconn.Connection {
	t.Helper()
	c, err := n.Manager.Accept(testkit.Context(t, opTimeout))
	require.NoError(t, err, "accept on %s", n.ID.Short())
	require.NotNil(t, c)
	return c
}

// requireNoAccept checks that n has no inbound connection to accept.
func requireNoAccept(t testing.TB, n Node) {
	t.Helper()
	var c p2pconn.Connection
	var err error
	within(t, quiet+stuck, "Accept", func() { c, err = n.Manager.Accept(testkit.Context(t, quiet)) })
	if err == nil {
		require.Failf(t, "unexpected inbound connection", "Accept on %s yielded a connection from %s", n.ID.Short(), c.RemoteID().Short())
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func send(t testing.TB, c p2pconn.Connection, msg []byte) {
	t.Helper()
	require.NoError(t, c.Send(testkit.Context(t, opTimeout), msg), "send to %s", c.RemoteID().Short())
}

func recv(t testing.TB, c p2pconn.Connection) []byte {
	t.Helper()
	msg, err := c.Next(testkit.Context(t, opTimeout))
	require.NoError(t, err, "next from %s", c.RemoteID().Short())
	return msg
}

// recvString receives one message and checks it is want.
func recvString(t testing.TB, c p2pconn.Connection, want string) {
	t.Helper()
	require.Equal(t, want, string(recv(t, c)))
}

// requireNothingMore checks that no further message arrives on any of
// conns, watching them all at once.
func requireNothingMore(t testing.TB, conns ...p2pconn.Connection) {
	t.Helper()
	msgs := make([][]byte, len(conns))
	results := make([]error, len(conns))
	ctx := testkit.Context(t, quiet)
	within(t, quiet+stuck, "Next", func() {
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() { msgs[i], results[i] = c.Next(ctx) })
		}
		wg.Wait()
	})
	for i, err := range results {
		require.ErrorIs(t, err, context.DeadlineExceeded, "unexpected message %q from %s", truncate(msgs[i]), conns[i].RemoteID().Short())
	}
}

// requireGoodbye checks that err reports a clean close by the remote.
func requireGoodbye(t testing.TB, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, io.EOF)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost, "a clean close must not look like a loss")
}

// requireLost checks that err reports a lost connection.
func requireLost(t testing.TB, err error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.ErrorIs(t, err, io.EOF)
}

// requireDrainThenGoodbye reads want from c, then a clean-close error.
func requireDrainThenGoodbye(t testing.TB, c p2pconn.Connection, want ...string) {
	t.Helper()
	for _, w := range want {
		recvString(t, c, w)
	}
	_, err := c.Next(testkit.Context(t, opTimeout))
	requireGoodbye(t, err)
}

// requireDead checks every observable sign that c is dead.
func requireDead(t testing.TB, c p2pconn.Connection) {
	t.Helper()
	require.False(t, c.IsAlive(), "IsAlive")
	require.Empty(t, c.RemoteAddr(), "RemoteAddr of a dead connection")
	require.True(t, isClosed(c.Done()), "Done of a dead connection is not closed")
	require.ErrorIs(t, c.Err(), p2pconn.ErrConnectionClosed, "Err of a dead connection")
}

// requireAlive checks every observable sign that c is alive.
func requireAlive(t testing.TB, c p2pconn.Connection) {
	t.Helper()
	require.True(t, c.IsAlive(), "IsAlive")
	require.NotEmpty(t, c.RemoteAddr(), "RemoteAddr of a live connection")
	require.False(t, isClosed(c.Done()), "Done of a live connection is closed")
	require.NoError(t, c.Err(), "Err of a live connection")
}

// requireLeftPool waits until n holds no connection to peer.
func requireLeftPool(t testing.TB, n Node, peer identity.Identifier) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, ok := n.Manager.GetConnection(peer)
		return !ok
	}, eventually, tick, "%s still holds a connection to %s", n.ID.Short(), peer.Short())
}

// requireSameConn checks that got is the very object want.
func requireSameConn(t testing.TB, want, got p2pconn.Connection, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	require.NotNil(t, got, what)
	if want != got {
		require.Failf(t, "not the same Connection object", "%s: want %p, got %p", what, want, got)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// randomID returns an Identifier that no node uses.
func randomID(t testing.TB) identity.Identifier {
	t.Helper()
	var id identity.Identifier
	_, err := rand.Read(id[:])
	require.NoError(t, err)
	return id
}

// seqMessage returns a message of size bytes (at least 8) that starts with seq.
func seqMessage(seq uint64, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(b, seq)
	return b
}

// seqOf returns the sequence number of a seqMessage.
func seqOf(t testing.TB, msg []byte) uint64 {
	t.Helper()
	require.GreaterOrEqual(t, len(msg), 8, "message too short for a sequence number")
	return binary.BigEndian.Uint64(msg)
}

// within runs f, which must return on its own (for instance because it
// honours a ctx that ends), and fails the test if it is still running after d.
// f must not call t.FailNow.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		require.FailNow(t, "blocked", "%s still blocked after %s: does it honour its ctx?", what, d)
	}
}

// waitGroup runs goroutines and waits for them with a deadline, so that a
// deadlock fails the test instead of hanging it.
type waitGroup struct{ sync.WaitGroup }

// wait waits for every goroutine, failing t if they take longer than d.
func (wg *waitGroup) wait(t testing.TB, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		require.FailNow(t, "deadlock", "%s did not finish within %s", what, d)
	}
}

// errs collects the errors of goroutines, to check them on the test goroutine.
// The first error calls stop, if set, so that the other goroutines give up
// instead of waiting for a peer that has quit.
type errs struct {
	stop context.CancelFunc

	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
	if e.stop != nil {
		e.stop()
	}
}

func (e *errs) require(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	require.NoError(t, errors.Join(e.list...))
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
