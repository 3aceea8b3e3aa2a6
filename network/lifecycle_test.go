package network_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/network"
)

// gated is a processor that holds the messages of one sender until its gate
// opens (or its ctx ends), and passes every other message on at once.
type gated struct {
	hold network.Message // From is the sender held
	gate chan struct{}
	got  chan network.Message
}

func (g *gated) ProcessIncomingMessage(ctx context.Context, m network.Message) {
	g.got <- m
	if m.From == g.hold.From {
		select {
		case <-g.gate:
		case <-ctx.Done():
		}
	}
}

// TestPushBackPerChannel: a processor that holds one sender's messages
// pushes back on that sender's Sends on that channel only: the same sender's
// other channel, and other senders on the same channel, go on.
func TestPushBackPerChannel(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		const window = 4
		ns := newNodes(t, w, 3, network.Config{Window: window})
		a, b, c := ns[0], ns[1], ns[2]
		slow := &gated{hold: network.Message{From: a.id}, gate: make(chan struct{}), got: make(chan network.Message, 64)}
		register(t, b, "slow", slow)
		fast := newInbox(64)
		register(t, b, "fast", fast)
		ctx := testContext(t, opTimeout)

		// a fills its room on "slow": the processor holds the first message,
		// the others wait in the queue.
		for i := range window {
			require.NoError(t, a.n.Conduit("slow").Send(ctx, b.id, []byte{byte(i)}))
		}
		require.Equal(t, []byte{0}, (<-slow.got).Payload)
		short, cancel := context.WithTimeout(ctx, quiet)
		err := a.n.Conduit("slow").Send(short, b.id, []byte{99})
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded, "a full channel pushes back on its sender")

		// The connection keeps being read: a's other channel flows.
		for i := range 3 * window {
			require.NoError(t, a.n.Conduit("fast").Send(ctx, b.id, []byte{byte(i)}))
			require.Equal(t, []byte{byte(i)}, fast.next(t).Payload)
		}
		// Another sender on the slow channel is processed meanwhile.
		for i := range 3 * window {
			require.NoError(t, c.n.Conduit("slow").Send(ctx, b.id, []byte{byte(100 + i)}))
			m := <-slow.got
			require.Equal(t, c.id, m.From)
			require.Equal(t, []byte{byte(100 + i)}, m.Payload)
		}

		// Open the gate: a's queue drains in order, without the Send that
		// timed out, and a can send again.
		close(slow.gate)
		require.NoError(t, a.n.Conduit("slow").Send(ctx, b.id, []byte{window}))
		for i := 1; i <= window; i++ {
			m := <-slow.got
			require.Equal(t, a.id, m.From)
			require.Equal(t, []byte{byte(i)}, m.Payload)
		}
		require.Never(t, func() bool { return len(slow.got) > 0 }, quiet, tick, "a message that failed to send arrived")
	})
}

