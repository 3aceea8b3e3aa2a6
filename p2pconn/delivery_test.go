package p2pconn_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// ledger records the outcome of every Send of a test and checks what the
// remote receives against it: every message whose Send returned nil arrives
// exactly once and in order per sender, and no message whose Send failed
// ever arrives.
type ledger struct {
	mu     sync.Mutex
	ok     map[[2]uint32]bool // (sender, seq) -> Send returned nil
	okN    int
	failed int
	next   map[uint32]uint32 // per sender: the seq expected to arrive next among the nil ones
	order  map[uint32][]uint32
	got    int

	// unordered: messages of one sender go to several receivers, or over
	// several connections, so only exactly-once is checked.
	unordered bool
}

func newLedger() *ledger {
	return &ledger{ok: make(map[[2]uint32]bool), next: make(map[uint32]uint32), order: make(map[uint32][]uint32)}
}

// message builds the payload of (sender, seq): both numbers, then filler.
func message(sender, seq uint32, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint32(b, sender)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

func (l *ledger) sent(sender, seq uint32, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.ok[[2]uint32{sender, seq}] = true
		l.order[sender] = append(l.order[sender], seq)
		l.okN++
	} else {
		l.failed++
	}
}

// arrived checks one received message.
func (l *ledger) arrived(msg []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(msg) < 8 {
		return fmt.Errorf("short message %x", msg)
	}
	sender, seq := binary.BigEndian.Uint32(msg), binary.BigEndian.Uint32(msg[4:])
	want := message(sender, seq, len(msg))
	if string(want) != string(msg) {
		return fmt.Errorf("message (%d, %d) corrupted", sender, seq)
	}
	if !l.ok[[2]uint32{sender, seq}] {
		return fmt.Errorf("message (%d, %d) arrived although its Send failed (or it arrived twice)", sender, seq)
	}
	delete(l.ok, [2]uint32{sender, seq})
	if l.unordered {
		l.got++
		return nil
	}
	order := l.order[sender]
	i := l.next[sender]
	if int(i) >= len(order) || order[i] != seq {
		return fmt.Errorf("message (%d, %d) out of order", sender, seq)
	}
	l.next[sender]++
	l.got++
	return nil
}

func (l *ledger) counts() (ok, failed, got int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.okN, l.failed, l.got
}

// connected returns both ends of a connection from a to b.
func connected(t testing.TB, ctx context.Context, a, b *node) (p2pconn.Connection, p2pconn.Connection) {
	t.Helper()
	ca, err := a.m.Connect(ctx, b.id)
	require.NoError(t, err)
	cb, err := b.m.Accept(ctx)
	require.NoError(t, err)
	return ca, cb
}

// fill sends size-byte messages as sender, each with a random ctx timeout
// up to timeout, until stop is closed and one more Send failed: the remote's
// receive queue and the stream window are then full.
func fill(ctx context.Context, c p2pconn.Connection, l *ledger, sender uint32, size int, timeout time.Duration, stop <-chan struct{}) error {
	stopped := false
	for seq := uint32(0); ; seq++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-stop:
			stopped = true
		default:
		}
		sctx, cancel := context.WithTimeout(ctx, time.Millisecond+rand.N(timeout))
		err := c.Send(sctx, message(sender, seq, size))
		cancel()
		l.sent(sender, seq, err)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("sender %d, message %d: %w", sender, seq, err)
			}
			if stopped {
				return nil
			}
		}
	}
}

// trickle reads n messages from c, pausing between them, so that the
// stream window opens by bits while the senders are blocked.
func trickle(ctx context.Context, c p2pconn.Connection, l *ledger, n int, pause time.Duration) error {
	for range n {
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		msg, err := c.Next(ctx)
		if err != nil {
			return err
		}
		if err := l.arrived(msg); err != nil {
			return err
		}
	}
	return nil
}

// drainUntil reads from c until want messages arrived, checking each against l.
func drainUntil(ctx context.Context, c p2pconn.Connection, l *ledger, want int) error {
	for {
		if _, _, got := l.counts(); got >= want {
			return nil
		}
		msg, err := c.Next(ctx)
		if err != nil {
			_, _, got := l.counts()
			return fmt.Errorf("after %d of %d messages: %w", got, want, err)
		}
		if err := l.arrived(msg); err != nil {
			return err
		}
	}
}

