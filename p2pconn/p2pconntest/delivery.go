package p2pconntest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// readSlowly reads c to its end, pausing before each Next, and returns the
// sequence numbers of the messages and the final error.
func readSlowly(ctx context.Context, c p2pconn.Connection, pause time.Duration) ([]uint64, error) {
	var seqs []uint64
	for {
		time.Sleep(pause) // a slow reader, not a wait for a state
		msg, err := c.Next(ctx)
		if err != nil {
			return seqs, err
		}
		seqs = append(seqs, seqOrZero(msg))
	}
}

// sendSeqs sends messages 0 to n-1 of size bytes on c; each must return nil.
func sendSeqs(t testing.TB, c p2pconn.Connection, n, size int) []uint64 {
	t.Helper()
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = uint64(i)
		send(t, c, seqMessage(seqs[i], size))
	}
	return seqs
}

// testDeliveryCloseSlowReader: the sender's Sends, each with a short ctx,
// race a receiver that reads slowly, then the sender closes gracefully:
// every Send that returned nil is read exactly once and in order, then
// io.EOF, and no Send that failed is ever read.
func testDeliveryCloseSlowReader(t *testing.T, net Network) {
	const count = 200
	cfg := config()
	cfg.ReceiveBuffer = 4
	ns := nodes(t, net, 2, cfg)
	ca, cb := pair(t, ns[0], ns[1])
	ctx := testkit.Context(t, time.Minute)

	var committed []uint64
	var sendErr error
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range uint64(count) {
			sctx, cancel := context.WithTimeout(ctx, time.Duration(200+rand.IntN(3000))*time.Microsecond)
			err := ca.Send(sctx, seqMessage(i, 512))
			cancel()
			switch {
			case err == nil:
				committed = append(committed, i)
			case !errors.Is(err, context.DeadlineExceeded):
				sendErr = fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		sendErr = ca.Close()
	}()

	got, err := readSlowly(ctx, cb, 500*time.Microsecond)
	requireGoodbye(t, err)
	select {
	case <-sent:
	case <-time.After(opTimeout):
		require.FailNow(t, "the sender is stuck")
	}
	require.NoError(t, sendErr)
	require.NotEmpty(t, committed)
	require.Equal(t, committed, got, "messages read differ from the Sends that returned nil")
	t.Logf("%d of %d Sends returned nil", len(committed), count)
}

// testSlowReaderSeesClose: the remote closes gracefully while this side's
// receive queue is full and nobody reads. The close is seen at once (dead,
// closed not lost, Sends fail, Connect opens a new connection), past the
// closer's CloseTimeout it does not turn into a loss, and every message
// stays readable, then io.EOF.
func testSlowReaderSeesClose(t *testing.T, net Network) {
	cfg := config()
	cfg.ReceiveBuffer = 8
	cfg.CloseTimeout = 200 * time.Millisecond
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	want := sendSeqs(t, ca, cfg.ReceiveBuffer, 1000)
	require.NoError(t, ca.Close())

	requireDies(t, cb, "the remote's close must be seen while nobody reads")
	require.True(t, isClosed(cb.Done()))
	requirePlainClose(t, cb.Err())
	require.ErrorIs(t, cb.Send(testkit.Context(t, opTimeout), []byte("into the void")), p2pconn.ErrConnectionClosed)
	again := connect(t, b, a)
	require.False(t, again == cb, "Connect returned the connection the remote closed")

	require.Never(t, func() bool { return errors.Is(cb.Err(), p2pconn.ErrConnectionLost) }, 3*cfg.CloseTimeout, tick,
		"the unread close turned into a loss")
	got, err := readSlowly(testkit.Context(t, opTimeout), cb, 0)
	requirePlainClose(t, err)
	require.Equal(t, want, got)
}

// testDisconnectThenConnectToSlowReader: the sender sends, Disconnects and
// Connects again at once while the receiver has read nothing; the receiver
// then reads every message of the old connection, slowly, then io.EOF, and
// the new connection works.
func testDisconnectThenConnectToSlowReader(t *testing.T, net Network) {
	cfg := config()
	ns := nodes(t, net, 2, cfg)
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)
	want := sendSeqs(t, ca, p2pconn.DefaultReceiveBuffer, 1000)
	require.NoError(t, a.Manager.Disconnect(b.ID))
	ca2 := connect(t, a, b)
	require.False(t, ca == ca2, "Connect after Disconnect returned the closed connection")

	got, err := readSlowly(testkit.Context(t, opTimeout), cb, time.Millisecond)
	requirePlainClose(t, err)
	require.Equal(t, want, got, "messages sent before the Disconnect")

	cb2 := accept(t, b)
	send(t, ca2, []byte("on the new connection"))
	recvString(t, cb2, "on the new connection")
}
