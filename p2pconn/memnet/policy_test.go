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
	_, err = a.Connect(ctx, b.ID())
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
	_, err = c.Connect(ctx, b.ID())
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