// requireNothingMore closes the sender's end and reads the receiver's to the
// end: no message beyond those already counted may arrive.
func requireNothingMore(t testing.TB, ctx context.Context, sender, receiver p2pconn.Connection, l *ledger) {
	t.Helper()
	require.NoError(t, sender.Close())
	for {
		msg, err := receiver.Next(ctx)
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost, "a graceful close")
			return
		}
		require.NoError(t, l.arrived(msg))
		t.Fatalf("a message arrived after all those whose Send returned nil")
	}
}

// deliveryConfig keeps the stalled-frame watchdog (KeepaliveInterval +
// KeepaliveTimeout) far beyond the test's delivery deadline, so that a
// committed message stranded by the sender shows as missing instead of
// killing the connection.
func deliveryConfig() p2pconn.Config {
	cfg := testConfig()
	cfg.KeepaliveInterval = time.Minute
	cfg.KeepaliveTimeout = 10 * time.Second
	return cfg
}

// TestDeliveryUnderBackpressure: the remote stops reading until Sends block
// and their ctx ends, at every point of a write: before it begins, inside a
// batch of concurrent senders, in the middle of the caller's own frame. Then
// the sender sends nothing more while the remote reads. Every Send that
// returned nil is delivered, exactly once, in order, promptly and without any
// later Send or Close; no Send that failed is ever delivered.
func TestDeliveryUnderBackpressure(t *testing.T) {
	cases := []struct {
		name    string
		senders int
		size    int
		timeout time.Duration
	}{
		// A length just past two whole yamux frames: the first bytes of the
		// payload go behind the header, the rest from the caller's buffer.
		{"one sender, 128 KiB", 1, 128<<10 + 100, 20 * time.Millisecond},
		{"8 senders, 100 B", 8, 100, 40 * time.Millisecond},
		{"8 senders, 4000 B", 8, 4000, 40 * time.Millisecond},
	}
	for tname, listen := range transports {
		for _, tc := range cases {
			t.Run(tname+"/"+tc.name, func(t *testing.T) {
				c := newCluster(t, listen)
				a, b := c.node(deliveryConfig()), c.node(deliveryConfig())
				ctx := testkit.Context(t, time.Minute)
				ca, cb := connected(t, ctx, a, b)
				l := newLedger()

				// Sender 0 fills the receiver with large messages first;
				// then the receiver opens the window by bits while every
				// sender's writes block and are cut at random points.
				closed := make(chan struct{})
				close(closed)
				require.NoError(t, fill(ctx, ca, l, 0, 32<<10, 20*time.Millisecond, closed))
				stop := make(chan struct{})
				errs := make(chan error, tc.senders)
				for s := range tc.senders {
					go func() { errs <- fill(ctx, ca, l, uint32(s+1), tc.size, tc.timeout, stop) }()
				}
				require.NoError(t, trickle(ctx, cb, l, 6, 3*tc.timeout/2))
				close(stop)
				for range tc.senders {
					require.NoError(t, <-errs)
				}
				ok, failed, _ := l.counts()

				// The remote reads; the sender does nothing.
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				require.NoError(t, drainUntil(rctx, cb, l, ok), "messages whose Send returned nil must arrive by themselves")
				t.Logf("%d Sends returned nil, %d failed; all nil ones arrived %s after the remote started reading", ok, failed, time.Since(start).Round(time.Millisecond))
				require.True(t, ca.IsAlive())
				requireNothingMore(t, ctx, ca, cb, l)
			})
		}
	}
}

// sendAll sends n numbered messages of size bytes; each must return nil.
func sendAll(t testing.TB, ctx context.Context, c p2pconn.Connection, l *ledger, sender uint32, n, size int) {
	t.Helper()
	for seq := range uint32(n) {
		err := c.Send(ctx, message(sender, seq, size))
		l.sent(sender, seq, err)
		require.NoError(t, err, "message %d", seq)
	}
}

// readAll reads c to its end, checking every message against l, and returns
// the final error.
func readAll(t testing.TB, ctx context.Context, c p2pconn.Connection, l *ledger, pause time.Duration) error {
	t.Helper()
	for {
		if pause > 0 {
			time.Sleep(pause) // a slow reader, not a wait for a state
		}
		msg, err := c.Next(ctx)
		if err != nil {
			return err
		}
		require.NoError(t, l.arrived(msg))
	}
}

