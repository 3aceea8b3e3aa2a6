package childnode_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/resolver"
)

func TestMain(m *testing.M) {
	testkit.ChildMain(childnode.Role)
	goleak.VerifyTestMain(m)
}

// TestEcho starts a child node with a configuration of its own, reaches it
// from this process, and gets every message back; a clean Stop ends it.
func TestEcho(t *testing.T) {
	n := childnode.Start(t, childnode.Options{Config: p2pconn.Config{MaxMessageSize: 100}})
	require.Equal(t, n.ID.PeerID(), n.AddrInfo().ID)
	require.True(t, strings.HasPrefix(n.Addr.String(), "/ip4/127.0.0.1/tcp/"), "listens on loopback TCP: %s", n.Addr)

	cfg := p2pconn.Config{ConnectTimeout: 10 * time.Second}
	h := testkit.NewHost(t, nil, "", p2pconn.HostOptions(cfg)...)
	table := resolver.NewStatic()
	table.Add(n.ID, n.Addr)
	m, err := p2pconn.NewManager(h, table, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })

	ctx := testkit.Context(t, 30*time.Second)
	conn, err := m.Connect(ctx, n.ID)
	require.NoError(t, err)
	for _, msg := range []string{"one", "two", ""} {
		require.NoError(t, conn.Send(ctx, []byte(msg)))
		got, err := conn.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, string(got))
	}
	// The child's MaxMessageSize reached it: Send enforces the smaller limit.
	require.ErrorIs(t, conn.Send(ctx, make([]byte, 101)), p2pconn.ErrMessageTooLarge)

	require.NoError(t, n.Stop(10*time.Second), "a clean exit")
	<-conn.Done()
	require.ErrorIs(t, conn.Err(), p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, conn.Err(), p2pconn.ErrConnectionLost, "the child closed its manager cleanly")
}
