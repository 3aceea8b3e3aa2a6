package p2pconntest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
)

// testSendReceiveBothDirections: a connection carries messages both ways,
// whoever opened it, and reports itself alive.
func testSendReceiveBothDirections(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	a, b := ns[0], ns[1]
	ca, cb := pair(t, a, b)

	requireAlive(t, ca)
	requireAlive(t, cb)
	require.Equal(t, b.ID, ca.RemoteID())
	require.Equal(t, a.ID, cb.RemoteID())

	send(t, ca, []byte("ping"))
	recvString(t, cb, "ping")
	send(t, cb, []byte("pong"))
	recvString(t, ca, "pong")

	for i := range 10 {
		send(t, ca, fmt.Appendf(nil, "a%d", i))
		send(t, cb, fmt.Appendf(nil, "b%d", i))
	}
	for i := range 10 {
		recvString(t, cb, fmt.Sprintf("a%d", i))
		recvString(t, ca, fmt.Sprintf("b%d", i))
	}
	requireAlive(t, ca)
	requireAlive(t, cb)
}

// testSendCopiesMessage: the caller may reuse msg once Send returns.
func testSendCopiesMessage(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	ca, cb := pair(t, ns[0], ns[1])

	buf := []byte("first")
	send(t, ca, buf)
	copy(buf, "XXXXX")
	send(t, ca, buf)
	copy(buf, "YYYYY")
	recvString(t, cb, "first")
	recvString(t, cb, "XXXXX")
}

// testEmptyMessage: empty messages are messages, with their boundaries.
func testEmptyMessage(t *testing.T, net Network) {
	ns := nodes(t, net, 2, config())
	ca, cb := pair(t, ns[0], ns[1])

	send(t, ca, nil)
	send(t, ca, []byte{})
	send(t, ca, []byte("x"))
	send(t, ca, nil)
	require.Empty(t, recv(t, cb))
	require.Empty(t, recv(t, cb))
	recvString(t, cb, "x")
	require.Empty(t, recv(t, cb))
	requireNothingMore(t, cb)

	send(t, cb, nil)
	require.Empty(t, recv(t, ca))
	requireAlive(t, ca)
	requireAlive(t, cb)
}

// testOrderAndBoundaries: 1000 messages of random sizes from 0 to 64 KiB in
// each direction at once, read concurrently, arrive whole, in order, intact.
func testOrderAndBoundaries(t *testing.T, net Network) {
	const (
		count   = 1000
		maxSize = 64 << 10
	)
	ns := nodes(t, net, 2, config())
	ca, cb := pair(t, ns[0], ns[1])
	ctx, cancel := context.WithCancel(testkit.Context(t, 2*time.Minute))
	defer cancel()

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	sizes := func(dir uint64) []int {
		rng := rand.New(rand.NewPCG(seed, dir))
		s := make([]int, count)
		for i := range s {
			s[i] = rng.IntN(maxSize + 1)
		}
		return s
	}
	// content fills b with the bytes of message i in direction dir.
	content := func(dir uint64, i int, b []byte) {
		var key [32]byte
		binary.BigEndian.PutUint64(key[:], seed)
		binary.BigEndian.PutUint64(key[8:], dir)
		binary.BigEndian.PutUint64(key[16:], uint64(i))
		_, _ = rand.NewChaCha8(key).Read(b)
	}

	var wg waitGroup
	failures := errs{stop: cancel}
	run := func(dir uint64, from, to interface {
		Send(context.Context, []byte) error
		Next(context.Context) ([]byte, error)
	}) {
		sz := sizes(dir)
		wg.Go(func() {
			buf := make([]byte, maxSize)
			for i, n := range sz {
				content(dir, i, buf[:n])
				if err := from.Send(ctx, buf[:n]); err != nil {
					failures.add(fmt.Errorf("direction %d: send %d: %w", dir, i, err))
					return
				}
			}
		})
		wg.Go(func() {
			want := make([]byte, maxSize)
			for i, n := range sz {
				msg, err := to.Next(ctx)
				if err != nil {
					failures.add(fmt.Errorf("direction %d: next %d: %w", dir, i, err))
					return
				}
				content(dir, i, want[:n])
				if !bytes.Equal(msg, want[:n]) {
					failures.add(fmt.Errorf("direction %d: message %d: got %d bytes, want %d bytes (or content differs)", dir, i, len(msg), n))
					return
				}
			}
		})
	}
	run(1, ca, cb)
	run(2, cb, ca)
	wg.wait(t, 3*time.Minute, "senders and readers")
	failures.require(t)
	requireNothingMore(t, ca, cb)
}

