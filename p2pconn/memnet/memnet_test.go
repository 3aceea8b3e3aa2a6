package memnet_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skipwire/skipwire/identity"
	"github.com/skipwire/skipwire/internal/testkit"
	"github.com/skipwire/skipwire/p2pconn"
	"github.com/skipwire/skipwire/p2pconn/memnet"
	"github.com/skipwire/skipwire/p2pconn/p2pconntest"
	"github.com/skipwire/skipwire/resolver"
)

func TestConformance(t *testing.T) {
	p2pconntest.Run(t, func(t testing.TB) p2pconntest.Network {
		return &conformanceNetwork{net: memnet.NewNetwork()}
	})
}

// conformanceNetwork runs the conformance suite on a memnet.Network.
type conformanceNetwork struct{ net *memnet.Network }

func (n *conformanceNetwork) NewNode(t testing.TB, cfg p2pconn.Config) p2pconntest.Node {
	t.Helper()
	m := newManager(t, n.net, randomID(t), cfg)
	return p2pconntest.Node{ID: m.ID(), Manager: m}
}

func (n *conformanceNetwork) Crash(t testing.TB, node p2pconntest.Node) {
	t.Helper()
	n.net.Crash(node.ID)
}

func (n *conformanceNetwork) Partition(a, b p2pconntest.Node) { n.net.Partition(a.ID, b.ID) }

func (n *conformanceNetwork) Heal(a, b p2pconntest.Node) { n.net.Heal(a.ID, b.ID) }

// Cut is Partition: a session between a and b resumes across it.
func (n *conformanceNetwork) Cut(t testing.TB, a, b p2pconntest.Node) { n.net.Partition(a.ID, b.ID) }

// Restore is Heal: a session between a and b resumes at once.
func (n *conformanceNetwork) Restore(t testing.TB, a, b p2pconntest.Node) { n.net.Heal(a.ID, b.ID) }

// Restart joins a new manager under the crashed node's Identifier.
func (n *conformanceNetwork) Restart(t testing.TB, crashed p2pconntest.Node, cfg p2pconn.Config) p2pconntest.Node {
	t.Helper()
	m := newManager(t, n.net, crashed.ID, cfg)
	return p2pconntest.Node{ID: m.ID(), Manager: m}
}

// newManager joins net as id and closes the manager when the test ends.
func newManager(t testing.TB, net *memnet.Network, id identity.Identifier, cfg p2pconn.Config) *memnet.Manager {
	t.Helper()
	m, err := net.NewManager(id, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	return m
}

// newNetwork returns a new network and count managers with cfg joined to
// it under random Identifiers, closed when the test ends.
func newNetwork(t testing.TB, count int, cfg p2pconn.Config) (*memnet.Network, []*memnet.Manager) {
	t.Helper()
	net := memnet.NewNetwork()
	ms := make([]*memnet.Manager, count)
	for i := range ms {
		ms[i] = newManager(t, net, randomID(t), cfg)
	}
	return net, ms
}

func randomID(t testing.TB) identity.Identifier {
	t.Helper()
	var id identity.Identifier
	_, err := rand.Read(id[:])
	require.NoError(t, err)
	return id
}

// connected returns a's connection to b and b's side of it.
func connected(t testing.TB, a, b *memnet.Manager) (ca, cb p2pconn.Connection) {
	t.Helper()
	ca, err := a.Connect(testkit.Context(t, 10*time.Second), b.ID())
	require.NoError(t, err)
	cb, ok := b.GetConnection(a.ID())
	require.True(t, ok)
	return ca, cb
}

func TestNewManager(t *testing.T) {
	net := memnet.NewNetwork()
	id := randomID(t)
	m := newManager(t, net, id, p2pconn.Config{})
	require.Equal(t, id, m.ID())

	_, err := net.NewManager(id, p2pconn.Config{})
	require.ErrorIs(t, err, memnet.ErrDuplicateIdentifier)

	_, err = net.NewManager(randomID(t), p2pconn.Config{MaxConnections: -1})
	require.ErrorIs(t, err, p2pconn.ErrInvalidConfig)

	// A closed manager's Identifier may join again, as after a restart.
	require.NoError(t, m.Close())
	again := newManager(t, net, id, p2pconn.Config{})
	require.Equal(t, id, again.ID())
}

func TestRemoteAddr(t *testing.T) {
	_, ms := newNetwork(t, 2, p2pconn.Config{})
	a, b := ms[0], ms[1]
	ca, cb := connected(t, a, b)
	require.Equal(t, "/memnet/"+b.ID().String(), ca.RemoteAddr())
	require.Equal(t, "/memnet/"+a.ID().String(), cb.RemoteAddr())
	require.NoError(t, ca.Close())
	require.Empty(t, ca.RemoteAddr())
	require.Empty(t, cb.RemoteAddr())
}

func TestConnectContext(t *testing.T) {
	_, ms := newNetwork(t, 2, p2pconn.Config{})
	a, b := ms[0], ms[1]
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := a.Connect(cancelled, b.ID())
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, a.ConnectionCount())

	// A cached connection needs no ctx.
	ca, _ := connected(t, a, b)
	got, err := a.Connect(cancelled, b.ID())
	require.NoError(t, err)
	require.True(t, ca == got)
}

