package p2pconn_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/internal/testkit/childnode"
	"github.com/skipwire/skipwire/p2pconn"
)

// keyOrdered returns a key whose Identifier is smaller than id (smaller
// true) or larger.
func keyOrdered(t testing.TB, id identity.Identifier, smaller bool) crypto.PrivKey {
	t.Helper()
	for {
		key, err := identity.GenerateKey()
		require.NoError(t, err)
		other, err := identity.FromPrivateKey(key)
		require.NoError(t, err)
		if (other.Compare(id) < 0) == smaller {
			return key
		}
	}
}

// TestRestartWhileFrozen: a peer's process freezes (its connection's death
// is never signalled: the kernel still holds its sockets), and a new process
// with the same key starts and connects. The survivor has the new connection
// within a second, whichever of the two has the smaller Identifier; from the
// moment the new incarnation's HELLO arrives, Sends on the old connection
// fail with ErrConnectionLost; the new connection carries messages both ways,
// and the survivor ends with one libp2p connection to the peer.
func TestRestartWhileFrozen(t *testing.T) {
	for _, survivorSmaller := range []bool{true, false} {
		name := "survivor larger"
		if survivorSmaller {
			name = "survivor smaller"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, transports["tcp"])
			a := c.node(testConfig()) // default keepalive: the health check cannot be what notices
			key := keyOrdered(t, a.id, !survivorSmaller)
			childCfg := testConfig()
			ctx := testkit.Context(t, 60*time.Second)

			first := childnode.Start(t, childnode.Options{Config: childCfg, Key: key})
			c.table.Add(first.ID, first.Addr)
			old, err := a.m.Connect(ctx, first.ID)
			require.NoError(t, err)
			require.NoError(t, old.Send(ctx, []byte("before")))
			msg, err := old.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "before", string(msg))

			require.NoError(t, first.Freeze())
			t.Cleanup(func() { _ = first.Thaw() })
			self := peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}
			second := childnode.Start(t, childnode.Options{Config: childCfg, Key: key, Dial: &self})
			listening := time.Now()
			require.Equal(t, first.ID, second.ID)

			fresh, err := a.m.Accept(ctx)
			require.NoError(t, err)
			took := time.Since(listening)
			t.Logf("the restarted peer's connection reached the survivor %s after it listened", took.Round(time.Millisecond))
			require.Less(t, took, time.Second)
			require.NotSame(t, old, fresh)
			require.False(t, old.IsAlive(), "the new incarnation's HELLO ends the old connection")
			require.ErrorIs(t, old.Send(ctx, []byte("into the frozen process")), p2pconn.ErrConnectionLost)
			got, ok := a.m.GetConnection(first.ID)
			require.True(t, ok)
			require.Same(t, fresh, got)

			for _, m := range []string{"after", "again"} {
				require.NoError(t, fresh.Send(ctx, []byte(m)))
				msg, err := fresh.Next(ctx)
				require.NoError(t, err)
				require.Equal(t, m, string(msg))
			}
			require.Eventually(t, func() bool { return len(a.h.Network().ConnsToPeer(first.ID.PeerID())) == 1 },
				5*time.Second, 5*time.Millisecond, "the libp2p connection to the frozen process is closed")
			require.NoError(t, second.Stop(10*time.Second))
			require.NoError(t, first.Thaw())
		})
	}
}
