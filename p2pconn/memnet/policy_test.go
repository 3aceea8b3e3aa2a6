package memnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
)

func TestUnreachableForOff(t *testing.T) {
	net, ms := newNetwork(t, 2, p2pconn.Config{UnreachableFor: -1})
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	net.Partition(a.ID(), b.ID())
	for range 2 {
		_, err := a.Connect(ctx, b.ID())
		require.ErrorIs(t, err, memnet.ErrUnreachable)
		require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "every Connect dials when UnreachableFor is off")
	}
}

func TestUnreachableAfterRetries(t *testing.T) {
	cfg := p2pconn.Config{RetryAttempts: 2, RetryDelay: time.Millisecond, UnreachableFor: time.Minute}
	net, ms := newNetwork(t, 2, cfg)
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	net.Partition(a.ID(), b.ID())

	start := time.Now()
	_, err := a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	returned := time.Now()
	_, err = a.Connect(ctx, b.ID(), p2pconn.WithRetryAttempts(0))
	var ue *p2pconn.UnreachableError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, b.ID(), ue.Peer)
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	require.ErrorIs(t, ue.Cause, memnet.ErrUnreachable)
	require.True(t, ue.LastTried.After(start) && !ue.LastTried.After(returned), "LastTried is the last attempt")

	// Only a's Connects: b never failed to reach a, and still dials.
	_, err = b.Connect(ctx, a.ID())
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable)

	// A ctx that ends between retries still leaves the failure behind.
	c := newManager(t, net, randomID(t), p2pconn.Config{RetryAttempts: 1, RetryDelay: time.Minute})
	net.Partition(c.ID(), b.ID())
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = c.Connect(short, b.ID())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	_, err = c.Connect(ctx, b.ID(), p2pconn.WithRetryAttempts(0))
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)
}

func TestHealForgetsFailure(t *testing.T) {
	net, ms := newNetwork(t, 2, p2pconn.Config{UnreachableFor: time.Minute})
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	net.Partition(a.ID(), b.ID())
	_, err := a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	_, err = a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, p2pconn.ErrUnreachable)

	net.Heal(b.ID(), a.ID()) // either order
	_, err = a.Connect(ctx, b.ID())
	require.NoError(t, err)
}

func TestOnlyFailuresThatPassAreRemembered(t *testing.T) {
	net, ms := newNetwork(t, 3, p2pconn.Config{UnreachableFor: time.Minute})
	a, b := ms[0], ms[1]
	ctx := testkit.Context(t, 10*time.Second)
	net.Partition(a.ID(), b.ID())
	_, err := a.Connect(ctx, b.ID())
	require.Error(t, err)
	_, err = a.Connect(ctx, a.ID())
	require.ErrorIs(t, err, p2pconn.ErrSelfConnect)
	require.NoError(t, ms[2].Close())
	_, err = a.Connect(ctx, ms[2].ID())
	require.NotErrorIs(t, err, p2pconn.ErrUnreachable, "a node that left is not found, not remembered")
}

// A Send blocked on the remote's full queue when eviction closes its
// connection fails, and the remote never reads its message.
func TestEvictionFailsBlockedSend(t *testing.T) {
	net := memnet.NewNetwork()
	a := newManager(t, net, randomID(t), p2pconn.Config{MaxConnections: 1, EvictAtLimit: true})
	b := newManager(t, net, randomID(t), p2pconn.Config{ReceiveBuffer: 1})
	c := newManager(t, net, randomID(t), p2pconn.Config{})
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	require.NoError(t, ab.Send(ctx, []byte("delivered")))
	blocked := make(chan error, 1)
	go func() { blocked <- ab.Send(ctx, []byte("never")) }()
	select {
	case err := <-blocked:
		require.FailNow(t, "Send did not block on the full queue", "err: %v", err)
	case <-time.After(50 * time.Millisecond):
	}

	_, err := a.Connect(ctx, c.ID())
	require.NoError(t, err)
	require.ErrorIs(t, <-blocked, p2pconn.ErrConnectionClosed)
	msg, err := ba.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "delivered", string(msg))
	_, err = ba.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
}

// A Connect evicts nothing when the remote refuses anyway.
func TestEvictionOnlyWhenBothSidesTakeIt(t *testing.T) {
	net := memnet.NewNetwork()
	a := newManager(t, net, randomID(t), p2pconn.Config{MaxConnections: 1, EvictAtLimit: true})
	full := newManager(t, net, randomID(t), p2pconn.Config{MaxConnections: 1})
	b := newManager(t, net, randomID(t), p2pconn.Config{})
	c := newManager(t, net, randomID(t), p2pconn.Config{})
	ctx := testkit.Context(t, 10*time.Second)
	ab, _ := connected(t, a, b)
	_, err := c.Connect(ctx, full.ID())
	require.NoError(t, err)

	_, err = a.Connect(ctx, full.ID())
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	require.True(t, ab.IsAlive(), "a evicted a connection for a Connect that failed")
	require.Equal(t, 1, a.ConnectionCount())
}

// A connection with a Send in progress is not idle, even past IdleTimeout.
func TestSendInProgressIsNotIdle(t *testing.T) {
	const idle = 50 * time.Millisecond
	net := memnet.NewNetwork()
	a := newManager(t, net, randomID(t), p2pconn.Config{IdleTimeout: idle})
	b := newManager(t, net, randomID(t), p2pconn.Config{ReceiveBuffer: 1})
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	require.NoError(t, ab.Send(ctx, []byte("one")))
	sent := make(chan error, 1)
	go func() { sent <- ab.Send(ctx, []byte("two")) }()

	require.Never(t, func() bool { return !ab.IsAlive() }, 4*idle, 5*time.Millisecond, "closed idle with a Send in progress")
	for _, want := range []string{"one", "two"} {
		msg, err := ba.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(msg))
	}
	require.NoError(t, <-sent)
	require.Eventually(t, func() bool { return !ab.IsAlive() }, 5*time.Second, 5*time.Millisecond, "idle once the Send is done")
	_, err := ba.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
}

// Crash and Close end idle closing (goleak checks it), and a crash is a
// loss, never a node leaving.
func TestIdleCloserEndsWithManager(t *testing.T) {
	net, ms := newNetwork(t, 3, p2pconn.Config{IdleTimeout: time.Minute, ResumeWindow: -1})
	a, b, c := ms[0], ms[1], ms[2]
	ab, _ := connected(t, a, b)
	net.Crash(b.ID())
	require.ErrorIs(t, ab.Err(), p2pconn.ErrConnectionLost)
	require.NotErrorIs(t, ab.Err(), p2pconn.ErrPeerLeft)
	require.NoError(t, b.Close())
	require.NoError(t, c.Close())
}

// Managers of different NetworkNames never connect, as on libp2p.
func TestNetworkNameSeparates(t *testing.T) {
	net := memnet.NewNetwork()
	blue := newManager(t, net, randomID(t), p2pconn.Config{NetworkName: "blue"})
	green := newManager(t, net, randomID(t), p2pconn.Config{NetworkName: "green"})
	blue2 := newManager(t, net, randomID(t), p2pconn.Config{NetworkName: "blue"})
	ctx := testkit.Context(t, 10*time.Second)
	_, err := blue.Connect(ctx, green.ID())
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	_, err = green.Connect(ctx, blue.ID())
	require.ErrorIs(t, err, p2pconn.ErrRefused)
	require.Zero(t, blue.ConnectionCount()+green.ConnectionCount())
	_, err = blue.Connect(ctx, blue2.ID())
	require.NoError(t, err)
}