func TestPartitionAndHeal(t *testing.T) {
	net, ms := newNetwork(t, 3, p2pconn.Config{ResumeWindow: -1})
	a, b, c := ms[0], ms[1], ms[2]
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	ac, ca := connected(t, a, c)
	require.NoError(t, ba.Send(ctx, []byte("queued")))

	net.Partition(a.ID(), b.ID())

	// Both sides lose the connection; what was queued stays readable.
	msg, err := ab.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "queued", string(msg))
	for _, conn := range []p2pconn.Connection{ab, ba} {
		require.False(t, conn.IsAlive())
		require.ErrorIs(t, conn.Err(), p2pconn.ErrConnectionLost)
		_, err := conn.Next(ctx)
		require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
		require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
		require.ErrorIs(t, conn.Send(ctx, []byte("x")), p2pconn.ErrConnectionLost)
	}
	require.Equal(t, 1, a.ConnectionCount())
	require.Zero(t, b.ConnectionCount())

	// No way through while the cut lasts, from either side.
	_, err = a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	require.NotErrorIs(t, err, resolver.ErrNotFound)
	_, err = b.Connect(ctx, a.ID())
	require.ErrorIs(t, err, memnet.ErrUnreachable)

	// Other links are untouched.
	require.NoError(t, ac.Send(ctx, []byte("fine")))
	msg, err = ca.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "fine", string(msg))

	net.Heal(b.ID(), a.ID()) // either order
	ab2, ba2 := connected(t, a, b)
	require.False(t, ab == ab2)
	require.NoError(t, ba2.Send(ctx, []byte("healed")))
	msg, err = ab2.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "healed", string(msg))
	require.False(t, ab.IsAlive(), "a lost connection stays dead")
}

func TestPartitionBeforeJoin(t *testing.T) {
	net := memnet.NewNetwork()
	aID, bID := randomID(t), randomID(t)
	net.Partition(aID, bID)
	a := newManager(t, net, aID, p2pconn.Config{})
	newManager(t, net, bID, p2pconn.Config{})
	_, err := a.Connect(testkit.Context(t, 10*time.Second), bID)
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	net.Heal(aID, bID)
	_, err = a.Connect(testkit.Context(t, 10*time.Second), bID)
	require.NoError(t, err)
}

// blockedSend connects two managers with cfg, whose ReceiveBuffer must be
// 1: a sends queued to b, which fills b's queue, then starts a second Send,
// which blocks. It returns the network, both ends of the connection, and
// the channel the blocked Send's result arrives on.
func blockedSend(t testing.TB, cfg p2pconn.Config, queued string) (net *memnet.Network, ab, ba p2pconn.Connection, result <-chan error) {
	t.Helper()
	net, ms := newNetwork(t, 2, cfg)
	ab, ba = connected(t, ms[0], ms[1])
	ctx := testkit.Context(t, 10*time.Second)
	require.NoError(t, ab.Send(ctx, []byte(queued)))
	blocked := make(chan error, 1)
	go func() { blocked <- ab.Send(ctx, []byte("blocks")) }()
	return net, ab, ba, blocked
}

func TestPartitionReleasesBlockedSend(t *testing.T) {
	net, ab, ba, result := blockedSend(t, p2pconn.Config{ReceiveBuffer: 1, ResumeWindow: -1}, "fills the queue")
	net.Partition(ab.RemoteID(), ba.RemoteID())
	require.ErrorIs(t, <-result, p2pconn.ErrConnectionLost)
}

func TestCrash(t *testing.T) {
	net, ms := newNetwork(t, 3, p2pconn.Config{ResumeWindow: -1})
	a, b, c := ms[0], ms[1], ms[2]
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	cb, bc := connected(t, c, b)
	require.NoError(t, ba.Send(ctx, []byte("last words")))

	net.Crash(b.ID())

	msg, err := ab.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "last words", string(msg))
	for _, conn := range []p2pconn.Connection{ab, cb, ba, bc} {
		require.False(t, conn.IsAlive())
		_, err := conn.Next(ctx)
		require.ErrorIs(t, err, p2pconn.ErrConnectionLost)
		require.ErrorIs(t, conn.Send(ctx, nil), p2pconn.ErrConnectionLost)
	}
	require.Zero(t, a.ConnectionCount())
	require.Zero(t, c.ConnectionCount())

	// The crashed manager is closed.
	_, err = b.Connect(ctx, a.ID())
	require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
	_, err = b.Accept(ctx)
	require.ErrorIs(t, err, p2pconn.ErrManagerClosed)
	require.Zero(t, b.ConnectionCount())
	require.NoError(t, b.Close())

	// Gone from the network until it restarts under the same Identifier.
	_, err = a.Connect(ctx, b.ID())
	require.ErrorIs(t, err, resolver.ErrNotFound)
	restarted := newManager(t, net, b.ID(), p2pconn.Config{})
	ab2, ba2 := connected(t, a, restarted)
	require.NoError(t, ab2.Send(ctx, []byte("welcome back")))
	msg, err = ba2.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "welcome back", string(msg))

	net.Crash(randomID(t)) // unknown: nothing happens
}