// testNextCancelledLosesNothing: a Next that its ctx ends loses no message,
// even when the ctx ends while the message arrives.
func testNextCancelledLosesNothing(t *testing.T, net Network) {
	const count = 200
	ns := nodes(t, net, 2, config())
	ca, cb := pair(t, ns[0], ns[1])

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	within(t, stuck, "Next", func() { _, err = ca.Next(cancelled) })
	require.ErrorIs(t, err, context.Canceled)
	within(t, stuck, "Next", func() { _, err = ca.Next(testkit.Context(t, 20*time.Millisecond)) })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	requireAlive(t, ca)

	send(t, cb, []byte("after"))
	recvString(t, ca, "after")

	// Now race the deadlines against arrivals.
	ctx, stop := context.WithCancel(testkit.Context(t, time.Minute))
	defer stop()
	var wg waitGroup
	failures := errs{stop: stop}
	wg.Go(func() {
		for i := range count {
			if err := cb.Send(ctx, seqMessage(uint64(i), 8+i)); err != nil {
				failures.add(fmt.Errorf("send %d: %w", i, err))
				return
			}
		}
	})
	for i := 0; i < count; {
		short, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
		msg, err := ca.Next(short)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				failures.require(t)
				require.FailNow(t, "timed out", "at message %d", i)
			}
			require.ErrorIs(t, err, context.DeadlineExceeded)
			continue
		}
		require.Equal(t, uint64(i), seqOf(t, msg), "message lost or reordered")
		require.Len(t, msg, 8+i)
		i++
	}
	wg.wait(t, time.Minute, "sender")
	failures.require(t)
	requireNothingMore(t, ca)
	requireAlive(t, ca)
}

// testSendHonoursContextUnderBackpressure: when the remote reads nothing,
// Send eventually blocks and returns when its ctx ends; the connection stays
// usable and the remote then reads every message whose Send succeeded, in
// order.
func testSendHonoursContextUnderBackpressure(t *testing.T, net Network) {
	const (
		size     = 64 << 10
		maxFill  = 4096 // 256 MiB: more than any sane buffering
		deadline = 200 * time.Millisecond
	)
	cfg := config()
	cfg.ReceiveBuffer = 4
	ns := nodes(t, net, 2, cfg)
	ca, cb := pair(t, ns[0], ns[1])

	failed := -1
	for i := range maxFill {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		var err error
		within(t, deadline+stuck, "Send", func() { err = ca.Send(ctx, seqMessage(uint64(i), size)) })
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded, "send %d", i)
			require.Less(t, time.Since(start), deadline+5*time.Second, "Send overran its deadline")
			failed = i
			break
		}
	}
	require.NotEqual(t, -1, failed, "Send never blocked although the remote reads nothing")
	t.Logf("Send blocked after %d messages of %d bytes", failed, size)
	requireAlive(t, ca)
	requireAlive(t, cb)

	// A marker sent behind them shows the stream is intact.
	var wg waitGroup
	var failures errs
	ctx := testkit.Context(t, time.Minute)
	wg.Go(func() {
		if err := ca.Send(ctx, []byte("marker")); err != nil {
			failures.add(fmt.Errorf("send marker: %w", err))
		}
	})
	for i := range failed {
		msg := recv(t, cb)
		require.Len(t, msg, size)
		require.Equal(t, uint64(i), seqOf(t, msg), "message lost or reordered")
	}
	// The message whose Send timed out may have been delivered whole (if it
	// was partly written) or not at all.
	msg := recv(t, cb)
	if len(msg) == size {
		require.Equal(t, uint64(failed), seqOf(t, msg))
		msg = recv(t, cb)
	}
	require.Equal(t, "marker", string(msg))
	wg.wait(t, time.Minute, "marker sender")
	failures.require(t)

	send(t, cb, []byte("back"))
	recvString(t, ca, "back")
	requireAlive(t, ca)
	requireAlive(t, cb)
}