// TestSlowReaderSeesClose: the remote closes gracefully while this side's
// receive queue is full and nobody reads. The close is seen at once (the
// connection dies as closed, not lost; Sends fail; Connect does not return
// it), and every message stays readable, then io.EOF; past the closer's
// CloseTimeout nothing turns into a loss (on QUIC, releasing the stream
// stops the peer's sending).
func TestSlowReaderSeesClose(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			cfg := testConfig()
			cfg.CloseTimeout = 500 * time.Millisecond
			a, b := c.node(cfg), c.node(cfg)
			ctx := testkit.Context(t, 30*time.Second)
			ca, cb := connected(t, ctx, a, b)
			l := newLedger()
			const n = 200 // more than the receive queue holds
			sendAll(t, ctx, ca, l, 1, n, 1000)
			require.NoError(t, ca.Close())

			require.Eventually(t, func() bool { return !cb.IsAlive() }, 5*time.Second, time.Millisecond, "the remote's close must be seen while nobody reads")
			require.ErrorIs(t, cb.Err(), io.EOF)
			require.NotErrorIs(t, cb.Err(), p2pconn.ErrConnectionLost)
			require.ErrorIs(t, cb.Send(ctx, []byte("into the void")), p2pconn.ErrConnectionClosed)
			again, err := b.m.Connect(ctx, a.id)
			require.NoError(t, err)
			require.NotSame(t, cb, again, "Connect must not return a connection the remote closed")

			// Well past the closer's CloseTimeout, nothing is lost.
			require.Never(t, func() bool { return errors.Is(cb.Err(), p2pconn.ErrConnectionLost) }, 3*cfg.CloseTimeout, 10*time.Millisecond)
			err = readAll(t, ctx, cb, l, 0)
			require.ErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			_, _, got := l.counts()
			require.Equal(t, n, got)
		})
	}
}

// TestDisconnectThenConnectToSlowReader: A sends, Disconnects and Connects
// again at once while B reads slowly. The new Connect succeeds, B reads every
// message of the old connection, then io.EOF, and the new connection works.
func TestDisconnectThenConnectToSlowReader(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, listen)
			a, b := c.node(testConfig()), c.node(testConfig())
			ctx := testkit.Context(t, 30*time.Second)
			ca, cb := connected(t, ctx, a, b)
			l := newLedger()
			const n = 200
			sendAll(t, ctx, ca, l, 1, n, 1000)
			require.NoError(t, a.m.Disconnect(b.id))
			start := time.Now()
			ca2, err := a.m.Connect(ctx, b.id)
			require.NoError(t, err, "Connect after Disconnect")
			t.Logf("Connect after Disconnect took %s", time.Since(start).Round(time.Microsecond))
			require.NotSame(t, ca, ca2)

			err = readAll(t, ctx, cb, l, time.Millisecond)
			require.ErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
			_, _, got := l.counts()
			require.Equal(t, n, got, "every message sent before the Disconnect")

			cb2, err := b.m.Accept(ctx)
			require.NoError(t, err)
			require.NoError(t, ca2.Send(ctx, []byte("on the new connection")))
			msg, err := cb2.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "on the new connection", string(msg))
		})
	}
}

// TestVersion1Peer: a node speaking the version-1 handshake and a current
// one connect either way and at the same instant, and exchange messages.
func TestVersion1Peer(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) {
			for trial := range 5 {
				c := newCluster(t, listen)
				old, cur := c.node(testConfig()), c.node(testConfig())
				p2pconn.SpeakVersion1(old.m)
				ctx := testkit.Context(t, 30*time.Second)
				var ca, cb p2pconn.Connection
				switch trial % 3 {
				case 0:
					ca, cb = connected(t, ctx, old, cur)
				case 1:
					cb, ca = connected(t, ctx, cur, old)
				default:
					done := make(chan error, 1)
					go func() {
						var err error
						cb, err = cur.m.Connect(ctx, old.id)
						done <- err
					}()
					var err error
					ca, err = old.m.Connect(ctx, cur.id)
					require.NoError(t, err)
					require.NoError(t, <-done)
				}
				exchange(t, ctx, ca, cb, 50)
			}
		})
	}
}