// TestClose: Close cancels the processors' ctx, fails Requests in flight,
// makes later calls fail with ErrClosed, makes peers' Sends fail fast, and
// leaves the manager to a new Network.
func TestClose(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		ns := newNodes(t, w, 2, network.Config{})
		a, b := ns[0], ns[1]
		ctx := testContext(t, opTimeout)

		// b's processor runs until its ctx is cancelled.
		running := make(chan struct{})
		cancelled := make(chan struct{})
		register(t, b, "block", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			close(running)
			<-ctx.Done()
			close(cancelled)
		}))
		register(t, a, "mute", newInbox(16)) // never replies
		newEcho(t, b, "echo")
		_, err := a.n.Conduit("echo").Request(ctx, b.id, []byte("warm"))
		require.NoError(t, err)

		require.NoError(t, a.n.Conduit("block").Send(ctx, b.id, nil))
		<-running
		// A Request of b's in flight, and one of a's to b.
		var wg sync.WaitGroup
		var bErr, aErr error
		wg.Go(func() { _, bErr = b.n.Conduit("mute").Request(ctx, a.id, []byte("?")) })
		wg.Go(func() { _, aErr = a.n.Conduit("block").Request(ctx, b.id, []byte("?")) })
		require.Eventually(t, func() bool { return b.m.ConnectionCount() == 1 }, eventually, tick)

		start := time.Now()
		require.NoError(t, b.n.Close())
		require.NoError(t, b.n.Close(), "idempotent")
		select {
		case <-cancelled:
		default:
			require.FailNow(t, "Close returned before the processor's ctx was cancelled and it returned")
		}
		wg.Wait()
		require.Less(t, time.Since(start), 10*time.Second)
		require.ErrorIs(t, bErr, network.ErrClosed, "b's Request in flight")
		require.ErrorIs(t, aErr, network.ErrRemoteClosed, "a's Request to b in flight")

		// Later calls on b fail at once.
		_, err = b.n.Register("late", newInbox(1))
		require.ErrorIs(t, err, network.ErrClosed)
		require.ErrorIs(t, b.n.Conduit("echo").Send(ctx, a.id, nil), network.ErrClosed)
		_, err = b.n.Conduit("echo").Request(ctx, a.id, nil)
		require.ErrorIs(t, err, network.ErrClosed)
		require.ErrorIs(t, b.n.Conduit("echo").Reply(ctx, network.CallRef{Origin: a.id, ID: 1}, nil), network.ErrClosed)
		require.ErrorIs(t, b.n.Conduit("echo").Forward(ctx, a.id, network.CallRef{}, nil), network.ErrClosed)

		// a's Sends to b fail fast: b said it closed.
		within(t, 5*time.Second, "Send to a closed Network", func() {
			err = a.n.Conduit("echo").Send(ctx, b.id, nil)
		})
		require.ErrorIs(t, err, network.ErrRemoteClosed)
		require.ErrorIs(t, err, network.ErrNoProcessor)
		require.Equal(t, 1, b.m.ConnectionCount(), "the manager and its connections stay")

		// A new Network on b's manager: a reaches it again on the same connection.
		b2, err := network.New(b.m, network.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b2.Close()) })
		echo := b2.Conduit("echo")
		_, err = b2.Register("echo", network.ProcessorFunc(func(ctx context.Context, m network.Message) {
			_ = echo.Reply(ctx, m.Call, append([]byte("again: "), m.Payload...))
		}))
		require.NoError(t, err)
		// a learns of b2 from b2's OPEN: until then it still knows b's
		// Network as closed.
		var r network.Message
		require.Eventually(t, func() bool {
			r, err = a.n.Conduit("echo").Request(ctx, b.id, []byte("hi"))
			return !errors.Is(err, network.ErrRemoteClosed)
		}, eventually, tick)
		require.NoError(t, err)
		require.Equal(t, "again: hi", string(r.Payload))
		r, err = b2.Conduit("mute2").Request(testContext(t, quiet), a.id, nil)
		require.ErrorIs(t, err, network.ErrNoProcessor, "b2 sends too: %v", r)
	})
}

// TestReadsEveryConnection: a Network reads the connections open before it
// started and those the application opens on the manager afterwards (which
// Accept never yields), whoever opened them.
func TestReadsEveryConnection(t *testing.T) {
	forEnv(t, envs, func(t *testing.T, w world) {
		ctx := testContext(t, opTimeout)
		ma, mb, mc := w.manager(t, connConfig()), w.manager(t, connConfig()), w.manager(t, connConfig())
		// Before any Network: a opens a connection to b.
		_, err := ma.Connect(ctx, mb.ID())
		require.NoError(t, err)

		na, err := network.New(ma, network.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, na.Close()) })
		nb, err := network.New(mb, network.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, nb.Close()) })
		nc, err := network.New(mc, network.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, nc.Close()) })
		inA := newInbox(4)
		_, err = na.Register("x", inA)
		require.NoError(t, err)
		inB := newInbox(4)
		_, err = nb.Register("x", inB)
		require.NoError(t, err)

		// The connection from before, both ways.
		require.NoError(t, na.Conduit("x").Send(ctx, mb.ID(), []byte("a->b")))
		require.Equal(t, "a->b", string(inB.next(t).Payload))
		require.NoError(t, nb.Conduit("x").Send(ctx, ma.ID(), []byte("b->a")))
		require.Equal(t, "b->a", string(inA.next(t).Payload))

		// The application on a opens a connection to c; c's Network learns
		// of it from Accept, a's only from the manager's events.
		_, err = ma.Connect(ctx, mc.ID())
		require.NoError(t, err)
		require.NoError(t, nc.Conduit("x").Send(ctx, ma.ID(), []byte("c->a")))
		require.Equal(t, "c->a", string(inA.next(t).Payload))
	})
}