func TestClosedManagerLeavesNetwork(t *testing.T) {
	_, ms := newNetwork(t, 2, p2pconn.Config{})
	a, b := ms[0], ms[1]
	require.NoError(t, b.Close())
	_, err := a.Connect(testkit.Context(t, 10*time.Second), b.ID())
	require.ErrorIs(t, err, resolver.ErrNotFound)
	require.NoError(t, b.CloseAll())
	require.NoError(t, b.Disconnect(a.ID()))
	_, ok := b.GetConnection(a.ID())
	require.False(t, ok)
	require.Empty(t, b.ConnectedPeers())
}

func TestCloseTimeoutAbortsBlockedSend(t *testing.T) {
	cfg := p2pconn.Config{ReceiveBuffer: 1, CloseTimeout: 50 * time.Millisecond}
	_, ab, ba, result := blockedSend(t, cfg, "delivered")
	ctx := testkit.Context(t, 10*time.Second)
	start := time.Now()
	require.NoError(t, ab.Close())
	require.Less(t, time.Since(start), 5*time.Second)
	require.ErrorIs(t, <-result, p2pconn.ErrConnectionClosed)

	// The remote sees a clean close after what was delivered.
	msg, err := ba.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "delivered", string(msg))
	_, err = ba.Next(ctx)
	require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
	require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
}

func TestAcceptQueueDropsOldestDead(t *testing.T) {
	net := memnet.NewNetwork()
	a := newManager(t, net, randomID(t), p2pconn.Config{MaxConnections: 2})
	ctx := testkit.Context(t, 10*time.Second)
	var peers []*memnet.Manager
	for range 3 {
		p := newManager(t, net, randomID(t), p2pconn.Config{})
		c, err := p.Connect(ctx, a.ID())
		require.NoError(t, err)
		require.NoError(t, c.Send(ctx, []byte("hi")))
		require.NoError(t, c.Close())
		peers = append(peers, p)
	}
	// The queue holds two; the third connection pushed out the first.
	for _, p := range peers[1:] {
		c, err := a.Accept(ctx)
		require.NoError(t, err)
		require.Equal(t, p.ID(), c.RemoteID())
		msg, err := c.Next(ctx)
		require.NoError(t, err)
		require.Equal(t, "hi", string(msg))
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err := a.Accept(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAcceptQueueFullOfLiveRefuses(t *testing.T) {
	net := memnet.NewNetwork()
	a := newManager(t, net, randomID(t), p2pconn.Config{MaxConnections: 1})
	p := newManager(t, net, randomID(t), p2pconn.Config{})
	q := newManager(t, net, randomID(t), p2pconn.Config{})
	ctx := testkit.Context(t, 10*time.Second)
	_, err := p.Connect(ctx, a.ID())
	require.NoError(t, err)
	_, err = q.Connect(ctx, a.ID())
	require.ErrorIs(t, err, p2pconn.ErrRefused)
}

func TestCloseTellsPeersTheNodeLeft(t *testing.T) {
	net, ms := newNetwork(t, 3, p2pconn.Config{ResumeWindow: -1})
	a, b, c := ms[0], ms[1], ms[2]
	ctx := testkit.Context(t, 10*time.Second)
	ab, ba := connected(t, a, b)
	cb, _ := connected(t, c, b)
	require.NoError(t, ba.Send(ctx, []byte("goodbye")))

	require.NoError(t, b.Close())
	msg, err := ab.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, "goodbye", string(msg))
	for _, conn := range []p2pconn.Connection{ab, cb} {
		_, err := conn.Next(ctx)
		require.ErrorIs(t, err, p2pconn.ErrPeerLeft)
		require.ErrorIs(t, err, p2pconn.ErrConnectionClosed)
		require.NotErrorIs(t, err, p2pconn.ErrConnectionLost)
		require.ErrorIs(t, conn.Err(), p2pconn.ErrPeerLeft)
	}
	_, err = ba.Next(ctx)
	require.NotErrorIs(t, err, p2pconn.ErrPeerLeft, "the side that left did not see itself leave")

	// Disconnect and Crash are not leaving.
	d := newManager(t, net, randomID(t), p2pconn.Config{})
	ad, da := connected(t, a, d)
	require.NoError(t, d.Disconnect(a.ID()))
	require.NotErrorIs(t, ad.Err(), p2pconn.ErrPeerLeft)
	require.ErrorIs(t, da.Err(), p2pconn.ErrConnectionClosed)
	ad, _ = connected(t, a, d)
	net.Crash(d.ID())
	require.ErrorIs(t, ad.Err(), p2pconn.ErrConnectionLost)
	require.NotErrorIs(t, ad.Err(), p2pconn.ErrPeerLeft)
}
