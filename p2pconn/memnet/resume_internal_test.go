package memnet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
)

// uncut lifts the cut between a and b behind the managers' backs: nothing
// reconnects until a Connect does.
func uncut(n *Network, a, b identity.Identifier) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cuts, keyOf(a, b))
}

// resumePair returns two managers with cfgA and cfgB and their connection.
func resumePair(t *testing.T, cfgA, cfgB p2pconn.Config) (n *Network, a, b *Manager, ab, ba p2pconn.Connection) {
	t.Helper()
	n = NewNetwork()
	var err error
	a, err = n.NewManager(identity.Identifier{1}, cfgA)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b, err = n.NewManager(identity.Identifier{2}, cfgB)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ab, err = a.Connect(testkit.Context(t, 10*time.Second), b.ID())
	require.NoError(t, err)
	ba, ok := b.GetConnection(a.ID())
	require.True(t, ok)
	return n, a, b, ab, ba
}

// A Connect to a peer whose session resumes reconnects: the session
// resumes on both sides, and Connect returns the same connection.
func TestConnectResumes(t *testing.T) {
	cfg := p2pconn.Config{ResumeWindow: 10 * time.Second}
	n, a, b, ab, ba := resumePair(t, cfg, cfg)
	ctx := testkit.Context(t, 10*time.Second)
	n.Partition(a.ID(), b.ID())
	require.NoError(t, ab.Send(ctx, []byte("x")))
	uncut(n, a.ID(), b.ID())
	require.True(t, ab.(*Conn).resuming(), "nothing reconnects by itself")

	c, err := a.Connect(ctx, b.ID())
	require.NoError(t, err)
	require.True(t, c == ab)
	require.False(t, ab.(*Conn).resuming())
	require.False(t, ba.(*Conn).resuming())
	msg, err := ba.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "x", string(msg))
}

// A Connect from the side whose session ended meets the remote's session
// that still resumes: that one ends (the remote began a new session), and
// the new connection replaces it in the remote's pool.
func TestConnectEndsStaleSession(t *testing.T) {
	n, a, b, ab, ba := resumePair(t, p2pconn.Config{ResumeWindow: 10 * time.Second}, p2pconn.Config{ResumeWindow: time.Millisecond})
	ctx := testkit.Context(t, 10*time.Second)
	n.Partition(a.ID(), b.ID())
	require.NoError(t, ab.Send(ctx, []byte("stale")))
	require.Eventually(t, func() bool { return !ba.IsAlive() }, 5*time.Second, time.Millisecond, "b's window ends")
	uncut(n, a.ID(), b.ID())

	c, err := b.Connect(ctx, a.ID())
	require.NoError(t, err)
	require.False(t, ab.IsAlive())
	var nd *p2pconn.NotDeliveredError
	require.ErrorAs(t, ab.Err(), &nd)
	require.Equal(t, [][]byte{[]byte("stale")}, nd.Messages)
	got, ok := a.GetConnection(b.ID())
	require.True(t, ok)
	require.True(t, got == c.(*Conn).peer(), "the new connection is a's")

	n.mu.Lock()
	defer n.mu.Unlock()
	require.Len(t, a.pipes, 1, "the ended session's pipe is forgotten")
	require.Len(t, b.pipes, 1)
}
