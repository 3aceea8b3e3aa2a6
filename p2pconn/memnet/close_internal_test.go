package memnet

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/p2pconn"
)

// sending returns how many Sends of c are in progress.
func (c *Conn) sendingNow() int {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.sending
}

// A Send blocked on the remote's full queue when Close starts completes if the
// remote reads within CloseTimeout, and the remote then reads it before EOF.
func TestCloseFlushesSendInProgress(t *testing.T) {
	net := NewNetwork()
	cfg := p2pconn.Config{ReceiveBuffer: 1, CloseTimeout: time.Minute}
	a, err := net.NewManager(identity.Identifier{1}, cfg)
	require.NoError(t, err)
	defer a.Close()
	b, err := net.NewManager(identity.Identifier{2}, cfg)
	require.NoError(t, err)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := a.Connect(ctx, b.ID())
	require.NoError(t, err)
	ab := c.(*Conn)
	ba, ok := b.GetConnection(a.ID())
	require.True(t, ok)
	require.NoError(t, ab.Send(ctx, []byte("one")))

	sendErr := make(chan error, 1)
	go func() { sendErr <- ab.Send(ctx, []byte("two")) }()
	require.Eventually(t, func() bool { return ab.sendingNow() == 1 }, 5*time.Second, time.Millisecond)

	closeErr := make(chan error, 1)
	go func() { closeErr <- ab.Close() }()
	require.Eventually(t, func() bool { return !ab.IsAlive() }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return !ba.IsAlive() }, 5*time.Second, time.Millisecond, "the remote sees the close")

	for _, want := range []string{"one", "two"} {
		msg, err := ba.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(msg))
	}
	require.NoError(t, <-sendErr, "the Send in progress completes")
	require.NoError(t, <-closeErr)
	_, err = ba.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)

	// Settled pipes are forgotten.
	net.mu.Lock()
	defer net.mu.Unlock()
	require.Empty(t, a.pipes)
	require.Empty(t, b.pipes)
}
